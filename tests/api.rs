//! The REST API over real sockets with an HTTP client: Flowmailer's shapes, paging,
//! simulate, management, plugin upload and tenant isolation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use sluice::store::{CredentialKind, Source};

use crate::util::guests;
use crate::util::{Api, TestServer, email, guest_bytes, id_of};

/// The first error code of an allErrors answer.
fn error_codes(body: &Value) -> Vec<String> {
    body["allErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("not an allErrors body: {body}"))
        .iter()
        .map(|error| error["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn wrong_or_missing_credentials_get_401() {
    let server = TestServer::start(|_| {});
    let base = format!("http://{}", server.server.api_addr);
    let http = Client::new();
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("client_id", "demo-api"),
            ("client_secret", "wrong"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .unwrap();
    // RFC 6749 section 5.2: invalid_client, with a challenge and never cached.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"sluice\""
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(body["error_description"].is_string(), "{body}");

    // RFC 6750 section 3: a resource asked without a token challenges for one.
    let response = http.get(format!("{base}/1/messages")).send().unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"sluice\""
    );
    let body: Value = response.json().unwrap();
    assert_eq!(error_codes(&body), ["unauthorized"]);
    assert_eq!(body["error"], "invalid_request");
    let response = http
        .get(format!("{base}/1/messages"))
        .bearer_auth("1.1.9999999999.forged")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"sluice\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(response.json::<Value>().unwrap()["error"], "invalid_token");
}

#[test]
fn a_token_request_answers_in_oauth_shapes_and_takes_http_basic() {
    let server = TestServer::start(|_| {});
    let base = format!("http://{}", server.server.api_addr);
    let demo = server.server.created_demo.clone().unwrap();
    let http = Client::new();
    // Client authentication with HTTP Basic instead of the body.
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&demo.client_id, Some(&demo.client_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "api")])
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token: Value = response.json().unwrap();
    assert_eq!(token["token_type"], "bearer");
    assert!(token["access_token"].is_string());

    for (form, status, error) in [
        (
            vec![("client_id", "x")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("client_id", "x"), ("client_secret", "y")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("client_id", "x"),
                ("client_secret", "y"),
                ("grant_type", "password"),
            ],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("client_id", "x"),
                ("client_secret", "y"),
                ("grant_type", "client_credentials"),
                ("scope", "admin"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
    ] {
        let response = http
            .post(format!("{base}/oauth/token"))
            .form(&form)
            .send()
            .unwrap();
        assert_eq!(response.status(), status, "{form:?}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"], error, "{form:?}: {body}");
    }
}

#[test]
fn a_submitted_message_is_readable_with_its_events() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "headerFromName": "Shop",
        "headerToName": "Ann",
        "subject": "Your order ✓",
        "text": "Thanks for your order.",
        "html": "<p>Thanks for your order.</p>",
        "data": {"order": {"id": 42}},
        "headers": [{"name": "X-Order", "value": "42"}],
        "attachments": [{"content": STANDARD.encode(b"%PDF-1.4"), "contentType": "application/pdf", "filename": "invoice.pdf"}],
        "tags": ["order"],
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(record.data, Some(json!({"order": {"id": 42}})));
    let message: Value = api
        .get(&format!("messages/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["messageType"], "EMAIL");
    assert_eq!(message["subject"], "Your order ✓");
    assert_eq!(message["status"], "PROCESSED");
    assert_eq!(message["tags"], json!(["order"]));
    let kinds: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    // Newest first, as Flowmailer lists a message's events.
    assert_eq!(kinds, ["PROCESSED", "SUBMITTED"]);

    let body = server.store().body(&id).unwrap().unwrap();
    let parsed = sluice::message::Message::parse(body, crate::util::envelope()).unwrap();
    assert_eq!(parsed.header("X-Order").as_deref(), Some("42"));
    assert!(parsed.header("From").unwrap().contains("Shop"));
    assert_eq!(
        parsed.html().as_deref(),
        Some("<p>Thanks for your order.</p>")
    );
    assert_eq!(
        parsed.attachments()[0].filename.as_deref(),
        Some("invoice.pdf")
    );
}

#[test]
fn mimedata_is_taken_as_is() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let raw = b"From: app@example.com\r\nSubject: Raw one\r\n\r\nbody\r\n";
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "mimedata": STANDARD.encode(raw),
    }));
    server.wait_until_done(&id);
    assert_eq!(server.store().body(&id).unwrap().unwrap(), raw);
}

