//! The pipeline under pressure: when the sandbox has no free instance, a message waits in
//! the spool and is tried again; it is not held for a person.

use serde_json::json;
use sluice::store::MessageStatus;

use crate::util::guests;
use crate::util::{Api, TestServer};

#[test]
fn a_full_instance_pool_delays_messages_instead_of_holding_them() {
    // One instance slot, four flows at once: most calls find the pool full.
    let server = TestServer::start(|config| {
        config.runtime.concurrent_calls = 1;
        config.runtime.deadline = std::time::Duration::from_secs(5);
        config.runtime.cpu_budget = std::time::Duration::from_secs(5);
        config.pipeline_workers = 4;
    });
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
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
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
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

#[test]
fn a_step_that_exits_while_starting_is_held_disabled_across_a_restart_and_enabled_by_the_account() {
    let server = TestServer::start(|config| config.runtime.failures_before_disable = 2);
    let step = server.upload_guest(guests::TEST_EXIT_ON_START);
    server.set_default_flow(&step, json!({}));
    let api = Api::demo(&server);
    let submit = |api: &Api, n: u32| {
        api.submit(json!({
            "messageType": "EMAIL",
            "senderAddress": "app@example.com",
            "recipientAddress": format!("r{n}@example.net"),
            "subject": "hello",
            "text": "x",
        }))
    };
    // Held for a person, not retried as if the pool were full.
    for n in 0..2 {
        let record = server.wait_until_done(&submit(&api, n));
        assert_eq!(record.status, MessageStatus::Held);
        assert_eq!(
            record.status_reason.as_deref(),
            Some("step 1 failed: start-failed")
        );
    }
    let state: serde_json::Value = api
        .get(&format!("plugins/{step}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(state["enabled"], false, "{state}");
    assert!(
        state["disabledReason"]
            .as_str()
            .unwrap()
            .contains("called exit"),
        "{state}"
    );

    // Still disabled after a restart.
    let demo = server.server.created_demo.clone().unwrap();
    let dir = server.stop();
    let server = TestServer::start_in(dir, |config| config.runtime.failures_before_disable = 2);
    let api = Api::connect(
        &server,
        demo.account_id,
        &demo.client_id,
        &demo.client_secret,
    );
    let record = server.wait_until_done(&submit(&api, 2));
    assert_eq!(
        record.status_reason.as_deref(),
        Some("step 1 failed: disabled")
    );

    // Another account sees no plugin of this account's.
    let other = crate::util::second_account(&server);
    let hidden = other.get(&format!("plugins/{step}")).send().unwrap();
    assert_eq!(hidden.status(), reqwest::StatusCode::NOT_FOUND);
    let hidden = other
        .post(&format!("plugins/{step}/enable"))
        .send()
        .unwrap();
    assert_eq!(hidden.status(), reqwest::StatusCode::NOT_FOUND);

    // The account enables it again: it runs (and fails) afresh.
    let enabled: serde_json::Value = api
        .post(&format!("plugins/{step}/enable"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(enabled["enabled"], true, "{enabled}");
    let record = server.wait_until_done(&submit(&api, 3));
    assert_eq!(
        record.status_reason.as_deref(),
        Some("step 1 failed: start-failed")
    );
}
