//! Webhooks end to end: the real server POSTs its message events to a receiver on loopback;
//! signatures verify with the endpoint's secret, failing calls are retried and end as dead
//! letters that can be redelivered, a message's events arrive in order, accounts stay apart,
//! and calls queued before a restart are sent after it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::util::dns::ResolveThrough as _;
use crate::util::receiver::{Receiver, Request};
use crate::util::sink::SmtpSink;
use crate::util::{Api, TestServer, id_of, second_account};

/// A server whose webhook calls are retried twice, 50 ms apart: three attempts in all.
fn server(adjust: impl FnOnce(&mut sluice::config::Config)) -> TestServer {
    TestServer::start(|config| {
        config.webhooks.retry_delays = vec![Duration::from_millis(50); 2];
        adjust(config);
    })
}

fn register(api: &Api, url: &str, event_types: &[&str]) -> Value {
    let response = api
        .post("webhooks")
        .json(&json!({"url": url, "eventTypes": event_types, "description": "order system"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().unwrap()
}

fn submit(api: &Api, recipient: &str) -> String {
    api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@shop.example",
        "recipientAddress": recipient,
        "subject": "Order 42",
        "text": "Your order ships today.",
        "tags": ["order"],
    }))
}

fn delete(api: &Api, path: &str) -> reqwest::blocking::Response {
    api.http
        .delete(api.url(path))
        .bearer_auth(&api.token)
        .send()
        .unwrap()
}

fn get_json(api: &Api, path: &str) -> Value {
    let response = api.get(path).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().unwrap()
}

