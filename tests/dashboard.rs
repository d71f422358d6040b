//! The dashboard over HTTP, as a browser without JavaScript uses it: a password, then the
//! code from the mail the platform sent through its own pipeline; sessions, CSRF, roles and
//! accounts kept apart. (The same paths in a real browser are in `browser`.)

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use sluice::store::{MessageStatus, NewUser, Role, StepResultOutcome};

use crate::util::{Api, TestServer, email, id_of, second_account};

/// A browser without JavaScript: its own cookies, no redirects followed (the tests look at them).
pub(crate) struct Browser {
    base: String,
    http: Client,
    pub(crate) cookies: HashMap<String, String>,
}

impl Browser {
    pub(crate) fn new(server: &TestServer) -> Self {
        Self {
            base: format!("http://{}", server.server.dashboard_addr.unwrap()),
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn keep_cookies(&mut self, response: &Response) {
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, content) = pair.split_once('=').unwrap();
            assert!(attributes.contains("HttpOnly"), "{value}");
            assert!(attributes.contains("SameSite=Strict"), "{value}");
            if content.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), content.to_string());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) fn get(&mut self, path: &str) -> Response {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .unwrap();
        self.keep_cookies(&response);
        response
    }

    pub(crate) fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .unwrap();
        self.keep_cookies(&response);
        response
    }

    /// Posts a body of its own content type (a `multipart/form-data` upload).
    pub(crate) fn post_raw(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        self.keep_cookies(&response);
        response
    }

    /// A page's text, after checking its status.
    pub(crate) fn page(&mut self, path: &str) -> String {
        let response = self.get(path);
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().unwrap()
    }

    /// Gives the password; the answer (a redirect to the code form when it was right).
    fn password(&mut self, email: &str, password: &str) -> Response {
        let form = self.page("/login");
        let token = hidden(&form, "form_token");
        self.post(
            "/login",
            &[
                ("email", email),
                ("password", password),
                ("form_token", &token),
            ],
        )
    }

    /// Logs in all the way with the code from the mail.
    pub(crate) fn log_in(&mut self, server: &TestServer, email: &str, password: &str) {
        let response = self.password(email, password);
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{:?}",
            response.text()
        );
        assert_eq!(response.headers()["location"], "/login/code");
        let code = mailed_code(server, email);
        let response = self.post("/login/code", &[("code", &code)]);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/");
        assert!(self.cookies.contains_key("sluice_session"));
    }

    /// The CSRF token of the logged-in layout.
    pub(crate) fn csrf(&mut self) -> String {
        let page = self.page("/");
        hidden(&page, "csrf")
    }
}

/// The value of the first hidden input named `name`.
pub(crate) fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_string()
}

/// The platform's newest mail to `to`, as spooled (the pipeline's copy of what was sent).
fn newest_system_mail(server: &TestServer, to: &str) -> String {
    let store = server.store();
    let account = store
        .platform_record("system-account")
        .unwrap()
        .expect("the platform account exists once it mailed something");
    let mut mine: Vec<_> = store
        .messages_of(account)
        .unwrap()
        .into_iter()
        .filter(|message| message.recipient == to)
        .collect();
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    let newest = mine.last().expect("a mail to the user");
    assert_eq!(newest.submitted_over, "system");
    let raw = store.body(&newest.id).unwrap().unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    // Long lines (the links) travel quoted-printable: read the text as a mail client would.
    format!(
        "Subject: {}\n\n{}",
        parsed.subject().unwrap_or_default(),
        parsed.body_text(0).unwrap_or_default()
    )
}

