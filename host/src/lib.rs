//! Sluice: a transactional-mail platform whose Flowsteps run as sandboxed WebAssembly components.

// The OpenAPI document is one `json!` literal, deeper than the default limit allows.
#![recursion_limit = "256"]

pub mod access;
pub mod api;
pub mod auth_failures;
pub mod cluster;
pub use sluice_bounce as bounce;
pub mod config;
pub mod dashboard;
pub mod delivery;
pub mod dkim;
pub mod dns;
pub mod fairness;
pub mod flow;
pub mod inbound;
pub mod message;
pub mod net;
pub mod plugin;
pub mod private_file;
pub mod resend;
pub mod scans;
pub mod schedule;
pub mod server;
pub mod services;
pub mod smtp;
pub mod store;
pub mod submit;
pub mod timestamp;
pub mod totp;
pub mod tracking;
pub mod truncate;
pub mod webhooks;