/// Polls an API path until `done` holds for its JSON (or fails after 20 s).
fn wait_for_json(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = get_json(api, path);
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path} stayed {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The receiver's side of verification, written from the documentation rather than with
/// the server's own code: HMAC-SHA256 of "<t>.<body>" under the secret, hex.
pub(crate) fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub(crate) fn signature_parts(request: &Request) -> (String, String) {
    let header = request.header("sluice-signature");
    let fields: HashMap<&str, &str> = header
        .split(',')
        .map(|part| part.split_once('=').unwrap())
        .collect();
    (fields["t"].to_string(), fields["v1"].to_string())
}

#[test]
fn a_call_is_signed_with_the_endpoint_secret_and_a_tampered_body_does_not_verify() {
    let receiver = Receiver::start();
    let server = server(|_| {});
    let api = Api::demo(&server);
    let webhook = register(&api, &receiver.url(), &[]);
    let secret = webhook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{webhook}");

    let id = submit(&api, "ann@example.net");
    let requests = receiver.wait_until("SUBMITTED", |requests| !requests.is_empty());
    let request = &requests[0];

    let (timestamp, signature) = signature_parts(request);
    assert_eq!(
        signature,
        expected_signature(&secret, &timestamp, &request.body)
    );
    let sent_at: u64 = timestamp.parse().unwrap();
    let now = sluice::store::now_millis() / 1000;
    assert!(now.abs_diff(sent_at) <= 300, "t={sent_at}, now={now}");
    // The server's own check agrees, and refuses the body once changed.
    let header = request.header("sluice-signature");
    assert_eq!(
        sluice::webhooks::signature::verify(&secret, header, &request.body, now, 300),
        Ok(())
    );
    let tampered = String::from_utf8(request.body.clone())
        .unwrap()
        .replace("ann@example.net", "eve@example.net");
    assert_ne!(tampered.as_bytes(), request.body.as_slice());
    assert_ne!(
        signature,
        expected_signature(&secret, &timestamp, tampered.as_bytes())
    );
    assert!(
        sluice::webhooks::signature::verify(&secret, header, tampered.as_bytes(), now, 300)
            .is_err()
    );
    assert_ne!(
        signature,
        expected_signature("whsec_guess", &timestamp, &request.body)
    );

    // The body: Flowmailer's event fields, camelCase; the id header names the event.
    let body = request.json();
    assert_eq!(body["type"], "SUBMITTED");
    assert_eq!(body["messageId"], id.as_str());
    assert_eq!(body["id"], format!("{id}-0"));
    assert_eq!(request.header("sluice-event-id"), format!("{id}-0"));
    assert_eq!(request.header("sluice-webhook-id"), id_of(&webhook));
    assert_eq!(request.header("sluice-attempt"), "1");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(body["sequence"], 0);
    assert_eq!(body["accountId"], 1);
    assert_eq!(body["messageType"], "EMAIL");
    assert_eq!(body["senderAddress"], "app@shop.example");
    assert_eq!(body["recipientAddress"], "ann@example.net");
    assert_eq!(body["subject"], "Order 42");
    assert_eq!(body["tags"], json!(["order"]));
    assert!(body["inserted"].as_str().unwrap().ends_with('Z'), "{body}");
}

#[test]
fn a_receiver_failing_twice_gets_the_event_on_the_third_attempt() {
    let receiver = Receiver::failing_first(2);
    let server = server(|_| {});
    let api = Api::demo(&server);
    let webhook = register(&api, &receiver.url(), &["SUBMITTED"]);

    let id = submit(&api, "ann@example.net");
    let requests = receiver.wait_until("an acknowledged call", |requests| {
        requests.iter().any(Request::acknowledged)
    });
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for (attempt, request) in requests.iter().enumerate() {
        assert_eq!(request.header("sluice-event-id"), format!("{id}-0"));
        assert_eq!(request.header("sluice-attempt"), (attempt + 1).to_string());
        assert_eq!(request.kind(), "SUBMITTED");
    }
    let path = format!("webhooks/{}", id_of(&webhook));
    let view = wait_for_json(&api, &path, |view| view["queued"] == 0);
    assert_eq!(view["deadLetters"], 0);
}

#[test]
fn a_message_s_events_arrive_in_order_when_an_earlier_one_needed_retries() {
    let sink = SmtpSink::start();
    // SUBMITTED fails twice; PROCESSED and DELIVERED, recorded meanwhile, must wait for it.
    let receiver = Receiver::with_rule(|request, before| {
        let id = request.header("sluice-event-id");
        let earlier = before
            .iter()
            .filter(|seen| seen.header("sluice-event-id") == id)
            .count();
        if request.kind() == "SUBMITTED" && earlier < 2 {
            500
        } else {
            200
        }
    });
    let route = sink.addr().to_string();
    let server = server(move |config| {
        config.delivery.enabled = true;
        config.delivery.routes.insert("*".into(), route.into());
    });
    let api = Api::demo(&server);
    register(&api, &receiver.url(), &[]);

    let ids: Vec<String> = (0..3)
        .map(|n| submit(&api, &format!("rcpt{n}@example.net")))
        .collect();
    let requests = receiver.wait_until("DELIVERED for every message", |requests| {
        ids.iter().all(|id| {
            requests.iter().any(|request| {
                request.acknowledged()
                    && request.message_id() == *id
                    && request.kind() == "DELIVERED"
            })
        })
    });
    for id in &ids {
        let of_message: Vec<&Request> = requests
            .iter()
            .filter(|request| request.message_id() == *id)
            .collect();
        // Never a later event before an earlier one was acknowledged.
        let sequences: Vec<u64> = of_message
            .iter()
            .map(|request| request.json()["sequence"].as_u64().unwrap())
            .collect();
        assert!(
            sequences.windows(2).all(|pair| pair[0] <= pair[1]),
            "{id}: {sequences:?}"
        );
        let acknowledged: Vec<String> = of_message
            .iter()
            .filter(|request| request.acknowledged())
            .map(|request| request.kind())
            .collect();
        assert_eq!(
            acknowledged,
            ["SUBMITTED", "PROCESSED", "DELIVERED"],
            "{id}"
        );
        let failed = of_message.iter().filter(|r| !r.acknowledged()).count();
        assert_eq!(failed, 2, "{id}");
    }
    let delivered = requests
        .iter()
        .find(|request| request.kind() == "DELIVERED")
        .unwrap()
        .json();
    assert!(
        delivered["snippet"].as_str().unwrap().starts_with("250"),
        "{delivered}"
    );
    assert!(delivered["mta"].is_string(), "{delivered}");
}

#[test]
fn an_always_failing_receiver_leaves_a_dead_letter_that_can_be_redelivered_or_discarded() {
    let receiver = Receiver::with_rule(|_, _| 503);
    let server = server(|_| {});
    let api = Api::demo(&server);
    let webhook = register(&api, &receiver.url(), &["SUBMITTED"]);
    let letters_path = format!("webhooks/{}/dead_letters", id_of(&webhook));

    let id = submit(&api, "ann@example.net");
    let letters = wait_for_json(&api, &letters_path, |letters| {
        letters.as_array().unwrap().len() == 1
    });
    let letter = &letters[0];
    assert_eq!(letter["messageId"], id.as_str());
    assert_eq!(letter["eventId"], format!("{id}-0"));
    assert_eq!(letter["type"], "SUBMITTED");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["lastStatus"], 503);
    assert!(
        letter["lastError"]
            .as_str()
            .unwrap()
            .contains("down for maintenance"),
        "{letter}"
    );
    assert_eq!(receiver.requests().len(), 3);
    let view = get_json(&api, &format!("webhooks/{}", id_of(&webhook)));
    assert_eq!(
        (view["queued"].clone(), view["deadLetters"].clone()),
        (json!(0), json!(1))
    );

    // The receiver is fixed: the dead letter goes out again with the same event id.
    receiver.set_rule(|_, _| 200);
    let response = api
        .post(&format!("{letters_path}/{}/redeliver", id_of(letter)))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let requests = receiver.wait_until("the redelivery", |requests| {
        requests.iter().any(Request::acknowledged)
    });
    let redelivered = requests.iter().find(|r| r.acknowledged()).unwrap();
    assert_eq!(redelivered.header("sluice-event-id"), format!("{id}-0"));
    assert_eq!(redelivered.header("sluice-attempt"), "1");
    assert_eq!(get_json(&api, &letters_path), json!([]));
    let response = api
        .post(&format!("{letters_path}/{}/redeliver", id_of(letter)))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Failing again: this time the account discards the dead letter.
    receiver.set_rule(|_, _| 500);
    submit(&api, "bob@example.net");
    let letters = wait_for_json(&api, &letters_path, |letters| {
        letters.as_array().unwrap().len() == 1
    });
    let discard = format!("{letters_path}/{}", id_of(&letters[0]));
    assert_eq!(delete(&api, &discard).status(), StatusCode::NO_CONTENT);
    assert_eq!(get_json(&api, &letters_path), json!([]));
    assert_eq!(delete(&api, &discard).status(), StatusCode::NOT_FOUND);
}