/// The six-digit code in the newest login mail to `to`.
fn mailed_code(server: &TestServer, to: &str) -> String {
    let mail = newest_system_mail(server, to);
    assert!(mail.contains("Subject: Your Sluice login code"), "{mail}");
    mail.lines()
        .map(str::trim)
        .find(|line| line.len() == 6 && line.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {mail}"))
        .to_string()
}

/// The link in the newest mail to `to` that sets a password, as a path.
fn mailed_link(server: &TestServer, to: &str) -> String {
    let mail = newest_system_mail(server, to);
    let start = mail
        .find("/reset/")
        .unwrap_or_else(|| panic!("no link in {mail}"));
    mail[start..].split_whitespace().next().unwrap().to_string()
}

pub(crate) fn demo_login(server: &TestServer) -> (String, String) {
    let demo = server.server.created_demo.clone().unwrap();
    (demo.dashboard_email, demo.dashboard_password)
}

/// A user with a password, made directly in the store.
pub(crate) fn add_user(
    server: &TestServer,
    account: Option<u64>,
    email: &str,
    role: Role,
) -> String {
    let password = format!("{email}-password-1");
    let hash = sluice::store::hash_secret(&password).unwrap();
    server
        .block_on(server.store().create_user(NewUser {
            account_id: account,
            email: email.into(),
            role,
            password_hash: Some(hash),
        }))
        .unwrap();
    password
}

/// A browser logged in as a new user of `account` (none: an operator) with `role`.
pub(crate) fn logged_in_as(
    server: &TestServer,
    account: Option<u64>,
    email: &str,
    role: Role,
) -> Browser {
    let password = add_user(server, account, email, role);
    let mut browser = Browser::new(server);
    browser.log_in(server, email, &password);
    browser
}

#[test]
fn a_password_then_the_mailed_code_opens_a_session() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    assert_eq!(
        browser.get("/").status(),
        StatusCode::SEE_OTHER,
        "pages need a session"
    );
    browser.log_in(&server, &login, &password);
    let overview = browser.page("/");
    assert!(overview.contains(&login), "{overview}");
    assert!(overview.contains("<svg"), "the overview draws its chart");

    // The code went out as a message of the platform's account, with events like any other.
    let store = server.store();
    let platform = store.platform_record("system-account").unwrap().unwrap();
    let sent = store.messages_of(platform).unwrap();
    assert_eq!(sent.len(), 1);
    let id = sent[0].id.clone();
    server.wait_until_done(&id);
    let kinds: Vec<_> = store
        .events(&id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(&kinds[..2], ["SUBMITTED", "PROCESSED"], "{kinds:?}");

    // The login is in the audit log, after the code was mailed.
    let audit = browser.page("/audit");
    assert!(
        audit.contains("password accepted, code mailed") && audit.contains("logged in"),
        "{audit}"
    );
}

#[test]
fn wrong_reused_and_too_many_codes_are_refused() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);

    // A wrong code counts down; the right one still works after it.
    let mut browser = Browser::new(&server);
    browser.password(&login, &password);
    let code = mailed_code(&server, &login);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let page = browser
        .post("/login/code", &[("code", wrong)])
        .text()
        .unwrap();
    assert!(page.contains("Wrong code. 4 tries left."), "{page}");
    let challenge = browser.cookies["sluice_login"].clone();
    let response = browser.post("/login/code", &[("code", &code)]);
    assert_eq!(response.headers()["location"], "/");

    // The same code again, with the same challenge: spent.
    let mut replay = Browser::new(&server);
    replay.cookies.insert("sluice_login".into(), challenge);
    let page = replay
        .post("/login/code", &[("code", &code)])
        .text()
        .unwrap();
    assert!(page.contains("was already used"), "{page}");
    assert!(!replay.cookies.contains_key("sluice_session"));

    // Five wrong tries void the code: the right one no longer opens a session, even from a
    // client that keeps the challenge cookie the page cleared.
    let mut guesser = Browser::new(&server);
    guesser.password(&login, &password);
    let code = mailed_code(&server, &login);
    let challenge = guesser.cookies["sluice_login"].clone();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        guesser.post("/login/code", &[("code", wrong)]);
    }
    let page = guesser
        .post("/login/code", &[("code", wrong)])
        .text()
        .unwrap();
    assert!(page.contains("Too many wrong codes"), "{page}");
    guesser.cookies.insert("sluice_login".into(), challenge);
    let page = guesser
        .post("/login/code", &[("code", &code)])
        .text()
        .unwrap();
    assert!(page.contains("Too many wrong codes"), "{page}");
    assert!(!guesser.cookies.contains_key("sluice_session"));
}

