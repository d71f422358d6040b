//! A customer-style Flowstep: puts a configured prefix before the subject.
//!
//! Configuration: `{"prefix": "[TEST]", "skip_if_present": true}`. With `skip_if_present`
//! (the default) a subject that already starts with the prefix is left alone, so a message
//! that passes the step twice is not prefixed twice.

use serde::Deserialize;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep, log};

/// The step's JSON configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    prefix: String,
    #[serde(default = "yes")]
    skip_if_present: bool,
}

fn yes() -> bool {
    true
}

struct SubjectPrefix;

impl Flowstep for SubjectPrefix {
    type Config = Config;

    fn process(message: &Message, config: Config) -> Result<Outcome, StepError> {
        if config.prefix.trim().is_empty() {
            return Err(StepError::InvalidConfig("prefix must not be empty".into()));
        }
        let subject = message.header("Subject").unwrap_or_default();
        if config.skip_if_present && subject.starts_with(&config.prefix) {
            log::debug("subject already carries the prefix");
            return Ok(Outcome::Continue);
        }
        let prefixed = if subject.is_empty() {
            config.prefix
        } else {
            format!("{} {subject}", config.prefix)
        };
        message.set_header("Subject", &prefixed)?;
        Ok(Outcome::Continue)
    }
}

export_flowstep!(SubjectPrefix);
