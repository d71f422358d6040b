//! The pipeline under pressure: when the sandbox has no free instance, a message waits in
//! the spool and is tried again; it is not held for a person.

use serde_json::json;
use sluice::store::MessageStatus;

use crate::util::{Api, TestServer};

#[test]
fn a_full_instance_pool_delays_messages_instead_of_holding_them() {
    // One instance slot, four flows at once: most calls find the pool full.
    let server = TestServer::start(|config| {
        config.runtime.concurrent_calls = 1;
        config.runtime.deadline = std::time::Duration::from_secs(5);
        config.pipeline_workers = 4;
    });
    let step = server.upload_guest("test-misbehave");
    server.set_default_flow(
        &step,
        json!({"behaviour": "busy", "millis": 30, "version": "v"}),
    );
    let api = Api::demo(&server);
    let ids: Vec<String> = (0..8)
        .map(|n| {
            api.submit(json!({
                "messageType": "EMAIL",
                "senderAddress": "app@example.com",
                "recipientAddress": format!("r{n}@example.net"),
                "subject": "queued",
                "text": "x",
            }))
        })
        .collect();
    for id in &ids {
        let record = server.wait_until_done(id);
        assert_eq!(
            record.status,
            MessageStatus::Processed,
            "{:?}",
            record.status_reason
        );
    }
}

#[test]
fn a_step_that_fails_after_changing_the_message_leaves_it_as_submitted() {
    let server = TestServer::start(|_| {});
    let step = server.upload_guest("test-misbehave");
    server.set_default_flow(&step, json!({"behaviour": "set-header-then-fail"}));
    let raw = b"From: app@example.com\r\nSubject: untouched\r\n\r\nbody\r\n";
    let id = Api::demo(&server).submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "mimedata": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw),
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(record.status, MessageStatus::Held);
    assert_eq!(server.store().body(&id).unwrap().unwrap(), raw);
}