#[test]
fn calls_to_one_endpoint_run_in_parallel_up_to_its_limit() {
    let receiver = Receiver::gated();
    let server = server(|config| config.webhooks.max_concurrent_per_endpoint = 2);
    let api = Api::demo(&server);
    register(&api, &receiver.url(), &["SUBMITTED"]);
    let ids: Vec<String> = (0..6)
        .map(|n| submit(&api, &format!("rcpt{n}@example.net")))
        .collect();
    // Two messages' calls are held open by the receiver; the other four wait for a slot.
    receiver.wait_until("two calls at once", |_| receiver.in_progress() == 2);
    receiver.open();
    let requests = receiver.wait_until("every message's call", |requests| {
        ids.iter()
            .all(|id| requests.iter().any(|request| request.message_id() == *id))
    });
    assert_eq!(requests.len(), 6);
    assert_eq!(receiver.most_in_progress(), 2);
}

#[test]
fn webhooks_are_created_read_replaced_and_deleted_with_checked_input() {
    let server = server(|_| {});
    let api = Api::demo(&server);
    let created = register(
        &api,
        "http://127.0.0.1:9/first",
        &["delivered", "HARDBOUNCE"],
    );
    assert_eq!(created["eventTypes"], json!(["DELIVERED", "HARDBOUNCE"]));
    assert_eq!(created["description"], "order system");
    let path = format!("webhooks/{}", id_of(&created));
    assert_eq!(get_json(&api, &path), created);
    assert_eq!(get_json(&api, "webhooks"), json!([created.clone()]));

    let replaced: Value = api
        .put(&path)
        .json(&json!({"url": "http://127.0.0.1:9/second", "rotateSecret": true}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(replaced["url"], "http://127.0.0.1:9/second");
    assert_eq!(replaced["eventTypes"], json!([]));
    assert_ne!(replaced["secret"], created["secret"]);
    let kept: Value = api
        .put(&path)
        .json(&json!({"url": "http://127.0.0.1:9/second"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(kept["secret"], replaced["secret"]);

    for (input, field) in [
        (json!({"url": "ftp://files.example/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "https://hooks.example/", "eventTypes": ["SENT"]}),
            "eventTypes",
        ),
    ] {
        let response = api.post("webhooks").json(&input).send().unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{input}");
        let errors: Value = response.json().unwrap();
        assert_eq!(errors["allErrors"][0]["field"], field, "{errors}");
    }

    assert_eq!(delete(&api, &path).status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&path).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(delete(&api, &path).status(), StatusCode::NOT_FOUND);

    let document: Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let paths = &document["paths"];
    assert!(paths["/{account}/webhooks"]["post"].is_object());
    assert!(paths["/{account}/webhooks/{id}/dead_letters"]["get"].is_object());
}

#[test]
fn another_account_can_neither_see_nor_change_a_webhook_nor_receive_its_events() {
    let receiver = Receiver::start();
    let other_receiver = Receiver::start();
    let server = server(|_| {});
    let api = Api::demo(&server);
    let other = second_account(&server);
    let webhook = register(&api, &receiver.url(), &["SUBMITTED"]);
    let id = id_of(&webhook).to_string();

    // Its own paths: the webhook is not there.
    assert_eq!(get_json(&other, "webhooks"), json!([]));
    for path in [
        format!("webhooks/{id}"),
        format!("webhooks/{id}/dead_letters"),
    ] {
        let response = other.get(&path).send().unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let response = other
        .put(&format!("webhooks/{id}"))
        .json(&json!({"url": other_receiver.url()}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        delete(&other, &format!("webhooks/{id}")).status(),
        StatusCode::NOT_FOUND
    );
    // The first account's paths: forbidden.
    let foreign = format!("{}/1/webhooks/{id}", other.base);
    for request in [
        other.http.get(&foreign),
        other.http.delete(&foreign),
        other.http.get(format!("{}/1/webhooks", other.base)),
    ] {
        let response = request.bearer_auth(&other.token).send().unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        get_json(&api, &format!("webhooks/{id}"))["url"],
        receiver.url()
    );

    // Each account's events go to its own endpoint only.
    register(&other, &other_receiver.url(), &["SUBMITTED"]);
    let other_message = submit(&other, "ann@example.net");
    other_receiver.wait_until("the other account's event", |requests| !requests.is_empty());
    let message = submit(&api, "bob@example.net");
    let requests =
        receiver.wait_until("the first account's event", |requests| !requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|request| request.message_id() == message)
    );
    assert!(
        other_receiver.requests().iter().all(
            |request| request.message_id() == other_message && request.json()["accountId"] == 2
        )
    );
}

#[test]
fn calls_queued_before_a_restart_are_sent_after_it_in_order() {
    let receiver = Receiver::start();
    // Calls stay queued while webhooks are paused, as if the server stopped before sending.
    let server = server(|config| config.webhooks.enabled = false);
    let api = Api::demo(&server);
    let webhook = register(&api, &receiver.url(), &["SUBMITTED", "PROCESSED"]);
    let id = submit(&api, "ann@example.net");
    server.wait_until_done(&id);
    let view = get_json(&api, &format!("webhooks/{}", id_of(&webhook)));
    assert_eq!(view["queued"], 2);
    let dir = server.stop();
    assert!(receiver.requests().is_empty());

    let _restarted = TestServer::start_in(dir, |_| {});
    receiver.wait_until("both events", |requests| {
        requests.iter().filter(|r| r.acknowledged()).count() == 2
    });
    let requests = receiver.acknowledged();
    let kinds: Vec<String> = requests.iter().map(Request::kind).collect();
    assert_eq!(kinds, ["SUBMITTED", "PROCESSED"]);
    assert!(requests.iter().all(|request| request.message_id() == id));
}

#[test]
fn private_destinations_are_refused_unless_the_operator_allows_them() {
    let receiver = Receiver::start();
    let server = server(|config| config.webhooks.allow_private_destinations = false);
    let api = Api::demo(&server);
    let response = api
        .post("webhooks")
        .json(&json!({"url": receiver.url()}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let errors: Value = response.json().unwrap();
    assert_eq!(errors["allErrors"][0]["field"], "url", "{errors}");

    // A name is checked again when the call resolves it (its DNS may have changed since it
    // was registered): localhost is loopback, so the call never leaves. Registered in the
    // store, as the API refuses the name already.
    let by_name = receiver.url().replace("127.0.0.1", "localhost");
    let webhook = server.block_on(
        server
            .store()
            .create_webhook(sluice::store::WebhookEndpoint {
                id: 0,
                account_id: api.account,
                url: by_name,
                event_types: vec![sluice::store::EventKind::Submitted],
                description: None,
                secret: "whsec_test".into(),
                created_at: 0,
                updated_at: 0,
            }),
    );
    let webhook = json!({"id": webhook.unwrap().id.to_string()});
    submit(&api, "ann@example.net");
    let letters = wait_for_json(
        &api,
        &format!("webhooks/{}/dead_letters", id_of(&webhook)),
        |letters| letters.as_array().unwrap().len() == 1,
    );
    assert!(
        letters[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{letters}"
    );
    assert!(receiver.requests().is_empty());
}

#[test]
fn names_of_internal_addresses_are_refused_when_registered() {
    let dns = crate::util::dns::DnsServer::start();
    dns.set_a("hooks.inside.example", "10.1.2.3".parse().unwrap());
    dns.set_a("hooks.mixed.example", "93.184.215.14".parse().unwrap());
    dns.add_a("hooks.mixed.example", "127.0.0.1".parse().unwrap());
    dns.set_a("hooks.public.example", "93.184.215.14".parse().unwrap());
    let config = dns.config();
    let server = server(move |config_| {
        config_.webhooks.allow_private_destinations = false;
        config_.dns = config;
    });
    let api = Api::demo(&server);
    for url in [
        "http://localhost:8080/hook",
        "http://LocalHost./hook",
        "https://admin.localhost/hook",
        "https://hooks.inside.example/hook",
        "https://hooks.mixed.example/hook",
    ] {
        let response = api
            .post("webhooks")
            .json(&json!({"url": url}))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        let errors: Value = response.json().unwrap();
        assert_eq!(errors["allErrors"][0]["field"], "url", "{url}: {errors}");
        assert!(
            errors["allErrors"][0]["defaultMessage"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{url}: {errors}"
        );
    }
    // A public name is taken, and a PUT to an internal one is refused like a POST.
    let webhook = register(&api, "https://hooks.public.example/hook", &[]);
    let response = api
        .put(&format!("webhooks/{}", id_of(&webhook)))
        .json(&json!({"url": "http://localhost/hook"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let view = get_json(&api, &format!("webhooks/{}", id_of(&webhook)));
    assert_eq!(view["url"], "https://hooks.public.example/hook");
}
