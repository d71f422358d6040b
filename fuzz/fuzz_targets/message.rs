//! The message model on any bytes a client may submit: `Message::parse`, then what a
//! Flowstep may read and change. Nothing may panic, and an edit that succeeds must leave a
//! message that parses again, since the pipeline stores it and reads it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::message::{Envelope, Message, NewAttachment};

fn envelope() -> Envelope {
    Envelope {
        sender: "sender@example.com".into(),
        recipient: "rcpt@example.net".into(),
    }
}

/// Checks that an edited message still reads as a message.
fn reparses(message: &Message, edit: &str) {
    if let Err(error) = Message::parse(message.to_bytes(), envelope()) {
        panic!("after {edit} the message no longer parses: {error}");
    }
}

fuzz_target!(|raw: &[u8]| {
    let Ok(mut message) = Message::parse(raw.to_vec(), envelope()) else {
        return;
    };
    // Reading, as the steps' `message` resource does.
    let _ = message.headers();
    let _ = message.header("Subject");
    let _ = message.header_all("Received");
    let _ = message.message_id();
    let _ = message.html();
    let _ = message.text();
    let attachments = message.attachments();
    for info in &attachments {
        let _ = message.attachment_content(info.index);
    }
    reparses(&message, "parsing");

    // Values taken from the input, so the fuzzer reaches the checks on them too.
    let tail = String::from_utf8_lossy(&raw[raw.len().saturating_sub(48)..]).into_owned();

    if message.set_header("Subject", &tail).is_ok() {
        reparses(&message, "set_header");
    }
    if message.append_header("X-Fuzz", "a value").is_ok() {
        reparses(&message, "append_header");
    }
    message.remove_header("Received");
    reparses(&message, "remove_header");
    if message.set_text(&tail).is_ok() {
        reparses(&message, "set_text");
    }
    if message.set_html("<p>hello</p>").is_ok() {
        reparses(&message, "set_html");
    }
    let attachment = NewAttachment {
        filename: tail.clone(),
        content_type: "application/octet-stream".into(),
        content: raw[..raw.len().min(64)].to_vec(),
        inline: false,
        content_id: None,
    };
    if message.add_attachment(attachment).is_ok() {
        reparses(&message, "add_attachment");
    }
    if matches!(message.remove_attachment(0), Ok(true)) {
        reparses(&message, "remove_attachment");
    }
});
