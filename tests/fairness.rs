//! One account cannot stall another: while one account's steps sleep, its simulations wait
//! on sleeping steps and its bounce classifier sleeps, each call is stopped at its deadline
//! and another account's mail is processed and its bounces settled meanwhile. These are
//! ordering checks: the other account's work finishes while the first account's is still
//! being stopped.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::store::{Flowstep, MessageStatus};

use crate::util::guests;
use crate::util::{Api, TestServer, guest_bytes, second_account};

/// A step that sleeps far past any deadline: only a deadline that stops a waiting guest
/// ends it.
fn sleeping() -> Value {
    json!({"behaviour": "sleep", "millis": 60_000})
}

fn message(recipient: &str) -> Value {
    json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": recipient,
        "subject": "hello",
        "text": "hello",
    })
}

/// Gives account 2 its own plugin and a default flow of one quick step.
fn quick_default_flow_for_second_account(server: &TestServer) {
    let component = guest_bytes(guests::TEST_MISBEHAVE);
    let sha256 = sluice::plugin::hex_sha256(&component);
    server
        .block_on(server.store().put_plugin(2, &sha256, component))
        .unwrap();
    let step = Flowstep {
        plugin: sha256,
        config: json!({"behaviour": "read-header"}),
        enabled_when: None,
    };
    server.set_default_flow_of(2, vec![step]);
}

fn status(server: &TestServer, id: &str) -> MessageStatus {
    server.store().message(id).unwrap().unwrap().status
}

#[test]
fn another_accounts_mail_is_processed_while_one_accounts_steps_sleep() {
    let server = TestServer::start(|config| {
        // One account could otherwise take every slot: 8 workers, 4 for each account.
        config.pipeline_workers = 8;
        config.pipeline_account_share = Some(4);
        config.runtime.failures_before_disable = 0;
        // Each sleeping step holds its slot for a whole second.
        config.runtime.deadline = Duration::from_secs(1);
    });
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
    server.set_default_flow(&step, sleeping());
    let first = Api::demo(&server);
    let second = second_account(&server);
    quick_default_flow_for_second_account(&server);

    // At least 24 x 1 s / 4 slots = 6 s of the first account's sleeping steps.
    let sleepers: Vec<String> = (0..24)
        .map(|n| first.submit(message(&format!("s{n}@example.net"))))
        .collect();
    let other = second.submit(message("ann@example.net"));
    let record = server.wait_until_done(&other);
    assert_eq!(record.status, MessageStatus::Processed, "{record:?}");
    let still_waiting = sleepers
        .iter()
        .filter(|id| status(&server, id) == MessageStatus::Submitted)
        .count();
    assert!(
        still_waiting > 0,
        "the other account's message was processed only after every sleeping step"
    );

    // Each sleeping step was stopped at its deadline, not at the end of its sleep.
    for id in &sleepers {
        let record = server.wait_until_done(id);
        assert_eq!(record.status, MessageStatus::Held);
        assert_eq!(
            record.status_reason.as_deref(),
            Some("step 1 failed: timeout")
        );
    }
}

#[test]
fn another_accounts_mail_is_processed_while_one_account_simulates_sleeping_steps() {
    let server = TestServer::start(|config| {
        config.pipeline_workers = 8;
        config.pipeline_account_share = Some(4);
        // Each simulated sleeping step holds its slot for half a second: 24 of them, 4 at a
        // time, at least 3 s.
        config.runtime.deadline = Duration::from_millis(500);
    });
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
    server.set_default_flow(&step, sleeping());
    let first = Api::demo(&server);
    let second = second_account(&server);
    quick_default_flow_for_second_account(&server);

    // Simulations never count as faults, so they never disable the plugin: only the
    // account's share bounds them.
    let simulating: Vec<_> = (0..8)
        .map(|n| {
            let api = Api::demo(&server);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for round in 0..3 {
                    let answer = api
                        .post("messages/simulate")
                        .json(&message(&format!("sim{n}-{round}@example.net")))
                        .send()
                        .unwrap();
                    answers.push(answer.status());
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let other = second.submit(message("ann@example.net"));
    let record = server.wait_until_done(&other);
    assert_eq!(record.status, MessageStatus::Processed, "{record:?}");
    assert!(
        simulating.iter().any(|thread| !thread.is_finished()),
        "the other account's message was processed only after every simulation"
    );
    for thread in simulating {
        assert!(
            thread
                .join()
                .unwrap()
                .iter()
                .all(|status| status.is_success())
        );
    }
    drop(first);
}

#[test]
fn saving_a_flow_whose_step_sleeps_is_answered_at_the_steps_deadline() {
    let server = TestServer::start(|_| {});
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
    let api = Api::demo(&server);
    let started = std::time::Instant::now();
    let saved = api
        .post("flows")
        .json(&json!({
            "description": "sleepy",
            "steps": [{"plugin": step, "config": sleeping()}],
        }))
        .send()
        .unwrap();
    // The configuration check runs the step once, as a simulation; its sleep is cut short
    // (a bound far above the deadline and far below the sleep).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(saved.status().is_success(), "{:?}", saved.text());
}
