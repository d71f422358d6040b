//! Message retention end to end: a finished message is readable through the API until its
//! retention ends, then gone (404, its online view too, its resend too), while messages
//! whose retention has not ended, another account's among them, stay as they were.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::store::{MessageStatus, now_millis};

use crate::builtins::{no_redirects, set_default_flow_steps, url_starting};
use crate::util::{Api, TestServer, email, second_account};

const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until the message is finished (through its flow and out of the delivery queue),
/// and returns its status.
fn wait_finished(server: &TestServer, id: &str) -> MessageStatus {
    let started = Instant::now();
    loop {
        let record = server.store().message(id).unwrap().expect("not purged yet");
        if !matches!(
            record.status,
            MessageStatus::Submitted | MessageStatus::Processed
        ) {
            return record.status;
        }
        assert!(started.elapsed() < PATIENCE, "message {id} not finished");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn status_of(api: &Api, path: &str) -> StatusCode {
    api.get(path).send().unwrap().status()
}

/// The account's DELIVERED events of this century, as `/messagestats` counts them: the
/// statistics cover the messages kept, so a purged message no longer counts.
fn delivered_in_statistics(api: &Api) -> u64 {
    let range = "daterange=2000-01-01T00:00:00Z,2100-01-01T00:00:00Z";
    let stats: Value = api
        .get(&format!("messagestats;{range}?interval=3155760000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let sets = stats["list"].as_array().unwrap();
    let delivered = sets.iter().find(|set| set["name"] == "delivered").unwrap();
    delivered["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sample| sample["value"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_message_is_readable_until_its_retention_ends_then_gone_while_later_ones_stay() {
    const RETENTION: Duration = Duration::from_secs(4);
    let server = TestServer::start_capturing(|config| {
        config.retention.messages = RETENTION;
        config.retention.purge_interval = Duration::from_millis(200);
    });
    let api = Api::demo(&server);
    let other = second_account(&server);

    let early = api.submit(email("early"));
    assert_eq!(wait_finished(&server, &early), MessageStatus::Delivered);
    assert_eq!(
        status_of(&api, &format!("messages/{early}")),
        StatusCode::OK
    );
    // Submitted well after the first, by another account: its retention ends later.
    std::thread::sleep(RETENTION / 2);
    let submitted_late = Instant::now();
    let late = other.submit(email("late"));
    let late_status = wait_finished(&server, &late);

    let started = Instant::now();
    while server.store().message(&early).unwrap().is_some() {
        assert!(started.elapsed() < PATIENCE, "message {early} never purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        submitted_late.elapsed() < RETENTION,
        "the machine was too slow to tell the two retentions apart"
    );
    assert_eq!(
        status_of(&api, &format!("messages/{early}")),
        StatusCode::NOT_FOUND
    );
    let listed: Vec<Value> = api.get("messages").send().unwrap().json().unwrap();
    assert!(listed.is_empty(), "{listed:#?}");
    assert_eq!(delivered_in_statistics(&api), 0);
    let resend = api
        .post(&format!("messages/{early}/resend"))
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(resend.status(), StatusCode::NOT_FOUND);

    // The other account's message is as it was: its record, body and events.
    let view: Value = other
        .get(&format!("messages/{late}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["subject"], "late", "{view:#}");
    assert_eq!(
        server.store().message(&late).unwrap().unwrap().status,
        late_status
    );
    assert!(server.store().body(&late).unwrap().is_some());
    assert!(server.store().events(&late).unwrap().len() >= 2);
}

#[test]
fn after_the_purge_the_online_view_and_tracking_links_answer_not_found() {
    let server = TestServer::start_capturing(|_| {});
    let api = Api::demo(&server);
    set_default_flow_steps(
        &api,
        json!([
            {"plugin": "tracking", "config": {}},
            {"plugin": "archive", "config": {"retention": "P1M"}},
        ]),
    );
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "news@shop.example",
        "recipientAddress": "ann@example.net",
        "subject": "Order 42",
        "html": "<p>Your order ships. <a href=\"https://shop.example/track\">Track it</a></p>",
    }));
    assert_eq!(wait_finished(&server, &id), MessageStatus::Delivered);
    let view: Value = api
        .get(&format!("messages/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let online = view["onlineLink"].as_str().unwrap().to_string();
    let raw = server.store().body(&id).unwrap().unwrap();
    let html = sluice::message::Message::parse(raw, crate::util::envelope())
        .unwrap()
        .html()
        .unwrap();
    let base = format!("http://{}", server.server.api_addr);
    let click = url_starting(&html, &format!("{base}/c/"));
    let client = no_redirects();
    assert_eq!(client.get(&online).send().unwrap().status(), StatusCode::OK);
    assert_eq!(
        client.get(&click).send().unwrap().status(),
        StatusCode::SEE_OTHER
    );

    // Past the archive's month (which keeps the message until it ends) and the retention.
    let purged = server
        .block_on(
            server
                .store()
                .purge_messages(now_millis() + 31 * 86_400_000, Duration::from_secs(86_400)),
        )
        .unwrap();
    assert_eq!(purged.messages, 1);

    assert_eq!(
        client.get(&online).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.get(&click).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    for path in [format!("messages/{id}"), format!("messages/{id}/archive")] {
        assert_eq!(status_of(&api, &path), StatusCode::NOT_FOUND, "{path}");
    }
}
