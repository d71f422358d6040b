//! The outbound SMTP client's reply parser on any bytes a remote server may answer with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::delivery::client::Reply;

fuzz_target!(|raw: &[u8]| {
    let Ok(reply) = Reply::parse(raw) else {
        return;
    };
    assert!((200..600).contains(&reply.code), "code {}", reply.code);
    // What delivery records and classifies: the one-line form and each line.
    let line = reply.to_string();
    assert!(!line.contains(['\r', '\n']), "{line:?}");
    let _ = reply.lines().count();
    let _ = (
        reply.is_positive(),
        reply.is_transient(),
        reply.is_permanent(),
    );
    // A permanent reply is judged by the bounce classifier.
    let _ = sluice::delivery::outcome::judge(&reply, None);
});
