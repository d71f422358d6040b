//! Resend and the error archive end to end: a resent message is a new message made from the
//! submitted copy and run through the flow again (its own tracking links and DKIM signature),
//! bounded as a submission is; the copy a step held is readable; both copies end with the
//! message's retention. Through the API as Flowmailer's SDK calls it, and the dashboard's form.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::store::{MessageStatus, Role, now_millis};

use crate::builtins::{
    no_redirects, publish_platform_key, set_default_flow_steps, url_starting, verify,
};
use crate::dashboard::{Browser, add_user, demo_login};
use crate::util::dns::{DnsServer, ResolveThrough as _};
use crate::util::sink::SmtpSink;
use crate::util::{Api, TestServer, event_kinds, guests, second_account};

const PATIENCE: Duration = Duration::from_secs(20);
/// Past every retention a kept copy can have (the archive's longest is a year).
const AFTER_RETENTION: u64 = 400 * 24 * 60 * 60 * 1000;

/// Waits until the message reached `status`.
fn wait_for(server: &TestServer, id: &str, status: MessageStatus) {
    let started = Instant::now();
    loop {
        let record = server.store().message(id).unwrap().unwrap();
        if record.status == status {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "message {id} is {:?}, not {status:?}: {:?}",
            record.status,
            event_kinds(server, id)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `POST …/messages/{id}/resend` with `body`, as the SDK sends it.
fn resend(api: &Api, id: &str, body: Value) -> reqwest::blocking::Response {
    api.post(&format!("messages/{id}/resend"))
        .header("Accept", "application/vnd.flowmailer.v1.12+json")
        .json(&body)
        .send()
        .unwrap()
}

/// The new message's id from a 201 answer's Location, which is all the SDK reads of it.
fn new_message(api: &Api, response: reqwest::blocking::Response) -> String {
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text()
    );
    assert_eq!(response.headers()["content-length"], "0");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/{}/messages/", api.base, api.account)),
        "{location}"
    );
    location.rsplit('/').next().unwrap().to_string()
}

fn error_code(response: reqwest::blocking::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().unwrap();
    (
        status,
        body["allErrors"][0]["code"].as_str().unwrap().into(),
    )
}

fn order(recipient: &str) -> Value {
    json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": recipient,
        "subject": "Order 42",
        "html": "<p>Your order ships. <a href=\"https://shop.example/track\">Track it</a></p>",
        "data": {"order": 42},
        "tags": ["orders"],
    })
}

