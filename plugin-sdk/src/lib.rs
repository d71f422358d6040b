//! Write Sluice Flowsteps in Rust.
//!
//! A Flowstep is a type that implements [`Flowstep`], exported with [`export_flowstep!`] from a
//! `cdylib` crate built for `wasm32-wasip2`:
//!
//! ```ignore
//! use sluice_plugin_sdk::{Flowstep, Message, Outcome, StepError, export_flowstep};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { prefix: String }
//!
//! struct SubjectPrefix;
//!
//! impl Flowstep for SubjectPrefix {
//!     type Config = Config;
//!     fn process(message: &Message, config: Config) -> Result<Outcome, StepError> {
//!         let subject = message.header("Subject").unwrap_or_default();
//!         // A change the host refuses (here: a prefix with a line break) comes back as an
//!         // `EditError`; `?` turns it into the step's error and the message is kept.
//!         message.set_header("Subject", &format!("{} {subject}", config.prefix))?;
//!         Ok(Outcome::Continue)
//!     }
//! }
//!
//! export_flowstep!(SubjectPrefix);
//! ```
//!
//! The host owns the message: reading a header does not copy the body into the sandbox, and
//! changes apply only if `process` returns `Ok`.

/// The bindings generated from `sluice:flowstep@0.2.0` (the `flowstep` world, or
/// `builtin-flowstep` with the `privileged` feature).
#[allow(missing_docs, clippy::all, unsafe_code)]
pub mod bindings {
    #[cfg(not(feature = "privileged"))]
    wit_bindgen::generate!({
        path: "../wit",
        world: "flowstep",
        pub_export_macro: true,
        export_macro_name: "__export_flowstep_bindings",
        default_bindings_module: "sluice_plugin_sdk::bindings",
    });

    #[cfg(feature = "privileged")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "builtin-flowstep",
        pub_export_macro: true,
        export_macro_name: "__export_flowstep_bindings",
        default_bindings_module: "sluice_plugin_sdk::bindings",
    });
}

pub use bindings::sluice::flowstep::types::{
    AttachmentInfo, CapabilityError, Disposition, EditError, Header, Message, NewAttachment,
    Outcome, StepError,
};

/// A change the host refused ends the step with that reason, unless the step handles it.
impl From<EditError> for StepError {
    fn from(refused: EditError) -> Self {
        let why = match refused {
            EditError::InvalidHeaderName(name) => format!("{name:?} is not a header name"),
            EditError::InvalidHeaderValue(name) => {
                format!("the value of header {name:?} holds a line break or control character")
            }
            EditError::InvalidAddress(address) => format!("{address:?} is not an address"),
            EditError::MalformedMessage(why) => format!("malformed message: {why}"),
            EditError::TooLarge(limit) => {
                format!("the message would be larger than the limit of {limit} bytes")
            }
            EditError::NoSuchAttachment(index) => format!("there is no attachment {index}"),
        };
        StepError::Other(format!("the host refused a change: {why}"))
    }
}

/// A privileged capability that could not help fails the step as `capability-failed`.
impl From<CapabilityError> for StepError {
    fn from(refused: CapabilityError) -> Self {
        StepError::CapabilityFailed(match refused {
            CapabilityError::NoMessageContext => "the call runs outside any stored message".into(),
            CapabilityError::InvalidArgument(why) => format!("invalid argument: {why}"),
            CapabilityError::Failed(why) => why,
        })
    }
}

/// The privileged host capabilities granted to built-in Flowsteps only.
#[cfg(feature = "privileged")]
pub mod privileged {
    pub use crate::bindings::sluice::flowstep::{archive, dkim, online_link, templates, tracking};
}

/// Writing to the step's log, kept by the host with the message's events.
pub mod log {
    use crate::bindings::sluice::flowstep::log::{Level, write};

    /// Records a debugging detail.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    /// Records something worth knowing about this message.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    /// Records something that went wrong but did not stop the step.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    /// Records an error.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// Milliseconds since the Unix epoch, from the host's clock (`wasi:clocks/wall-clock`).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// One Flowstep: called once per message, in a fresh sandbox each time.
pub trait Flowstep {
    /// The step's configuration, parsed from the Flowstep's JSON (`serde_json::Value` to take
    /// it as it is). A configuration that does not parse fails the step with `invalid-config`.
    type Config: serde::de::DeserializeOwned;

    /// Processes one message. Changes made through `message` apply only when this returns `Ok`.
    fn process(message: &Message, config: Self::Config) -> Result<Outcome, StepError>;
}

/// Parses the configuration and runs the step; called by the code [`export_flowstep!`] writes.
#[doc(hidden)]
pub fn __run<F: Flowstep>(message: &Message, config: &str) -> Result<Outcome, StepError> {
    let config = if config.trim().is_empty() {
        "null"
    } else {
        config
    };
    let config = serde_json::from_str::<F::Config>(config)
        .map_err(|error| StepError::InvalidConfig(error.to_string()))?;
    F::process(message, config)
}

/// Exports a type that implements [`Flowstep`] as this component's `handler` interface.
#[macro_export]
macro_rules! export_flowstep {
    ($step:ty) => {
        const _: () = {
            // Used only where the export is emitted, in the wasm build.
            #[allow(dead_code)]
            struct SluiceFlowstepExport;

            impl $crate::bindings::exports::sluice::flowstep::handler::Guest
                for SluiceFlowstepExport
            {
                fn process(
                    message: &$crate::Message,
                    config: ::std::string::String,
                ) -> ::std::result::Result<$crate::Outcome, $crate::StepError> {
                    $crate::__run::<$step>(message, &config)
                }
            }

            // The export's symbol is named after the interface (`sluice:flowstep/handler@…`),
            // which a native linker refuses: a step's crate also builds natively for its unit
            // tests, so the export exists only in the component.
            #[cfg(target_family = "wasm")]
            $crate::bindings::__export_flowstep_bindings!(
                SluiceFlowstepExport with_types_in $crate::bindings
            );
        };

        /// The step's entry point in a native build, where there is no export: it keeps the
        /// step's code reachable, so a native build of the crate (for its unit tests) sees no
        /// dead code.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __sluice_flowstep_process(
            message: &$crate::Message,
            config: &str,
        ) -> ::std::result::Result<$crate::Outcome, $crate::StepError> {
            $crate::__run::<$step>(message, config)
        }
    };
}
