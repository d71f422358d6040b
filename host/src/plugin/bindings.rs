//! Host bindings of the `sluice:flowstep` world, generated in this one module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "flowstep",
    imports: { default: trappable },
    with: {
        "sluice:flowstep/types.message": crate::plugin::state::MessageDraft,
    },
});
