//! Denials: the WASI interfaces a toolchain imports though a step never needs them
//! (`wasi:http` for componentize-js, `wasi:sockets` for componentize-py), linked so the
//! component loads, with functions that end the call with [`CapabilityDenied`] if the step
//! ever calls one.
//!
//! They are defined per component, on a clone of the shared linker, under the exact names and
//! with the exact exports its imports have: any 0.2.x version links, and a component that
//! imports nothing denied uses the shared linker as it is.

use std::borrow::Cow;

use wasmtime::component::types::{ComponentInstance, ComponentItem};
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType};

use super::policy::{self, Grants, ImportTreatment};
use super::state::StepState;
use super::{LoadError, PluginRuntime};

/// A step called a function of an interface it is linked against only as a denial.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "capability denied: {import} ({function}): {}",
    policy::denial_reason(import)
)]
pub struct CapabilityDenied {
    /// The interface without its version, e.g. `wasi:sockets/tcp`.
    pub import: String,
    /// The function the step called, as the component model names it.
    pub function: String,
}

impl PluginRuntime {
    /// The linker that prepares `component`: the shared one, or a clone of it with denials
    /// for the imports the policy denies if called. Imports the policy refuses are the
    /// caller's to check first; here they are left undefined.
    pub(crate) fn linker_for(
        &self,
        component: &Component,
        grants: &Grants,
    ) -> Result<Cow<'_, Linker<StepState>>, LoadError> {
        let engine = &self.engine;
        let ty = component.component_type();
        let denied = |name: &str| {
            matches!(
                policy::check_import(name, grants),
                Ok(ImportTreatment::DeniedIfCalled)
            )
        };
        if !ty.imports(engine).any(|(name, _)| denied(name)) {
            return Ok(Cow::Borrowed(&self.linker));
        }
        let mut linker = self.linker.clone();
        // A resource is defined where a component first imports it; later imports that `use`
        // it name the same type, which the linker then must not define again.
        let mut known_resources = Vec::new();
        for (name, import) in ty.imports(engine) {
            let result = match import.ty {
                ComponentItem::ComponentInstance(instance) if denied(name) => {
                    define_denied(&mut linker, engine, name, &instance, &mut known_resources)
                }
                ComponentItem::ComponentInstance(instance) => {
                    for (_, export) in instance.exports(engine) {
                        if let ComponentItem::Resource(resource) = export.ty {
                            known_resources.push(resource);
                        }
                    }
                    Ok(())
                }
                ComponentItem::Resource(resource) => {
                    known_resources.push(resource);
                    Ok(())
                }
                _ => Ok(()),
            };
            result.map_err(|error| {
                LoadError::WrongShape(format!("import `{name}` cannot be denied: {error:#}"))
            })?;
        }
        Ok(Cow::Owned(linker))
    }
}

/// Defines every function of one imported interface as a denial, and the resources it
/// introduces as host types no function ever makes a value of.
fn define_denied<T: 'static>(
    linker: &mut Linker<T>,
    engine: &wasmtime::Engine,
    name: &str,
    instance: &ComponentInstance,
    known_resources: &mut Vec<ResourceType>,
) -> wasmtime::Result<()> {
    let import = name.split('@').next().unwrap_or(name).to_string();
    let mut linked: LinkerInstance<'_, T> = linker.instance(name)?;
    for (export, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(_) => {
                let denied = CapabilityDenied {
                    import: import.clone(),
                    function: export.to_string(),
                };
                linked.func_new(export, move |_, _, _, _| {
                    Err(wasmtime::Error::new(denied.clone()))
                })?;
            }
            ComponentItem::Resource(resource) if !known_resources.contains(&resource) => {
                known_resources.push(resource);
                // Each its own type, as in the interface: a handle of one could never pass
                // for another, though no function ever returns one.
                let payload = u32::try_from(known_resources.len())?;
                linked.resource(export, ResourceType::host_dynamic(payload), |_, _| Ok(()))?;
            }
            // Records, variants and resources another import defined need no definition.
            ComponentItem::Resource(_) | ComponentItem::Type(_) => {}
            other => wasmtime::bail!("`{export}` is a {other:?}, not a function or a type"),
        }
    }
    Ok(())
}
