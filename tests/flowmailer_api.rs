//! The API as a client written for Flowmailer uses it, request for request as its public SDK
//! builds them: reference ranges followed by `Next-Range`, booleans as PHP writes them, matrix
//! parameters in the path, and Flowmailer's vendor media type.

use std::collections::HashSet;

use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::Value;

use crate::util::{Api, TestServer, email, id_of};

/// Reads a `Content-Range` the way the SDK's `ContentRange::fromString` does: a reference
/// range ends in `/*` and holds two references around a ':'.
fn reference_content_range(response: &Response) -> (String, String) {
    let range = response.headers()["content-range"].to_str().unwrap();
    let span = range
        .strip_prefix("items ")
        .and_then(|rest| rest.strip_suffix("/*"))
        .unwrap_or_else(|| panic!("not a reference range: {range}"));
    let (first, last) = span.split_once(':').expect("two references");
    (first.to_string(), last.to_string())
}

/// Pages through `path` as the SDK's loops do: `items=:COUNT`, then each answer's
/// `Next-Range` as it is, until an answer has none. Returns every item.
fn page_through(api: &Api, path: &str, count: usize) -> Vec<Value> {
    // A message is its own reference; an event's reference is its place in time, not its id.
    let ids_are_references = path.starts_with("messages");
    let mut range = format!("items=:{count}");
    let mut items = Vec::new();
    for _ in 0..1000 {
        let response = api.get(path).header("Range", &range).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path} {range}");
        let (first, last) = reference_content_range(&response);
        let next = response
            .headers()
            .get("next-range")
            .map(|value| value.to_str().unwrap().to_string());
        let page: Vec<Value> = response.json().unwrap();
        assert!(page.len() <= count);
        if let (Some(head), Some(tail)) = (page.first(), page.last())
            && ids_are_references
        {
            assert_eq!(head["id"], first.as_str());
            assert_eq!(tail["id"], last.as_str());
        }
        items.extend(page);
        match next {
            Some(next) => {
                // The SDK parses it as `items=REFERENCE:COUNT` and sends it back unchanged.
                let (reference, asked) = next
                    .strip_prefix("items=")
                    .and_then(|spec| spec.rsplit_once(':'))
                    .expect("items=REFERENCE:COUNT");
                assert_eq!(asked, count.to_string());
                assert_eq!(reference, last);
                range = next;
            }
            None => return items,
        }
    }
    panic!("paging through {path} never ended");
}

#[test]
fn a_client_pages_through_hundreds_of_messages_by_reference() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let mut submitted = Vec::new();
    for n in 0..230 {
        submitted.push(api.submit(email(&format!("message {n}"))));
    }
    let newest_first: Vec<String> = page_through(&api, "messages", 100)
        .iter()
        .map(|message| message["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected = submitted.clone();
    expected.reverse();
    assert_eq!(newest_first, expected);

    let oldest_first: Vec<String> = page_through(&api, "messages?sortorder=ASC", 70)
        .iter()
        .map(|message| message["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(oldest_first, submitted);

    // A message that arrives while a client pages is neither repeated nor skipped over.
    let first = api
        .get("messages?sortorder=ASC")
        .header("Range", "items=:100")
        .send()
        .unwrap();
    let next = first.headers()["next-range"].to_str().unwrap().to_string();
    let late = api.submit(email("late"));
    let rest = api
        .get("messages?sortorder=ASC")
        .header("Range", next.replace(":100", ":1000"))
        .send()
        .unwrap()
        .json::<Vec<Value>>()
        .unwrap();
    assert_eq!(rest.len(), 131);
    assert_eq!(rest.last().unwrap()["id"], late.as_str());

    // The events list pages the same way, each event once.
    for id in submitted.iter().take(5) {
        server.wait_until_done(id);
    }
    let events = page_through(&api, "message_events", 50);
    let distinct: HashSet<String> = events.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), events.len());
    assert!(events.len() >= 5);
}

#[test]
fn php_booleans_matrix_parameters_and_the_vendor_media_type_are_understood() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let id = api.submit(email("hello"));
    server.wait_until_done(&id);

    // PHP's http_build_query writes false as 0 and true as 1.
    let without: Vec<Value> = api
        .get("messages?addevents=0")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        without[0].get("events").is_none_or(Value::is_null),
        "{without:?}"
    );
    let with: Vec<Value> = api
        .get("messages?addevents=1")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        with[0]["events"]
            .as_array()
            .is_some_and(|events| !events.is_empty())
    );
    let wrong = api.get("messages?addevents=maybe").send().unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);

    // Matrix parameters as the SDK appends them: `;name=value`, dates in PHP's DATE_ISO8601.
    let within = |range: &str| -> Vec<Value> {
        let response = api
            .get(&format!("messages;daterange={range}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{range}");
        response.json().unwrap()
    };
    assert_eq!(
        within("2000-01-01T00:00:00+0000,2100-01-01T00:00:00+0000").len(),
        1
    );
    assert!(within("2000-01-01T00:00:00+0000,2000-01-02T00:00:00+0000").is_empty());
    let bad = api
        .get("messages;daterange=yesterday,today")
        .send()
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let by_flow: Vec<Value> = api
        .get("messages;flow_ids=999999")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(by_flow.is_empty());

    // The vendor media type a client asks for is the one it gets.
    let response = api
        .get(&format!("messages/{id}"))
        .header("Accept", "application/vnd.flowmailer.v1.12+json")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.flowmailer.v1.12+json"
    );
    assert_eq!(response.json::<Value>().unwrap()["id"], id.as_str());
}