#[test]
fn a_resent_message_is_a_new_one_with_its_own_links_and_signature_to_either_recipient() {
    let dns = DnsServer::start();
    let sink = SmtpSink::start();
    let (resolver, route) = (dns.config(), sink.addr().to_string());
    let server = TestServer::start(move |config| {
        config.dns = resolver;
        config.delivery.enabled = true;
        config.delivery.routes.insert("*".into(), route.into());
    });
    publish_platform_key(&server, &dns);
    let api = Api::demo(&server);
    set_default_flow_steps(
        &api,
        json!([
            {"plugin": "tracking", "config": {}},
            {"plugin": "archive", "config": {"retention": "P1M"}},
            {"plugin": "dkim"},
        ]),
    );
    let original = api.submit(order("ann@example.net"));
    wait_for(&server, &original, MessageStatus::Delivered);

    let again = new_message(&api, resend(&api, &original, json!({})));
    let elsewhere = new_message(
        &api,
        resend(
            &api,
            &original,
            json!({"recipientAddress": "bob@example.net"}),
        ),
    );
    assert_ne!(again, original);
    assert_ne!(elsewhere, again);
    for id in [&again, &elsewhere] {
        wait_for(&server, id, MessageStatus::Delivered);
    }

    // The same submission made anew: account, source, data, tags; the new one names the old.
    let first = server.store().message(&original).unwrap().unwrap();
    let copy = server.store().message(&again).unwrap().unwrap();
    assert_eq!(copy.resent_from.as_deref(), Some(original.as_str()));
    assert_eq!(copy.recipient, "ann@example.net");
    assert_eq!(
        (copy.account_id, copy.source_id, &copy.data, &copy.tags),
        (first.account_id, first.source_id, &first.data, &first.tags)
    );
    assert_eq!(copy.submitted_over, "resend");
    let view: Value = api
        .get(&format!("messages/{elsewhere}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["recipientAddress"], "bob@example.net");
    assert_eq!(view["resentFrom"], original.as_str());
    let resent: Vec<String> = server
        .store()
        .events(&original)
        .unwrap()
        .into_iter()
        .filter(|event| event.kind.as_str() == "RESENT")
        .map(|event| event.detail.unwrap())
        .collect();
    assert_eq!(
        resent,
        [
            format!("as message {again} to ann@example.net"),
            format!("as message {elsewhere} to bob@example.net"),
        ]
    );
    assert_eq!(
        event_kinds(&server, &again),
        ["SUBMITTED", "PROCESSED", "DELIVERED"]
    );

    // Three copies reached the sink, each with links and a signature of its own.
    let received = sink.wait_for(3, PATIENCE);
    let base = format!("http://{}", server.server.api_addr);
    let copy_to = |rcpt: &str, nth: usize| {
        let copy = received
            .iter()
            .filter(|received| received.rcpt_to == [rcpt])
            .nth(nth)
            .unwrap_or_else(|| panic!("copy {nth} to {rcpt}"));
        let parsed =
            sluice::message::Message::parse(copy.data.clone(), crate::util::envelope()).unwrap();
        let html = parsed.html().unwrap();
        (
            copy.data.clone(),
            url_starting(&html, &format!("{base}/c/")),
            parsed.message_id(),
        )
    };
    let (first_raw, first_click, first_message_id) = copy_to("ann@example.net", 0);
    let (again_raw, again_click, again_message_id) = copy_to("ann@example.net", 1);
    let (elsewhere_raw, elsewhere_click, _) = copy_to("bob@example.net", 0);
    assert_ne!(first_click, again_click);
    assert_ne!(again_click, elsewhere_click);
    assert_ne!(
        first_message_id, again_message_id,
        "receivers drop a Message-ID they have seen"
    );
    for raw in [&first_raw, &again_raw, &elsewhere_raw] {
        assert_eq!(verify(&dns, raw), [("sluice.example".to_string(), true)]);
    }
    assert_ne!(first_raw, again_raw);
    // A click on the resent copy counts for the resent message, not the original.
    let clicked = no_redirects().get(&again_click).send().unwrap();
    assert!(clicked.status().is_redirection());
    assert_eq!(clicked.headers()["location"], "https://shop.example/track");
    assert!(event_kinds(&server, &again).contains(&"CLICKED".to_string()));
    assert!(!event_kinds(&server, &original).contains(&"CLICKED".to_string()));
}

#[test]
fn a_resend_is_bounded_as_a_submission_and_kept_to_its_account() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let original = api.submit(order("ann@example.net"));
    wait_for(&server, &original, MessageStatus::Processed);

    // The filter list stops a resend as it stops a submission.
    let response = api
        .post("filters")
        .json(&json!({"address": "gone@example.net"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let filtered = new_message(
        &api,
        resend(
            &api,
            &original,
            json!({"recipientAddress": "gone@example.net"}),
        ),
    );
    wait_for(&server, &filtered, MessageStatus::Rejected);
    assert_eq!(
        event_kinds(&server, &filtered),
        ["SUBMITTED", "PROCESSED", "REJECT"]
    );

    let (status, code) = error_code(resend(
        &api,
        &original,
        json!({"recipientAddress": "not an address"}),
    ));
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalidEmailAddress")
    );

    // Another account's message is not found, as an unknown one; its token is refused here.
    let other = second_account(&server);
    let response = other
        .http
        .post(other.url(&format!("messages/{original}/resend")))
        .bearer_auth(&other.token)
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(
        error_code(response),
        (StatusCode::NOT_FOUND, "notFound".into())
    );
    let (status, _) = error_code(resend(&api, "0000000000000000000000000", json!({})));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = other
        .http
        .post(api.url(&format!("messages/{original}/resend")))
        .bearer_auth(&other.token)
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The source's size limit holds for a resend too.
    let mut source = server.store().source(1).unwrap().unwrap();
    source.max_message_bytes = 100;
    server
        .block_on(server.store().update_source(source.clone()))
        .unwrap();
    assert_eq!(
        error_code(resend(&api, &original, json!({}))),
        (StatusCode::PAYLOAD_TOO_LARGE, "messageTooLarge".into())
    );
    source.max_message_bytes = 1 << 20;
    server
        .block_on(server.store().update_source(source))
        .unwrap();

    // When the retention ends the submitted copy goes, and a resend says so.
    let purged = server.block_on(
        server
            .store()
            .purge_archives(now_millis() + AFTER_RETENTION),
    );
    assert_eq!(purged.unwrap(), 0, "the flow archives nothing");
    assert_eq!(
        server.store().submitted_copy(&original).unwrap(),
        sluice::store::SubmittedCopy::NotKept
    );
    let (status, code) = error_code(resend(&api, &original, json!({})));
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::GONE, "submittedCopyNotKept")
    );
}

#[test]
fn the_error_archive_shows_the_message_as_the_holding_step_got_it_until_retention_ends() {
    let server = TestServer::start(|_| {});
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
    let api = Api::demo(&server);
    set_default_flow_steps(
        &api,
        json!([
            {"plugin": step, "config": {"behaviour": "rewrite-html", "find": "ships", "replace": "is packed"}},
            {"plugin": step, "config": {"behaviour": "hold"}},
        ]),
    );
    let held = api.submit(order("ann@example.net"));
    wait_for(&server, &held, MessageStatus::Held);

    let archive: Value = api
        .get(&format!("messages/{held}/error_archive?adddata=1"))
        .header("Accept", "application/vnd.flowmailer.v1.12+json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Flowmailer's MessageArchive: one object.
    assert_eq!(archive["flowStepId"], "2", "{archive:#}");
    assert_eq!(archive["messageType"], "EMAIL");
    assert_eq!(archive["onlineVersion"], false);
    assert_eq!(archive["subject"], "Order 42");
    assert_eq!(archive["data"]["order"], 42);
    let html = archive["html"].as_str().unwrap();
    assert!(html.contains("Your order is packed."), "{html}");
    let eml = api
        .get(&format!("messages/{held}/error_archive?format=eml"))
        .send()
        .unwrap();
    assert_eq!(eml.headers()["content-type"], "message/rfc822");
    assert!(String::from_utf8_lossy(&eml.bytes().unwrap()).contains("is packed"));
    // The body the message keeps is still the one submitted: the error copy is apart.
    let body = server.store().body(&held).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&body).contains("ships"));

    // Kept only for held messages, and only in their account.
    set_default_flow_steps(&api, json!([]));
    let processed = api.submit(order("ann@example.net"));
    wait_for(&server, &processed, MessageStatus::Processed);
    let (status, code) = error_code(
        api.get(&format!("messages/{processed}/error_archive"))
            .send()
            .unwrap(),
    );
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "notFound"));
    let other = second_account(&server);
    let response = other
        .http
        .get(other.url(&format!("messages/{held}/error_archive")))
        .bearer_auth(&other.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Retention ends: the error copy goes with the submitted one.
    server
        .block_on(
            server
                .store()
                .purge_archives(now_millis() + AFTER_RETENTION),
        )
        .unwrap();
    assert_eq!(server.store().error_archive(&held).unwrap(), None);
    let response = api
        .get(&format!("messages/{held}/error_archive"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_dashboard_resends_for_those_who_may_send_with_the_forms_token() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let original = api.submit(order("ann@example.net"));
    wait_for(&server, &original, MessageStatus::Processed);
    let page_of = format!("/messages/{original}");
    let action = format!("/messages/{original}/resend");

    let (email, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &email, &password);
    let page = owner.page(&page_of);
    assert!(page.contains("id=\"resend\""), "{page}");
    let without = owner.post(&action, &[("recipient", ""), ("csrf", "")]);
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    let csrf = owner.csrf();
    let response = owner.post(
        &action,
        &[("recipient", "bob@example.net"), ("csrf", &csrf)],
    );
    assert_eq!(response.status(), StatusCode::CREATED);
    let result = response.text().unwrap();
    let marker = "href=\"/messages/";
    let start = result.find(marker).unwrap_or_else(|| panic!("{result}")) + marker.len();
    let new_id = &result[start..][..result[start..].find('"').unwrap()];
    assert!(result.contains("id=\"new-message\""), "{result}");
    let record = server.store().message(new_id).unwrap().unwrap();
    assert_eq!(record.resent_from.as_deref(), Some(original.as_str()));
    assert_eq!(record.recipient, "bob@example.net");
    let response = owner.post(&action, &[("recipient", "no address"), ("csrf", &csrf)]);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .unwrap()
            .contains("is not an e-mail address")
    );

    // A viewer sees no form, and a forged one is refused.
    let viewer_password = add_user(&server, Some(1), "viewer@example.com", Role::Viewer);
    let mut viewer = Browser::new(&server);
    viewer.log_in(&server, "viewer@example.com", &viewer_password);
    let page = viewer.page(&page_of);
    assert!(!page.contains("id=\"resend\""), "{page}");
    let csrf = viewer.csrf();
    let refused = viewer.post(&action, &[("recipient", ""), ("csrf", &csrf)]);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let messages = server.store().message_ids_of(1).unwrap();
    assert_eq!(messages.len(), 2, "only the owner's resend made a message");
}
