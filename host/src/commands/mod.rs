//! The subcommands of the `sluice` binary.

pub mod plugin;
pub mod serve;
