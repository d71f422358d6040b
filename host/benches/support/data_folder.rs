//! Data folders set up by a server in this process (the demo account, flows, keys), for a
//! `sluice serve` process to run on afterwards.

use std::path::Path;
use std::time::Duration;

/// The configuration of the in-process server that sets up a data folder: every listener on
/// a free port, so several runs can go side by side.
pub fn set_up_config(data: &Path) -> sluice::config::Config {
    let mut config = super::config(data);
    config.dashboard.listen = "127.0.0.1:0".parse().expect("an address");
    config
}

/// Runs a set-up on a server in this process, on a runtime of its own that is shut down
/// after it, so the data folder is free for the `sluice serve` process.
pub fn set_up<T>(work: impl std::future::Future<Output = T>) -> T {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let value = runtime.block_on(work);
    runtime.shutdown_timeout(Duration::from_secs(5));
    // The store's writer thread closes the database once the last handle is gone.
    std::thread::sleep(Duration::from_millis(500));
    value
}
