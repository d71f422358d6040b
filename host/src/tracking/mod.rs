//! Open and click tracking: links signed by the host, and the HTTP endpoints that record
//! OPENED and CLICKED and redirect. The signing key never enters a sandbox: the tracking
//! Flowstep asks the host for each link through the `tracking` capability.

pub mod http;
mod links;

pub use links::{ClickTarget, LinkSigner};