#[test]
fn a_new_code_voids_the_old_and_codes_expire() {
    let server = TestServer::start(|config| config.dashboard.code_valid_secs = 1);
    let (login, password) = demo_login(&server);
    let mut first = Browser::new(&server);
    first.password(&login, &password);
    let old = mailed_code(&server, &login);
    let mut second = Browser::new(&server);
    second.password(&login, &password);
    let page = first.post("/login/code", &[("code", &old)]).text().unwrap();
    assert!(page.contains("replaced by a newer one"), "{page}");

    let new = mailed_code(&server, &login);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The browser dropped its cookie with the code's time; a client that kept it is refused.
    let page = second
        .post("/login/code", &[("code", &new)])
        .text()
        .unwrap();
    assert!(!second.cookies.contains_key("sluice_session"), "{page}");
}

#[test]
fn an_unknown_address_is_answered_like_a_wrong_password() {
    let server = TestServer::start(|_| {});
    let (login, _) = demo_login(&server);
    let strip = |page: String| {
        let token = hidden(&page, "form_token");
        page.replace(&token, "TOKEN")
    };
    let mut browser = Browser::new(&server);
    let wrong_password = browser.password(&login, "not the password");
    assert_eq!(wrong_password.status(), StatusCode::OK);
    let wrong_password = strip(wrong_password.text().unwrap()).replace(&login, "ADDRESS");
    let unknown = browser.password("nobody@example.org", "not the password");
    assert_eq!(unknown.status(), StatusCode::OK);
    let unknown = strip(unknown.text().unwrap()).replace("nobody@example.org", "ADDRESS");
    assert_eq!(wrong_password, unknown);
    assert!(unknown.contains("Wrong e-mail address or password."));
    // No code was mailed for either.
    assert_eq!(
        server.store().platform_record("system-account").unwrap(),
        None
    );
}

#[test]
fn a_login_form_without_its_token_is_refused() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    let response = browser.post(
        "/login",
        &[
            ("email", &login),
            ("password", &password),
            ("form_token", "forged"),
        ],
    );
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key("sluice_login"));
}

