//! The built-in tracking step end to end: links rewritten into host-signed click links, an
//! open pixel, CLICKED and OPENED recorded over HTTP, forged tokens refused.

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use sluice::store::MessageStatus;

use crate::util::{Api, TestServer, event_kinds};

const HTML: &str = r##"<html><body>
<p><a href="https://shop.example/order?id=1&amp;ref=mail">your order</a></p>
<p><a href="http://help.example/">help</a> <a href="mailto:help@shop.example">write</a>
<a href="#top">top</a> <a data-notrack href="https://shop.example/unsubscribe">unsubscribe</a></p>
</body></html>"##;

/// Sends one html message through a flow whose only step is the built-in tracking step;
/// returns the message id and the processed html.
fn tracked_message(server: &TestServer) -> (String, String) {
    server.set_default_flow("tracking", json!({}));
    let id = Api::demo(server).submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "shop@example.com",
        "recipientAddress": "ann@example.net",
        "subject": "Your order",
        "html": HTML,
        "text": "Your order: https://shop.example/order?id=1",
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(
        record.status,
        MessageStatus::Processed,
        "{:?}",
        record.status_reason
    );
    let body = server.store().body(&id).unwrap().unwrap();
    let message = sluice::message::Message::parse(body, crate::util::envelope()).unwrap();
    (id, message.html().unwrap())
}

/// The open pixel's URL in processed html.
fn pixel_url(html: &str) -> String {
    let after = html.split("<img src=\"").nth(1).expect("an open pixel");
    after.split('"').next().unwrap().to_string()
}

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn links_are_tracked_and_clicks_redirect_to_the_original_url() {
    let server = TestServer::start(|_| {});
    let (id, html) = tracked_message(&server);
    let base = format!("http://{}", server.server.api_addr);
    let links = hrefs(&html);
    assert_eq!(links.len(), 5, "{html}");
    assert!(links[0].starts_with(&format!("{base}/c/")), "{html}");
    assert!(links[1].starts_with(&format!("{base}/c/")), "{html}");
    assert_eq!(links[2], "mailto:help@shop.example");
    assert_eq!(links[3], "#top");
    assert_eq!(links[4], "https://shop.example/unsubscribe");
    assert!(!html.contains("data-notrack"), "{html}");
    let pixel = format!("{base}/o/");
    assert!(html.contains(&format!("<img src=\"{pixel}")), "{html}");
    assert!(html.find(&pixel).unwrap() < html.find("</body>").unwrap());

    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("TestMail/1.0")
        .build()
        .unwrap();
    let response = http.get(&links[0]).send().unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(
        response.headers()["location"],
        "https://shop.example/order?id=1&ref=mail"
    );
    let clicked = server.store().events(&id).unwrap().pop().unwrap();
    assert_eq!(clicked.kind, sluice::store::EventKind::Clicked);
    let detail: Value = serde_json::from_str(clicked.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["userAgent"], "TestMail/1.0");
    assert_eq!(detail["linkIndex"], 0);
    assert_eq!(detail["ip"], "127.0.0.1");

    let pixel_url = pixel_url(&html);
    let response = http.get(&pixel_url).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "CLICKED", "OPENED"]
    );
}

#[test]
fn forged_or_altered_tokens_get_404_and_record_nothing() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let server = TestServer::start(|_| {});
    let (id, html) = tracked_message(&server);
    let link = hrefs(&html).remove(0);
    let (prefix, token) = link.rsplit_once('/').unwrap();
    let (_, tag) = token.split_once('.').unwrap();
    let evil = URL_SAFE_NO_PAD.encode(format!("c\n{id}\n0\nhttps://evil.example/"));
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for forged in [
        format!("{prefix}/{evil}.{tag}"),
        format!("{prefix}/{token}x"),
        format!("{prefix}/not-a-token"),
    ] {
        let response = http.get(&forged).send().unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{forged}");
    }
    assert_eq!(event_kinds(&server, &id), ["SUBMITTED", "PROCESSED"]);
}

#[test]
fn a_customer_cannot_upload_a_plugin_that_uses_a_privileged_capability() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    for builtin in sluice::plugin::builtin::BUILTINS {
        let response = api.post("plugins").body(builtin.component).send().unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            builtin.name
        );
        let body: Value = response.json().unwrap();
        let message = body["allErrors"][0]["defaultMessage"].as_str().unwrap();
        assert!(
            message.contains("sluice:flowstep/") && message.contains("not granted"),
            "{}: {message}",
            builtin.name
        );
    }
}

#[test]
fn repeated_opens_and_clicks_are_counted_but_only_the_first_are_kept() {
    let server = TestServer::start(|_| {});
    let (id, html) = tracked_message(&server);
    let links = hrefs(&html);
    let pixel_url = pixel_url(&html);
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("A".repeat(60_000))
        .build()
        .unwrap();
    let limit = sluice::store::MAX_KEPT_ENGAGEMENTS as usize;
    for _ in 0..limit + 15 {
        assert_eq!(
            http.get(&pixel_url).send().unwrap().status(),
            StatusCode::OK
        );
        assert!(
            http.get(&links[0])
                .send()
                .unwrap()
                .status()
                .is_redirection()
        );
    }
    // Another link has a count of its own.
    assert!(
        http.get(&links[1])
            .send()
            .unwrap()
            .status()
            .is_redirection()
    );

    let kinds = event_kinds(&server, &id);
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("OPENED"), limit);
    assert_eq!(count("CLICKED"), limit + 1);
    let counts = server.store().engagement_counts(&id).unwrap();
    assert!(
        counts.contains(&("open".to_string(), (limit + 15) as u64)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&("click:0".to_string(), (limit + 15) as u64)),
        "{counts:?}"
    );
    assert!(counts.contains(&("click:1".to_string(), 1)), "{counts:?}");

    // The User-Agent is kept cut, so the message's view stays small.
    let opened = crate::util::event_detail(&server, &id, "OPENED");
    let agent = opened["userAgent"].as_str().unwrap();
    assert!(agent.len() < 400, "{}", agent.len());
    assert!(agent.ends_with("[cut: 60000 bytes in all]"), "{agent}");
    let view = Api::demo(&server)
        .get(&format!("messages/{id}?addevents=true"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(view.len() < 64 << 10, "{}", view.len());
}