/// Flowmailer's vendor media type, which every SDK request carries.
pub(crate) const VENDOR: &str = "application/vnd.flowmailer.v1.12+json";

/// A GET as the SDK sends it, answered 200 with JSON.
pub(crate) fn sdk_get(api: &Api, path: &str) -> Value {
    let response = api.get(path).header("Accept", VENDOR).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(response.headers()["content-type"], VENDOR, "{path}");
    response.json().unwrap()
}

/// The SDK's models type every identifier as a string and refuse a number: none may be one.
pub(crate) fn assert_identifiers_are_strings(value: &Value, at: &str) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                let names_an_id = key == "id" || (key.len() > 2 && key.ends_with("Id"));
                assert!(
                    !(names_an_id && member.is_number()),
                    "{at}.{key} is a number: {member}"
                );
                assert_identifiers_are_strings(member, &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| assert_identifiers_are_strings(item, &format!("{at}[]"))),
        _ => {}
    }
}

#[test]
fn messages_and_their_events_come_in_the_sdk_s_shapes() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let mut message = email("Shapes");
    message["headerFromName"] = "Shop".into();
    message["headerToName"] = "Ann".into();
    message["tags"] = serde_json::json!(["welcome"]);
    let id = api.submit(message);
    server.wait_until_done(&id);

    let read = sdk_get(&api, &format!("messages/{id}"));
    assert_identifiers_are_strings(&read, "message");
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["messageType"], "EMAIL");
    assert_eq!(read["source"]["id"], "1");
    assert!(read["source"]["description"].is_string(), "{read:#}");
    assert!(read["flow"]["id"].is_string(), "{read:#}");
    assert!(read["backendDone"].is_string(), "{read:#}");
    assert_eq!(read["fromAddress"]["address"], "app@example.com");
    assert_eq!(read["fromAddress"]["name"], "Shop");
    assert_eq!(read["from"], "app@example.com");
    assert_eq!(read["toAddressList"][0]["address"], "ann@example.net");
    assert_eq!(read["toAddressList"][0]["name"], "Ann");
    let headers = read["headersOut"].as_array().expect("headersOut");
    assert!(
        headers
            .iter()
            .any(|header| header["name"] == "Subject" && header["value"] == "Shapes"),
        "{headers:?}"
    );
    assert!(read["messageIdHeader"].is_string(), "{read:#}");
    assert_eq!(read["tags"], serde_json::json!(["welcome"]));
    // Events newest first, each with its own id and the times Flowmailer gives.
    let events = read["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["type"], "SUBMITTED");
    for event in events {
        assert_eq!(event["messageId"], id.as_str());
        assert!(event["id"].as_str().unwrap().starts_with(&id));
        assert!(event["received"].is_string() && event["inserted"].is_string());
        assert!(event["snippet"].is_null() || event["snippet"].is_string());
    }

    // A list adds only what it is asked for, as PHP writes the booleans.
    let plain = sdk_get(&api, "messages");
    assert!(plain[0].get("headersOut").is_none() && plain[0].get("events").is_none());
    let full = sdk_get(
        &api,
        "messages?addevents=1&addheaders=1&addonlinelink=1&addtags=1",
    );
    assert_eq!(full[0]["fromAddress"], read["fromAddress"]);
    assert_eq!(full[0]["headersOut"], read["headersOut"]);
    assert!(!full[0]["events"].as_array().unwrap().is_empty());

    // The event list: the same events, with the message's tags when asked.
    let listed = sdk_get(&api, "message_events?addmessagetags=true");
    assert_identifiers_are_strings(&listed, "events");
    assert!(listed.as_array().unwrap().len() >= events.len());
    for event in listed.as_array().unwrap() {
        assert_eq!(event["messageTags"], serde_json::json!(["welcome"]));
    }

    // Simulate names its flow as the SDK's SimulateMessageResult does.
    let simulated: Value = api
        .post("messages/simulate")
        .header("Accept", VENDOR)
        .json(&email("dry run"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(simulated["flow"]["id"], read["flow"]["id"]);
    assert_eq!(simulated["messageType"], "EMAIL");

    // A client asking for plain JSON reads the same representation, labelled as it asked.
    let response = api.get(&format!("messages/{id}")).send().unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let plain: Value = response.json().unwrap();
    assert_identifiers_are_strings(&plain, "plain");
    assert_eq!(plain["source"]["id"], "1");
    assert_eq!(plain["events"], read["events"]);
}

/// GETs `path` and PUTs the answer back unchanged: it must be taken and read back the same.
fn read_and_write_back(api: &Api, path: &str) {
    let before: Value = api.get(path).send().unwrap().json().unwrap();
    let response = api.put(path).json(&before).send().unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{path}: {}",
        response.text().unwrap()
    );
    let after: Value = api.get(path).send().unwrap().json().unwrap();
    assert_eq!(after, before, "{path}");
}

#[test]
fn every_flow_rule_and_source_reads_back_and_writes_back_unchanged() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let template: Value = api
        .post("templates")
        .json(&serde_json::json!({"name": "welcome", "subject": "Hi {{ name }}", "text": "x"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // One flow as Sluice's clients write it, with a condition on a step.
    let response = api
        .post("flows")
        .json(&serde_json::json!({
            "description": "native",
            "steps": [
                {"plugin": "template", "config": {"template": "welcome"},
                 "enabledWhen": {"type": "header", "matchType": "contains", "name": "X-Kind", "value": "news"}},
                {"plugin": "tracking", "config": {"clicks": true, "opens": false}},
                {"plugin": "archive", "config": {"retention": "P6M"}},
                {"plugin": "dkim"},
            ],
            "expiryHours": 12,
        }))
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text()
    );
    let native: Value = response.json().unwrap();
    assert_eq!(native["steps"][0]["type"], "template");
    assert_eq!(native["steps"][0]["template"]["id"], template["id"]);
    assert_eq!(native["steps"][2]["archive"]["retention"], "P6M");
    // One as the SDK writes it: Flowmailer's typed steps, no plugin named.
    let response = api
        .post("flows")
        .json(&serde_json::json!({
            "description": "typed",
            "templateId": "1",
            "steps": [
                {"type": "template", "template": {"id": template["id"]}},
                {"type": "openTracking"},
                {"type": "archive", "archive": {"retention": "P1M", "onlineLink": true}},
            ],
        }))
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text()
    );
    let typed: Value = response.json().unwrap();
    assert_eq!(typed["steps"][0]["plugin"], "template");
    assert_eq!(typed["steps"][0]["config"]["template"], "welcome");
    assert_eq!(typed["steps"][2]["config"]["retention"], "P1M");
    // A step type Sluice has no built-in for is refused, by name.
    let response = api
        .post("flows")
        .json(&serde_json::json!({"description": "ldap", "steps": [{"type": "ldapSearch"}]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refused = response.text().unwrap();
    assert!(
        refused.contains("notSupported") && refused.contains("ldapSearch"),
        "{refused}"
    );

    // Rules with every kind of condition, in Flowmailer's list shape.
    let source = api.get("sources").send().unwrap().json::<Value>().unwrap()[0]["id"].clone();
    let mut rules: Vec<Value> = api.get("flow_rules").send().unwrap().json().unwrap();
    let default_flow = rules.last().unwrap()["flow"]["id"].clone();
    rules.insert(
        0,
        serde_json::json!({
            "flow": {"id": native["id"]},
            "conditions": [
                {"type": "source", "matchType": "equals", "value": source},
                {"type": "flowSelector", "matchType": "equals", "value": "news"},
                {"type": "sender", "matchType": "pattern", "value": "*@example.com"},
                {"type": "header", "matchType": "exists", "name": "X-Campaign"},
                {"type": "data", "matchType": "equals", "name": "/order/total", "value": "12"},
            ],
        }),
    );
    rules.insert(
        1,
        serde_json::json!({"flow": {"id": typed["id"]}, "conditions": [
        {"type": "header", "matchType": "equals", "name": "X-Kind", "value": "typed"}]}),
    );
    let response = api.put("flow_rules").json(&rules).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());
    let stored: Vec<Value> = api.get("flow_rules").send().unwrap().json().unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2]["flow"]["id"], default_flow);
    assert_eq!(stored[0]["flow"]["description"], "native");

    // Everything read back and written back unchanged.
    let flows: Vec<Value> = api.get("flows").send().unwrap().json().unwrap();
    assert!(flows.len() >= 3);
    for flow in &flows {
        read_and_write_back(&api, &format!("flows/{}", id_of(flow)));
    }
    read_and_write_back(&api, "flow_rules");
    let sources: Vec<Value> = api.get("sources").send().unwrap().json().unwrap();
    for source in &sources {
        let path = format!("sources/{}", id_of(source));
        let response = api.put(&path).json(source).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());
        assert_eq!(&response.json::<Value>().unwrap(), source);
    }

    // The SDK's own round trip: it keeps only the fields its models have, ids as strings.
    let as_sdk_reads = sdk_get(&api, &format!("flows/{}", id_of(&typed)));
    assert_identifiers_are_strings(&as_sdk_reads, "flow");
    let sdk_fields: Vec<Value> = as_sdk_reads["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let mut kept = serde_json::Map::new();
            for field in ["type", "template", "archive"] {
                if let Some(value) = step.get(field) {
                    kept.insert(field.into(), value.clone());
                }
            }
            Value::Object(kept)
        })
        .collect();
    let response = api
        .put(&format!("flows/{}", id_of(&typed)))
        .json(&serde_json::json!({"id": as_sdk_reads["id"], "description": "typed", "steps": sdk_fields}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());
    assert_eq!(response.json::<Value>().unwrap()["steps"], typed["steps"]);

    // Another account can neither read these nor point its rules at them.
    let other = crate::util::second_account(&server);
    for path in [
        format!("flows/{}", id_of(&native)),
        format!("flows/{}/messages", id_of(&native)),
    ] {
        assert_eq!(
            other.get(&path).send().unwrap().status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let own: Value = other
        .post("flows")
        .json(&serde_json::json!({"description": "own", "steps": []}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let response = other
        .put("flow_rules")
        .json(&serde_json::json!([
            {"flow": {"id": native["id"]}, "conditions": [{"type": "flowSelector", "value": "x"}]},
            {"flow": {"id": own["id"]}},
        ]))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().unwrap().contains("unknownFlow"));
    let response = other
        .put("flow_rules")
        .json(&serde_json::json!([
            {"flow": {"id": own["id"]}, "conditions": [{"type": "source", "value": source}]},
            {"flow": {"id": own["id"]}},
        ]))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().unwrap().contains("unknownSource"));
}

#[test]
fn the_narrower_message_lists_choose_their_messages_and_keep_to_their_account() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let mut tagged = email("tagged");
    tagged["tags"] = serde_json::json!(["invoice"]);
    tagged["recipientAddress"] = "bob@example.net".into();
    let bob = api.submit(tagged);
    let ann = api.submit(email("plain"));
    server.wait_until_done(&bob);
    server.wait_until_done(&ann);
    let ids = |path: &str| -> Vec<String> {
        sdk_get(&api, path)
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("recipient/BOB@example.net/messages"), [bob.as_str()]);
    assert_eq!(ids("tag/invoice/messages"), [bob.as_str()]);
    assert_eq!(
        ids("sender/app@example.com/messages"),
        [ann.clone(), bob.clone()]
    );
    assert_eq!(ids("sources/1/messages"), [ann.clone(), bob.clone()]);
    let flow = sdk_get(&api, &format!("messages/{ann}"))["flow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ids(&format!("flows/{flow}/messages")),
        [ann.clone(), bob.clone()]
    );
    assert_eq!(
        ids("sender/app@example.com/messages;daterange=2000-01-01T00:00:00Z,2000-01-02T00:00:00Z"),
        Vec::<String>::new()
    );
    // Paged by reference like every list.
    let first = api
        .get("sources/1/messages")
        .header("Range", "items=:1")
        .send()
        .unwrap();
    assert!(first.headers().get("next-range").is_some());
    // Nothing bounced and nothing is held.
    assert!(ids("undeliveredmessages").is_empty());
    assert!(sdk_get(&api, "message_hold").as_array().unwrap().is_empty());
    assert_eq!(
        api.get(&format!("message_hold/{ann}"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Another account sees none of it: its token on these paths is refused, and the first
    // account's source and flow are unknown on its own paths.
    let other = crate::util::second_account(&server);
    for path in [
        "recipient/bob@example.net/messages",
        "tag/invoice/messages",
        "undeliveredmessages",
        "message_hold",
    ] {
        let response = other
            .http
            .get(api.url(path))
            .bearer_auth(&other.token)
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    for path in [
        "sources/1/messages".to_string(),
        format!("flows/{flow}/messages"),
    ] {
        assert_eq!(
            other.get(&path).send().unwrap().status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let theirs: Vec<Value> = other
        .get("recipient/bob@example.net/messages")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(theirs.is_empty());
}

/// One call of the compatibility table in `docs/flowmailer-compatibility.md`.
pub(crate) struct TableRow {
    pub(crate) method: reqwest::Method,
    pub(crate) path: String,
    pub(crate) support: String,
}

/// The calls of docs/flowmailer-compatibility.md's table.
pub(crate) fn compatibility_table() -> Vec<TableRow> {
    let table = include_str!("../docs/flowmailer-compatibility.md");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let method = match *cells.get(1)? {
                "GET" => reqwest::Method::GET,
                "POST" => reqwest::Method::POST,
                "PUT" => reqwest::Method::PUT,
                "DELETE" => reqwest::Method::DELETE,
                _ => return None,
            };
            Some(TableRow {
                method,
                path: cells.get(2)?.to_string(),
                support: cells.get(3)?.to_string(),
            })
        })
        .collect()
}

#[test]
fn every_sdk_call_answers_as_this_table_says() {
    let rows = compatibility_table();
    // Every call of the SDK's src/Endpoints.php, once.
    assert_eq!(rows.len(), 73);
    let distinct: HashSet<(String, String)> = rows
        .iter()
        .map(|row| (row.method.to_string(), row.path.clone()))
        .collect();
    assert_eq!(distinct.len(), 73);
    let tally = |support: &str| rows.iter().filter(|row| row.support == support).count();
    let counts = format!(
        "Counts: {} supported, {} partly, {} not.",
        tally("supported"),
        tally("partly"),
        tally("not")
    );
    assert!(
        include_str!("../docs/flowmailer-compatibility.md").contains(&counts),
        "the table's counts line should read {counts:?}"
    );

    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let message = api.submit(email("walked"));
    server.wait_until_done(&message);
    let flow = sdk_get(&api, &format!("messages/{message}"))["flow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let created = |path: &str, body: Value| -> String {
        let response = api.post(path).json(&body).send().unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{path}");
        id_of(&response.json::<Value>().unwrap()).to_string()
    };
    let domain = created(
        "sender_domains",
        serde_json::json!({"senderDomain": "walk.example"}),
    );
    let filter = created(
        "filters",
        serde_json::json!({"address": "gone@example.net"}),
    );
    let template = created(
        "templates",
        serde_json::json!({"name": "walk", "text": "x"}),
    );
    let other = crate::util::second_account(&server);

    let concrete = |path: &str| -> String {
        let id = if path.contains("/sender_domains/") {
            domain.as_str()
        } else if path.contains("/event_flows/") {
            "1"
        } else {
            message.as_str()
        };
        path.replace("{account}", "1")
            .replace("{id}", id)
            .replace("{flow}", &flow)
            .replace("{source}", "1")
            .replace("{filter}", &filter)
            .replace("{template}", &template)
            .replace("{client}", "walk-client")
            .replace("{user}", "walk-user")
            .replace("{address}", "ann@example.net")
            .replace("{domain}", "walk.example")
            .replace("{tag}", "walk")
            .replace("{step}", "1")
            .replace("{content}", "1")
    };
    // Deletions last, so the calls before them find what they name.
    let mut ordered: Vec<&TableRow> = rows.iter().collect();
    ordered.sort_by_key(|row| row.method == reqwest::Method::DELETE);
    for row in ordered {
        let path = concrete(&row.path);
        let request = |as_who: &Api| {
            let mut request = as_who
                .http
                .request(row.method.clone(), format!("{}{path}", api.base))
                .bearer_auth(&as_who.token)
                .header("Accept", VENDOR)
                .header("Range", "items=:10");
            if matches!(row.method, reqwest::Method::POST | reqwest::Method::PUT) {
                request = request.json(&serde_json::json!({}));
            }
            request.send().unwrap()
        };
        // Another account's token is refused on every call of the account.
        if row.path.contains("{account}") {
            let response = request(&other);
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{} {path}",
                row.method
            );
        }
        let response = request(&api);
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        let code = body["allErrors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match row.support.as_str() {
            "supported" | "partly" => {
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED
                        && status != StatusCode::NOT_IMPLEMENTED
                        && !status.is_server_error()
                        // A 404 names what is missing; a route that is missing names nothing.
                        && (status != StatusCode::NOT_FOUND || code == "notFound"),
                    "{} {path}: {status} {body}",
                    row.method
                );
            }
            "not" => {
                assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{} {path}", row.method);
                assert_eq!(code, "notSupported", "{} {path}", row.method);
                assert!(
                    body["allErrors"][0]["defaultMessage"]
                        .as_str()
                        .is_some_and(|message| message.len() > 20),
                    "{body}"
                );
            }
            other => panic!("unknown support {other:?} for {path}"),
        }
    }
}

#[test]
fn statistics_count_events_per_interval_and_keep_to_their_account() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let first = api.submit(email("one"));
    let second = api.submit(email("two"));
    server.wait_until_done(&first);
    server.wait_until_done(&second);
    let flow = sdk_get(&api, &format!("messages/{first}"))["flow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let range = "daterange=2000-01-01T00:00:00Z,2100-01-01T00:00:00Z";
    let processed = |stats: &Value| -> u64 {
        let sets = stats["list"].as_array().unwrap();
        let set = sets.iter().find(|set| set["name"] == "processed").unwrap();
        set["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sample| sample["value"].as_u64().unwrap())
            .sum()
    };
    // A century in 100 intervals of a bit over a year.
    let interval = 3_155_760_000u64 / 100 + 1;
    let account = sdk_get(&api, &format!("messagestats;{range}?interval={interval}"));
    assert_eq!(processed(&account), 2, "{account:#}");
    assert_eq!(account["list"][0]["samples"].as_array().unwrap().len(), 100);
    let by_flow = sdk_get(
        &api,
        &format!("flows/{flow}/stats;{range};interval={interval}"),
    );
    assert_eq!(processed(&by_flow), 2);
    let by_source = sdk_get(
        &api,
        &format!("sources/1/stats;{range};interval={interval}"),
    );
    assert_eq!(processed(&by_source), 2);
    let none = sdk_get(
        &api,
        &format!("messagestats;{range};flow_ids=999999?interval={interval}"),
    );
    assert_eq!(processed(&none), 0);
    // Unbounded asks are refused, not cut short.
    for path in [
        "messagestats".to_string(),
        format!("messagestats;{range}?interval=60"),
    ] {
        assert_eq!(
            api.get(&path).send().unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    let other = crate::util::second_account(&server);
    for path in [
        format!("flows/{flow}/stats;{range}"),
        format!("sources/1/stats;{range}"),
    ] {
        assert_eq!(
            other.get(&path).send().unwrap().status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[test]
fn an_account_s_statistics_queue_behind_its_own_scans_and_not_another_s() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let other = crate::util::second_account(&server);
    let scans = std::sync::Arc::clone(&server.server.scans);
    // A heavy read of account 1 (a dashboard page, say) holds account 1's slot until told.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, has_started) = std::sync::mpsc::channel::<()>();
    let held = server.runtime.spawn({
        let scans = std::sync::Arc::clone(&scans);
        async move {
            scans
                .run(1, move |_| {
                    started.send(()).unwrap();
                    released.recv().ok();
                    Ok(())
                })
                .await
                .unwrap()
        }
    });
    has_started.recv().unwrap();

    let path = "messagestats;daterange=2000-01-01T00:00:00Z,2100-01-01T00:00:00Z?interval=31557600";
    let request = api.get(path).header("Accept", VENDOR);
    let own = std::thread::spawn(move || request.send().unwrap().status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while scans.waiting() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the statistics never queued"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Account 1's statistics wait for account 1's read; account 2's are answered meanwhile,
    // in the pool's other slot.
    assert_eq!(scans.waiting(), 1);
    assert_eq!(
        other
            .get(path)
            .header("Accept", VENDOR)
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert!(!own.is_finished());
    assert_eq!(scans.waiting(), 1, "account 1's statistics still wait");

    release.send(()).unwrap();
    server.block_on(held).unwrap();
    assert_eq!(own.join().unwrap(), StatusCode::OK);
    assert_eq!(scans.waiting(), 0);
}

#[test]
fn a_source_s_smtp_users_are_made_listed_and_removed_within_their_account() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let response = api
        .post("sources/1/users")
        .header("Accept", VENDOR)
        .json(&serde_json::json!({"username": "shop-smtp", "password": "correct horse battery", "protocol": "SMTP"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let made: Value = response.json().unwrap();
    assert_identifiers_are_strings(&made, "user");
    assert_eq!(made["id"], "shop-smtp");
    assert_eq!(made["sourceId"], "1");
    assert_eq!(made["password"], "correct horse battery");
    // A made-up password when none is given, shown once; never again.
    let generated: Value = api
        .post("sources/1/users")
        .json(&serde_json::json!({}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(generated["password"].as_str().unwrap().len() >= 24);
    let listed = sdk_get(&api, "sources/1/users");
    let names: HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    assert!(names.contains("shop-smtp") && names.contains(generated["id"].as_str().unwrap()));
    assert!(listed.to_string().find("password").is_none(), "{listed}");
    assert_eq!(
        sdk_get(&api, "sources/1/users/shop-smtp")["protocol"],
        "SMTP"
    );
    // Refused: a short password, another protocol, a taken name.
    for body in [
        serde_json::json!({"password": "short"}),
        serde_json::json!({"protocol": "SMPP"}),
    ] {
        let response = api.post("sources/1/users").json(&body).send().unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let taken = api
        .post("sources/1/users")
        .json(&serde_json::json!({"username": "shop-smtp"}))
        .send()
        .unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);

    // Another account neither sees nor removes them.
    let other = crate::util::second_account(&server);
    for path in ["sources/1/users", "sources/1/users/shop-smtp"] {
        assert_eq!(
            other.get(path).send().unwrap().status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let theirs: Vec<Value> = other.get("sources").send().unwrap().json().unwrap();
    let their_source = id_of(&theirs[0]);
    assert_eq!(
        other
            .http
            .delete(other.url(&format!("sources/{their_source}/users/shop-smtp")))
            .bearer_auth(&other.token)
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let removed = api
        .http
        .delete(api.url("sources/1/users/shop-smtp"))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert!(server.store().credential("shop-smtp").unwrap().is_none());
    assert_eq!(
        api.get("sources/1/users/shop-smtp")
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// A POST as the SDK sends it; the status and the JSON answer. A `201 Created` of a call whose
/// SDK method returns no model must come as Flowmailer's does, an empty body and the new
/// object's path in `Location` (the SDK takes the id from there only when the body is empty);
/// the object is then read from that path, as a client would.
pub(crate) fn sdk_post(api: &Api, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = api
        .post(path)
        .header("Accept", VENDOR)
        .json(body)
        .send()
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_string());
    let content_length = response
        .headers()
        .get("content-length")
        .map(|value| value.to_str().unwrap().to_string());
    let text = response.text().unwrap();
    match location {
        Some(location) if status == StatusCode::CREATED && text.is_empty() => {
            assert_eq!(content_length.as_deref(), Some("0"), "POST {path}");
            let prefix = format!("/{}/", api.account);
            let made = location
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("POST {path}: Location {location} is not the account's"));
            (status, sdk_get(api, made))
        }
        _ => (status, serde_json::from_str(&text).unwrap_or(Value::Null)),
    }
}

#[test]
fn templates_come_in_the_sdk_s_shape_and_a_freemarker_one_is_refused() {
    use base64::Engine as _;
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    // As the SDK writes a Template (it leaves nulls out).
    let (status, created) = sdk_post(
        &api,
        "templates",
        &serde_json::json!({
            "description": "Order confirmation",
            "mimeType": "text/html",
            "templateEngine": "minijinja",
            "data": "<p>Hi {{ name }}</p>",
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    assert_identifiers_are_strings(&created, "template");
    assert_eq!(created["description"], "Order confirmation");
    assert_eq!(created["templateEngine"], "minijinja");
    assert_eq!(created["mimeType"], "text/html");
    assert_eq!(created["data"], "<p>Hi {{ name }}</p>");
    let id = id_of(&created).to_string();
    let read = sdk_get(&api, &format!("templates/{id}"));
    assert_eq!(read, created);
    let listed = sdk_get(&api, "templates");
    assert!(listed.as_array().unwrap().contains(&read), "{listed:#}");

    // What a read answers is written back unchanged.
    let response = api
        .put(&format!("templates/{id}"))
        .header("Accept", VENDOR)
        .json(&read)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let written: Value = response.json().unwrap();
    assert_eq!(written["data"], read["data"]);
    assert_eq!(written["description"], read["description"]);

    // The template renders under its description, as a step names it.
    let (status, preview) = sdk_post(
        &api,
        "templates/preview",
        &serde_json::json!({"name": "Order confirmation", "data": {"name": "Ann"}}),
    );
    assert_eq!(status, StatusCode::OK, "{preview:#}");
    assert!(
        preview["html"].as_str().unwrap().contains("Hi Ann"),
        "{preview:#}"
    );

    // Base64 data, as the SDK may send it.
    let (status, plain) = sdk_post(
        &api,
        "templates",
        &serde_json::json!({
            "description": "Plain",
            "mimeType": "text/plain",
            "decodeBase64": true,
            "data": base64::engine::general_purpose::STANDARD.encode("Hello {{ name }}"),
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{plain:#}");
    assert_eq!(plain["text"], "Hello {{ name }}");
    assert_eq!(plain["mimeType"], "text/plain");

    // The SDK's default engine is refused, naming the one Sluice renders with; so are the
    // parts Sluice's templates do not have.
    for (body, field, code) in [
        (
            serde_json::json!({"description": "fm", "mimeType": "text/html",
                "templateEngine": "freemarker-2.3.20", "data": "<p>${name}</p>"}),
            "templateEngine",
            "unsupportedTemplateEngine",
        ),
        (
            serde_json::json!({"description": "pdf",
                "mimeType": "application/vnd.flowmailer.itext+pdf", "data": "<p/>"}),
            "mimeType",
            "unsupportedMimeType",
        ),
        (
            serde_json::json!({"description": "attachment", "mimeType": "text/plain",
                "data": "x", "filename": "x.txt"}),
            "filename",
            "notSupported",
        ),
        (
            serde_json::json!({"mimeType": "text/plain", "data": "x"}),
            "description",
            "required",
        ),
    ] {
        let (status, refused) = sdk_post(&api, "templates", &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused["allErrors"][0]["field"], field, "{refused:#}");
        assert_eq!(refused["allErrors"][0]["code"], code, "{refused:#}");
    }
    let (_, freemarker) = sdk_post(
        &api,
        "templates",
        &serde_json::json!({"description": "fm", "templateEngine": "freemarker-2.3.20"}),
    );
    let message = freemarker["allErrors"][0]["defaultMessage"]
        .as_str()
        .unwrap();
    assert!(message.contains("minijinja"), "{message}");
    let names: Vec<Value> = sdk_get(&api, "templates")
        .as_array()
        .unwrap()
        .iter()
        .map(|template| template["description"].clone())
        .collect();
    assert_eq!(names.len(), 2, "nothing refused was stored: {names:?}");
}

#[test]
fn filters_are_chosen_by_the_date_they_were_added() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, added) = sdk_post(
        &api,
        "filters",
        &serde_json::json!({"address": "gone@example.net"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{added:#}");
    let list = |range: &str| -> Response {
        api.get(&format!("filters;daterange={range}"))
            .header("Accept", VENDOR)
            .header("Range", "items=:10")
            .send()
            .unwrap()
    };
    let within: Vec<Value> = list("2000-01-01T00:00:00Z,2100-01-01T00:00:00Z")
        .json()
        .unwrap();
    assert_eq!(within.len(), 1);
    assert_eq!(within[0]["address"], "gone@example.net");
    assert_eq!(within[0]["id"], added["id"]);
    let before: Vec<Value> = list("2000-01-01T00:00:00Z,2000-01-02T00:00:00Z")
        .json()
        .unwrap();
    assert!(before.is_empty());
    assert_eq!(list("yesterday,today").status(), StatusCode::BAD_REQUEST);
}

/// A PUT as the SDK sends it; the status and the JSON answer.
pub(crate) fn sdk_put(api: &Api, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = api
        .put(path)
        .header("Accept", VENDOR)
        .json(body)
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn a_flow_s_rule_is_written_read_and_routes_as_flowmailer_s_simple_rule() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, flow) = sdk_post(
        &api,
        "flows",
        &serde_json::json!({"description": "invoices"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{flow:#}");
    let flow_id = id_of(&flow).to_string();
    let path = format!("flows/{flow_id}/rule");
    // No rule yet: only the flow's id.
    assert_eq!(sdk_get(&api, &path), serde_json::json!({"flowId": flow_id}));

    let rule = serde_json::json!({
        "flowId": flow_id,
        "sourceId": "1",
        "flowSelector": "invoice",
        "headers": [{"name": "X-Kind", "value": "order"}],
        "dataExpressions": [{"expression": "/order/type", "value": "gift"}],
    });
    let (status, written) = sdk_put(&api, &path, &rule);
    assert_eq!(status, StatusCode::OK, "{written:#}");
    assert_eq!(written, rule);
    assert_eq!(sdk_get(&api, &path), rule);
    // It is the account's rule list's rule for the flow, before the default flow.
    let rules = sdk_get(&api, "flow_rules");
    let rules = rules.as_array().unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0]["flow"]["id"], flow_id.as_str());
    assert_eq!(rules[0]["conditions"].as_array().unwrap().len(), 4);

    // A message that meets it goes to the flow; one that does not, to the default flow.
    let mut meets = email("invoice");
    meets["flowSelector"] = "invoice".into();
    meets["headers"] = serde_json::json!([{"name": "X-Kind", "value": "order"}]);
    meets["data"] = serde_json::json!({"order": {"type": "gift"}});
    let routed = api.submit(meets);
    let other = api.submit(email("plain"));
    let flow_of = |id: &str| server.wait_until_done(id).flow_id.map(|id| id.to_string());
    assert_eq!(flow_of(&routed), Some(flow_id.clone()));
    assert_ne!(flow_of(&other), Some(flow_id.clone()));

    // Refused: an expression (Sluice has none), another account's source, another flow's id.
    for (body, field) in [
        (
            serde_json::json!({"dataExpressions": [{"expression": "${data.order.type}", "value": "x"}]}),
            "dataExpressions[0].expression",
        ),
        (serde_json::json!({"sourceId": "999"}), "sourceId"),
        (
            serde_json::json!({"flowId": "999", "sender": "a@b.example"}),
            "flowId",
        ),
    ] {
        let (status, refused) = sdk_put(&api, &path, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused["allErrors"][0]["field"], field, "{refused:#}");
    }
    assert_eq!(sdk_get(&api, &path), rule, "nothing refused was kept");

    // A rule without conditions removes the flow's rule.
    let (status, _) = sdk_put(&api, &path, &serde_json::json!({"flowId": flow_id}));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sdk_get(&api, &path), serde_json::json!({"flowId": flow_id}));
    assert_eq!(sdk_get(&api, "flow_rules").as_array().unwrap().len(), 1);
    // Another account has no such flow of its own.
    let stranger = crate::util::second_account(&server);
    assert_eq!(
        stranger
            .get(&format!("flows/{flow_id}/rule"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn api_credentials_are_made_for_a_source_log_in_and_are_removed_within_their_account() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, made) = sdk_post(
        &api,
        "api_credentials",
        &serde_json::json!({"sourceId": "1", "clientId": "billing-client"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{made:#}");
    assert_identifiers_are_strings(&made, "credential");
    assert_eq!(made["clientId"], "billing-client");
    assert_eq!(made["sourceId"], "1");
    let secret = made["clientSecret"].as_str().unwrap().to_string();
    // The secret is shown once; reads and lists leave it out.
    let read = sdk_get(&api, "api_credentials/billing-client");
    assert!(read.get("clientSecret").is_none(), "{read:#}");
    assert_eq!(read["sourceId"], "1");
    let listed = sdk_get(&api, "api_credentials");
    assert!(listed.as_array().unwrap().contains(&read), "{listed:#}");
    // The new client logs in as the source and submits.
    let billing = Api::connect(&server, 1, "billing-client", &secret);
    let id = billing.submit(email("from the new client"));
    assert_eq!(server.wait_until_done(&id).source_id, 1);

    // A generated client id; refused: a chosen secret, roles, an unknown source, a taken id.
    let (status, generated) =
        sdk_post(&api, "api_credentials", &serde_json::json!({"sourceId": 1}));
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        generated["clientId"]
            .as_str()
            .unwrap()
            .starts_with("source1-")
    );
    for (body, status, field) in [
        (
            serde_json::json!({"sourceId": "1", "clientSecret": "mine"}),
            StatusCode::BAD_REQUEST,
            "clientSecret",
        ),
        (
            serde_json::json!({"sourceId": "1", "roles": ["ADMIN"]}),
            StatusCode::BAD_REQUEST,
            "roles",
        ),
        (
            serde_json::json!({"sourceId": "999"}),
            StatusCode::BAD_REQUEST,
            "sourceId",
        ),
        (
            serde_json::json!({"sourceId": "1", "clientId": "billing-client"}),
            StatusCode::CONFLICT,
            "",
        ),
    ] {
        let (answered, refused) = sdk_post(&api, "api_credentials", &body);
        assert_eq!(answered, status, "{body}: {refused:#}");
        if !field.is_empty() {
            assert_eq!(refused["allErrors"][0]["field"], field, "{refused:#}");
        }
    }

    // Another account neither sees nor removes it; its own source is not this account's.
    let other = crate::util::second_account(&server);
    assert_eq!(
        other
            .get("api_credentials/billing-client")
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let theirs = other
        .get("api_credentials")
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert!(
        !theirs
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["clientId"] == "billing-client"),
        "{theirs:#}"
    );
    let response = other
        .http
        .delete(other.url("api_credentials/billing-client"))
        .bearer_auth(&other.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Removed: the client gets no new token.
    let response = api
        .http
        .delete(api.url("api_credentials/billing-client"))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let token = api
        .http
        .post(format!("{}/oauth/token", api.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "billing-client"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_made_object_is_answered_as_flowmailer_does_an_empty_201_naming_it_in_location() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    // The SDK calls that return no model: it takes the new id from `Location`'s last part.
    let made = [
        (
            "sources",
            serde_json::json!({"description": "shop", "type": "API", "tlsRequired": false}),
        ),
        ("flows", serde_json::json!({"description": "receipts"})),
        (
            "templates",
            serde_json::json!({
                "description": "receipt", "mimeType": "text/html",
                "templateEngine": "minijinja", "data": "<p>{{ total }}</p>",
            }),
        ),
        (
            "sender_domains",
            serde_json::json!({"senderDomain": "shop.example.com"}),
        ),
        (
            "event_flows",
            serde_json::json!({
                "description": "hooks",
                "steps": [{"type": "externalData", "externalData": {
                    "urlTemplate": "https://hooks.example.com/in", "requestMethod": "POST"}}],
            }),
        ),
    ];
    for (path, body) in made {
        let response = api
            .post(path)
            .header("Accept", VENDOR)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{path}");
        assert_eq!(response.headers()["content-length"], "0", "{path}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        assert!(response.text().unwrap().is_empty(), "{path}");
        let id = location.rsplit('/').next().unwrap();
        assert_eq!(location, format!("/{}/{path}/{id}", api.account), "{path}");
        assert_eq!(id_of(&sdk_get(&api, &format!("{path}/{id}"))), id, "{path}");

        // A client asking for plain JSON also gets what was made (Sluice's extension).
        let mut again = body.clone();
        if let Some(name) = again.get_mut("senderDomain") {
            *name = "other.example.com".into();
        }
        if let Some(Value::String(name)) = again.get_mut("description") {
            name.push_str(" again");
        }
        let response = api.post(path).json(&again).send().unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{path}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let made: Value = response.json().unwrap();
        assert!(location.ends_with(&format!("/{}", id_of(&made))), "{path}");
    }
}

#[test]
fn an_empty_page_by_position_has_a_range_the_sdk_can_split() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let response = api
        .get("message_hold")
        .header("Accept", VENDOR)
        .header("Range", "items=0-9")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The SDK's ContentRange splits "items FIRST-LAST/TOTAL" at '/' and '-'.
    assert_eq!(response.headers()["content-range"], "items 0-0/0");
    assert_eq!(response.json::<Value>().unwrap(), serde_json::json!([]));
}
