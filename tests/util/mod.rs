//! Helpers shared by the test modules: the built guest components, fixtures and runtimes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sluice::message::{Envelope, Message};
use sluice::plugin::{CompiledCache, Grants, Plugin, PluginRuntime, RuntimeLimits};

/// A guest component built by host/build.rs, by crate name (`test-misbehave`).
pub fn guest(crate_name: &str) -> PathBuf {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    let path = Path::new(env!("SLUICE_GUESTS_DIR")).join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The bytes of a guest component.
pub fn guest_bytes(crate_name: &str) -> Vec<u8> {
    std::fs::read(guest(crate_name)).unwrap()
}

/// A file from tests/data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

/// A fixture message from tests/data.
pub fn message(name: &str) -> Message {
    let raw = std::fs::read(data(name)).unwrap();
    Message::parse(raw, envelope()).unwrap()
}

/// The envelope fixture messages travel with.
pub fn envelope() -> Envelope {
    Envelope {
        sender: "bounces@example.com".into(),
        recipient: "ann@example.net".into(),
    }
}

/// A compiled-code cache shared by every test of this run, so each component compiles once.
fn shared_cache() -> CompiledCache {
    static CACHE: OnceLock<(tempfile::TempDir, CompiledCache)> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let cache = CompiledCache::open(dir.path().join("compiled")).unwrap();
            (dir, cache)
        })
        .1
        .clone()
}

/// Limits for tests: the defaults with a smaller pool (many runtimes live at once here).
pub fn test_limits() -> RuntimeLimits {
    RuntimeLimits {
        concurrent_calls: 16,
        ..RuntimeLimits::default()
    }
}

/// A runtime with these limits, sharing the run's compiled-code cache.
pub fn runtime(limits: RuntimeLimits) -> Arc<PluginRuntime> {
    PluginRuntime::new(limits, Some(shared_cache())).unwrap()
}

/// Loads a guest with no privileges.
pub fn load(runtime: &Arc<PluginRuntime>, crate_name: &str) -> Arc<Plugin> {
    runtime
        .load(crate_name, &guest_bytes(crate_name), Grants::none())
        .unwrap()
}
