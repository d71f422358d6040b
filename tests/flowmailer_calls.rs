//! The Flowmailer calls that answered 501 before, and the shapes a stock client broke on, as
//! the PHP SDK sends and reads them: its vendor media type, `Range: items=:10`, booleans as
//! `0`/`1`, and the field names and types of its models (`src/Model/*`, `src/Enum/*`).

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flowmailer_api::{VENDOR, assert_identifiers_are_strings, sdk_get, sdk_post, sdk_put};
use crate::util::{Api, TestServer, email, id_of, second_account};

/// The SDK's `FlowStepType` enum (src/Enum/FlowStepType.php): a step type outside it makes
/// the SDK's deserialiser fail on the whole flow.
const FLOW_STEP_TYPES: [&str; 26] = [
    "addAttachment",
    "addHeader",
    "aggregate",
    "analytics",
    "archive",
    "clamScan",
    "clickTracking",
    "dataCach",
    "discard",
    "dnsLookup",
    "externalContent",
    "externalData",
    "extractdata",
    "ldapSearch",
    "mailPlusContact",
    "openTracking",
    "qamail",
    "resetMessage",
    "resubmitMessage",
    "rewriteRecipient",
    "schedule",
    "selectSenderIdentity",
    "setSender",
    "subjectTemplate",
    "template",
    "tlsHeader",
];

