//! Flowmailer's event flows as its PHP SDK sends them, served by Sluice's webhooks: one store
//! for both, so an event flow made here is called like any webhook (signed, by its rule's event
//! type) and a webhook made at `/webhooks` is listed as an event flow.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flowmailer_api::{VENDOR, assert_identifiers_are_strings, sdk_get, sdk_post, sdk_put};
use crate::util::receiver::Receiver;
use crate::util::{Api, TestServer, email, id_of, second_account};
use crate::webhooks::{expected_signature, signature_parts};

/// An `EventFlow` as the SDK serializes it: a description and one step calling `url`.
fn event_flow(description: &str, url: &str) -> Value {
    json!({
        "description": description,
        "steps": [{"type": "externalData", "externalData": {"urlTemplate": url, "requestMethod": "POST"}}],
    })
}

/// The first error's field and code.
fn first_error(body: &Value) -> (String, String) {
    let error = &body["allErrors"][0];
    (
        error["field"].as_str().unwrap_or("").to_string(),
        error["code"].as_str().unwrap_or("").to_string(),
    )
}

fn delete(api: &Api, path: &str) -> StatusCode {
    api.http
        .delete(api.url(path))
        .bearer_auth(&api.token)
        .header("Accept", VENDOR)
        .send()
        .unwrap()
        .status()
}

