//! Changing an account from the dashboard's pages, over HTTP as a browser without JavaScript
//! does: flows, their steps and the flow rules, and simulating a message against them. Each
//! change is checked by the API's own rules, refused to roles that may not make it and to
//! forms without the session's CSRF token. (The main path in a real browser is in `browser`.)

use reqwest::StatusCode;
use sluice::flow::rules::{Condition, FlowRule, Routing};
use sluice::store::{Flow, Flowstep, Role, StoreError};

use crate::dashboard::{Browser, add_user, demo_login, hidden, logged_in_as};
use crate::util::{TestServer, guests, second_account};

/// The id of the flow a `POST /flows` redirected to.
fn created_flow(response: reqwest::blocking::Response) -> u64 {
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        response.text()
    );
    let location = response.headers()["location"].to_str().unwrap().to_string();
    location
        .strip_prefix("/flows/")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{location}"))
}

/// A second account's API client and a flow of that account.
fn foreign_flow(server: &TestServer) -> (crate::util::Api, u64) {
    let other = second_account(server);
    let flow = server
        .block_on(server.store().create_flow(Flow {
            id: 0,
            account_id: other.account,
            name: "theirs".into(),
            steps: Vec::new(),
            expiry_hours: None,
        }))
        .unwrap()
        .id;
    (other, flow)
}

/// The edition of flow `flow` its page shows, which the forms changing a step by position
/// send back.
fn flow_edition(browser: &mut Browser, flow: u64) -> String {
    hidden(&browser.page(&format!("/flows/{flow}")), "edition")
}

/// The edition of the account's rules the flows page shows.
fn rules_edition(browser: &mut Browser) -> String {
    hidden(&browser.page("/flows"), "edition")
}

/// Posts a change by position (`/up`, `/down`, `/remove`) from a page showing `edition`.
fn change_at(
    browser: &mut Browser,
    path: &str,
    csrf: &str,
    edition: &str,
) -> reqwest::blocking::Response {
    browser.post(path, &[("csrf", csrf), ("edition", edition)])
}

fn plugins_of(server: &TestServer, flow: u64) -> Vec<String> {
    server
        .store()
        .flow(flow)
        .unwrap()
        .unwrap()
        .steps
        .into_iter()
        .map(|step| step.plugin)
        .collect()
}

