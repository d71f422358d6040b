//! Host bindings of the `sluice:flowstep` world, generated in this one module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "flowstep",
    // Edits that rebuild the message run off the executor when the message is large, as
    // futures the call's deadline can drop: a single such call cannot overrun the deadline.
    imports: {
        "sluice:flowstep/types.[method]message.set-html": async | trappable,
        "sluice:flowstep/types.[method]message.set-text": async | trappable,
        "sluice:flowstep/types.[method]message.set-raw": async | trappable,
        "sluice:flowstep/types.[method]message.add-attachment": async | trappable,
        "sluice:flowstep/types.[method]message.remove-attachment": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "sluice:flowstep/types.message": crate::plugin::state::MessageDraft,
    },
});

/// The privileged capabilities, bound on their own so a plain Flowstep's bindings stay what
/// customers see.
pub mod privileged {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "
            import sluice:flowstep/tracking@0.1.0;
            import sluice:flowstep/online-link@0.1.0;
            import sluice:flowstep/archive@0.1.0;
            import sluice:flowstep/dkim@0.1.0;
            import sluice:flowstep/templates@0.1.0;
        ",
        imports: { default: trappable },
        with: {
            "sluice:flowstep/types": super::sluice::flowstep::types,
        },
    });
}

/// An account's bounce classifier: the `bounce-classifier` world, whose only import (the
/// log) is the Flowstep's own.
pub mod classifier {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "bounce-classifier",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "sluice:flowstep/log": super::sluice::flowstep::log,
        },
    });
}
