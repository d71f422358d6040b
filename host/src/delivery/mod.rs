//! Outbound delivery: handing accepted messages on to the recipients' mail servers.

pub mod client;
