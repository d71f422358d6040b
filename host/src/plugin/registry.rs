//! Plugins by name, swapped atomically, and the plugin folder that operators hot-load from.
//!
//! A call takes an `Arc<Plugin>` out of the registry and keeps it for its whole run, so a swap
//! never disturbs a call in flight: it finishes on the version it started with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::{Grants, Plugin, PluginRuntime};

/// The plugins currently in service, by name: the operator's folder, then the built-ins
/// (a folder plugin of the same name takes precedence; removing it brings the built-in back).
#[derive(Debug, Default)]
pub struct PluginRegistry {
    plugins: RwLock<HashMap<String, Arc<Plugin>>>,
    builtins: RwLock<HashMap<String, Arc<Plugin>>>,
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current version of a plugin.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.read().get(name).cloned().or_else(|| {
            self.builtins
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
        })
    }

    /// Adds a built-in plugin.
    pub fn insert_builtin(&self, plugin: Arc<Plugin>) {
        self.builtins
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin.name().to_string(), plugin);
    }

    /// Puts a plugin in service under its name; returns the version it replaced.
    pub fn insert(&self, plugin: Arc<Plugin>) -> Option<Arc<Plugin>> {
        self.write().insert(plugin.name().to_string(), plugin)
    }

    /// Takes a plugin out of service.
    pub fn remove(&self, name: &str) -> Option<Arc<Plugin>> {
        self.write().remove(name)
    }

    /// The names of the operator's plugins in service, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Plugin>>> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Plugin>>> {
        self.plugins.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// What happened to one file of the plugin folder.
#[derive(Clone, Debug)]
pub enum FolderChange {
    /// A plugin was loaded or replaced.
    Loaded {
        /// Its name (the file stem).
        name: String,
        /// The sha256 of the new version.
        sha256: String,
    },
    /// The file did not change the version in service.
    Unchanged {
        /// Its name.
        name: String,
    },
    /// The file could not be loaded; the previous version, if any, stays in service.
    Rejected {
        /// Its name.
        name: String,
        /// Why.
        error: String,
    },
    /// The file was deleted and the plugin unloaded.
    Unloaded {
        /// Its name.
        name: String,
    },
}

/// A folder of `NAME.wasm` plugins, each with an optional `NAME.toml` manifest of the
/// privileges the operator grants it (`capabilities = ["dkim"]`).
#[derive(Debug, Clone)]
pub struct PluginFolder {
    dir: PathBuf,
    runtime: Arc<PluginRuntime>,
    registry: Arc<PluginRegistry>,
}

impl PluginFolder {
    /// A folder that loads into `registry`.
    pub fn new(
        dir: impl Into<PathBuf>,
        runtime: Arc<PluginRuntime>,
        registry: Arc<PluginRegistry>,
    ) -> Self {
        Self {
            dir: dir.into(),
            runtime,
            registry,
        }
    }

    /// Loads every plugin in the folder. Compiles: call it off async workers.
    pub fn load_all(&self) -> std::io::Result<Vec<FolderChange>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|entry| plugin_name(&entry.path()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names.into_iter().map(|name| self.refresh(&name)).collect())
    }

    /// Brings one plugin in line with its file: load, replace, keep, or unload.
    pub fn refresh(&self, name: &str) -> FolderChange {
        let wasm = self.dir.join(format!("{name}.wasm"));
        let bytes = match std::fs::read(&wasm) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.registry.remove(name);
                return FolderChange::Unloaded {
                    name: name.to_string(),
                };
            }
            Err(error) => {
                return FolderChange::Rejected {
                    name: name.to_string(),
                    error: error.to_string(),
                };
            }
        };
        let grants = match self.grants(name) {
            Ok(grants) => grants,
            Err(error) => {
                return FolderChange::Rejected {
                    name: name.to_string(),
                    error,
                };
            }
        };
        let sha256 = super::hex_sha256(&bytes);
        if let Some(current) = self.registry.read().get(name).cloned()
            && current.sha256() == sha256
            && current.grants() == &grants
        {
            return FolderChange::Unchanged {
                name: name.to_string(),
            };
        }
        match self.runtime.load(name, &bytes, grants) {
            Ok(plugin) => {
                self.registry.insert(plugin);
                FolderChange::Loaded {
                    name: name.to_string(),
                    sha256,
                }
            }
            Err(error) => FolderChange::Rejected {
                name: name.to_string(),
                error: error.to_string(),
            },
        }
    }

    fn grants(&self, name: &str) -> Result<Grants, String> {
        let manifest = self.dir.join(format!("{name}.toml"));
        match std::fs::read_to_string(&manifest) {
            Ok(text) => {
                toml::from_str(&text).map_err(|error| format!("{}: {error}", manifest.display()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Grants::none()),
            Err(error) => Err(format!("{}: {error}", manifest.display())),
        }
    }

    /// Loads the folder, then watches it and applies every change after `debounce` of quiet.
    /// Each change is logged and passed to `on_change`. Watching stops when the result drops.
    pub fn watch(
        self,
        debounce: Duration,
        on_change: impl Fn(&FolderChange) + Send + 'static,
    ) -> notify::Result<FolderWatch> {
        for change in self.load_all().map_err(notify::Error::io)? {
            log_change(&change);
            on_change(&change);
        }
        let dir = self.dir.clone();
        let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
            let events = match result {
                Ok(events) => events,
                Err(errors) => {
                    for error in errors {
                        tracing::warn!(%error, "plugin folder watch error");
                    }
                    return;
                }
            };
            let mut names: Vec<String> = events
                .iter()
                .flat_map(|event| event.paths.iter())
                .filter_map(|path| plugin_name(path))
                .collect();
            names.sort();
            names.dedup();
            for name in names {
                let change = self.refresh(&name);
                log_change(&change);
                on_change(&change);
            }
        })?;
        debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(FolderWatch {
            _debouncer: debouncer,
        })
    }
}

/// A running watch of the plugin folder.
pub struct FolderWatch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for FolderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatch").finish_non_exhaustive()
    }
}

/// The plugin a folder entry belongs to: `NAME.wasm` or its manifest `NAME.toml`.
fn plugin_name(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    if extension != "wasm" && extension != "toml" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (!stem.starts_with('.')).then(|| stem.to_string())
}

fn log_change(change: &FolderChange) {
    match change {
        FolderChange::Loaded { name, sha256 } => {
            tracing::info!(plugin = %name, %sha256, "plugin loaded")
        }
        FolderChange::Unchanged { name } => tracing::debug!(plugin = %name, "plugin unchanged"),
        FolderChange::Rejected { name, error } => {
            tracing::warn!(plugin = %name, %error, "plugin rejected; the previous version stays")
        }
        FolderChange::Unloaded { name } => tracing::info!(plugin = %name, "plugin unloaded"),
    }
}
