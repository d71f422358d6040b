//! The subcommands of the `sluice` binary.

pub mod bounce;
pub mod plugin;
pub mod scaffold;
pub mod serve;
pub mod user;
