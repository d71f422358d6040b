//! A Flowstep as it was written for `sluice:flowstep@0.1.0`, straight on wit-bindgen: the host
//! must keep loading and running it beside 0.2 components, with 0.1.0's rules (a setter given
//! a bad value traps). Configuration: `{"set": {"Name": "value", ...}}`, applied in order, then
//! the subject is prefixed with the clock's `now-millis` so the 0.1.0 clock is called too.

// The exported entry points the bindings generate are `unsafe extern` functions.
#![allow(unsafe_code)]

#[allow(clippy::all, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "flowstep",
        default_bindings_module: "crate::bindings",
    });
}

use bindings::sluice::flowstep::clock::now_millis;
use bindings::sluice::flowstep::log::{Level, write};
use bindings::sluice::flowstep::types::{Message, Outcome, StepError};

/// The step's configuration.
#[derive(serde::Deserialize)]
struct Config {
    #[serde(default)]
    set: Vec<(String, String)>,
}

struct Legacy;

impl bindings::Guest for Legacy {
    fn process(msg: &Message, config: String) -> Result<Outcome, StepError> {
        let config: Config = serde_json::from_str(&config)
            .map_err(|error| StepError::InvalidConfig(error.to_string()))?;
        for (name, value) in &config.set {
            msg.set_header(name, value);
        }
        let subject = msg.header("Subject").unwrap_or_default();
        msg.set_header(
            "Subject",
            &format!("[0.1.0 {}] {subject}", now_millis() > 0),
        );
        write(Level::Info, "processed by a 0.1.0 component");
        Ok(Outcome::Continue)
    }
}

bindings::export!(Legacy with_types_in bindings);
