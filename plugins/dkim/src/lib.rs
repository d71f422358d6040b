//! Built-in Flowstep `dkim`: asks the host to DKIM-sign the message, with the platform's key
//! and, when the account has a sender identity for the From domain, with that identity's key.
//! The keys never enter the sandbox. Put it last in the flow: any change after it breaks the
//! signatures.
//!
//! Configuration: none (`{}`); the signing domains follow from the From address and the
//! account's sender identities.

use serde::Deserialize;
use sluice_plugin_sdk::privileged::dkim;
use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep};

/// The step's JSON configuration: empty, but unknown fields are refused so a typo is caught
/// when the flow is saved.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

struct Dkim;

impl Flowstep for Dkim {
    type Config = Option<Config>;

    fn process(message: &Message, _config: Option<Config>) -> Result<Outcome, StepError> {
        dkim::sign(message)?;
        Ok(Outcome::Continue)
    }
}

export_flowstep!(Dkim);