#[test]
fn a_viewer_sees_but_cannot_change_and_forms_need_their_csrf_token() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let entry = server
        .block_on(server.store().add_filter(
            demo.account_id,
            "gone@example.net",
            "hard-bounce",
            None,
            None,
        ))
        .unwrap();
    let viewer_password = add_user(
        &server,
        Some(demo.account_id),
        "viewer@example.com",
        Role::Viewer,
    );

    let mut viewer = Browser::new(&server);
    viewer.log_in(&server, "viewer@example.com", &viewer_password);
    let page = viewer.page("/filters");
    assert!(page.contains("gone@example.net"), "{page}");
    assert!(
        !page.contains("/remove"),
        "no removal form for a viewer: {page}"
    );
    assert!(!page.contains("id=\"add-filter\""), "{page}");
    let csrf = viewer.csrf();
    let forged = viewer.post(&format!("/filters/{}/remove", entry.id), &[("csrf", &csrf)]);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = viewer.post("/filters", &[("address", "x@example.net"), ("csrf", &csrf)]);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = viewer.post(
        "/users",
        &[
            ("email", "x@example.net"),
            ("role", "owner"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        server
            .store()
            .filtered(demo.account_id, "gone@example.net")
            .unwrap()
            .is_some()
    );

    // The owner can, but only with the session's token.
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let without = owner.post(&format!("/filters/{}/remove", entry.id), &[("csrf", "")]);
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    let no_field = owner.post(&format!("/filters/{}/remove", entry.id), &[]);
    assert_eq!(no_field.status(), StatusCode::FORBIDDEN);
    let other_sessions_token =
        owner.post(&format!("/filters/{}/remove", entry.id), &[("csrf", &csrf)]);
    assert_eq!(other_sessions_token.status(), StatusCode::FORBIDDEN);
    assert!(
        server
            .store()
            .filtered(demo.account_id, "gone@example.net")
            .unwrap()
            .is_some()
    );
    let csrf = owner.csrf();
    let removed = owner.post(&format!("/filters/{}/remove", entry.id), &[("csrf", &csrf)]);
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert!(
        server
            .store()
            .filtered(demo.account_id, "gone@example.net")
            .unwrap()
            .is_none()
    );
    let added = owner.post(
        "/filters",
        &[("address", "Manual@Example.net"), ("csrf", &csrf)],
    );
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert!(owner.page("/filters").contains("manual@example.net"));
}

#[test]
fn another_accounts_messages_and_users_stay_out_of_sight() {
    let server = TestServer::start(|_| {});
    let demo_api = Api::demo(&server);
    let id = demo_api.submit(email("for account one only"));
    let other = second_account(&server);
    let other_password = add_user(
        &server,
        Some(other.account),
        "other@example.com",
        Role::Owner,
    );

    let mut browser = Browser::new(&server);
    browser.log_in(&server, "other@example.com", &other_password);
    assert_eq!(
        browser.get(&format!("/messages/{id}")).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser.get(&format!("/messages/{id}/archive")).status(),
        StatusCode::NOT_FOUND
    );
    let list = browser.page("/messages");
    assert!(!list.contains("for account one only"), "{list}");
    let users = browser.page("/users");
    assert!(!users.contains("demo@example.com"), "{users}");
    // The demo owner is user 1; another account's owner cannot touch it.
    let csrf = browser.csrf();
    let response = browser.post("/users/1/remove", &[("csrf", &csrf)]);
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(server.store().user(1).unwrap().is_some());
}

#[test]
fn messages_are_found_and_shown_with_their_events() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let mut tagged = email("Invoice 42");
    tagged["tags"] = serde_json::json!(["billing"]);
    let invoice = api.submit(tagged);
    api.submit(email("Newsletter"));
    server.wait_until_done(&invoice);

    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    browser.log_in(&server, &login, &password);
    let found = browser.page("/messages?subject=invoice");
    assert!(
        found.contains("Invoice 42") && !found.contains("Newsletter"),
        "{found}"
    );
    let found = browser.page("/messages?tag=billing");
    assert!(
        found.contains("Invoice 42") && !found.contains("Newsletter"),
        "{found}"
    );
    let all = browser.page("/messages");
    assert!(
        all.contains("Invoice 42") && all.contains("Newsletter"),
        "{all}"
    );
    let page = browser.page(&format!("/messages/{invoice}"));
    assert!(
        page.contains("SUBMITTED") && page.contains("PROCESSED"),
        "{page}"
    );

    let overview = browser.page("/?days=1");
    let totals = &overview[overview.find("All flows").unwrap()..];
    assert!(totals.starts_with("All flows</th><td>2</td>"), "{totals}");
}