#[test]
fn event_flows_and_webhooks_are_one_store_read_and_written_as_the_sdk_does() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);

    let (status, made) = sdk_post(
        &api,
        "event_flows",
        &event_flow("order events", "http://127.0.0.1:9/orders"),
    );
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_identifiers_are_strings(&made, "eventFlow");
    let id = id_of(&made).to_string();
    assert_eq!(made["description"], "order events");
    assert_eq!(made["steps"][0]["type"], "externalData");
    assert_eq!(
        made["steps"][0]["externalData"]["urlTemplate"],
        "http://127.0.0.1:9/orders"
    );
    assert!(made["secret"].as_str().unwrap().starts_with("whsec_"));

    // The same endpoint at /webhooks, taking every event until a rule says which.
    let webhook = sdk_get(&api, &format!("webhooks/{id}"));
    assert_eq!(webhook["url"], "http://127.0.0.1:9/orders");
    assert_eq!(webhook["description"], "order events");
    assert_eq!(webhook["secret"], made["secret"]);
    assert_eq!(webhook["eventTypes"], json!([]));

    // A webhook made at /webhooks is an event flow too.
    let (status, other) = sdk_post(
        &api,
        "webhooks",
        &json!({"url": "http://127.0.0.1:9/audit", "eventTypes": ["DELIVERED", "HARDBOUNCE"]}),
    );
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other_id = id_of(&other).to_string();
    // The SDK sends no Range on this list; a client that does is answered the same.
    let listed = api
        .get("event_flows")
        .header("Accept", VENDOR)
        .header("Range", "items=:10")
        .send()
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Vec<Value> = listed.json().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[1]["id"], other_id.as_str());
    assert_eq!(listed[1]["description"], "");
    assert_eq!(
        listed[1]["steps"][0]["externalData"]["urlTemplate"],
        "http://127.0.0.1:9/audit"
    );

    // What GET answers is taken back; the description changes, the rule and secret stay.
    let mut read = sdk_get(&api, &format!("event_flows/{id}"));
    assert_eq!(read, made);
    read["description"] = json!("orders, all events");
    let (status, written) = sdk_put(&api, &format!("event_flows/{id}"), &read);
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written, read);
    assert_eq!(
        sdk_get(&api, &format!("webhooks/{id}"))["description"],
        "orders, all events"
    );

    // The rule: one event type, Flowmailer's names taken too.
    let rule = sdk_get(&api, &format!("event_flows/{id}/rule"));
    assert_eq!(rule, json!({"eventFlowId": id}));
    let (status, rule) = sdk_put(
        &api,
        &format!("event_flows/{id}/rule"),
        &json!({"eventFlowId": id, "eventType": "DELIVERED", "headers": [], "dataExpressions": []}),
    );
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!(rule, json!({"eventFlowId": id, "eventType": "DELIVERED"}));
    assert_eq!(sdk_get(&api, &format!("event_flows/{id}/rule")), rule);
    assert_eq!(
        sdk_get(&api, &format!("webhooks/{id}"))["eventTypes"],
        json!(["DELIVERED"])
    );
    let (status, _) = sdk_put(
        &api,
        &format!("event_flows/{id}/rule"),
        &json!({"eventType": "DISCARD"}),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sdk_get(&api, &format!("webhooks/{id}"))["eventTypes"],
        json!(["DISCARDED"])
    );
    sdk_put(
        &api,
        &format!("event_flows/{id}/rule"),
        &json!({"eventType": "DELIVERED"}),
    );

    // The webhook with two event types has no simple rule; the rule list shows both.
    let response = api
        .get(&format!("event_flows/{other_id}/rule"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(first_error(&response.json().unwrap()).1, "notSimple");
    let rules = sdk_get(&api, "event_flow_rules");
    assert_identifiers_are_strings(&rules, "rules");
    assert_eq!(
        rules,
        json!([
            {"flow": {"id": id, "description": "orders, all events"},
             "conditions": [{"type": "eventType", "matchType": "equals", "value": "DELIVERED"}]},
            {"flow": {"id": other_id, "description": ""},
             "conditions": [{"type": "eventType", "matchType": "oneOf", "value": "DELIVERED,HARDBOUNCE"}]},
        ])
    );
    let hierarchy = sdk_get(&api, "event_flow_rules/hierarchy");
    assert_eq!(hierarchy[0]["flow"], rules[0]["flow"]);
    assert_eq!(hierarchy[0]["conditions"], rules[0]["conditions"]);
    assert_eq!(hierarchy[0]["nodes"], json!([]));

    // Deleting the event flow deletes the webhook.
    assert_eq!(
        delete(&api, &format!("event_flows/{other_id}")),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("webhooks/{other_id}"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&api, &format!("event_flows/{other_id}")),
        StatusCode::NOT_FOUND
    );
    assert_eq!(sdk_get(&api, "event_flows").as_array().unwrap().len(), 1);

    // Another account sees none of it, and its ids are answered like unknown ones.
    let stranger = second_account(&server);
    assert_eq!(sdk_get(&stranger, "event_flows"), json!([]));
    assert_eq!(sdk_get(&stranger, "event_flow_rules"), json!([]));
    for path in [
        format!("event_flows/{id}"),
        format!("event_flows/{id}/rule"),
    ] {
        let response = stranger.get(&path).send().unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let (status, _) = sdk_put(&stranger, &path, &read);
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        delete(&stranger, &format!("event_flows/{id}")),
        StatusCode::NOT_FOUND
    );
    // ... and its token is refused on this account's paths.
    let response = stranger
        .http
        .get(format!("{}/{}/event_flows", api.base, api.account))
        .bearer_auth(&stranger.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(sdk_get(&api, &format!("event_flows/{id}")), written);
}

#[test]
fn what_sluice_s_event_flows_cannot_do_is_refused_by_name() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let refused = |path: &str, body: Value, put: bool| -> (String, String) {
        let (status, answer) = if put {
            sdk_put(&api, path, &body)
        } else {
            sdk_post(&api, path, &body)
        };
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        first_error(&answer)
    };
    let not_supported = |field: &str| (field.to_string(), "notSupported".to_string());

    let archive = json!({"description": "d", "steps": [{"type": "archive", "archive": {"retention": "P30D"}}]});
    assert_eq!(
        refused("event_flows", archive, false),
        not_supported("steps[0].type")
    );
    let mut with_parent = event_flow("d", "http://127.0.0.1:9/x");
    with_parent["parentId"] = json!("3");
    assert_eq!(
        refused("event_flows", with_parent, false),
        not_supported("parentId")
    );
    let mut templated_body = event_flow("d", "http://127.0.0.1:9/x");
    templated_body["steps"][0]["externalData"]["requestBodyTemplate"] =
        json!("{\"id\": \"${messageId}\"}");
    assert_eq!(
        refused("event_flows", templated_body, false),
        not_supported("steps[0].externalData.requestBodyTemplate")
    );
    let mut get_call = event_flow("d", "http://127.0.0.1:9/x");
    get_call["steps"][0]["externalData"]["requestMethod"] = json!("GET");
    assert_eq!(
        refused("event_flows", get_call, false),
        not_supported("steps[0].externalData.requestMethod")
    );
    assert_eq!(
        refused("event_flows", json!({"description": "no steps"}), false),
        ("steps".to_string(), "required".to_string())
    );
    // The URL is checked as /webhooks checks it, and named where the event flow gives it.
    assert_eq!(
        refused(
            "event_flows",
            event_flow("d", "ftp://files.example/x"),
            false
        ),
        (
            "steps[0].externalData.urlTemplate".to_string(),
            "invalidUrl".to_string()
        )
    );
    assert_eq!(
        sdk_get(&api, "event_flows"),
        json!([]),
        "nothing refused was stored"
    );

    let (_, made) = sdk_post(
        &api,
        "event_flows",
        &event_flow("d", "http://127.0.0.1:9/x"),
    );
    let id = id_of(&made).to_string();
    let rule = format!("event_flows/{id}/rule");
    for (field, value) in [
        ("messageFlowId", json!("1")),
        ("headers", json!([{"name": "X-Kind", "value": "order"}])),
        (
            "dataExpressions",
            json!([{"expression": "${data.kind}", "value": "order"}]),
        ),
        ("linkName", json!("buy")),
        ("linkTarget", json!("https://shop.example/buy")),
    ] {
        let body = json!({"eventFlowId": id, "eventType": "CLICKED", field: value});
        assert_eq!(refused(&rule, body, true), not_supported(field));
    }
    assert_eq!(
        refused(&rule, json!({"eventType": "BOUNCED"}), true),
        ("eventType".to_string(), "invalidEventType".to_string())
    );
    assert_eq!(
        refused(
            &rule,
            json!({"eventFlowId": "999", "eventType": "CLICKED"}),
            true
        ),
        ("eventFlowId".to_string(), "invalidValue".to_string())
    );
    let mut other_secret = made.clone();
    other_secret["secret"] = json!("whsec_mine");
    assert_eq!(
        refused(&format!("event_flows/{id}"), other_secret, true),
        not_supported("secret")
    );
    // Nothing refused changed the event flow or its rule.
    assert_eq!(sdk_get(&api, &format!("event_flows/{id}")), made);
    assert_eq!(sdk_get(&api, &rule), json!({"eventFlowId": id}));

    // Bounded: the body, and the number of webhooks and event flows an account has.
    let huge = event_flow(&"x".repeat(100 << 10), "http://127.0.0.1:9/x");
    let (status, _) = sdk_post(&api, "event_flows", &huge);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    for n in 1..100 {
        let (status, answer) = sdk_post(
            &api,
            "event_flows",
            &event_flow(&format!("flow {n}"), "http://127.0.0.1:9/x"),
        );
        assert_eq!(status, StatusCode::CREATED, "{n}: {answer}");
    }
    for path in ["event_flows", "webhooks"] {
        let body = if path == "webhooks" {
            json!({"url": "http://127.0.0.1:9/x"})
        } else {
            event_flow("one too many", "http://127.0.0.1:9/x")
        };
        let (status, answer) = sdk_post(&api, path, &body);
        assert_eq!(status, StatusCode::CONFLICT, "{path}");
        assert_eq!(first_error(&answer).1, "tooMany");
    }
}

#[test]
fn a_private_webhook_url_is_refused_for_an_event_flow_as_for_a_webhook() {
    let server = TestServer::start(|config| config.webhooks.allow_private_destinations = false);
    let api = Api::demo(&server);
    for url in [
        "http://127.0.0.1:9/x",
        "http://[::1]/x",
        "http://10.1.2.3/x",
    ] {
        let (status, answer) = sdk_post(&api, "event_flows", &event_flow("d", url));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(
            first_error(&answer),
            (
                "steps[0].externalData.urlTemplate".to_string(),
                "invalidUrl".to_string()
            ),
            "{url}: {answer}"
        );
        let (status, _) = sdk_post(&api, "webhooks", &json!({"url": url}));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
    }
    assert_eq!(sdk_get(&api, "event_flows"), json!([]));
}

#[test]
fn an_event_flow_made_over_the_api_calls_its_webhook_signed_for_the_events_its_rule_selects() {
    let receiver = Receiver::start();
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, made) = sdk_post(
        &api,
        "event_flows",
        &event_flow("processed", &receiver.url()),
    );
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = id_of(&made).to_string();
    let secret = made["secret"].as_str().unwrap().to_string();
    let (status, _) = sdk_put(
        &api,
        &format!("event_flows/{id}/rule"),
        &json!({"eventFlowId": id, "eventType": "PROCESSED"}),
    );
    assert_eq!(status, StatusCode::OK);

    let message = api.submit(email("order 7"));
    server.wait_until_done(&message);
    let requests = receiver.wait_until("PROCESSED", |requests| {
        requests.iter().any(|request| request.kind() == "PROCESSED")
    });
    // Only the event type its rule selects: SUBMITTED came first and was not sent.
    assert!(
        requests.iter().all(|request| request.kind() == "PROCESSED"),
        "{:?}",
        requests.iter().map(|r| r.kind()).collect::<Vec<_>>()
    );
    let request = &requests[0];
    assert_eq!(request.message_id(), message);
    assert_eq!(request.header("sluice-webhook-id"), id);
    let (timestamp, signature) = signature_parts(request);
    assert_eq!(
        signature,
        expected_signature(&secret, &timestamp, &request.body)
    );
}
