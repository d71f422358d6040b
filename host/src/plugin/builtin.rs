//! The built-in Flowsteps: components compiled into the binary (built from `plugins/` by
//! host/build.rs), loaded at start with the privileges they need and nothing more.

use std::sync::Arc;

use super::registry::PluginRegistry;
use super::{Capability, Grants, LoadError, PluginRuntime};

/// One built-in Flowstep.
#[derive(Debug)]
pub struct Builtin {
    /// The name flows use for it.
    pub name: &'static str,
    /// The component.
    pub component: &'static [u8],
    /// The privileges it is granted.
    pub grants: &'static [Capability],
}

/// Every built-in Flowstep.
pub const BUILTINS: &[Builtin] = &[Builtin {
    name: "tracking",
    component: include_bytes!(concat!(
        env!("SLUICE_GUESTS_DIR"),
        "/sluice_builtin_tracking.wasm"
    )),
    grants: &[Capability::Tracking],
}];

/// Loads every built-in into the registry. Compiles: call it off async workers.
pub fn load_builtins(
    runtime: &Arc<PluginRuntime>,
    registry: &PluginRegistry,
) -> Result<(), LoadError> {
    for builtin in BUILTINS {
        let grants = Grants::of(builtin.grants.iter().copied());
        let plugin = runtime.load(builtin.name, builtin.component, grants)?;
        registry.insert_builtin(plugin);
    }
    Ok(())
}
