//! A test Flowstep that calls `exit` while its component is being started: its module's
//! `_initialize`, which a component runs as it is instantiated, before `process` is ever
//! called. The host must count that as a fault of the step, hold the message and in the end
//! disable the plugin.

// `_initialize` must be exported under that exact name.
#![allow(unsafe_code)]

use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep};

/// Run by the component as it starts.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    std::process::exit(3);
}

struct ExitOnStart;

impl Flowstep for ExitOnStart {
    type Config = serde_json::Value;

    fn process(_message: &Message, _config: serde_json::Value) -> Result<Outcome, StepError> {
        Ok(Outcome::Continue)
    }
}

export_flowstep!(ExitOnStart);