#[test]
fn bad_requests_are_answered_with_all_errors() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let response = api
        .post("messages/submit")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(&response.json().unwrap()), ["invalidJson"]);

    let response = api
        .post("messages/submit")
        .json(&json!({"messageType": "EMAIL", "recipientAddress": "not-an-address"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().unwrap();
    assert_eq!(error_codes(&body), ["invalidEmailAddress", "required"]);
    assert_eq!(body["allErrors"][0]["field"], "recipientAddress");
    assert_eq!(body["allErrors"][0]["rejectedValue"], "not-an-address");

    let response = api
        .post("messages/submit")
        .json(&json!({
            "messageType": "EMAIL",
            "senderAddress": "app@example.com",
            "recipientAddress": "ann@example.net",
            "mimedata": STANDARD.encode(b"no header here\r\n\r\nbody"),
        }))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(&response.json().unwrap()), ["invalidMessage"]);
    assert!(server.store().messages_of(1).unwrap().is_empty());
}

#[test]
fn lists_page_with_range_headers() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let ids: Vec<String> = (0..5)
        .map(|i| api.submit(email(&format!("m{i}"))))
        .collect();
    for id in &ids {
        server.wait_until_done(id);
    }
    let response = api
        .get("messages")
        .header("Range", "items=1-2")
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-range"], "items 1-2/5");
    let page: Vec<Value> = response.json().unwrap();
    let subjects: Vec<&str> = page
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["m3", "m2"], "newest first");

    let response = api
        .get("message_events")
        .header("Range", "items=0-3")
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-range"], "items 0-3/10");
    let events: Vec<Value> = response.json().unwrap();
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|event| event["messageId"].is_string()));

    let response = api
        .get("messages")
        .header("Range", "items=9-3")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn simulate_runs_the_flow_and_stores_nothing() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let response = api
        .post("plugins")
        .header("content-type", "application/wasm")
        .body(guest_bytes(guests::SUBJECT_PREFIX))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let plugin: Value = response.json().unwrap();
    let sha = plugin["sha256"].as_str().unwrap().to_string();

    let response = api
        .post("flows")
        .json(&json!({"description": "prefixed", "steps": [{"plugin": sha, "config": {"prefix": "[Sim]"}}]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let flow: Value = response.json().unwrap();
    // Flowmailer's list: the default flow last, with no conditions.
    let mut rules: Vec<Value> = api.get("flow_rules").send().unwrap().json().unwrap();
    rules.insert(
        0,
        json!({
            "flow": {"id": flow["id"]},
            "conditions": [{"type": "flowSelector", "matchType": "equals", "value": "sim"}],
        }),
    );
    let response = api.put("flow_rules").json(&rules).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());

    let mut message = email("Hello");
    message["flowSelector"] = json!("sim");
    message["html"] = json!("<b>hi</b>");
    let result: Value = api
        .post("messages/simulate")
        .json(&message)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(result["subject"], "[Sim] Hello");
    assert_eq!(result["html"], "<b>hi</b>");
    assert_eq!(result["status"], "PROCESSED");
    assert_eq!(result["flowId"], flow["id"]);
    assert_eq!(result["flow"]["id"], flow["id"]);
    assert_eq!(result["flow"]["description"], "prefixed");
    assert!(server.store().messages_of(1).unwrap().is_empty());
}

#[test]
fn a_plugin_that_does_not_fit_is_refused_with_the_reason() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let response = api
        .post("plugins")
        .body(guest_bytes(guests::SLUICE_BUILTIN_DKIM))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().unwrap();
    assert_eq!(error_codes(&body), ["invalidPlugin"]);
    let message = body["allErrors"][0]["defaultMessage"].as_str().unwrap();
    assert!(
        message.contains("sluice:flowstep/dkim") && message.contains("not granted"),
        "{message}"
    );
}

