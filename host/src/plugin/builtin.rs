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

macro_rules! component {
    ($file:literal) => {
        include_bytes!(concat!(env!("SLUICE_GUESTS_DIR"), "/", $file))
    };
}

/// Every built-in Flowstep.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "template",
        component: component!("sluice_builtin_template.wasm"),
        grants: &[Capability::Templates, Capability::OnlineLink],
    },
    Builtin {
        name: "tracking",
        component: component!("sluice_builtin_tracking.wasm"),
        grants: &[Capability::Tracking],
    },
    Builtin {
        name: "archive",
        component: component!("sluice_builtin_archive.wasm"),
        grants: &[Capability::Archive],
    },
    Builtin {
        name: "dkim",
        component: component!("sluice_builtin_dkim.wasm"),
        grants: &[Capability::Dkim],
    },
];

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
