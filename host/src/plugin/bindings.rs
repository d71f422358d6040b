//! Host bindings of every version of the `sluice:flowstep` contract, generated in this one
//! module and side by side: a component built against 0.1.0 keeps running beside 0.2 ones.
//! `wit/` holds the current version, the one customers build against; `wit/0.1.0/` keeps the
//! previous one (a folder of its own, so toolchains pointed at `wit/` see one version).
//! Both versions map their `message` resource to the same host type, so the host code that
//! reads and edits a message is shared (`state.rs`), and each version's traits are thin
//! (`contract/`).

/// `sluice:flowstep@0.2.0`, the current contract.
pub mod v0_2 {
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

    /// The privileged capabilities, bound on their own so a plain Flowstep's bindings stay
    /// what customers see.
    pub mod privileged {
        wasmtime::component::bindgen!({
            path: "../wit",
            interfaces: "
                import sluice:flowstep/tracking@0.2.0;
                import sluice:flowstep/online-link@0.2.0;
                import sluice:flowstep/archive@0.2.0;
                import sluice:flowstep/dkim@0.2.0;
                import sluice:flowstep/templates@0.2.0;
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
}

/// `sluice:flowstep@0.1.0`: setters trap, entry points are bare functions.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "flowstep",
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

    /// The privileged capabilities of 0.1.0.
    pub mod privileged {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
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

    /// The bounce classifier of 0.1.0, whose records live in the world.
    pub mod classifier {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
            world: "bounce-classifier",
            imports: { default: trappable },
            exports: { default: async },
            with: {
                "sluice:flowstep/log": super::sluice::flowstep::log,
            },
        });
    }
}