/// The field names of every `allErrors` entry of an answer.
fn refused_fields(answer: &Value) -> Vec<String> {
    let mut fields: Vec<String> = answer["allErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("no allErrors: {answer}"))
        .iter()
        .map(|error| error["field"].as_str().unwrap_or("").to_string())
        .collect();
    fields.sort();
    fields
}

/// Waits until message `id` has a DELIVERED event: delivery (here to the capture) follows the
/// flow on its own, after `wait_until_done`.
fn wait_until_delivered(server: &TestServer, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !crate::util::event_kinds(server, id).contains(&"DELIVERED".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{id} was not delivered: {:?}",
            crate::util::event_kinds(server, id)
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// A request of another account's token on the first account's path.
fn as_other(other: &Api, first: &Api, method: reqwest::Method, path: &str) -> StatusCode {
    other
        .http
        .request(method, first.url(path))
        .bearer_auth(&other.token)
        .header("Accept", VENDOR)
        .json(&json!({}))
        .send()
        .unwrap()
        .status()
}

#[test]
fn every_flow_step_has_a_type_the_sdk_knows_and_what_a_read_answers_is_taken_back() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let uploaded = server.upload_guest(crate::util::guests::SUBJECT_PREFIX);
    let (status, flow) = sdk_post(
        &api,
        "flows",
        &json!({"description": "every kind", "steps": [
            {"plugin": "tracking", "config": {"opens": false}},
            {"plugin": "archive", "config": {"retention": "P1M"}},
            {"plugin": uploaded, "config": {"prefix": "[x] "}},
            {"plugin": "dkim"},
        ]}),
    );
    assert_eq!(status, StatusCode::CREATED, "{flow}");
    let flow_id = id_of(&flow).to_string();

    // Read as the SDK reads them: one flow, and the list, every type in its enum.
    let read = sdk_get(&api, &format!("flows/{flow_id}"));
    assert_identifiers_are_strings(&read, "flow");
    let types: Vec<&str> = read["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "clickTracking",
            "archive",
            "externalData",
            "selectSenderIdentity"
        ]
    );
    for flow in sdk_get(&api, "flows").as_array().unwrap() {
        for step in flow["steps"].as_array().unwrap() {
            let kind = step["type"].as_str().unwrap();
            assert!(FLOW_STEP_TYPES.contains(&kind), "{kind} in {flow}");
        }
    }
    // Sluice's plugin stays beside the type, as an extension member.
    assert_eq!(read["steps"][2]["plugin"], uploaded.as_str());
    assert_eq!(read["steps"][3]["plugin"], "dkim");

    // What a read answers is taken back unchanged.
    let (status, written) = sdk_put(&api, &format!("flows/{flow_id}"), &read);
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(sdk_get(&api, &format!("flows/{flow_id}")), read);

    // The SDK's own round trip keeps only its model's members: the built-ins survive it
    // (selectSenderIdentity is the DKIM step), a plugin step cannot (the SDK drops `plugin`),
    // and is refused by name rather than taken as something else.
    let sdk_step = |step: &Value| {
        let mut kept = serde_json::Map::new();
        for member in ["type", "archive"] {
            if let Some(value) = step.get(member) {
                kept.insert(member.into(), value.clone());
            }
        }
        Value::Object(kept)
    };
    let steps = read["steps"].as_array().unwrap();
    let without_plugin: Vec<Value> = [&steps[0], &steps[1], &steps[3]]
        .into_iter()
        .map(sdk_step)
        .collect();
    let (status, answer) = sdk_put(
        &api,
        &format!("flows/{flow_id}"),
        &json!({"id": flow_id, "description": "every kind", "steps": without_plugin}),
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    let plugins: Vec<&str> = answer["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(plugins, ["tracking", "archive", "dkim"]);
    let (status, answer) = sdk_put(
        &api,
        &format!("flows/{flow_id}"),
        &json!({"description": "every kind", "steps": [sdk_step(&steps[2])]}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["allErrors"][0]["code"], "notSupported");
    assert_eq!(answer["allErrors"][0]["field"], "steps[0]");

    // A type that does not fit the plugin beside it is refused, not ignored; the type Sluice
    // answered before ("plugin") is still taken.
    let (status, answer) = sdk_put(
        &api,
        &format!("flows/{flow_id}"),
        &json!({"description": "x", "steps": [{"type": "template", "plugin": "dkim"}]}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["allErrors"][0]["code"], "invalidValue");
    let (status, answer) = sdk_put(
        &api,
        &format!("flows/{flow_id}"),
        &json!({"description": "x", "steps": [{"type": "plugin", "plugin": "dkim"}]}),
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["steps"][0]["type"], "selectSenderIdentity");
}

#[test]
fn a_recipient_shows_its_filter_entry_and_with_a_date_range_its_messages_summary() {
    let server = TestServer::start_capturing(|_| {});
    let api = Api::demo(&server);
    let first = api.submit(email("one"));
    let second = api.submit(email("two"));
    let mut elsewhere = email("to bob");
    elsewhere["recipientAddress"] = "bob@example.net".into();
    let bob = api.submit(elsewhere);
    for id in [&first, &second, &bob] {
        wait_until_delivered(&server, id);
    }
    let (status, _) = sdk_post(
        &api,
        "filters",
        &json!({"address": "ann@example.net", "reason": "asked"}),
    );
    assert_eq!(status, StatusCode::CREATED);

    // Without a range: the address and its filter, no summary (as Flowmailer).
    let plain = sdk_get(&api, "recipient/Ann@Example.net");
    assert_identifiers_are_strings(&plain, "recipient");
    assert_eq!(plain["address"], "Ann@Example.net");
    let filters = plain["filters"].as_array().unwrap();
    assert_eq!(filters.len(), 1, "{plain}");
    assert_eq!(filters[0]["address"], "ann@example.net");
    assert_eq!(filters[0]["accountId"], "1");
    assert_eq!(filters[0]["messageType"], "EMAIL");
    assert_eq!(filters[0]["reason"], "asked");
    assert!(plain.get("messageSummary").is_none(), "{plain}");

    // With the SDK's matrix range: the summary of the messages to this address only.
    let within = sdk_get(
        &api,
        "recipient/ann@example.net;daterange=2000-01-01T00:00:00+0000,2100-01-01T00:00:00+0000",
    );
    let summary = &within["messageSummary"];
    for (member, expected) in [
        ("processed", 2),
        ("sent", 2),
        ("delivered", 2),
        ("opened", 0),
        ("uniqueOpened", 0),
        ("clicked", 0),
        ("uniqueClicked", 0),
    ] {
        assert_eq!(summary[member], expected, "{member}: {summary}");
    }
    assert!(summary["averageDeliverTimeMillis"].is_u64(), "{summary}");
    let before = sdk_get(
        &api,
        "recipient/ann@example.net;daterange=2000-01-01T00:00:00Z,2000-01-02T00:00:00Z",
    );
    assert_eq!(before["messageSummary"]["processed"], 0);
    assert!(
        before["messageSummary"]
            .get("averageDeliverTimeMillis")
            .is_none()
    );
    let nobody = sdk_get(&api, "recipient/nobody@example.net");
    assert_eq!(nobody["filters"], json!([]));

    // Another account may not ask, and on its own path knows nothing of these messages.
    let other = second_account(&server);
    assert_eq!(
        as_other(
            &other,
            &api,
            reqwest::Method::GET,
            "recipient/ann@example.net"
        ),
        StatusCode::FORBIDDEN
    );
    let theirs = sdk_get(
        &other,
        "recipient/ann@example.net;daterange=2000-01-01T00:00:00Z,2100-01-01T00:00:00Z",
    );
    assert_eq!(theirs["filters"], json!([]));
    assert_eq!(theirs["messageSummary"]["processed"], 0);
}

#[test]
fn a_sender_domain_takes_back_what_it_reads_and_refuses_each_change_by_name() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, made) = sdk_post(
        &api,
        "sender_domains",
        &json!({"senderDomain": "put.example"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let path = format!("sender_domains/{}", id_of(&made));
    let read = sdk_get(&api, &path);

    // Everything a read answers, back as it was: answered as GET answers it.
    let (status, answer) = sdk_put(&api, &path, &read);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, read);
    // The SDK's `SenderDomain` model: only its own members, as it writes them.
    let (status, _) = sdk_put(
        &api,
        &path,
        &json!({"id": read["id"], "senderDomain": "PUT.example",
                "returnPathDomain": read["returnPathDomain"], "dnsRecords": read["dnsRecords"]}),
    );
    assert_eq!(status, StatusCode::OK);

    // What Sluice cannot honour is refused, each member by name, and nothing changes.
    let (status, answer) = sdk_put(
        &api,
        &path,
        &json!({"senderDomain": "other.example", "returnPathDomain": "rp.put.example",
                "webDomain": "web.elsewhere.example", "selector": "mine", "colour": "blue"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        refused_fields(&answer),
        [
            "colour",
            "returnPathDomain",
            "selector",
            "senderDomain",
            "webDomain"
        ]
    );
    assert!(
        answer["allErrors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|error| error["code"] == "notSupported")
    );
    assert_eq!(sdk_get(&api, &path), read);

    // Another account's token is refused; an unknown id is not found.
    let other = second_account(&server);
    assert_eq!(
        as_other(&other, &api, reqwest::Method::PUT, &path),
        StatusCode::FORBIDDEN
    );
    let (status, _) = sdk_put(&api, "sender_domains/999999", &read);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn an_api_credential_s_description_is_set_kept_and_the_rest_is_taken_back_as_it_is() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, made) = sdk_post(
        &api,
        "api_credentials",
        &json!({"sourceId": "1", "clientId": "billing", "description": "billing app"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["clientSecret"].as_str().unwrap().to_string();
    let read = sdk_get(&api, "api_credentials/billing");
    assert_eq!(read["description"], "billing app");
    assert_eq!(read["sourceId"], "1");
    assert!(read.get("clientSecret").is_none());

    // Taken back unchanged; a new description replaces the old, and the client still logs in.
    let (status, answer) = sdk_put(&api, "api_credentials/billing", &read);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, read);
    let mut renamed = read.clone();
    renamed["description"] = "invoices".into();
    let (status, answer) = sdk_put(&api, "api_credentials/billing", &renamed);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["description"], "invoices");
    assert_eq!(
        sdk_get(&api, "api_credentials")
            .as_array()
            .unwrap()
            .iter()
            .find(|credential| credential["clientId"] == "billing")
            .unwrap()["description"],
        "invoices"
    );
    let billing = Api::connect(&server, 1, "billing", &secret);
    assert_eq!(
        billing.get("flows").send().unwrap().status(),
        StatusCode::OK
    );
    // Left out (PHP leaves out a null), it stays; empty, it goes.
    let (_, answer) = sdk_put(
        &api,
        "api_credentials/billing",
        &json!({"clientId": "billing"}),
    );
    assert_eq!(answer["description"], "invoices");
    let (_, answer) = sdk_put(&api, "api_credentials/billing", &json!({"description": ""}));
    assert!(answer.get("description").is_none(), "{answer}");

    // Everything else that differs is refused by name, and nothing is changed.
    let (status, answer) = sdk_put(
        &api,
        "api_credentials/billing",
        &json!({"description": "changed?", "clientId": "renamed", "sourceId": "2",
                "clientSecret": "chosen-by-me", "roles": ["ADMIN"], "allowedAddresses": ["192.0.2.0/24"],
                "protocol": "SMTP"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        refused_fields(&answer),
        [
            "allowedAddresses",
            "clientId",
            "clientSecret",
            "protocol",
            "roles",
            "sourceId"
        ]
    );
    assert!(
        sdk_get(&api, "api_credentials/billing")
            .get("description")
            .is_none()
    );
    let (status, answer) = sdk_put(
        &api,
        "api_credentials/billing",
        &json!({"description": "a\u{7}bell"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Another account's token is refused; another account's credential is not found.
    let other = second_account(&server);
    assert_eq!(
        as_other(
            &other,
            &api,
            reqwest::Method::PUT,
            "api_credentials/billing"
        ),
        StatusCode::FORBIDDEN
    );
    let (status, _) = sdk_put(&other, "api_credentials/billing", &json!({}));
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn an_archived_attachment_is_answered_with_its_content_as_the_sdk_s_attachment() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    server.set_default_flow("archive", json!({"retention": "P1M"}));
    let logo: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let sheet = b"name,total\nann,12\n".to_vec();
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut message = email("with attachments");
    message["html"] = "<p>Hi <img src=\"cid:logo@shop\"></p>".into();
    message["attachments"] = json!([
        {"content": encode(&logo), "contentType": "image/png", "filename": "logo.png",
         "disposition": "inline", "contentId": "logo@shop"},
        {"content": encode(&sheet), "contentType": "text/csv", "filename": "totals.csv",
         "disposition": "attachment"},
    ]);
    let id = api.submit(message);
    server.wait_until_done(&id);

    // The archive names its step and each attachment as the attachment call takes them.
    let archives = sdk_get(
        &api,
        &format!("messages/{id}/archive?addattachments=1&adddata=0"),
    );
    let archive = &archives[0];
    assert_eq!(archive["flowStepId"], "1", "{archive}");
    let attachments = archive["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{archive}");
    let of_type = |content_type: &str| {
        attachments
            .iter()
            .find(|attachment| attachment["contentType"] == content_type)
            .unwrap_or_else(|| panic!("{content_type} in {archive}"))
    };
    assert_eq!(of_type("image/png")["contentId"], "logo@shop");
    // One without a Content-ID is named by its place.
    let sheet_id = of_type("text/csv")["contentId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sheet_id, "sluice-part-2");

    for (content_id, bytes, content_type, disposition) in [
        ("logo@shop".to_string(), &logo, "image/png", "inline"),
        (sheet_id.clone(), &sheet, "text/csv", "attachment"),
    ] {
        let got = sdk_get(
            &api,
            &format!("messages/{id}/archive/1/attachment/{content_id}"),
        );
        let content = base64::engine::general_purpose::STANDARD
            .decode(got["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(&content, bytes, "{content_id}");
        assert_eq!(got["contentId"], content_id.as_str());
        assert_eq!(got["contentType"], content_type);
        assert_eq!(got["disposition"], disposition);
    }

    // Unknown steps, attachments and messages are not found, by name.
    for path in [
        format!("messages/{id}/archive/2/attachment/logo@shop"),
        format!("messages/{id}/archive/1/attachment/missing@shop"),
        "messages/00000000000000000000000000/archive/1/attachment/logo@shop".to_string(),
    ] {
        let response = api.get(&path).header("Accept", VENDOR).send().unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["allErrors"][0]["code"], "notFound", "{path}");
    }
    let other = second_account(&server);
    assert_eq!(
        as_other(
            &other,
            &api,
            reqwest::Method::GET,
            &format!("messages/{id}/archive/1/attachment/logo@shop")
        ),
        StatusCode::FORBIDDEN
    );
}

#[test]
fn flow_templates_are_an_empty_list_paged_as_every_list() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    for range in ["items=:10", "items=0-9"] {
        let response = api
            .get("flow_templates")
            .header("Accept", VENDOR)
            .header("Range", range)
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{range}");
        assert_eq!(response.headers()["content-type"], VENDOR);
        assert!(response.headers().get("content-range").is_some(), "{range}");
        assert!(response.headers().get("next-range").is_none(), "{range}");
        assert_eq!(response.json::<Value>().unwrap(), json!([]));
    }
}

#[test]
fn a_delivery_event_names_its_mta_and_carries_its_data() {
    let server = TestServer::start_capturing(|_| {});
    let api = Api::demo(&server);
    let id = api.submit(email("mta"));
    wait_until_delivered(&server, &id);
    let events = sdk_get(&api, &format!("messages/{id}?addevents=1"))["events"].clone();
    let delivered = events
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["type"] == "DELIVERED")
        .unwrap_or_else(|| panic!("no DELIVERED in {events}"))
        .clone();
    // The SDK's MessageEvent: `mta` a string, `extraData` an array (a JSON object).
    assert_eq!(delivered["mta"], "sluice-capture");
    assert!(
        delivered["extraData"]["reply"]
            .as_str()
            .unwrap()
            .starts_with("250")
    );
    let listed = sdk_get(&api, "message_events");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["type"] == "DELIVERED" && event["mta"] == "sluice-capture"),
        "{listed}"
    );
}
