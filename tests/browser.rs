//! Sluice in a real browser: a headless Debian Chromium under chromedriver
//! (tests/support/src/browser.rs). First the harness itself, on pages that need no login (the
//! OpenAPI document, the signed 'view online' page of an archived message) and on a small form
//! page served by the test; then the dashboard: logging in with the code read from the mail
//! the platform sent (kept by the capture of example domains), refused codes, what a viewer
//! sees, a form posted without its CSRF token, a filter entry removed, a template previewed by
//! the template step and saved. Each page is saved as a screenshot under
//! `target/dashboard-screenshots` for a reviewer to look at.
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
    assert_eq!(document["openapi"], "3.1.0");
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

// The dashboard.

/// The dashboard's address.
fn dashboard(server: &TestServer) -> String {
    format!(
        "http://{}",
        server
            .server
            .dashboard_addr
            .expect("the dashboard is served")
    )
}

/// The six-digit code in a captured login mail, read from its text as a mail client shows it.
fn code_in(mail: &str) -> String {
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .expect("a parsable mail");
    assert_eq!(parsed.subject(), Some("Your Sluice login code"), "{mail}");
    let text = parsed.body_text(0).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .find(|line| line.len() == 6 && line.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_string()
}

/// Gives the password on the login page and returns the code from the mail it sent, the
/// `mails_before + 1`th the capture kept for `email`.
fn ask_for_code(
    browser: &Browser,
    server: &TestServer,
    email: &str,
    password: &str,
    mails_before: usize,
) -> String {
    browser.open(&format!("{}/login", dashboard(server)));
    browser.fill("email", email);
    browser.fill("password", password);
    browser.submit("password");
    assert!(
        browser.url().ends_with("/login/code"),
        "{}: {}",
        browser.url(),
        browser.text()
    );
    let mails = server.wait_for_captured(email, mails_before + 1);
    code_in(mails.last().unwrap())
}

/// Types the code into the code form and sends it.
fn enter_code(browser: &Browser, code: &str) {
    browser.fill("code", code);
    browser.submit("code");
}

/// Whether the browser has a session: the overview opens instead of the login page.
fn has_session(browser: &Browser, server: &TestServer) -> bool {
    browser.open(&format!("{}/", dashboard(server)));
    !browser.url().contains("/login")
}

/// A wrong code, different from the right one.
fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// A user of the demo account with a password, made directly in the store.
fn add_user(server: &TestServer, email: &str, role: sluice::store::Role) -> String {
    let password = format!("{email}-password-1");
    let account = server.server.created_demo.clone().unwrap().account_id;
    server
        .block_on(server.store().create_user(sluice::store::NewUser {
            account_id: Some(account),
            email: email.into(),
            role,
            password_hash: Some(sluice::store::hash_secret(&password).unwrap()),
        }))
        .unwrap();
    password
}

#[test]
fn the_owner_logs_in_with_the_mailed_code_and_every_page_is_screenshotted() {
    let Some(browser) =
        browser_for("the_owner_logs_in_with_the_mailed_code_and_every_page_is_screenshotted")
    else {
        return;
    };
    // The demo flow as a newcomer gets it (archive, then DKIM), so the message's page has
    // steps to show.
    let server = TestServer::start_capturing(|config| {
        config.demo.flow_steps = sluice::config::DemoConfig::default().flow_steps;
    });
    let demo = server.server.created_demo.clone().unwrap();
    let api = Api::demo(&server);
    let message = api.submit(crate::util::email("Order 4711 shipped"));
    let base = dashboard(&server);

    browser.open(&format!("{base}/"));
    assert!(browser.url().ends_with("/login"), "pages need a session");
    assert_screenshot(&browser.screenshot("dashboard-login"));
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    assert_screenshot(&browser.screenshot("dashboard-code"));
    enter_code(&browser, &code);
    assert_eq!(browser.url(), format!("{base}/"));
    assert!(
        browser.text().contains(&demo.dashboard_email),
        "{}",
        browser.text()
    );
    assert!(
        browser.find("svg").is_some(),
        "the overview draws its chart"
    );
    assert_screenshot(&browser.screenshot("dashboard-overview"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.store().message(&message).unwrap().unwrap().status != MessageStatus::Delivered {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    for (page, name, expect) in [
        ("/messages".to_string(), "messages", "Order 4711 shipped"),
        (
            format!("/messages/{message}"),
            "message",
            "Message to ann@example.net",
        ),
        ("/flows".to_string(), "flows", "default"),
        ("/templates".to_string(), "templates", "Templates"),
        ("/filters".to_string(), "filters", "Filter list"),
        ("/users".to_string(), "users", "demo@example.com"),
        ("/audit".to_string(), "audit", "logged in"),
        ("/sending".to_string(), "sending", "Sending"),
        (
            "/classifier".to_string(),
            "classifier",
            "built-in verdicts apply",
        ),
        ("/security".to_string(), "security", "Security"),
    ] {
        browser.open(&format!("{base}{page}"));
        assert_eq!(browser.url(), format!("{base}{page}"));
        let text = browser.text();
        assert!(text.contains(expect), "{page}: {text}");
        assert_screenshot(&browser.screenshot(&format!("dashboard-{name}")));
    }
    // The message's page shows it delivered, to the capture, with its events.
    browser.open(&format!("{base}/messages/{message}"));
    let text = browser.text();
    for shown in ["SUBMITTED", "PROCESSED", "DELIVERED", "sluice-capture"] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    // And what each step of its flow did, with its time.
    let steps = browser.text_of("#steps");
    assert_eq!(steps.matches("continued").count(), 2, "{steps}");
    assert!(
        steps.contains("archive") && steps.contains("dkim"),
        "{steps}"
    );
    assert!(steps.contains(" µs") || steps.contains(" ms"), "{steps}");
}

#[test]
fn wrong_reused_and_too_many_codes_open_no_session() {
    let Some(browser) = browser_for("wrong_reused_and_too_many_codes_open_no_session") else {
        return;
    };
    let server = TestServer::start_capturing(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let (login, password) = (demo.dashboard_email, demo.dashboard_password);

    // A wrong code counts down; the right one still works after it.
    let code = ask_for_code(&browser, &server, &login, &password, 0);
    let challenge = browser
        .cookie("sluice_login")
        .expect("the code form's challenge cookie");
    enter_code(&browser, wrong(&code));
    assert_eq!(browser.text_of("#error"), "Wrong code. 4 tries left.");
    assert_screenshot(&browser.screenshot("dashboard-wrong-code"));
    enter_code(&browser, &code);
    assert!(has_session(&browser, &server));
    browser.click("form[action='/logout'] button");
    assert!(!has_session(&browser, &server));

    // The same code again, with the challenge the browser held for it: spent.
    browser.set_cookie("sluice_login", &challenge);
    browser.open(&format!("{}/login/code", dashboard(&server)));
    enter_code(&browser, &code);
    let text = browser.text();
    assert!(text.contains("was already used"), "{text}");
    assert_screenshot(&browser.screenshot("dashboard-reused-code"));
    assert!(!has_session(&browser, &server));

    // Five wrong tries void the code.
    let code = ask_for_code(&browser, &server, &login, &password, 1);
    for _ in 0..4 {
        enter_code(&browser, wrong(&code));
    }
    enter_code(&browser, wrong(&code));
    let text = browser.text();
    assert!(text.contains("Too many wrong codes"), "{text}");
    assert_screenshot(&browser.screenshot("dashboard-too-many-codes"));
    assert!(!has_session(&browser, &server));
}

#[test]
fn an_expired_code_opens_no_session() {
    let Some(browser) = browser_for("an_expired_code_opens_no_session") else {
        return;
    };
    let server = TestServer::start_capturing(|config| config.dashboard.code_valid_secs = 1);
    let demo = server.server.created_demo.clone().unwrap();
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    enter_code(&browser, &code);
    assert_screenshot(&browser.screenshot("dashboard-expired-code"));
    assert!(!has_session(&browser, &server));
}

#[test]
fn a_viewer_gets_no_forms_a_tokenless_post_changes_nothing_and_an_owner_adds_and_removes() {
    let Some(browser) = browser_for(
        "a_viewer_gets_no_forms_a_tokenless_post_changes_nothing_and_an_owner_adds_and_removes",
    ) else {
        return;
    };
    let server = TestServer::start_capturing(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let account = demo.account_id;
    server
        .block_on(
            server
                .store()
                .add_filter(account, "gone@example.net", "hard-bounce", None, None),
        )
        .unwrap();
    let viewer = "viewer@example.com";
    let viewer_password = add_user(&server, viewer, sluice::store::Role::Viewer);
    let base = dashboard(&server);

    // The viewer sees the list but no form to change it, and a form forged in the page is
    // refused.
    let code = ask_for_code(&browser, &server, viewer, &viewer_password, 0);
    enter_code(&browser, &code);
    browser.open(&format!("{base}/filters"));
    assert!(browser.text().contains("gone@example.net"));
    assert!(browser.find("#add-filter").is_none());
    assert!(browser.find("form[action$='/remove']").is_none());
    assert_screenshot(&browser.screenshot("dashboard-filters-viewer"));
    browser.execute(
        "const form = document.createElement('form'); \
         form.method = 'post'; form.action = '/filters'; \
         const csrf = document.querySelector('[name=csrf]'); \
         form.innerHTML = '<input name=\"address\" value=\"forged@example.net\">' + \
           '<input type=\"hidden\" name=\"csrf\" value=\"' + (csrf ? csrf.value : '') + '\">'; \
         document.body.appendChild(form);",
    );
    browser.submit("address");
    assert_eq!(browser.text(), "Your role does not allow this change.");
    assert!(
        server
            .store()
            .filtered(account, "forged@example.net")
            .unwrap()
            .is_none()
    );
    browser.open(&format!("{base}/filters"));
    browser.click("form[action='/logout'] button");

    // The owner's form without its token is refused; with it, the address is added.
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    enter_code(&browser, &code);
    browser.open(&format!("{base}/filters"));
    browser.execute("document.querySelector('#add-filter [name=csrf]').remove();");
    browser.fill("address", "tokenless@example.net");
    browser.submit("address");
    assert_screenshot(&browser.screenshot("dashboard-csrf-refused"));
    assert!(
        server
            .store()
            .filtered(account, "tokenless@example.net")
            .unwrap()
            .is_none()
    );
    browser.open(&format!("{base}/filters"));
    browser.fill("address", "added@example.net");
    browser.submit("address");
    assert!(browser.text().contains("added@example.net"));
    assert!(
        server
            .store()
            .filtered(account, "added@example.net")
            .unwrap()
            .is_some()
    );

    // The customer's removal: the entry's own Remove button.
    let gone = server
        .store()
        .filtered(account, "gone@example.net")
        .unwrap()
        .expect("still filtered");
    browser.click(&format!(
        "form[action='/filters/{}/remove'] button",
        gone.id
    ));
    assert!(
        server
            .store()
            .filtered(account, "gone@example.net")
            .unwrap()
            .is_none()
    );
    browser.open(&format!("{base}/filters"));
    let text = browser.text();
    assert!(!text.contains("gone@example.net"), "{text}");
    assert!(text.contains("added@example.net"), "{text}");
    assert_screenshot(&browser.screenshot("dashboard-filters-owner"));
}

#[test]
fn a_template_is_previewed_by_the_template_step_and_saved() {
    let Some(browser) = browser_for("a_template_is_previewed_by_the_template_step_and_saved")
    else {
        return;
    };
    let server = TestServer::start_capturing(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    enter_code(&browser, &code);
    let base = dashboard(&server);

    browser.open(&format!("{base}/templates/0"));
    browser.fill("name", "welcome");
    browser.fill("subject", "Hello {{ name }}");
    browser.fill("html", "<p>Dear {{ name }}</p>");
    browser.fill("data", r#"{"name": "Ann"}"#);
    // The form has two buttons; the preview is the one pressed.
    browser.click("button[value=preview]");
    assert_eq!(browser.text_of("#preview-subject"), "Subject: Hello Ann");
    let html = browser.execute("return document.querySelector('#preview-html').srcdoc;");
    assert!(html.as_str().unwrap().contains("<p>Dear Ann</p>"), "{html}");
    // The preview sits below the editor: in view for the screenshot.
    browser.execute("document.querySelector('#preview-subject').scrollIntoView();");
    assert_screenshot(&browser.screenshot("dashboard-template-preview"));
    assert!(
        server
            .store()
            .templates_of(demo.account_id)
            .unwrap()
            .is_empty(),
        "a preview saves nothing"
    );

    browser.click("button[value=save]");
    let templates = server.store().templates_of(demo.account_id).unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].subject.as_deref(), Some("Hello {{ name }}"));
    assert_eq!(
        browser.url(),
        format!("{base}/templates/{}", templates[0].id)
    );
    assert_screenshot(&browser.screenshot("dashboard-template"));
}

/// Sets a `<select>` inside `form` (a CSS selector) to `value`, as choosing from the list does.
fn choose(browser: &Browser, form: &str, field: &str, value: &str) {
    let chosen = browser.execute(&format!(
        "const select = document.querySelector('{form} [name={field}]'); \
         select.value = '{value}'; return select.value;"
    ));
    assert_eq!(chosen, Value::from(value), "{form} {field}");
}

#[test]
fn a_flow_made_in_the_browser_takes_the_message_its_rule_routes_and_it_is_delivered() {
    let Some(browser) = browser_for(
        "a_flow_made_in_the_browser_takes_the_message_its_rule_routes_and_it_is_delivered",
    ) else {
        return;
    };
    let server = TestServer::start_capturing(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    enter_code(&browser, &code);
    let base = dashboard(&server);

    // A new flow, with an archive step whose configuration the step itself checked.
    browser.open(&format!("{base}/flows"));
    browser.fill("name", "Invoices");
    browser.submit("name");
    let flow = server
        .store()
        .flows_of(demo.account_id)
        .unwrap()
        .into_iter()
        .find(|flow| flow.name == "Invoices")
        .expect("the flow was made");
    assert_eq!(browser.url(), format!("{base}/flows/{}", flow.id));
    choose(&browser, "#add-step", "plugin", "archive");
    browser.fill("config", r#"{"retention": "P2Y"}"#);
    browser.submit("config");
    assert!(
        browser.text_of("[role=alert]").contains("P2Y"),
        "{}",
        browser.text()
    );
    browser.fill("config", r#"{"retention": "P1M"}"#);
    browser.submit("config");
    assert_eq!(browser.url(), format!("{base}/flows/{}", flow.id));
    // The page now has the archive step's form too: the new step's fields are named by form.
    choose(&browser, "#add-step", "plugin", "dkim");
    browser.fill_at("#add-step [name=config]", "{}");
    browser.click("#add-step button");
    let steps: Vec<_> = server
        .store()
        .flow(flow.id)
        .unwrap()
        .unwrap()
        .steps
        .into_iter()
        .map(|step| step.plugin)
        .collect();
    assert_eq!(steps, ["archive", "dkim"]);
    assert_screenshot(&browser.screenshot("dashboard-flow-editor"));

    // A rule sends invoices to it.
    browser.open(&format!("{base}/flows"));
    choose(&browser, "#add-rule", "flow", &flow.id.to_string());
    choose(&browser, "#add-rule", "type0", "header");
    choose(&browser, "#add-rule", "match0", "equals");
    browser.fill("name0", "X-Kind");
    browser.fill("value0", "invoice");
    browser.submit("name0");
    assert!(browser.url().starts_with(&format!("{base}/flows")));
    let rules = browser.text_of("#rules");
    assert!(
        rules.contains("X-Kind") && rules.contains("Invoices"),
        "{rules}"
    );
    assert_screenshot(&browser.screenshot("dashboard-flows-rules"));

    // Simulated first: the rule matches and the flow's steps run.
    browser.open(&format!("{base}/flows/simulate"));
    browser.fill("sender", "app@example.com");
    browser.fill("recipient", "ann@example.net");
    browser.fill("subject", "Invoice 17");
    browser.fill("headers", "X-Kind: invoice");
    browser.submit("sender");
    assert!(
        browser
            .text_of("#matched-rule")
            .starts_with("Rule 1 matched"),
        "{}",
        browser.text()
    );
    assert!(browser.text_of("#simulated-flow").contains("Invoices"));
    assert!(browser.text_of("#simulated-status").contains("PROCESSED"));
    // The result sits below the form: in view for the screenshot.
    browser.execute("document.querySelector('#simulation').scrollIntoView();");
    assert_screenshot(&browser.screenshot("dashboard-simulate"));

    // Sent through the API, it goes through the new flow and is delivered to the capture.
    let api = Api::demo(&server);
    let mut message = crate::util::email("Invoice 17");
    message["headers"] = json!([{"name": "X-Kind", "value": "invoice"}]);
    let id = api.submit(message);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.store().message(&id).unwrap().unwrap().status != MessageStatus::Delivered {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().flow_id,
        Some(flow.id)
    );
    browser.open(&format!("{base}/messages/{id}"));
    let text = browser.text();
    for shown in [
        "Invoices",
        "SUBMITTED",
        "PROCESSED",
        "DELIVERED",
        "sluice-capture",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    assert!(
        !text.contains("No archived copy") && !text.contains("Not signed"),
        "the new flow archived and signed it: {text}"
    );
    assert_screenshot(&browser.screenshot("dashboard-message-new-flow"));
}

#[test]
fn a_source_made_in_the_browser_gets_an_api_client_whose_secret_works_and_an_allowlist() {
    let Some(browser) = browser_for(
        "a_source_made_in_the_browser_gets_an_api_client_whose_secret_works_and_an_allowlist",
    ) else {
        return;
    };
    let server = TestServer::start_capturing(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    enter_code(&browser, &code);
    let base = dashboard(&server);

    browser.open(&format!("{base}/"));
    browser.click("a[href='/sources']");
    browser.fill_at("#new-source [name=name]", "Billing app");
    browser.click("#new-source button");
    let source = server
        .store()
        .sources_of(demo.account_id)
        .unwrap()
        .into_iter()
        .find(|source| source.name == "Billing app")
        .expect("the source was made");
    let section = format!("#source-{}", source.id);

    browser.fill_at(&format!("{section} [name=username]"), "billing");
    browser.click(&format!("{section} form[action$='/credentials'] button"));
    assert_eq!(browser.text_of("#issued-username"), "billing");
    let secret = browser.text_of("#issued-secret");
    assert_screenshot(&browser.screenshot("dashboard-sources-secret"));
    let api = Api::connect(&server, demo.account_id, "billing", &secret);
    assert_eq!(api.account, demo.account_id);
    // Shown once: the list does not hold it.
    browser.open(&format!("{base}/sources"));
    assert!(!browser.source().contains(&secret));

    browser.click(&format!("{section} [name=access][value=listed]"));
    browser.fill_at(
        &format!("{section} [name=networks]"),
        "192.0.2.0/24\nnot-a-network",
    );
    browser.click(&format!(
        "{section} form[action='/sources/{}'] button",
        source.id
    ));
    assert!(
        browser.text_of("[role=alert]").contains("not-a-network"),
        "{}",
        browser.text()
    );
    browser.open(&format!("{base}/sources"));
    browser.click(&format!("{section} [name=access][value=listed]"));
    browser.fill_at(&format!("{section} [name=networks]"), "192.0.2.0/24");
    browser.click(&format!(
        "{section} form[action='/sources/{}'] button",
        source.id
    ));
    let networks = server
        .store()
        .source(source.id)
        .unwrap()
        .unwrap()
        .allowed_networks
        .expect("a list");
    assert_eq!(networks, ["192.0.2.0/24".parse().unwrap()]);
    assert_screenshot(&browser.screenshot("dashboard-sources"));
}

#[test]
fn a_component_uploaded_in_the_browser_is_listed_and_offered_to_flows() {
    let Some(browser) =
        browser_for("a_component_uploaded_in_the_browser_is_listed_and_offered_to_flows")
    else {
        return;
    };
    let server = TestServer::start_capturing(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let code = ask_for_code(
        &browser,
        &server,
        &demo.dashboard_email,
        &demo.dashboard_password,
        0,
    );
    enter_code(&browser, &code);
    let base = dashboard(&server);
    let path = crate::util::guest(crate::util::guests::SUBJECT_PREFIX);
    let sha256 = sluice::plugin::hex_sha256(&std::fs::read(&path).unwrap());

    browser.open(&format!("{base}/plugins"));
    // A file input takes the file's path as typed keys, as chromedriver chooses a file.
    browser.fill("component", path.to_str().unwrap());
    browser.submit("component");
    assert_eq!(browser.url(), format!("{base}/plugins#plugin-{sha256}"));
    let row = browser.text_of(&format!("[id='plugin-{sha256}']"));
    assert!(row.contains("runs"), "{row}");
    assert!(
        server
            .store()
            .owns_plugin(demo.account_id, &sha256)
            .unwrap()
    );
    assert_screenshot(&browser.screenshot("dashboard-plugins"));

    let flow = server.store().flows_of(demo.account_id).unwrap()[0].id;
    browser.open(&format!("{base}/flows/{flow}"));
    choose(&browser, "#add-step", "plugin", &sha256);
}
