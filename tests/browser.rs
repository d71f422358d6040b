//! The real-browser harness (tests/support/src/browser.rs) proved on pages that exist today:
//! a headless Debian Chromium under chromedriver opens what Sluice serves (the OpenAPI
//! document, the signed 'view online' page of an archived message), reads it and saves a
//! screenshot under `target/dashboard-screenshots`; and it fills and submits a form, follows a
//! link and reads a cookie on a small page served by the test, as the dashboard's tests will.
//!
//! A machine without chromium and chromedriver skips these tests and says so on the terminal
//! (`SKIPPED browser::...`), unless `SLUICE_REQUIRE_BROWSER` is set, as `.ci/run` sets it.

use axum::Form;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sluice::store::MessageStatus;
use sluice_test_support::browser::{self, Browser};

use crate::util::{Api, TestServer};

/// A browser for the test, or `None` (with the SKIPPED line) where there is none.
fn browser_for(test: &str) -> Option<Browser> {
    browser::launch_or_skip(&format!("browser::{test}"))
}

/// Checks a screenshot is a non-trivial PNG image of the page's size.
fn assert_screenshot(path: &std::path::Path) {
    let png = std::fs::read(path).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", path.display());
    // The IHDR chunk follows the signature: width and height, big-endian.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 800 && height >= 600, "{width}x{height}");
    assert!(png.len() > 2_000, "{} bytes", png.len());
}

#[test]
fn chromium_reads_the_online_view_of_an_archived_message_and_the_openapi_document() {
    let Some(browser) = browser_for(
        "chromium_reads_the_online_view_of_an_archived_message_and_the_openapi_document",
    ) else {
        return;
    };
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    server.set_default_flow("archive", json!({"retention": "P1M"}));
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "subject": "Your order",
        "html": "<h1>Order 4711</h1><p>Your order <b>ships</b> today.</p>",
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(record.status, MessageStatus::Processed);
    let view: Value = api
        .get(&format!("messages/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let online = view["onlineLink"].as_str().expect("an online link");

    browser.open(online);
    // What the browser rendered, not the HTML: the bold word is plain text here.
    let text = browser.text();
    assert!(text.contains("Order 4711"), "{text}");
    assert!(text.contains("Your order ships today."), "{text}");
    assert_eq!(browser.text_of("h1"), "Order 4711");
    assert!(browser.find("script").is_none());
    assert_screenshot(&browser.screenshot("online-view"));

    let openapi = format!("http://{}/openapi.json", server.server.api_addr);
    browser.open(&openapi);
    assert_eq!(browser.url(), openapi);
    let document: Value = serde_json::from_str(&browser.text()).expect("the page is JSON");
    assert_eq!(document["openapi"], "3.0.3");
    assert_screenshot(&browser.screenshot("openapi"));
}

/// The test's own page: a form with a hidden token, and the answer it leads to.
const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>Sign in</title></head><body>
<form method="post" action="/answer">
  <input type="hidden" name="token" value="t-42">
  <label>Email <input name="email" type="email" required></label>
  <label>Note <textarea name="note"></textarea></label>
  <button type="submit">Send</button>
</form>
<a id="elsewhere" href="/elsewhere">Elsewhere</a>
</body></html>"#;

#[derive(serde::Deserialize)]
struct Answer {
    token: Option<String>,
    email: String,
    note: String,
}

/// Serves [`FORM_PAGE`] on loopback; the answer echoes the fields and sets a cookie.
fn form_server(runtime: &tokio::runtime::Runtime) -> String {
    let app = axum::Router::new()
        .route("/", get(|| async { Html(FORM_PAGE) }))
        .route(
            "/answer",
            post(|Form(answer): Form<Answer>| async move {
                let token = answer.token.unwrap_or_else(|| "none".into());
                (
                    [("set-cookie", "session=s-7; Path=/; HttpOnly; SameSite=Strict")],
                    Html(format!(
                        "<!doctype html><title>Answer</title><p id=answer>{} wrote {} with token {}</p>",
                        answer.email, answer.note, token
                    )),
                )
                    .into_response()
            }),
        )
        .route(
            "/elsewhere",
            get(|| async { Html("<!doctype html><title>Elsewhere</title><p>Arrived</p>") }),
        );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[test]
fn chromium_fills_and_submits_a_form_follows_a_link_and_keeps_a_cookie() {
    let Some(browser) =
        browser_for("chromium_fills_and_submits_a_form_follows_a_link_and_keeps_a_cookie")
    else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = form_server(&runtime);

    browser.open(&format!("{base}/"));
    assert_eq!(browser.title(), "Sign in");
    browser.fill("email", "ann@example.net");
    browser.fill("note", "first");
    // Filling again replaces what the field held.
    browser.fill("note", "hello & goodbye");
    browser.submit("email");
    assert_eq!(browser.url(), format!("{base}/answer"));
    assert_eq!(
        browser.text_of("#answer"),
        "ann@example.net wrote hello & goodbye with token t-42"
    );
    assert_eq!(browser.cookie("session").as_deref(), Some("s-7"));
    assert_screenshot(&browser.screenshot("harness-form-answer"));

    // A forged submission as the dashboard's CSRF tests make it: the token taken out first.
    browser.open(&format!("{base}/"));
    browser.execute("document.querySelector('[name=token]').remove();");
    browser.fill("email", "bob@example.net");
    browser.fill("note", "forged");
    browser.submit("email");
    assert_eq!(
        browser.text_of("#answer"),
        "bob@example.net wrote forged with token none"
    );

    browser.open(&format!("{base}/"));
    browser.click("#elsewhere");
    assert_eq!(browser.url(), format!("{base}/elsewhere"));
    assert_eq!(browser.text(), "Arrived");
    assert!(browser.find("form").is_none());
}
