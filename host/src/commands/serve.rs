//! `sluice serve`: loads the plugin folder, watches it, and runs until interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sluice::config::Config;
use sluice::plugin::registry::{PluginFolder, PluginRegistry};
use sluice::plugin::{CompiledCache, PluginRuntime};

/// Quiet time after the last change in the plugin folder before it is applied.
const PLUGIN_DEBOUNCE: Duration = Duration::from_millis(300);

pub fn run(config_path: Option<&Path>, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path)?;
    if let Some(data) = data {
        config.data_dir = data;
    }
    let plugins = config.plugins_path();
    std::fs::create_dir_all(&plugins)
        .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", plugins.display()))?;
    let cache = CompiledCache::open(config.compiled_cache_path())?;
    let runtime = PluginRuntime::new(config.runtime.clone(), Some(cache))?;
    let registry = PluginRegistry::new();

    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        let folder = PluginFolder::new(&plugins, runtime, registry.clone());
        // Loading compiles; keep it off the async workers.
        let watch =
            tokio::task::spawn_blocking(move || folder.watch(PLUGIN_DEBOUNCE, |_| {})).await??;
        tracing::info!(
            data = %config.data_dir.display(),
            plugins = %plugins.display(),
            loaded = ?registry.names(),
            "sluice is running; drop NAME.wasm into the plugin folder to load it"
        );
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        drop(watch);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
