//! A test bounce classifier, as an account would write one: a full mailbox counts as hard
//! (the account knows its recipients abandon full mailboxes), and every other verdict stays
//! the built-in one. A diagnostic saying `classifier-trap` makes it trap, one saying
//! `classifier-sleep` makes it sleep far past any deadline.

// The exported entry points the bindings generate are `unsafe extern` functions.
#![allow(unsafe_code)]

#[allow(clippy::all, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "bounce-classifier",
        pub_export_macro: true,
        default_bindings_module: "crate::bindings",
    });
}

use bindings::exports::sluice::flowstep::classifier::{
    Guest, ReportKind, ReturnedRecipient, Verdict,
};
use bindings::sluice::flowstep::log::{Level, write};

struct FullIsGone;

impl Guest for FullIsGone {
    fn classify(returned: ReturnedRecipient) -> Option<Verdict> {
        // A way for tests to see a classifier fail: the built-in verdict must stand.
        if returned
            .diagnostic
            .as_deref()
            .is_some_and(|text| text.contains("classifier-trap"))
        {
            panic!("asked to trap");
        }
        // And one to see a classifier that waits: the deadline must stop it.
        if returned
            .diagnostic
            .as_deref()
            .is_some_and(|text| text.contains("classifier-sleep"))
        {
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
        if returned.kind != ReportKind::Bounce || returned.reason != "mailboxfull" {
            return None;
        }
        write(Level::Info, "a full mailbox is taken as abandoned");
        Some(Verdict {
            reason: "mailbox-abandoned".into(),
            hard: true,
        })
    }
}

bindings::export!(FullIsGone with_types_in bindings);
