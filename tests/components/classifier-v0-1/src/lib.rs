//! A bounce classifier as it was written for `sluice:flowstep@0.1.0`, whose report kind is a
//! string: a full mailbox counts as hard, like the 0.2 test classifier, so the two can be
//! compared on the same returned mail.

// The exported entry points the bindings generate are `unsafe extern` functions.
#![allow(unsafe_code)]

#[allow(clippy::all, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "bounce-classifier",
        default_bindings_module: "crate::bindings",
    });
}

use bindings::{Guest, ReturnedRecipient, Verdict};

struct FullIsGoneV01;

impl Guest for FullIsGoneV01 {
    fn classify(returned: ReturnedRecipient) -> Option<Verdict> {
        if returned.kind != "bounce" || returned.reason != "mailboxfull" {
            return None;
        }
        Some(Verdict {
            reason: "mailbox-abandoned-v0.1".into(),
            hard: true,
        })
    }
}

bindings::export!(FullIsGoneV01 with_types_in bindings);
