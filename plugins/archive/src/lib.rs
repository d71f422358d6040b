//! Built-in Flowstep `archive`: keeps the message as it is at this step for a retention period,
//! readable through the API (`GET /{account}/messages/{id}/archive`) and at the message's
//! 'view online' link. The host stores the copy when the flow's outcome is recorded, so a
//! message a later step holds or discards is not archived.
//!
//! Configuration: `{"retention": "P1M"}`, one of `P1M`, `P3M`, `P6M`, `P1Y` (default `P3M`).

use serde::Deserialize;
use sluice_plugin_sdk::privileged::archive;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep, log};

/// How long an archived message is kept.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum Retention {
    /// One month.
    #[serde(rename = "P1M")]
    OneMonth,
    /// Three months.
    #[default]
    #[serde(rename = "P3M")]
    ThreeMonths,
    /// Six months.
    #[serde(rename = "P6M")]
    SixMonths,
    /// One year.
    #[serde(rename = "P1Y")]
    OneYear,
}

impl Retention {
    /// The period in days, rounded up so nothing is purged before its calendar period ends.
    pub fn days(self) -> u32 {
        match self {
            Retention::OneMonth => 31,
            Retention::ThreeMonths => 92,
            Retention::SixMonths => 184,
            Retention::OneYear => 366,
        }
    }
}

/// The step's JSON configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long to keep the message.
    #[serde(default)]
    pub retention: Retention,
}

struct Archive;

impl Flowstep for Archive {
    type Config = Option<Config>;

    fn process(message: &Message, config: Option<Config>) -> Result<Outcome, StepError> {
        let retention = config.unwrap_or_default().retention;
        let id = archive::store(message, retention.days())?;
        log::debug(&format!("archive {id} kept for {} days", retention.days()));
        Ok(Outcome::Continue)
    }
}

export_flowstep!(Archive);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn retention_periods_parse_and_anything_else_is_refused() {
        assert_eq!(
            parse(r#"{"retention":"P1M"}"#).unwrap().retention.days(),
            31
        );
        assert_eq!(
            parse(r#"{"retention":"P1Y"}"#).unwrap().retention.days(),
            366
        );
        assert_eq!(parse("{}").unwrap().retention, Retention::ThreeMonths);
        assert!(parse(r#"{"retention":"P2Y"}"#).is_err());
        assert!(parse(r#"{"retention":"P1M","extra":1}"#).is_err());
    }
}