#[test]
fn one_account_can_neither_read_nor_use_another_accounts_data() {
    let server = TestServer::start(|_| {});
    let first = Api::demo(&server);
    let second = crate::util::second_account(&server);
    let id = first.submit(email("private"));
    let upload: Value = first
        .post("plugins")
        .body(guest_bytes(guests::SUBJECT_PREFIX))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let first_flows: Vec<Value> = first.get("flows").send().unwrap().json().unwrap();

    // The second account's token on the first account's paths.
    for path in [
        "messages",
        "message_events",
        "flows",
        "sources",
        "flow_rules",
    ] {
        let response = second
            .http
            .get(first.url(path))
            .bearer_auth(&second.token)
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_codes(&response.json().unwrap()), ["forbidden"]);
    }
    let response = second
        .http
        .post(first.url("messages/submit"))
        .bearer_auth(&second.token)
        .json(&email("x"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Its own paths do not show the first account's things either.
    let response = second.get(&format!("messages/{id}")).send().unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let listed: Vec<Value> = second.get("messages").send().unwrap().json().unwrap();
    assert!(listed.is_empty());
    let response = second
        .post("flows")
        .json(&json!({"description": "borrowed", "steps": [{"plugin": upload["sha256"]}]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(&response.json().unwrap()), ["unknownPlugin"]);
    let response = second
        .put("flow_rules")
        .json(&json!({"rules": [], "defaultFlowId": first_flows[0]["id"]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(&response.json().unwrap()), ["unknownFlow"]);
    let response = second
        .get(&format!("flows/{}", id_of(&first_flows[0])))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn sources_and_credentials_are_managed_through_the_api() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let response = api
        .post("sources")
        .json(&json!({"description": "billing", "allowedNetworks": ["127.0.0.0/8"], "requireTls": true}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let source: Value = response.json().unwrap();
    let response = api
        .post(&format!("sources/{}/credentials", id_of(&source)))
        .json(&json!({"kind": "api", "username": "billing-api"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let credential: Value = response.json().unwrap();
    let billing = Api::connect(
        &server,
        1,
        "billing-api",
        credential["secret"].as_str().unwrap(),
    );
    let id = billing.submit(email("from billing"));
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().source_id,
        id_of(&source).parse::<u64>().unwrap()
    );
    let sources: Vec<Value> = api.get("sources").send().unwrap().json().unwrap();
    assert_eq!(sources.len(), 2);
    assert!(
        server
            .store()
            .credential("billing-api")
            .unwrap()
            .unwrap()
            .secret_hash
            .starts_with("$argon2")
    );
}

#[test]
fn an_openapi_document_is_served() {
    let server = TestServer::start(|_| {});
    let document: Value = Client::new()
        .get(format!("http://{}/openapi.json", server.server.api_addr))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // utoipa writes OpenAPI 3.1 (JSON Schema 2020-12 schemas: `"type": ["string", "null"]`).
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/{account}/messages/submit"]["post"].is_object());
}

#[test]
fn a_source_allowlist_applies_to_the_api_too() {
    let server = TestServer::start(|_| {});
    server.block_on(async {
        let store = server.store();
        let source = store
            .create_source(Source {
                id: 0,
                account_id: 1,
                name: "office only".into(),
                allowed_networks: Some(vec!["192.0.2.0/24".parse().unwrap()]),
                max_message_bytes: 1 << 20,
                require_tls: false,
                allow_plain_auth: false,
                feedback_address: None,
            })
            .await
            .unwrap();
        store
            .add_credential(&source, CredentialKind::Api, "office-api", "office-secret")
            .await
            .unwrap();
    });
    let response = Client::new()
        .post(format!("http://{}/oauth/token", server.server.api_addr))
        .form(&[
            ("client_id", "office-api"),
            ("client_secret", "office-secret"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|text| text.contains("address")),
        "{body}"
    );
}

/// Makes a source through the API with an API credential; returns its view and the secret.
fn source_with_api_login(api: &Api, source: Value, client_id: &str) -> (Value, String) {
    let response = api.post("sources").json(&source).send().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let source: Value = response.json().unwrap();
    let response = api
        .post(&format!("sources/{}/credentials", id_of(&source)))
        .json(&json!({"kind": "api", "username": client_id}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let credential: Value = response.json().unwrap();
    (source, credential["secret"].as_str().unwrap().to_string())
}

fn token_status(server: &TestServer, client_id: &str, secret: &str) -> StatusCode {
    Client::new()
        .post(format!("http://{}/oauth/token", server.server.api_addr))
        .form(&[
            ("client_id", client_id),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .unwrap()
        .status()
}

#[test]
fn a_partial_source_update_keeps_the_settings_it_leaves_out() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let settings = json!({
        "description": "office",
        "allowedNetworks": ["192.0.2.0/24"],
        "maxMessageSize": 4096,
        "requireTls": true,
        "allowPlainAuth": true,
        "feedbackAddress": "abuse@shop.example",
    });
    let response = api.post("sources").json(&settings).send().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = id_of(&response.json::<Value>().unwrap()).to_string();
    let source_view = |api: &Api| -> Value {
        let sources: Vec<Value> = api.get("sources").send().unwrap().json().unwrap();
        sources
            .into_iter()
            .find(|s| s["id"] == id.as_str())
            .unwrap()
    };

    let response = api
        .put(&format!("sources/{id}"))
        .json(&json!({"description": "office (renamed)"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut expected = settings.clone();
    expected["id"] = json!(id);
    expected["description"] = json!("office (renamed)");
    // Flowmailer's names beside Sluice's: its source type, and requireTls as tlsRequired.
    expected["type"] = json!("API");
    expected["tlsRequired"] = json!(true);
    assert_eq!(response.json::<Value>().unwrap(), expected);
    assert_eq!(source_view(&api), expected);

    // A field given as null is changed: the allowlist lifted, the feedback address removed.
    let response = api
        .put(&format!("sources/{id}"))
        .json(&json!({"allowedNetworks": null, "feedbackAddress": null}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let view = source_view(&api);
    assert_eq!(view["allowedNetworks"], Value::Null, "{view}");
    assert!(view.get("feedbackAddress").is_none(), "{view}");
    assert_eq!(view["allowPlainAuth"], true, "{view}");
    assert_eq!(view["maxMessageSize"], 4096, "{view}");

    // A view sent back as it is changes nothing.
    let response = api
        .put(&format!("sources/{id}"))
        .json(&view)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source_view(&api), view);
}

#[test]
fn an_empty_allowlist_admits_nobody_and_no_allowlist_anybody() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (nobody, secret) = source_with_api_login(
        &api,
        json!({"description": "locked", "allowedNetworks": []}),
        "locked-api",
    );
    assert_eq!(nobody["allowedNetworks"], json!([]));
    assert_eq!(
        token_status(&server, "locked-api", &secret),
        StatusCode::FORBIDDEN
    );

    let (anybody, secret) = source_with_api_login(&api, json!({"description": "open"}), "open-api");
    assert_eq!(anybody["allowedNetworks"], Value::Null, "{anybody}");
    assert_eq!(token_status(&server, "open-api", &secret), StatusCode::OK);
    // A token issued while the source was open stops working once its allowlist is emptied.
    let open = Api::connect(&server, 1, "open-api", &secret);
    let response = api
        .put(&format!("sources/{}", id_of(&anybody)))
        .json(&json!({"allowedNetworks": []}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        open.get("sources").send().unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        token_status(&server, "open-api", &secret),
        StatusCode::FORBIDDEN
    );
}

/// Submits `email("ok")` with `fields` put over it; expects 400 and returns the error naming
/// `field`.
fn refused_field(api: &Api, fields: Value, field: &str) -> Value {
    let mut message = email("ok");
    for (key, value) in fields.as_object().unwrap() {
        message[key] = value.clone();
    }
    let response = api.post("messages/submit").json(&message).send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["allErrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|error| error["field"] == field)
        .unwrap_or_else(|| panic!("no error names {field}: {body}"))
        .clone()
}

#[test]
fn a_line_break_in_any_field_that_becomes_a_header_is_refused_naming_the_field() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let bcc = "s\r\nBcc: v@example.org";
    let address = "shop@example.com\r\nBcc: v@example.org";
    let pdf = STANDARD.encode(b"%PDF-1.4");
    let cases = [
        ("subject", json!({"subject": bcc}), bcc),
        (
            "subject",
            json!({"subject": "s\n\n<html>replaced</html>"}),
            "s\n\n<html>replaced</html>",
        ),
        ("headerFromName", json!({"headerFromName": bcc}), bcc),
        ("headerToName", json!({"headerToName": bcc}), bcc),
        (
            "headerFromAddress",
            json!({"headerFromAddress": address}),
            address,
        ),
        (
            "headerToAddress",
            json!({"headerToAddress": address}),
            address,
        ),
        (
            "headerFromAddress",
            json!({"headerFromAddress": "shop@example.com\r\n\r\n"}),
            "shop@example.com\r\n\r\n",
        ),
        ("senderAddress", json!({"senderAddress": address}), address),
        (
            "recipientAddress",
            json!({"recipientAddress": address}),
            address,
        ),
        (
            "headers[0].value",
            json!({"headers": [{"name": "X-Order", "value": bcc}]}),
            bcc,
        ),
        (
            "headers[1].name",
            json!({"headers": [{"name": "X-Ok", "value": "1"}, {"name": "X-A\r\nBcc", "value": "1"}]}),
            "X-A\r\nBcc",
        ),
        (
            "attachments[0].filename",
            json!({"attachments": [{"content": pdf, "contentType": "application/pdf", "filename": bcc}]}),
            bcc,
        ),
        (
            "attachments[0].contentType",
            json!({"attachments": [{"content": pdf, "contentType": "application/pdf\r\nBcc: v@example.org"}]}),
            "application/pdf\r\nBcc: v@example.org",
        ),
        (
            "attachments[0].contentId",
            json!({"attachments": [{"content": pdf, "contentType": "image/png", "disposition": "inline", "contentId": "<a\r\nBcc: v@example.org>"}]}),
            "<a\r\nBcc: v@example.org>",
        ),
    ];
    for (field, fields, rejected) in cases {
        let error = refused_field(&api, fields, field);
        assert_eq!(error["code"], "lineBreak", "{field}: {error}");
        assert_eq!(error["objectName"], "submitMessage", "{error}");
        assert_eq!(error["rejectedValue"], rejected, "{error}");
        let message = error["defaultMessage"].as_str().unwrap();
        assert!(
            message.starts_with(field) && message.contains("line break"),
            "{message}"
        );
    }
    // simulate checks the same way.
    let mut message = email("ok");
    message["subject"] = json!(bcc);
    let response = api.post("messages/simulate").json(&message).send().unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(server.store().messages_of(1).unwrap().is_empty());
}

#[test]
fn a_nul_or_another_control_character_in_a_header_field_is_refused_as_such() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let error = refused_field(&api, json!({"subject": "a\u{0}b"}), "subject");
    assert_eq!(error["code"], "controlCharacter", "{error}");
    let message = error["defaultMessage"].as_str().unwrap();
    assert!(
        message.contains("NUL") && !message.contains("line break"),
        "{message}"
    );
    let error = refused_field(
        &api,
        json!({"headers": [{"name": "X-Order", "value": "4\u{1b}2"}]}),
        "headers[0].value",
    );
    assert_eq!(error["code"], "controlCharacter", "{error}");
    assert!(
        error["defaultMessage"].as_str().unwrap().contains("U+001B"),
        "{error}"
    );
    let error = refused_field(
        &api,
        json!({"headerFromName": "Sh\u{7f}op"}),
        "headerFromName",
    );
    assert_eq!(error["code"], "controlCharacter", "{error}");

    // Raw content is checked when it is parsed: the error says NUL, not CR or LF.
    let error = refused_field(
        &api,
        json!({"mimedata": STANDARD.encode(b"Subject: a\0b\r\n\r\nbody\r\n")}),
        "mimedata",
    );
    let message = error["defaultMessage"].as_str().unwrap();
    assert!(
        message.contains("NUL") && !message.contains("CR or LF"),
        "{message}"
    );
    assert!(server.store().messages_of(1).unwrap().is_empty());
}

#[test]
fn unicode_tabs_and_folded_raw_headers_are_still_taken() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "headerFromName": "Grüße GmbH",
        "subject": "Bestellung\t✓ für Jörg",
        "text": "Hallo\r\n\r\nZeile zwei",
        "headers": [{"name": "X-Tab", "value": "a\tb"}],
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(record.subject.as_deref(), Some("Bestellung\t✓ für Jörg"));
    let raw = b"Subject: folded\r\n over two lines\r\nX-Tab:\ta\tb\r\n\r\nbody\r\n";
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "mimedata": STANDARD.encode(raw),
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(record.subject.as_deref(), Some("folded over two lines"));
    assert_eq!(server.store().body(&id).unwrap().unwrap(), raw);
}

/// The subjects of a page of `GET /{account}/messages` and its Content-Range.
fn listed(api: &Api, range: &str) -> (String, Vec<String>) {
    let response = api.get("messages").header("Range", range).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_range = response.headers()["content-range"]
        .to_str()
        .unwrap()
        .to_string();
    let page: Vec<Value> = response.json().unwrap();
    let subjects = page
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    (content_range, subjects)
}

#[test]
fn an_accounts_list_holds_exactly_its_messages_newest_first_page_by_page() {
    let server = TestServer::start(|_| {});
    let first = Api::demo(&server);
    let second = crate::util::second_account(&server);
    let mut second_ids = Vec::new();
    for n in 0..4 {
        first.submit(email(&format!("first {n}")));
        second_ids.push(second.submit(email(&format!("second {n}"))));
        first.submit(email(&format!("first {n}b")));
    }
    let (range, subjects) = listed(&second, "items=0-9");
    assert_eq!(range, "items 0-3/4");
    assert_eq!(subjects, ["second 3", "second 2", "second 1", "second 0"]);
    assert_eq!(
        listed(&second, "items=1-2"),
        (
            "items 1-2/4".to_string(),
            vec!["second 2".into(), "second 1".into()]
        )
    );
    assert_eq!(
        listed(&second, "items=3-7"),
        ("items 3-3/4".to_string(), vec!["second 0".into()])
    );
    assert_eq!(
        listed(&second, "items=4-9"),
        ("items 4-4/4".to_string(), Vec::new())
    );
    let (range, subjects) = listed(&first, "items=0-2");
    assert_eq!(range, "items 0-2/8");
    assert_eq!(subjects, ["first 3b", "first 3", "first 2b"]);

    for id in &second_ids {
        server.wait_until_done(id);
    }
    let events: Vec<Value> = second.get("message_events").send().unwrap().json().unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|event| second_ids
            .iter()
            .any(|id| event["messageId"] == id.as_str())),
        "{events:?}"
    );
}

#[test]
fn flow_rules_flows_and_conditions_are_bounded_in_size() {
    // Every message an account sends reads its rules: their size is bounded however they
    // are written, and so are the flows an account may have.
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let flows: Vec<Value> = api.get("flows").send().unwrap().json().unwrap();
    let flow_id = flows[0]["id"].clone();
    let rule = |value: String| {
        json!({
            "flow": {"id": flow_id},
            "conditions": [{"type": "flowSelector", "matchType": "equals", "value": value}],
        })
    };

    let response = api
        .put("flow_rules")
        .json(&json!([rule("v".repeat(999)), {"flow": {"id": flow_id}, "conditions": []}]))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(&response.json().unwrap()), ["tooLong"]);

    // 300 rules of 998 bytes each: within every per-rule limit, past the whole's.
    let mut rules: Vec<Value> = (0..300).map(|i| rule(format!("{i:0>998}"))).collect();
    rules.push(json!({"flow": {"id": flow_id}, "conditions": []}));
    let response = api.put("flow_rules").json(&rules).send().unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_codes(&response.json().unwrap()), ["tooLarge"]);
    rules.drain(..250);
    let response = api.put("flow_rules").json(&rules).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());

    let demo = server.server.created_demo.clone().unwrap();
    let have = server.store().flows_of(demo.account_id).unwrap().len();
    server.block_on(async {
        for i in have..1000 {
            server
                .store()
                .create_flow(sluice::store::Flow {
                    id: 0,
                    account_id: demo.account_id,
                    name: format!("flow {i}"),
                    steps: Vec::new(),
                    expiry_hours: None,
                })
                .await
                .unwrap();
        }
    });
    let response = api
        .post("flows")
        .json(&json!({"description": "one too many", "steps": []}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_codes(&response.json().unwrap()), ["tooMany"]);
}

#[test]
fn a_rotated_or_revoked_api_secret_ends_the_tokens_issued_with_it() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let api = Api::demo(&server);
    let credential = server.store().credential(&demo.client_id).unwrap().unwrap();
    assert_eq!(api.get("flows").send().unwrap().status(), StatusCode::OK);

    server
        .block_on(server.store().rotate_credential(
            credential.source_id,
            &demo.client_id,
            "a-new-secret",
        ))
        .unwrap();
    let response = api.get("flows").send().unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.text().unwrap().contains("rotated or revoked"),
        "a token issued before the rotation"
    );
    let fresh = Api::connect(&server, demo.account_id, &demo.client_id, "a-new-secret");
    assert_eq!(fresh.get("flows").send().unwrap().status(), StatusCode::OK);

    assert!(
        server
            .block_on(server.store().remove_credential(&demo.client_id))
            .unwrap()
    );
    assert_eq!(
        fresh.get("flows").send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_stored_plugin_that_failed_to_load_is_not_read_again() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let api = Api::demo(&server);
    // Stored under a reference of the test's choosing: a bounce classifier is a component
    // but not a Flowstep, so it does not load as a step.
    let reference = "ab".repeat(32);
    let store = server.store();
    server
        .block_on(store.put_plugin(
            demo.account_id,
            &reference,
            guest_bytes(guests::TEST_BOUNCE_OVERRIDE),
        ))
        .unwrap();
    let path = format!("plugins/{reference}");
    assert_eq!(
        api.get(&path).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Bytes that would load, under the same reference: the failure is remembered, not read
    // and compiled again (for every message of a flow naming it, every view of a page).
    server
        .block_on(store.put_plugin(
            demo.account_id,
            &reference,
            guest_bytes(guests::SUBJECT_PREFIX),
        ))
        .unwrap();
    assert_eq!(
        api.get(&path).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

/// A source of the demo account for filling it up.
fn bare_source(account_id: u64, name: String) -> Source {
    Source {
        id: 0,
        account_id,
        name,
        allowed_networks: None,
        max_message_bytes: 1 << 20,
        require_tls: false,
        allow_plain_auth: false,
        feedback_address: None,
    }
}

#[test]
fn an_account_keeps_a_bounded_number_of_each_kind_and_another_account_is_untouched() {
    use sluice::store::{Kept, Template};
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let second = crate::util::second_account(&server);
    let store = server.store().clone();
    let kept: Vec<Value> = api.get("sources").send().unwrap().json().unwrap();
    server.block_on(async {
        for n in kept.len()..Kept::Sources.limit() {
            store
                .create_source(bare_source(1, format!("filler {n}")))
                .await
                .unwrap();
        }
        // Concurrently, so the group writer shares their commits.
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..Kept::Templates.limit() {
            let store = store.clone();
            writes.spawn(async move {
                let template = Template {
                    id: 0,
                    account_id: 1,
                    name: format!("filler {n}"),
                    subject: None,
                    html: None,
                    text: Some("x".into()),
                    updated_at: 0,
                };
                store.put_template(template).await.unwrap();
            });
        }
        writes.join_all().await;
    });

    let response = api
        .post("sources")
        .json(&json!({"description": "one too many"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().unwrap();
    assert_eq!(error_codes(&body), ["tooMany"], "{body}");
    let response = api
        .post("templates")
        .json(&json!({"description": "one too many", "mimeType": "text/plain", "data": "x"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    // A template the account keeps can still be changed.
    let templates: Vec<Value> = api.get("templates").send().unwrap().json().unwrap();
    let response = api
        .put(&format!("templates/{}", id_of(&templates[0])))
        .json(&json!({"description": templates[0]["description"], "mimeType": "text/plain", "data": "changed"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());

    // The other account's room is its own.
    let response = second
        .post("sources")
        .json(&json!({"description": "mine"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = second
        .post("templates")
        .json(&json!({"description": "mine", "mimeType": "text/plain", "data": "x"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[test]
fn an_uploaded_plugin_is_removed_once_nothing_uses_it() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let second = crate::util::second_account(&server);
    let component = guest_bytes(guests::SUBJECT_PREFIX);
    let sha256 = sluice::plugin::hex_sha256(&component);
    for account in [&api, &second] {
        let response = account
            .post("plugins")
            .body(component.clone())
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = api
        .post("flows")
        .json(&json!({"description": "uses it", "steps": [{"plugin": sha256, "config": {"prefix": "[x] "}}]}))
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text()
    );
    let flow: Value = response.json().unwrap();

    let path = format!("plugins/{sha256}");
    let response = api
        .http
        .delete(api.url(&path))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_codes(&response.json().unwrap()), ["inUse"]);

    // The flow no longer names it: the account lets it go; the other account keeps its own,
    // so the component stays until that one lets it go too.
    let response = api
        .put(&format!("flows/{}", id_of(&flow)))
        .json(&json!({"description": "uses it", "steps": []}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());
    let response = api
        .http
        .delete(api.url(&path))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&path).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let response = api
        .http
        .delete(api.url(&path))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(server.store().plugin(&sha256).unwrap().is_some());
    assert_eq!(second.get(&path).send().unwrap().status(), StatusCode::OK);

    let response = second
        .http
        .delete(second.url(&path))
        .bearer_auth(&second.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(server.store().plugin(&sha256).unwrap().is_none());
}

#[test]
fn an_address_that_keeps_sending_wrong_secrets_waits_before_it_may_try_again() {
    let server = TestServer::start(|config| {
        config.api.max_auth_failures = 3;
        config.api.auth_backoff_secs = 600;
    });
    let demo = server.server.created_demo.clone().unwrap();
    let (client_id, secret) = (demo.client_id, demo.client_secret);
    // A success forgets earlier failures.
    for _ in 0..2 {
        assert_eq!(
            token_status(&server, &client_id, "wrong"),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(token_status(&server, &client_id, &secret), StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(
            token_status(&server, "nobody", "wrong"),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right secret waits, told for how long, in OAuth's shape.
    let response = Client::new()
        .post(format!("http://{}/oauth/token", server.server.api_addr))
        .form(&[
            ("client_id", client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "600");
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
}