#[test]
fn a_delivered_messages_page_shows_each_steps_outcome_time_and_fuel() {
    let server = TestServer::start_capturing(|config| {
        config.demo.flow_steps = sluice::config::DemoConfig::default().flow_steps;
        config.runtime.fuel = Some(100_000_000);
    });
    let api = Api::demo(&server);
    let id = api.submit(email("Timed"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.store().message(&id).unwrap().unwrap().status != MessageStatus::Delivered {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let record = server.store().message(&id).unwrap().unwrap();
    assert_eq!(record.steps.len(), 2, "{:?}", record.steps);
    for (index, step) in record.steps.iter().enumerate() {
        assert_eq!(usize::from(step.number), index + 1);
        assert_eq!(step.outcome, StepResultOutcome::Continued);
        assert!(step.micros > 0, "{step:?}");
        assert!(step.fuel.is_some_and(|fuel| fuel > 0), "{step:?}");
    }

    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    browser.log_in(&server, &login, &password);
    let page = browser.page(&format!("/messages/{id}"));
    let table = &page[page.find("<table id=\"steps\">").expect("a step table")..];
    let table = &table[..table.find("</table>").unwrap()];
    for step in &record.steps {
        let micros = step.micros;
        let time = if micros < 1000 {
            format!("{micros} µs")
        } else {
            format!("{}.{:03} ms", micros / 1000, micros % 1000)
        };
        let fuel = step.fuel.unwrap().to_string();
        assert!(
            table.contains(&step.plugin) && table.contains(&time) && table.contains(&fuel),
            "{table}"
        );
    }
    assert_eq!(table.matches("<td>continued</td>").count(), 2, "{table}");
}

#[test]
fn logging_out_everywhere_and_a_new_password_end_sessions() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);
    let mut laptop = Browser::new(&server);
    laptop.log_in(&server, &login, &password);
    let mut phone = Browser::new(&server);
    phone.log_in(&server, &login, &password);
    let csrf = phone.csrf();
    let response = phone.post("/logout/everywhere", &[("csrf", &csrf)]);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(laptop.get("/").status(), StatusCode::SEE_OTHER);
    assert_eq!(phone.get("/").status(), StatusCode::SEE_OTHER);

    // A reset link by mail sets a new password; the old one stops working.
    laptop.log_in(&server, &login, &password);
    let mut browser = Browser::new(&server);
    let form = browser.page("/reset");
    let token = hidden(&form, "form_token");
    let page = browser
        .post("/reset", &[("email", &login), ("form_token", &token)])
        .text()
        .unwrap();
    assert!(page.contains("If a user has this address"), "{page}");
    let link = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mail = newest_system_mail(&server, &login);
            if mail.contains("Set a new Sluice password") {
                break mailed_link(&server, &login);
            }
            assert!(std::time::Instant::now() < deadline, "no reset mail");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let form = browser.page(&link);
    let token = hidden(&form, "form_token");
    let new_password = "a much longer new password";
    let page = browser
        .post(
            &link,
            &[
                ("password", new_password),
                ("confirm", new_password),
                ("form_token", &token),
            ],
        )
        .text()
        .unwrap();
    assert!(page.contains("Your password is set"), "{page}");
    assert_eq!(
        laptop.get("/").status(),
        StatusCode::SEE_OTHER,
        "sessions end with the old password"
    );
    let refused = browser.password(&login, &password);
    assert_eq!(refused.status(), StatusCode::OK);
    browser.log_in(&server, &login, new_password);
    // The link works once.
    let form = browser.page(&link);
    let token = hidden(&form, "form_token");
    let page = browser
        .post(
            &link,
            &[
                ("password", "yet another password"),
                ("confirm", "yet another password"),
                ("form_token", &token),
            ],
        )
        .text()
        .unwrap();
    assert!(page.contains("expired or was already used"), "{page}");
}

#[test]
fn pages_carry_headers_that_keep_them_private() {
    let server = TestServer::start(|_| {});
    let mut browser = Browser::new(&server);
    let response = browser.get("/login");
    let headers = response.headers();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(browser.get("/nothing-here").status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_template_is_made_previewed_by_the_template_step_and_saved() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    browser.log_in(&server, &login, &password);
    let csrf = browser.csrf();
    let form = |action: &'static str, html: &'static str| {
        vec![
            ("name", "welcome"),
            ("subject", "Hello {{ name }}"),
            ("html", html),
            ("text", ""),
            ("data", r#"{"name": "Ann"}"#),
            ("action", action),
        ]
    };
    let mut fields = form("preview", "<p>Dear {{ name }}</p>{{ message.html }}");
    fields.push(("csrf", &csrf));
    let page = browser.post("/templates/0", &fields).text().unwrap();
    assert!(
        page.contains("<strong>Subject:</strong> Hello Ann"),
        "{page}"
    );
    // The html preview sits escaped in a sandboxed frame's srcdoc.
    assert!(
        page.contains("&lt;p&gt;Dear Ann&lt;&#x2f;p&gt;")
            || page.contains("&lt;p&gt;Dear Ann&lt;/p&gt;"),
        "{page}"
    );
    assert!(
        page.contains("submitted message"),
        "the sample message's html was reused: {page}"
    );
    assert!(
        server.store().templates_of(1).unwrap().is_empty(),
        "a preview saves nothing"
    );

    // A syntax error is named with its part, as the API names it.
    let mut fields = form("save", "<p>{% if %}</p>");
    fields.push(("csrf", &csrf));
    let page = browser.post("/templates/0", &fields).text().unwrap();
    assert!(page.contains("html"), "{page}");
    assert!(server.store().templates_of(1).unwrap().is_empty());

    let mut fields = form("save", "<p>Dear {{ name }}</p>");
    fields.push(("csrf", &csrf));
    let saved = browser.post("/templates/0", &fields);
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let templates = server.store().templates_of(1).unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].subject.as_deref(), Some("Hello {{ name }}"));
    assert!(browser.page("/templates").contains("welcome"));

    // A viewer reads the template but neither saves nor previews it: a preview runs the
    // template step, a simulation, which the access table gives to senders.
    let mut viewer = logged_in_as(&server, Some(1), "viewer@example.com", Role::Viewer);
    let csrf = viewer.csrf();
    let path = format!("/templates/{}", templates[0].id);
    let shown = viewer.page(&path);
    assert!(shown.contains("Hello {{ name }}"), "{shown}");
    assert!(
        !shown.contains("value=\"save\"") && !shown.contains("value=\"preview\""),
        "{shown}"
    );
    let mut fields = form("save", "<p>changed</p>");
    fields.push(("csrf", &csrf));
    assert_eq!(viewer.post(&path, &fields).status(), StatusCode::FORBIDDEN);
    let mut fields = form("preview", "<p>Dear {{ name }}</p>");
    fields.push(("csrf", &csrf));
    let refused = viewer.post(&path, &fields);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(!refused.text().unwrap().contains("Dear Ann"));
    assert_eq!(
        server.store().templates_of(1).unwrap()[0].html.as_deref(),
        Some("<p>Dear {{ name }}</p>")
    );
}

#[test]
fn only_an_operator_purges_the_captured_demo_mail_and_the_messages_stay() {
    let server = TestServer::start_capturing(|_| {});
    let api = Api::demo(&server);
    let id = api.submit(email("Captured"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.captured_to("ann@example.net").is_empty() {
        assert!(std::time::Instant::now() < deadline, "not captured");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The account's owner reaches neither the page nor the purge.
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let csrf = owner.csrf();
    assert_eq!(owner.get("/operator").status(), StatusCode::FORBIDDEN);
    let refused = owner.post("/operator/capture/purge", &[("csrf", &csrf)]);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(!server.captured_to("ann@example.net").is_empty());

    let mut operator = logged_in_as(&server, None, "operator@example.com", Role::Operator);
    let page = operator.page("/operator");
    assert!(page.contains("id=\"purge-capture\""), "{page}");
    let without_token = operator.post("/operator/capture/purge", &[]);
    assert_eq!(without_token.status(), StatusCode::FORBIDDEN);
    assert!(!server.captured_to("ann@example.net").is_empty());
    let csrf = operator.csrf();
    let purged = operator.post("/operator/capture/purge", &[("csrf", &csrf)]);
    assert_eq!(purged.status(), StatusCode::SEE_OTHER);
    assert!(server.captured_to("ann@example.net").is_empty());
    let page = operator.page("/operator");
    assert!(page.contains(">0 copies kept."), "{page}");
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::Delivered,
        "the message's record stays"
    );
}

#[test]
fn an_operator_sees_every_account_and_the_platform_and_changes_no_customer_mail() {
    let server = TestServer::start(|_| {});
    let other = second_account(&server);
    let id = other.submit(email("for account two"));
    server.wait_until_done(&id);
    let password = add_user(&server, None, "ops@example.com", Role::Operator);
    let mut operator = Browser::new(&server);
    operator.log_in(&server, "ops@example.com", &password);
    let platform = operator.page("/operator");
    assert!(
        platform.contains("demo") && platform.contains("other"),
        "{platform}"
    );
    assert!(
        platform.contains("template"),
        "the built-in steps are listed: {platform}"
    );

    // It chooses account 2 and reads its messages, but may not change its filter list.
    let csrf = operator.csrf();
    let chosen = operator.post("/account", &[("account", "2"), ("csrf", &csrf)]);
    assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
    assert!(operator.page("/messages").contains("for account two"));
    let refused = operator.post("/filters", &[("address", "x@example.net"), ("csrf", &csrf)]);
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // A customer's owner has no platform page.
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    assert_eq!(owner.get("/operator").status(), StatusCode::FORBIDDEN);
    let csrf = owner.csrf();
    let response = owner.post("/account", &[("account", "2"), ("csrf", &csrf)]);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[test]
fn an_invitation_mails_a_link_that_sets_the_password_and_invitations_are_bounded() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let csrf = owner.csrf();
    let invited = owner.post(
        "/users",
        &[
            ("email", "new@example.com"),
            ("role", "editor"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(invited.status(), StatusCode::SEE_OTHER);
    assert!(owner.page("/users").contains("new@example.com"));
    let mail = newest_system_mail(&server, "new@example.com");
    assert!(
        mail.contains("You are invited to Sluice") && mail.contains("editor"),
        "{mail}"
    );

    let link = mailed_link(&server, "new@example.com");
    let mut newcomer = Browser::new(&server);
    let form = newcomer.page(&link);
    let token = hidden(&form, "form_token");
    let chosen = "the newcomer's own password";
    let page = newcomer
        .post(
            &link,
            &[
                ("password", chosen),
                ("confirm", chosen),
                ("form_token", &token),
            ],
        )
        .text()
        .unwrap();
    assert!(page.contains("Your password is set"), "{page}");
    newcomer.log_in(&server, "new@example.com", chosen);
    assert!(newcomer.page("/").contains("(editor)"));

    // An account cannot turn the platform's mail into a spam cannon.
    let mut refused = 0;
    for n in 0..25 {
        let address = format!("someone{n}@example.com");
        let response = owner.post(
            "/users",
            &[("email", &address), ("role", "viewer"), ("csrf", &csrf)],
        );
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(refused, 6, "20 invitations an hour, one already sent");
}

/// The authenticator code of a hex secret now (what the user's phone shows).
fn authenticator_code(secret_hex: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sluice::totp::code_at(
        &hex::decode(secret_hex).unwrap(),
        now / sluice::totp::STEP_SECS,
    )
}

#[test]
fn an_authenticator_app_replaces_the_mailed_code_and_recovery_codes_work_once() {
    let server = TestServer::start(|_| {});
    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    browser.log_in(&server, &login, &password);
    let page = browser.page("/security");
    let secret = hidden(&page, "secret");
    let csrf = hidden(&page, "csrf");
    let wrong = browser
        .post(
            "/security/authenticator",
            &[("secret", &secret), ("code", "12345"), ("csrf", &csrf)],
        )
        .text()
        .unwrap();
    assert!(wrong.contains("does not match"), "{wrong}");
    let code = authenticator_code(&secret);
    let done = browser
        .post(
            "/security/authenticator",
            &[("secret", &secret), ("code", &code), ("csrf", &csrf)],
        )
        .text()
        .unwrap();
    let recovery: Vec<String> = done
        .split("<li><code>")
        .skip(1)
        .map(|rest| rest[..rest.find('<').unwrap()].to_string())
        .collect();
    assert_eq!(recovery.len(), 10, "{done}");
    let platform = server
        .store()
        .platform_record("system-account")
        .unwrap()
        .unwrap();
    let mails_before = server.store().messages_of(platform).unwrap().len();

    // The next login asks for the app's code and mails nothing.
    let mut phone = Browser::new(&server);
    let response = phone.password(&login, &password);
    assert_eq!(response.headers()["location"], "/login/code");
    assert!(phone.page("/login/code").contains("authenticator app"));
    assert_eq!(
        server.store().messages_of(platform).unwrap().len(),
        mails_before
    );
    // The code the set-up used is spent: the same time step is never taken twice.
    let page = phone
        .post("/login/code", &[("code", &code)])
        .text()
        .unwrap();
    assert!(page.contains("Wrong code"), "{page}");
    let response = phone.post("/login/code", &[("code", &recovery[0].to_uppercase())]);
    assert_eq!(
        response.headers()["location"],
        "/",
        "a recovery code, in any case"
    );

    // A recovery code works once.
    let mut again = Browser::new(&server);
    again.password(&login, &password);
    let page = again
        .post("/login/code", &[("code", &recovery[0])])
        .text()
        .unwrap();
    assert!(page.contains("Wrong code"), "{page}");
    // Asking for a mail instead mails a code that works in this browser.
    let response = again.post("/login/mail", &[]);
    assert_eq!(response.headers()["location"], "/login/code");
    let mailed = mailed_code(&server, &login);
    let response = again.post("/login/code", &[("code", &mailed)]);
    assert_eq!(response.headers()["location"], "/");
    assert_eq!(
        server
            .store()
            .user(1)
            .unwrap()
            .unwrap()
            .recovery_codes
            .len(),
        9
    );
}

#[test]
fn sending_shows_the_records_to_publish_and_webhooks_of_the_account_only() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let made = api
        .post("sender_identities")
        .json(&serde_json::json!({ "domain": "shop.example" }))
        .send()
        .unwrap();
    assert!(made.status().is_success(), "{:?}", made.text());
    let webhook = api
        .post("webhooks")
        .json(&serde_json::json!({ "url": "http://127.0.0.1:9/hook", "eventTypes": ["DELIVERED"] }))
        .send()
        .unwrap();
    assert!(webhook.status().is_success(), "{:?}", webhook.text());
    let webhook: serde_json::Value = webhook.json().unwrap();
    // (Made before any login: the platform's own account takes the next number then.)
    let other = second_account(&server);

    let (login, password) = demo_login(&server);
    let mut browser = Browser::new(&server);
    browser.log_in(&server, &login, &password);
    let page = browser.page("/sending");
    assert!(
        page.contains("shop.example") && page.contains("_domainkey.shop.example"),
        "{page}"
    );
    assert!(page.contains("not checked yet"), "{page}");
    assert!(
        // (minijinja writes the slashes as &#x2f;, which a browser shows as '/'.)
        page.contains("127.0.0.1:9&#x2f;hook") && page.contains("Receives DELIVERED"),
        "{page}"
    );

    // Another account's owner sees none of it and cannot reach the webhook's dead letters.
    let other_password = add_user(
        &server,
        Some(other.account),
        "other@example.com",
        Role::Owner,
    );
    let mut stranger = Browser::new(&server);
    stranger.log_in(&server, "other@example.com", &other_password);
    let page = stranger.page("/sending");
    assert!(
        !page.contains("shop.example") && !page.contains("127.0.0.1:9"),
        "{page}"
    );
    let csrf = stranger.csrf();
    let path = format!("/sending/webhooks/{}/dead/1/redeliver", id_of(&webhook));
    assert_eq!(
        stranger.post(&path, &[("csrf", &csrf)]).status(),
        StatusCode::NOT_FOUND
    );
}
