//! The API as a client written for Flowmailer uses it, request for request as its public SDK
//! builds them: reference ranges followed by `Next-Range`, booleans as PHP writes them, matrix
//! parameters in the path, and Flowmailer's vendor media type.

use std::collections::HashSet;

use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::Value;

use crate::util::{Api, TestServer, email};

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
        // Messages are their own references.
        if let (Some(head), Some(tail)) = (page.first(), page.last())
            && head.get("id").is_some()
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