#[test]
fn an_editor_builds_a_flow_its_steps_checked_as_the_api_checks_them() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    // Made first: the platform's own account comes with the first login code.
    let (_, theirs) = foreign_flow(&server);
    let password = add_user(
        &server,
        Some(demo.account_id),
        "editor@example.com",
        Role::Editor,
    );
    let mut editor = Browser::new(&server);
    editor.log_in(&server, "editor@example.com", &password);
    let csrf = editor.csrf();

    let empty = editor.post("/flows", &[("name", "  "), ("csrf", &csrf)]);
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let flow = created_flow(editor.post("/flows", &[("name", "Invoices"), ("csrf", &csrf)]));
    let page = editor.page(&format!("/flows/{flow}"));
    assert!(
        page.contains("Invoices") && page.contains("id=\"add-step\""),
        "{page}"
    );
    // The picker offers the built-in steps.
    for builtin in ["archive", "dkim", "template", "tracking"] {
        assert!(
            page.contains(&format!("<option value=\"{builtin}\"")),
            "{builtin}: {page}"
        );
    }

    // A configuration the archive step refuses is refused here with the step's own words,
    // as the API refuses it; the form keeps what was typed.
    let path = format!("/flows/{flow}/steps");
    let refused = editor.post(
        &path,
        &[
            ("plugin", "archive"),
            ("config", r#"{"retention": "P2Y"}"#),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = refused.text().unwrap();
    assert!(
        page.contains("steps[0].config") && page.contains("P2Y"),
        "{page}"
    );
    let not_json = editor.post(
        &path,
        &[
            ("plugin", "archive"),
            ("config", "{retention"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert!(not_json.text().unwrap().contains("not JSON"));
    let unknown = editor.post(&path, &[("plugin", "no-such-plugin"), ("csrf", &csrf)]);
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(
        unknown
            .text()
            .unwrap()
            .contains("no plugin of this account")
    );
    assert!(
        plugins_of(&server, flow).is_empty(),
        "nothing refused was kept"
    );

    for (plugin, config) in [
        ("archive", r#"{"retention": "P1M"}"#),
        ("tracking", "{}"),
        ("dkim", ""),
    ] {
        let added = editor.post(
            &path,
            &[("plugin", plugin), ("config", config), ("csrf", &csrf)],
        );
        assert_eq!(
            added.status(),
            StatusCode::SEE_OTHER,
            "{plugin}: {:?}",
            added.text()
        );
    }
    assert_eq!(plugins_of(&server, flow), ["archive", "tracking", "dkim"]);

    // Reordered, edited (with a condition in Flowmailer's shape), removed.
    let edition = flow_edition(&mut editor, flow);
    let moved = change_at(
        &mut editor,
        &format!("/flows/{flow}/steps/2/up"),
        &csrf,
        &edition,
    );
    assert_eq!(moved.status(), StatusCode::SEE_OTHER);
    assert_eq!(plugins_of(&server, flow), ["archive", "dkim", "tracking"]);
    let edition = flow_edition(&mut editor, flow);
    let moved = change_at(
        &mut editor,
        &format!("/flows/{flow}/steps/0/down"),
        &csrf,
        &edition,
    );
    assert_eq!(moved.status(), StatusCode::SEE_OTHER);
    assert_eq!(plugins_of(&server, flow), ["dkim", "archive", "tracking"]);
    let edition = flow_edition(&mut editor, flow);
    let past_the_end = change_at(
        &mut editor,
        &format!("/flows/{flow}/steps/2/down"),
        &csrf,
        &edition,
    );
    assert_eq!(past_the_end.status(), StatusCode::NOT_FOUND);
    let no_such_change = change_at(
        &mut editor,
        &format!("/flows/{flow}/steps/1/sideways"),
        &csrf,
        &edition,
    );
    assert_eq!(no_such_change.status(), StatusCode::NOT_FOUND);

    let saved = editor.post(
        &format!("/flows/{flow}/steps/2"),
        &[
            ("plugin", "tracking"),
            ("config", r#"{"opens": false}"#),
            (
                "enabled_when",
                r#"{"type":"header","matchType":"exists","name":"X-Track"}"#,
            ),
            ("csrf", &csrf),
            ("edition", &edition),
        ],
    );
    assert_eq!(saved.status(), StatusCode::SEE_OTHER, "{:?}", saved.text());
    let stored = server.store().flow(flow).unwrap().unwrap();
    assert_eq!(stored.steps[2].config, serde_json::json!({"opens": false}));
    assert_eq!(
        stored.steps[2].enabled_when,
        Some(Condition::Header {
            name: "X-Track".into(),
            equals: None,
            contains: None,
        })
    );
    // The page shows the condition back in the shape it was typed in.
    let page = editor.page(&format!("/flows/{flow}"));
    assert!(page.contains("X-Track"), "{page}");
    let edition = flow_edition(&mut editor, flow);
    let bad_condition = editor.post(
        &format!("/flows/{flow}/steps/2"),
        &[
            ("plugin", "tracking"),
            ("enabled_when", r#"{"type":"expression","expression":"x"}"#),
            ("csrf", &csrf),
            ("edition", &edition),
        ],
    );
    assert_eq!(bad_condition.status(), StatusCode::BAD_REQUEST);
    assert!(bad_condition.text().unwrap().contains("enabledWhen"));

    let removed = change_at(
        &mut editor,
        &format!("/flows/{flow}/steps/0/remove"),
        &csrf,
        &edition,
    );
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(plugins_of(&server, flow), ["archive", "tracking"]);

    let renamed = editor.post(
        &format!("/flows/{flow}/name"),
        &[("name", "Invoices and receipts"), ("csrf", &csrf)],
    );
    assert_eq!(renamed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        server.store().flow(flow).unwrap().unwrap().name,
        "Invoices and receipts"
    );

    // Another account's flow looks missing, for reading and for changing.
    assert_eq!(
        editor.get(&format!("/flows/{theirs}")).status(),
        StatusCode::NOT_FOUND
    );
    let reach = editor.post(
        &format!("/flows/{theirs}/name"),
        &[("name", "mine now"), ("csrf", &csrf)],
    );
    assert_eq!(reach.status(), StatusCode::NOT_FOUND);
}

#[test]
fn rules_are_added_reordered_and_removed_and_a_simulation_shows_the_rule_that_matched() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    // Made first: the platform's own account comes with the first login code.
    let (other_api, theirs) = foreign_flow(&server);
    let theirs = theirs.to_string();
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let csrf = owner.csrf();
    let invoices = created_flow(owner.post("/flows", &[("name", "Invoices"), ("csrf", &csrf)]));
    let shop = created_flow(owner.post("/flows", &[("name", "Shop"), ("csrf", &csrf)]));
    let invoices_text = invoices.to_string();
    let shop_text = shop.to_string();

    let added = owner.post(
        "/flows/rules",
        &[
            ("flow", invoices_text.as_str()),
            ("type0", "header"),
            ("match0", "equals"),
            ("name0", "X-Kind"),
            ("value0", "invoice"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(added.status(), StatusCode::SEE_OTHER, "{:?}", added.text());
    let added = owner.post(
        "/flows/rules",
        &[
            ("flow", shop_text.as_str()),
            ("type0", "sender"),
            ("value0", "*@shop.example"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(added.status(), StatusCode::SEE_OTHER, "{:?}", added.text());

    // Conditions Sluice cannot evaluate, and another account's source, are refused with
    // the API's words; nothing is added.
    let refused = owner.post(
        "/flows/rules",
        &[
            ("flow", invoices_text.as_str()),
            ("type0", "recipient"),
            ("value0", "x"),
            ("type1", "source"),
            ("value1", "999999"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = refused.text().unwrap();
    assert!(
        page.contains("condition 1: ") && page.contains("recipient"),
        "{page}"
    );
    assert!(
        page.contains("condition 2: this account has no source"),
        "{page}"
    );
    let foreign_flow = owner.post(
        "/flows/rules",
        &[("flow", theirs.as_str()), ("csrf", &csrf)],
    );
    assert_eq!(foreign_flow.status(), StatusCode::NOT_FOUND);
    let routing = server.store().routing(demo.account_id).unwrap().unwrap();
    let order: Vec<u64> = routing.rules.iter().map(|rule| rule.flow_id).collect();
    assert_eq!(order, [invoices, shop]);

    // A message from the shop with the invoice header: the first rule wins.
    let simulate = |owner: &mut Browser| {
        let response = owner.post(
            "/flows/simulate",
            &[
                ("sender", "orders@shop.example"),
                ("recipient", "ann@example.net"),
                ("subject", "Invoice 17"),
                ("headers", "X-Kind: invoice"),
                ("text", "Hello"),
                ("csrf", &csrf),
            ],
        );
        assert_eq!(response.status(), StatusCode::OK);
        response.text().unwrap()
    };
    let page = simulate(&mut owner);
    assert!(page.contains("Rule 1 matched"), "{page}");
    assert!(
        page.contains(&format!("<a href=\"/flows/{invoices}\">Invoices</a>")),
        "{page}"
    );
    assert!(page.contains("PROCESSED"), "{page}");

    // Moved down, the sender rule is tried first and takes the message.
    let edition = rules_edition(&mut owner);
    let moved = change_at(&mut owner, "/flows/rules/0/down", &csrf, &edition);
    assert_eq!(moved.status(), StatusCode::SEE_OTHER);
    let page = simulate(&mut owner);
    assert!(page.contains("Rule 1 matched"), "{page}");
    assert!(
        page.contains(&format!("<a href=\"/flows/{shop}\">Shop</a>")),
        "{page}"
    );

    // Without either rule the default flow takes it.
    for _ in 0..2 {
        let edition = rules_edition(&mut owner);
        let removed = change_at(&mut owner, "/flows/rules/0/remove", &csrf, &edition);
        assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    }
    assert!(
        server
            .store()
            .routing(demo.account_id)
            .unwrap()
            .unwrap()
            .rules
            .is_empty()
    );
    let page = simulate(&mut owner);
    assert!(page.contains("No rule matched"), "{page}");
    let default = owner.post(
        "/flows/default",
        &[("flow", shop_text.as_str()), ("csrf", &csrf)],
    );
    assert_eq!(default.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        server
            .store()
            .routing(demo.account_id)
            .unwrap()
            .unwrap()
            .default_flow_id,
        shop
    );

    // A message the account sent is the starting point of a simulation; another account's
    // is not found.
    let api = crate::util::Api::demo(&server);
    let sent = api.submit(crate::util::email("Order 4711"));
    server.wait_until_done(&sent);
    let message_page = owner.page(&format!("/messages/{sent}"));
    assert!(message_page.contains(&format!("/flows/simulate?message={sent}")));
    let page = owner.page(&format!("/flows/simulate?message={sent}"));
    assert!(
        page.contains("value=\"Order 4711\"") && page.contains("value=\"ann@example.net\""),
        "{page}"
    );
    let theirs_sent = other_api.submit(crate::util::email("Theirs"));
    assert_eq!(
        owner
            .get(&format!("/flows/simulate?message={theirs_sent}"))
            .status(),
        StatusCode::NOT_FOUND
    );

    // A bad header is refused.
    let bad = owner.post(
        "/flows/simulate",
        &[
            ("sender", "orders@shop.example"),
            ("recipient", "ann@example.net"),
            ("headers", "Injected\r\nBcc: x@example.net"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().unwrap().contains("Name: value"));
}

#[test]
fn a_change_by_position_from_a_stale_page_is_refused_and_changes_nothing() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let step = |plugin: &str| Flowstep {
        plugin: plugin.into(),
        config: serde_json::json!({}),
        enabled_when: None,
    };
    let flow = server
        .block_on(server.store().create_flow(Flow {
            id: 0,
            account_id: demo.account_id,
            name: "Two steps".into(),
            steps: vec![step("archive"), step("tracking")],
            expiry_hours: None,
        }))
        .unwrap();
    let id = flow.id;
    let rule = |flow_id| FlowRule {
        flow_id,
        conditions: Vec::new(),
    };
    let default_flow_id = server
        .store()
        .routing(demo.account_id)
        .unwrap()
        .unwrap()
        .default_flow_id;
    let rules = Routing {
        rules: vec![rule(id), rule(default_flow_id)],
        default_flow_id,
    };
    server
        .block_on(server.store().set_routing(demo.account_id, rules))
        .unwrap();

    // Two editors open the same pages; the first one's change goes through.
    let (login, password) = demo_login(&server);
    let mut first = Browser::new(&server);
    first.log_in(&server, &login, &password);
    let first_csrf = first.csrf();
    let account = Some(demo.account_id);
    let mut second = logged_in_as(&server, account, "editor@example.com", Role::Editor);
    let second_csrf = second.csrf();
    let seen_flow = flow_edition(&mut second, id);
    let seen_rules = rules_edition(&mut second);
    assert_eq!(flow_edition(&mut first, id), seen_flow);
    let removed = change_at(
        &mut first,
        &format!("/flows/{id}/steps/0/remove"),
        &first_csrf,
        &seen_flow,
    );
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(plugins_of(&server, id), ["tracking"]);

    // The second page still shows "archive" first: removing, moving or saving step 1 from
    // it would hit "tracking" instead, so each is refused.
    let stale = |response: reqwest::blocking::Response| {
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let text = response.text().unwrap();
        assert!(
            text.contains("changed since you opened the page") && text.contains("Reload"),
            "{text}"
        );
    };
    stale(change_at(
        &mut second,
        &format!("/flows/{id}/steps/0/remove"),
        &second_csrf,
        &seen_flow,
    ));
    stale(second.post(
        &format!("/flows/{id}/steps/0"),
        &[
            ("plugin", "archive"),
            ("config", r#"{"retention": "P1M"}"#),
            ("csrf", &second_csrf),
            ("edition", &seen_flow),
        ],
    ));
    // A form without the edition is treated as made from an old page.
    stale(second.post(
        &format!("/flows/{id}/steps/0/down"),
        &[("csrf", &second_csrf)],
    ));
    assert_eq!(plugins_of(&server, id), ["tracking"]);
    // Reloaded, the same change goes through.
    let reloaded = flow_edition(&mut second, id);
    assert_ne!(reloaded, seen_flow);
    let saved = second.post(
        &format!("/flows/{id}/steps/0"),
        &[
            ("plugin", "tracking"),
            ("config", r#"{"opens": false}"#),
            ("csrf", &second_csrf),
            ("edition", &reloaded),
        ],
    );
    assert_eq!(saved.status(), StatusCode::SEE_OTHER, "{:?}", saved.text());

    // The same for the rules: moved by the first editor, the second's stale page is refused.
    let moved = change_at(&mut first, "/flows/rules/0/down", &first_csrf, &seen_rules);
    assert_eq!(moved.status(), StatusCode::SEE_OTHER);
    let order = |server: &TestServer| -> Vec<u64> {
        let routing = server.store().routing(demo.account_id).unwrap().unwrap();
        routing.rules.iter().map(|rule| rule.flow_id).collect()
    };
    assert_eq!(order(&server), [default_flow_id, id]);
    stale(change_at(
        &mut second,
        "/flows/rules/0/remove",
        &second_csrf,
        &seen_rules,
    ));
    assert_eq!(order(&server), [default_flow_id, id]);

    // Underneath, the store writes only over the record the change was made from.
    let read = server.store().flow(id).unwrap().unwrap();
    let mut renamed = read.clone();
    renamed.name = "Renamed meanwhile".into();
    server
        .block_on(server.store().update_flow_unchanged(renamed, read.clone()))
        .unwrap();
    let mut late = read.clone();
    late.steps.clear();
    let refused = server.block_on(server.store().update_flow_unchanged(late, read));
    assert!(
        matches!(refused, Err(StoreError::Changed(_))),
        "{refused:?}"
    );
    assert_eq!(plugins_of(&server, id), ["tracking"]);
}

#[test]
fn everyone_sees_the_bounce_classifier_admins_change_it_through_the_apis_checks() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let classifier = server.upload_guest(guests::TEST_BOUNCE_OVERRIDE);
    let flowstep = server.upload_guest(guests::TEST_MISBEHAVE);
    let installed = || {
        server
            .store()
            .account(demo.account_id)
            .unwrap()
            .unwrap()
            .bounce_classifier
    };

    // A viewer sees which one is installed, and no form; a forged one is refused.
    let account = Some(demo.account_id);
    let mut viewer = logged_in_as(&server, account, "viewer@example.com", Role::Viewer);
    let page = viewer.page("/classifier");
    assert!(page.contains("the built-in verdicts apply"), "{page}");
    assert!(!page.contains("install-classifier"), "{page}");
    let csrf = viewer.csrf();
    let forged = viewer.post("/classifier", &[("plugin", &classifier), ("csrf", &csrf)]);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(installed(), None);

    // The owner (an admin's right, as in the API) chooses among the account's uploads; what
    // the API refuses the page refuses with the API's words.
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let csrf = owner.csrf();
    let page = owner.page("/classifier");
    assert!(
        page.contains("id=\"install-classifier\"") && page.contains(&classifier),
        "{page}"
    );
    let not_one = owner.post("/classifier", &[("plugin", &flowstep), ("csrf", &csrf)]);
    assert_eq!(not_one.status(), StatusCode::BAD_REQUEST);
    assert!(
        not_one.text().unwrap().contains("not a bounce classifier"),
        "a Flowstep is refused as the API refuses it"
    );
    let unknown = owner.post(
        "/classifier",
        &[("plugin", &"0".repeat(64)), ("csrf", &csrf)],
    );
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(
        unknown
            .text()
            .unwrap()
            .contains("no plugin of this account has this sha256")
    );
    assert_eq!(installed(), None);
    let done = owner.post("/classifier", &[("plugin", &classifier), ("csrf", &csrf)]);
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{:?}", done.text());
    assert_eq!(installed().as_deref(), Some(classifier.as_str()));
    let page = viewer.page("/classifier");
    assert!(page.contains(&classifier), "{page}");

    // The viewer cannot remove it either; the owner can.
    let viewer_csrf = viewer.csrf();
    let forged = viewer.post("/classifier/remove", &[("csrf", &viewer_csrf)]);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(installed().as_deref(), Some(classifier.as_str()));
    let removed = owner.post("/classifier/remove", &[("csrf", &csrf)]);
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(installed(), None);
}

#[test]
fn viewers_read_flows_without_forms_and_operators_and_forged_forms_change_nothing() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let flow = server.store().flows_of(demo.account_id).unwrap()[0].clone();
    let viewer_password = add_user(
        &server,
        Some(demo.account_id),
        "viewer@example.com",
        Role::Viewer,
    );
    let operator_password = add_user(&server, None, "operator@example.com", Role::Operator);

    let mut viewer = Browser::new(&server);
    viewer.log_in(&server, "viewer@example.com", &viewer_password);
    let list = viewer.page("/flows");
    assert!(list.contains(&flow.name), "{list}");
    for form in ["id=\"new-flow\"", "id=\"add-rule\"", "/remove"] {
        assert!(!list.contains(form), "{form}: {list}");
    }
    let page = viewer.page(&format!("/flows/{}", flow.id));
    assert!(
        !page.contains("<form method=\"post\" action=\"/flows/"),
        "{page}"
    );
    let simulate = viewer.page("/flows/simulate");
    assert!(!simulate.contains("id=\"simulate\""), "{simulate}");

    let csrf = viewer.csrf();
    let id = flow.id;
    let forged: [(String, Vec<(&str, &str)>); 6] = [
        ("/flows".into(), vec![("name", "x")]),
        (format!("/flows/{id}/name"), vec![("name", "x")]),
        (format!("/flows/{id}/steps"), vec![("plugin", "dkim")]),
        (format!("/flows/{id}/steps/0/remove"), vec![]),
        ("/flows/rules".into(), vec![("flow", "1")]),
        (
            "/flows/simulate".into(),
            vec![("sender", "a@b.example"), ("recipient", "c@d.example")],
        ),
    ];
    let mut operator = Browser::new(&server);
    operator.log_in(&server, "operator@example.com", &operator_password);
    let operator_csrf = operator.csrf();
    let account = demo.account_id.to_string();
    let chosen = operator.post(
        "/account",
        &[("account", &account), ("csrf", &operator_csrf)],
    );
    assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    for (path, fields) in &forged {
        let mut with_token = fields.clone();
        with_token.push(("csrf", &csrf));
        assert_eq!(
            viewer.post(path, &with_token).status(),
            StatusCode::FORBIDDEN,
            "viewer {path}"
        );
        let mut with_token = fields.clone();
        with_token.push(("csrf", &operator_csrf));
        assert_eq!(
            operator.post(path, &with_token).status(),
            StatusCode::FORBIDDEN,
            "operator {path}"
        );
        // The owner may, but not with another session's token or none.
        let mut with_token = fields.clone();
        with_token.push(("csrf", &csrf));
        assert_eq!(
            owner.post(path, &with_token).status(),
            StatusCode::FORBIDDEN,
            "owner {path}"
        );
        assert_eq!(
            owner.post(path, fields).status(),
            StatusCode::FORBIDDEN,
            "owner {path}"
        );
    }
    let after = server.store().flows_of(demo.account_id).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0], flow, "nothing changed");
    // The operator reads the account's flows.
    let page = operator.page("/flows");
    assert!(page.contains(&flow.name));
    assert!(hidden(&page, "csrf") == operator_csrf);
}

/// The status of `POST /oauth/token` with these client credentials.
fn token_status(server: &TestServer, client_id: &str, secret: &str) -> StatusCode {
    reqwest::blocking::Client::new()
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

/// The text of the element with this id in `page`.
fn text_of_id(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {page}"))
        + marker.len();
    page[start..][..page[start..].find('<').unwrap()].to_string()
}

#[test]
fn an_admin_makes_a_source_whose_secrets_are_shown_once_rotated_and_revoked() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let password = add_user(
        &server,
        Some(demo.account_id),
        "admin@example.com",
        Role::Admin,
    );
    let mut admin = Browser::new(&server);
    admin.log_in(&server, "admin@example.com", &password);
    let csrf = admin.csrf();
    assert!(admin.page("/").contains("href=\"/sources\""));

    let made = admin.post("/sources", &[("name", "Billing app"), ("csrf", &csrf)]);
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let source = server
        .store()
        .sources_of(demo.account_id)
        .unwrap()
        .into_iter()
        .find(|source| source.name == "Billing app")
        .expect("the source was made");
    assert_eq!(
        source.allowed_networks, None,
        "anyone, until a list says otherwise"
    );
    let credentials = format!("/sources/{}/credentials", source.id);

    // An API client: its secret is on the answer, works once, and is never shown again.
    let issued = admin.post(
        &credentials,
        &[("kind", "api"), ("username", "billing"), ("csrf", &csrf)],
    );
    assert_eq!(issued.status(), StatusCode::OK);
    let page = issued.text().unwrap();
    assert_eq!(text_of_id(&page, "issued-username"), "billing");
    let secret = text_of_id(&page, "issued-secret");
    assert_eq!(secret.len(), 36, "{secret}");
    assert_eq!(token_status(&server, "billing", &secret), StatusCode::OK);
    let listed = admin.page("/sources");
    assert!(
        listed.contains("billing") && !listed.contains(&secret),
        "{listed}"
    );
    let taken = admin.post(
        &credentials,
        &[("kind", "smtp"), ("username", "billing"), ("csrf", &csrf)],
    );
    assert_eq!(taken.status(), StatusCode::BAD_REQUEST);
    assert!(taken.text().unwrap().contains("is taken"));

    // A new secret: the old one stops working, the new one works.
    let rotated = admin.post(
        &format!("{credentials}/rotate"),
        &[("username", "billing"), ("csrf", &csrf)],
    );
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_secret = text_of_id(&rotated.text().unwrap(), "issued-secret");
    assert_ne!(new_secret, secret);
    assert_eq!(
        token_status(&server, "billing", &secret),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_status(&server, "billing", &new_secret),
        StatusCode::OK
    );

    // An SMTP user with a made-up name, then both revoked.
    let issued = admin.post(&credentials, &[("kind", "smtp"), ("csrf", &csrf)]);
    let page = issued.text().unwrap();
    let smtp_user = text_of_id(&page, "issued-username");
    assert!(
        smtp_user.starts_with(&format!("source{}-smtp-", source.id)),
        "{smtp_user}"
    );
    let stored = server.store().credential(&smtp_user).unwrap().unwrap();
    assert_eq!(stored.kind, sluice::store::CredentialKind::Smtp);
    for username in ["billing", smtp_user.as_str()] {
        let revoked = admin.post(
            &format!("{credentials}/revoke"),
            &[("username", username), ("csrf", &csrf)],
        );
        assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
        assert!(server.store().credential(username).unwrap().is_none());
    }
    assert_eq!(
        token_status(&server, "billing", &new_secret),
        StatusCode::UNAUTHORIZED
    );

    // The allowlist: every line that is no network is named and nothing changes; a valid
    // list is kept; an empty list admits nobody.
    let settings = |access: &str, networks: &str| {
        vec![
            ("name", "Billing app"),
            ("access", access),
            ("networks", networks),
            ("max_message_bytes", "1048576"),
            ("require_tls", "on"),
        ]
        .into_iter()
        .map(|(key, value)| (key, value.to_string()))
        .collect::<Vec<_>>()
    };
    let post_settings = |admin: &mut Browser, fields: Vec<(&str, String)>| {
        let mut form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        form.push(("csrf", &csrf));
        admin.post(&format!("/sources/{}", source.id), &form)
    };
    let wrong = post_settings(
        &mut admin,
        settings("listed", "192.0.2.0/24\n10.0.0.0/33\nexample.com"),
    );
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let page = wrong.text().unwrap();
    assert!(
        // (minijinja escapes the slash.)
        page.contains("10.0.0.0&#x2f;33") && page.contains("&quot;example.com&quot; is not"),
        "{page}"
    );
    assert_eq!(server.store().source(source.id).unwrap().unwrap(), source);
    let saved = post_settings(&mut admin, settings("listed", "192.0.2.0/24\n2001:db8::1"));
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let changed = server.store().source(source.id).unwrap().unwrap();
    let kept: Vec<String> = changed
        .allowed_networks
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(kept, ["192.0.2.0/24", "2001:db8::1/128"]);
    assert!(changed.require_tls);
    assert_eq!(changed.max_message_bytes, 1 << 20);
    post_settings(&mut admin, settings("listed", ""));
    assert_eq!(
        server
            .store()
            .source(source.id)
            .unwrap()
            .unwrap()
            .allowed_networks,
        Some(Vec::new())
    );
    post_settings(&mut admin, settings("anywhere", "192.0.2.0/24"));
    assert_eq!(
        server
            .store()
            .source(source.id)
            .unwrap()
            .unwrap()
            .allowed_networks,
        None
    );
    // The API's own checks apply: a feedback address must be one address.
    let mut bad_feedback = settings("anywhere", "");
    bad_feedback.push(("feedback_address", "not an address".into()));
    let refused = post_settings(&mut admin, bad_feedback);
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().unwrap().contains("feedbackAddress"));
}

#[test]
fn only_admins_reach_sources_and_another_accounts_credentials_stay_out_of_reach() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    // Made first: the platform's own account comes with the first login code.
    let other = second_account(&server);
    let their_source = server.store().sources_of(other.account).unwrap()[0].clone();
    let our_source = server.store().sources_of(demo.account_id).unwrap()[0].clone();
    let editor_password = add_user(
        &server,
        Some(demo.account_id),
        "editor@example.com",
        Role::Editor,
    );
    let mut editor = Browser::new(&server);
    editor.log_in(&server, "editor@example.com", &editor_password);
    assert!(!editor.page("/").contains("href=\"/sources\""));
    assert_eq!(editor.get("/sources").status(), StatusCode::FORBIDDEN);
    let csrf = editor.csrf();
    let our = our_source.id;
    for (path, fields) in [
        ("/sources".to_string(), vec![("name", "x")]),
        (
            format!("/sources/{our}"),
            vec![("name", "x"), ("access", "anywhere")],
        ),
        (format!("/sources/{our}/credentials"), vec![("kind", "api")]),
        (
            format!("/sources/{our}/credentials/revoke"),
            vec![("username", &*demo.client_id)],
        ),
    ] {
        let mut form = fields.clone();
        form.push(("csrf", &csrf));
        assert_eq!(
            editor.post(&path, &form).status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }

    // Operators look after the platform, not a customer's sources or plugins.
    let operator_password = add_user(&server, None, "operator@example.com", Role::Operator);
    let mut operator = Browser::new(&server);
    operator.log_in(&server, "operator@example.com", &operator_password);
    let operator_csrf = operator.csrf();
    let account = demo.account_id.to_string();
    operator.post(
        "/account",
        &[("account", &account), ("csrf", &operator_csrf)],
    );
    for page in ["/sources", "/plugins"] {
        assert_eq!(operator.get(page).status(), StatusCode::FORBIDDEN, "{page}");
    }
    let made = operator.post("/sources", &[("name", "x"), ("csrf", &operator_csrf)]);
    assert_eq!(made.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.store().sources_of(demo.account_id).unwrap().len(), 1);

    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let csrf = owner.csrf();
    // Without the token, nothing.
    let tokenless = owner.post(
        &format!("/sources/{our}/credentials/revoke"),
        &[("username", &demo.client_id)],
    );
    assert_eq!(tokenless.status(), StatusCode::FORBIDDEN);
    // Another account's source, and its credential named through our own source, look
    // missing; its secret keeps working.
    let theirs = their_source.id;
    for (path, fields) in [
        (
            format!("/sources/{theirs}"),
            vec![("name", "x"), ("access", "anywhere")],
        ),
        (
            format!("/sources/{theirs}/credentials"),
            vec![("kind", "api")],
        ),
        (
            format!("/sources/{theirs}/credentials/rotate"),
            vec![("username", "other-api")],
        ),
        (
            format!("/sources/{our}/credentials/rotate"),
            vec![("username", "other-api")],
        ),
        (
            format!("/sources/{our}/credentials/revoke"),
            vec![("username", "other-api")],
        ),
    ] {
        let mut form = fields.clone();
        form.push(("csrf", &csrf));
        assert_eq!(
            owner.post(&path, &form).status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        token_status(&server, "other-api", "other-secret"),
        StatusCode::OK
    );
    assert_eq!(
        token_status(&server, &demo.client_id, &demo.client_secret),
        StatusCode::OK
    );
    let page = owner.page("/sources");
    assert!(
        page.contains(&demo.client_id) && !page.contains("other-api"),
        "{page}"
    );
}

/// A `multipart/form-data` upload form as a browser sends it: the token and the file.
fn upload_form(csrf: Option<&str>, component: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----SluiceTestBoundary7MA4YWxk";
    let mut body = Vec::new();
    if let Some(csrf) = csrf {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; \
             filename=\"step.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn an_admin_uploads_a_component_through_the_apis_checks_and_editors_cannot() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let password = add_user(
        &server,
        Some(demo.account_id),
        "admin@example.com",
        Role::Admin,
    );
    let editor_password = add_user(
        &server,
        Some(demo.account_id),
        "editor@example.com",
        Role::Editor,
    );
    let mut admin = Browser::new(&server);
    admin.log_in(&server, "admin@example.com", &password);
    let csrf = admin.csrf();
    let component = crate::util::guest_bytes(crate::util::guests::SUBJECT_PREFIX);
    let sha256 = sluice::plugin::hex_sha256(&component);

    // Not a component: refused with the loader's reason, nothing kept.
    let (content_type, body) = upload_form(Some(&csrf), b"not wasm at all");
    let refused = admin.post_raw("/plugins", &content_type, body);
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(
        refused
            .text()
            .unwrap()
            .contains("The component was refused")
    );
    // No token, or a body that is no form: refused as forged.
    let (content_type, body) = upload_form(None, &component);
    let forged = admin.post_raw("/plugins", &content_type, body);
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = admin.post_raw("/plugins", "application/wasm", component.clone());
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        !server
            .store()
            .owns_plugin(demo.account_id, &sha256)
            .unwrap()
    );

    let (content_type, body) = upload_form(Some(&csrf), &component);
    let uploaded = admin.post_raw("/plugins", &content_type, body);
    assert_eq!(
        uploaded.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        uploaded.text()
    );
    assert_eq!(
        uploaded.headers()["location"],
        format!("/plugins#plugin-{sha256}").as_str()
    );
    assert!(
        server
            .store()
            .owns_plugin(demo.account_id, &sha256)
            .unwrap()
    );
    let page = admin.page("/plugins");
    assert!(page.contains(&format!("id=\"plugin-{sha256}\"")), "{page}");
    // The flow editor's picker offers the new version.
    let flow = server.store().flows_of(demo.account_id).unwrap()[0].id;
    assert!(admin.page(&format!("/flows/{flow}")).contains(&sha256));

    let mut editor = Browser::new(&server);
    editor.log_in(&server, "editor@example.com", &editor_password);
    assert_eq!(editor.get("/plugins").status(), StatusCode::FORBIDDEN);
    let editor_csrf = editor.csrf();
    let (content_type, body) = upload_form(Some(&editor_csrf), &component);
    assert_eq!(
        editor.post_raw("/plugins", &content_type, body).status(),
        StatusCode::FORBIDDEN
    );
    let enable = editor.post(
        "/plugins/enable",
        &[("plugin", sha256.as_str()), ("csrf", &editor_csrf)],
    );
    assert_eq!(enable.status(), StatusCode::FORBIDDEN);
}

#[test]
fn a_plugin_disabled_by_its_failures_shows_why_and_is_enabled_again_from_the_page() {
    let server = TestServer::start(|config| config.runtime.failures_before_disable = 2);
    let step = server.upload_guest(crate::util::guests::TEST_EXIT_ON_START);
    server.set_default_flow(&step, serde_json::json!({}));
    let api = crate::util::Api::demo(&server);
    for n in 0..2 {
        let mut message = crate::util::email("hello");
        message["recipientAddress"] = format!("r{n}@example.net").into();
        server.wait_until_done(&api.submit(message));
    }
    // Another account's upload, made before the login (the platform's own account comes
    // with the first login code).
    let (other, _) = foreign_flow(&server);
    let theirs = crate::util::guest_bytes(crate::util::guests::TEST_MISBEHAVE);
    let their_sha256 = sluice::plugin::hex_sha256(&theirs);
    server
        .block_on(
            server
                .store()
                .put_plugin(other.account, &their_sha256, theirs),
        )
        .unwrap();
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let page = owner.page("/plugins");
    let row = &page[page.find(&format!("id=\"plugin-{step}\"")).expect("listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("disabled") && row.contains("called exit"),
        "{row}"
    );
    assert!(row.contains("Enable again"), "{row}");

    let csrf = owner.csrf();
    let tokenless = owner.post("/plugins/enable", &[("plugin", step.as_str())]);
    assert_eq!(tokenless.status(), StatusCode::FORBIDDEN);
    for unknown in ["0000000000000000", their_sha256.as_str()] {
        let refused = owner.post("/plugins/enable", &[("plugin", unknown), ("csrf", &csrf)]);
        assert_eq!(refused.status(), StatusCode::NOT_FOUND, "{unknown}");
    }
    assert!(!page.contains(&their_sha256));
    let enabled = owner.post(
        "/plugins/enable",
        &[("plugin", step.as_str()), ("csrf", &csrf)],
    );
    assert_eq!(enabled.status(), StatusCode::SEE_OTHER);
    assert!(
        server
            .store()
            .plugin_disabled_accounts(&step)
            .unwrap()
            .is_empty()
    );
    let page = owner.page("/plugins");
    let row = &page[page.find(&format!("id=\"plugin-{step}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("runs") && !row.contains("Enable again"),
        "{row}"
    );
}

#[test]
fn an_admin_adds_and_removes_sender_identities_and_webhooks_and_editors_cannot() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let other = second_account(&server);
    let foreign_webhook = server
        .block_on(
            server
                .store()
                .create_webhook(sluice::store::WebhookEndpoint {
                    id: 0,
                    account_id: other.account,
                    url: "http://127.0.0.1:9/theirs".into(),
                    event_types: Vec::new(),
                    description: None,
                    secret: "their-secret".into(),
                    created_at: 0,
                    updated_at: 0,
                }),
        )
        .unwrap();
    let admin_password = add_user(
        &server,
        Some(demo.account_id),
        "admin@example.com",
        Role::Admin,
    );
    let editor_password = add_user(
        &server,
        Some(demo.account_id),
        "editor@example.com",
        Role::Editor,
    );
    let identities = || server.store().identities_of(demo.account_id).unwrap();
    let webhooks = || server.store().webhooks_of(demo.account_id).unwrap();

    // An editor sees the page without its forms, and a form it forges changes nothing.
    let mut editor = Browser::new(&server);
    editor.log_in(&server, "editor@example.com", &editor_password);
    let editor_csrf = editor.csrf();
    let page = editor.page("/sending");
    assert!(
        !page.contains("new-identity") && !page.contains("new-webhook"),
        "{page}"
    );
    let forged = editor.post(
        "/sending/identities",
        &[("domain", "mail.example.org"), ("csrf", &editor_csrf)],
    );
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged = editor.post(
        "/sending/webhooks",
        &[("url", "http://127.0.0.1:9/hook"), ("csrf", &editor_csrf)],
    );
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(identities().is_empty() && webhooks().is_empty());

    let mut admin = Browser::new(&server);
    admin.log_in(&server, "admin@example.com", &admin_password);
    let csrf = admin.csrf();
    let without_token = admin.post("/sending/identities", &[("domain", "mail.example.org")]);
    assert_eq!(without_token.status(), StatusCode::FORBIDDEN);

    // Identities: the API's checks, then the records to publish on the page.
    let bad = admin.post(
        "/sending/identities",
        &[("domain", "not a domain"), ("csrf", &csrf)],
    );
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().unwrap().contains("domain:"));
    let made = admin.post(
        "/sending/identities",
        &[
            ("domain", "Mail.Example.org"),
            ("algorithm", "ed25519"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let [identity] = identities().try_into().unwrap();
    assert_eq!(identity.domain, "mail.example.org");
    let page = admin.page("/sending");
    assert!(
        page.contains("identity-mail.example.org")
            && page.contains(&format!(
                "{}._domainkey.mail.example.org",
                identity.selector
            )),
        "{page}"
    );
    let again = admin.post(
        "/sending/identities",
        &[("domain", "mail.example.org"), ("csrf", &csrf)],
    );
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(
        again
            .text()
            .unwrap()
            .contains("already has a sender identity")
    );

    // Webhooks: the URL checked as the API checks it, the ticked events kept.
    let bad = admin.post("/sending/webhooks", &[("url", "ftp://x"), ("csrf", &csrf)]);
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().unwrap().contains("url:"));
    let made = admin.post(
        "/sending/webhooks",
        &[
            ("url", "http://127.0.0.1:9/hook"),
            ("description", "bounces to the CRM"),
            ("event-DELIVERED", "on"),
            ("event-HARDBOUNCE", "on"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let [endpoint] = webhooks().try_into().unwrap();
    let kinds: Vec<&str> = endpoint
        .event_types
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    assert_eq!(kinds, ["DELIVERED", "HARDBOUNCE"]);
    assert_eq!(endpoint.description.as_deref(), Some("bounces to the CRM"));
    // The signing secret is for those who configure, as in the API.
    assert!(admin.page("/sending").contains(&endpoint.secret));
    assert!(!editor.page("/sending").contains(&endpoint.secret));

    // Another account's identity and webhook are not found, and stay.
    let foreign = admin.post(
        &format!("/sending/webhooks/{}/delete", foreign_webhook.id),
        &[("csrf", &csrf)],
    );
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert!(
        server
            .store()
            .webhook(foreign_webhook.id)
            .unwrap()
            .is_some()
    );
    let editor_delete = editor.post(
        &format!("/sending/identities/{}/delete", identity.id),
        &[("csrf", &editor_csrf)],
    );
    assert_eq!(editor_delete.status(), StatusCode::FORBIDDEN);

    // Removed by the admin.
    let removed = admin.post(
        &format!("/sending/identities/{}/delete", identity.id),
        &[("csrf", &csrf)],
    );
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    let removed = admin.post(
        &format!("/sending/webhooks/{}/delete", endpoint.id),
        &[("csrf", &csrf)],
    );
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert!(identities().is_empty() && webhooks().is_empty());
}

#[test]
fn flows_and_sources_are_deleted_from_their_pages_unless_something_names_them() {
    let server = TestServer::start(|_| {});
    let demo = server.server.created_demo.clone().unwrap();
    let (other, their_flow) = foreign_flow(&server);
    let their_source = server.store().sources_of(other.account).unwrap()[0].id;
    let (login, password) = demo_login(&server);
    let mut owner = Browser::new(&server);
    owner.log_in(&server, &login, &password);
    let csrf = owner.csrf();

    // The default flow is named by the routing: refused, said why, kept.
    let default_flow = server
        .store()
        .routing(demo.account_id)
        .unwrap()
        .unwrap()
        .default_flow_id;
    let refused = owner.post(&format!("/flows/{default_flow}/delete"), &[("csrf", &csrf)]);
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().unwrap().contains("cannot be deleted"));
    assert!(server.store().flow(default_flow).unwrap().is_some());

    // A flow nothing names goes, after the token is checked; another account's is not found.
    let spare = created_flow(owner.post("/flows", &[("name", "spare"), ("csrf", &csrf)]));
    let tokenless = owner.post(&format!("/flows/{spare}/delete"), &[]);
    assert_eq!(tokenless.status(), StatusCode::FORBIDDEN);
    let gone = owner.post(&format!("/flows/{spare}/delete"), &[("csrf", &csrf)]);
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    assert!(server.store().flow(spare).unwrap().is_none());
    let foreign = owner.post(&format!("/flows/{their_flow}/delete"), &[("csrf", &csrf)]);
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert!(server.store().flow(their_flow).unwrap().is_some());

    // A viewer sees no delete form and a forged one changes nothing.
    let mut viewer = logged_in_as(
        &server,
        Some(demo.account_id),
        "viewer@example.com",
        Role::Viewer,
    );
    assert!(
        !viewer
            .page(&format!("/flows/{default_flow}"))
            .contains("delete-flow")
    );
    let viewer_csrf = viewer.csrf();
    let forged = viewer.post(
        &format!("/flows/{default_flow}/delete"),
        &[("csrf", &viewer_csrf)],
    );
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // A source goes with its credentials; another account's source is not found.
    let made = owner.post("/sources", &[("name", "short-lived"), ("csrf", &csrf)]);
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let source = server
        .store()
        .sources_of(demo.account_id)
        .unwrap()
        .into_iter()
        .find(|source| source.name == "short-lived")
        .unwrap();
    let credential = owner.post(
        &format!("/sources/{}/credentials", source.id),
        &[
            ("kind", "smtp"),
            ("username", "short-lived-user"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(credential.status(), StatusCode::OK);
    assert!(
        server
            .store()
            .credential("short-lived-user")
            .unwrap()
            .is_some()
    );
    let gone = owner.post(
        &format!("/sources/{}/delete", source.id),
        &[("csrf", &csrf)],
    );
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    assert!(server.store().source(source.id).unwrap().is_none());
    assert!(
        server
            .store()
            .credential("short-lived-user")
            .unwrap()
            .is_none()
    );
    let foreign = owner.post(
        &format!("/sources/{their_source}/delete"),
        &[("csrf", &csrf)],
    );
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert!(server.store().source(their_source).unwrap().is_some());
}
