//! The SMTP submission server, driven by an independent client (lettre) over real sockets.

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use sluice::flow::rules::{Condition, FlowRule, Routing};
use sluice::store::{CredentialKind, Flow, Flowstep, MessageStatus, Source};

use serde_json::json;

use crate::util::guests;
use crate::util::{Api, TestServer, guest_bytes, id_of};

const MESSAGE: &[u8] =
    b"From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\r\nThanks.\r\n";

fn client(server: &TestServer, login: (String, String), tls: bool) -> SmtpTransport {
    let tls = if tls {
        Tls::Required(
            TlsParameters::builder("localhost".into())
                .dangerous_accept_invalid_certs(true)
                .build_rustls()
                .unwrap(),
        )
    } else {
        Tls::None
    };
    SmtpTransport::builder_dangerous(server.server.smtp_addr.ip().to_string())
        .port(server.server.smtp_addr.port())
        .credentials(Credentials::new(login.0, login.1))
        .authentication(vec![Mechanism::Plain])
        .tls(tls)
        .build()
}

fn send(
    transport: &SmtpTransport,
    recipients: &[&str],
    content: &[u8],
) -> Result<Vec<String>, lettre::transport::smtp::Error> {
    let envelope = Envelope::new(
        Some("shop@example.com".parse().unwrap()),
        recipients.iter().map(|r| r.parse().unwrap()).collect(),
    )
    .unwrap();
    let response = transport.send_raw(&envelope, content)?;
    let text: String = response.message().collect::<Vec<_>>().join(" ");
    let ids = text.split_once("queued as ").map_or("", |(_, ids)| ids);
    Ok(ids.split_whitespace().map(str::to_string).collect())
}

fn status_code(error: &lettre::transport::smtp::Error) -> String {
    error
        .status()
        .map(|code| code.to_string())
        .unwrap_or_else(|| error.to_string())
}

/// Adds a source with an SMTP login to the demo account.
fn add_source(server: &TestServer, source: Source, username: &str) -> Source {
    server.block_on(async {
        let source = server.store().create_source(source).await.unwrap();
        server
            .store()
            .add_credential(&source, CredentialKind::Smtp, username, "s3cret")
            .await
            .unwrap();
        source
    })
}

fn source(name: &str) -> Source {
    Source {
        id: 0,
        account_id: 1,
        name: name.into(),
        allowed_networks: None,
        max_message_bytes: 1 << 20,
        require_tls: false,
        allow_plain_auth: false,
        feedback_address: None,
    }
}

#[test]
fn a_mail_to_three_recipients_becomes_three_processed_messages() {
    let server = TestServer::start(|_| {});
    let transport = client(&server, server.demo_login(), false);
    let ids = send(
        &transport,
        &["a@example.net", "b@example.net", "c@example.net"],
        MESSAGE,
    )
    .unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let mut recipients = Vec::new();
    for id in &ids {
        let record = server.wait_until_done(id);
        assert_eq!(record.status, MessageStatus::Processed);
        assert_eq!(record.subject.as_deref(), Some("Your order"));
        recipients.push(record.recipient);
        let kinds: Vec<String> = server
            .store()
            .events(id)
            .unwrap()
            .into_iter()
            .map(|event| event.kind.to_string())
            .collect();
        assert_eq!(kinds, ["SUBMITTED", "PROCESSED"]);
        let body = server.store().body(id).unwrap().unwrap();
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with("Received: from "), "{body}");
        assert!(
            body.contains("Subject: Your order\r\n\r\nThanks.\r\n"),
            "{body:?}"
        );
    }
    recipients.sort();
    assert_eq!(
        recipients,
        ["a@example.net", "b@example.net", "c@example.net"]
    );
    assert_eq!(server.store().outbox().unwrap().len(), 3);
}

#[test]
fn wrong_credentials_are_refused_with_535() {
    let server = TestServer::start(|_| {});
    let (user, _) = server.demo_login();
    let error = send(
        &client(&server, (user, "wrong".into()), false),
        &["a@example.net"],
        MESSAGE,
    )
    .unwrap_err();
    assert_eq!(status_code(&error), "535");
    let error = send(
        &client(&server, ("nobody".into(), "x".into()), false),
        &["a@example.net"],
        MESSAGE,
    )
    .unwrap_err();
    assert_eq!(status_code(&error), "535");
}

#[test]
fn repeated_failures_from_one_address_must_wait() {
    let server = TestServer::start(|config| config.smtp.max_auth_failures = 2);
    let (user, password) = server.demo_login();
    for _ in 0..2 {
        let error = send(
            &client(&server, (user.clone(), "wrong".into()), false),
            &["a@example.net"],
            MESSAGE,
        )
        .unwrap_err();
        assert_eq!(status_code(&error), "535");
    }
    // Now even the right password waits out the back-off.
    let error = send(
        &client(&server, (user, password), false),
        &["a@example.net"],
        MESSAGE,
    )
    .unwrap_err();
    assert_eq!(status_code(&error), "421");
}

#[test]
fn auth_needs_starttls_unless_the_source_allows_plain() {
    let server = TestServer::start(|_| {});
    add_source(&server, source("tls-only"), "tls-user");
    let login = ("tls-user".to_string(), "s3cret".to_string());
    let error = send(
        &client(&server, login.clone(), false),
        &["a@example.net"],
        MESSAGE,
    )
    .unwrap_err();
    assert_eq!(status_code(&error), "538");
    let ids = send(&client(&server, login, true), &["a@example.net"], MESSAGE).unwrap();
    assert_eq!(ids.len(), 1);
    let body = String::from_utf8(server.store().body(&ids[0]).unwrap().unwrap()).unwrap();
    assert!(body.contains("with ESMTPSA"), "{body}");
}

/// Makes a source through the API with an SMTP login; returns the login.
fn source_with_smtp_login(server: &TestServer, source: serde_json::Value) -> (String, String) {
    let api = Api::demo(server);
    let response = api.post("sources").json(&source).send().unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let source: serde_json::Value = response.json().unwrap();
    let username = format!("user-{}", id_of(&source));
    let response = api
        .post(&format!("sources/{}/credentials", id_of(&source)))
        .json(&json!({"kind": "smtp", "username": username}))
        .send()
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let credential: serde_json::Value = response.json().unwrap();
    (username, credential["secret"].as_str().unwrap().to_string())
}

#[test]
fn an_address_outside_the_allowlist_is_answered_like_an_unknown_user() {
    let server = TestServer::start(|_| {});
    let (office, secret) = source_with_smtp_login(
        &server,
        json!({"description": "office", "allowedNetworks": ["192.0.2.0/24"]}),
    );
    let outside = send(
        &client(&server, (office, secret), true),
        &["a@example.net"],
        MESSAGE,
    )
    .unwrap_err();
    let unknown = send(
        &client(&server, ("nobody-here".into(), "guess".into()), true),
        &["a@example.net"],
        MESSAGE,
    )
    .unwrap_err();
    // The same answer, so a client cannot tell which usernames exist.
    assert_eq!(status_code(&outside), "535");
    assert_eq!(outside.to_string(), unknown.to_string());
}

#[test]
fn an_empty_smtp_allowlist_admits_nobody_and_no_allowlist_anybody() {
    let server = TestServer::start(|_| {});
    let locked = source_with_smtp_login(
        &server,
        json!({"description": "locked", "allowedNetworks": []}),
    );
    let error = send(&client(&server, locked, true), &["a@example.net"], MESSAGE).unwrap_err();
    assert_eq!(status_code(&error), "535");
    let open = source_with_smtp_login(&server, json!({"description": "open"}));
    let ids = send(&client(&server, open, true), &["a@example.net"], MESSAGE).unwrap();
    assert_eq!(ids.len(), 1);
}

#[test]
fn a_message_over_the_source_limit_is_refused_and_not_stored() {
    let server = TestServer::start(|_| {});
    let mut small = source("small");
    small.max_message_bytes = 2000;
    add_source(&server, small, "small");
    let mut big = MESSAGE.to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend_from_slice(b"\r\n");
    let error = send(
        &client(&server, ("small".into(), "s3cret".into()), true),
        &["a@example.net"],
        &big,
    )
    .unwrap_err();
    assert_eq!(status_code(&error), "552");
    assert!(server.store().messages_of(1).unwrap().is_empty());
}

#[test]
fn malformed_content_is_refused_with_554() {
    let server = TestServer::start(|_| {});
    let error = send(
        &client(&server, server.demo_login(), false),
        &["a@example.net"],
        b"this line is not a header\r\n\r\nbody\r\n",
    )
    .unwrap_err();
    assert_eq!(status_code(&error), "554");
}

#[test]
fn flow_rules_sort_messages_and_steps_run() {
    let server = TestServer::start(|_| {});
    let prefix = guest_bytes(guests::SUBJECT_PREFIX);
    let sha = sluice::plugin::hex_sha256(&prefix);
    let misbehave = guest_bytes(guests::TEST_MISBEHAVE);
    let misbehave_sha = sluice::plugin::hex_sha256(&misbehave);
    let (invoices, broken) = server.block_on(async {
        let store = server.store();
        store.put_plugin(1, &sha, prefix).await.unwrap();
        store
            .put_plugin(1, &misbehave_sha, misbehave)
            .await
            .unwrap();
        let invoices = store
            .create_flow(Flow {
                id: 0,
                account_id: 1,
                name: "invoices".into(),
                steps: vec![Flowstep {
                    plugin: sha.clone(),
                    config: serde_json::json!({"prefix": "[Invoice]"}),
                    enabled_when: None,
                }],
                expiry_hours: None,
            })
            .await
            .unwrap();
        let broken = store
            .create_flow(Flow {
                id: 0,
                account_id: 1,
                name: "broken".into(),
                steps: vec![Flowstep {
                    plugin: misbehave_sha.clone(),
                    config: serde_json::json!({"behaviour": "trap"}),
                    enabled_when: None,
                }],
                expiry_hours: None,
            })
            .await
            .unwrap();
        let default = store.routing(1).unwrap().unwrap().default_flow_id;
        store
            .set_routing(
                1,
                Routing {
                    rules: vec![
                        FlowRule {
                            flow_id: invoices.id,
                            conditions: vec![Condition::FlowSelector {
                                equals: "invoice".into(),
                            }],
                        },
                        FlowRule {
                            flow_id: broken.id,
                            conditions: vec![Condition::Header {
                                name: "Subject".into(),
                                equals: None,
                                contains: Some("crash".into()),
                            }],
                        },
                    ],
                    default_flow_id: default,
                },
            )
            .await
            .unwrap();
        (invoices, broken)
    });
    let transport = client(&server, server.demo_login(), false);

    let selected =
        b"X-Flow-Selector: invoice\r\nFrom: shop@example.com\r\nSubject: March\r\n\r\nx\r\n";
    let id = send(&transport, &["a@example.net"], selected)
        .unwrap()
        .remove(0);
    let record = server.wait_until_done(&id);
    assert_eq!(record.status, MessageStatus::Processed);
    assert_eq!(record.flow_id, Some(invoices.id));
    assert_eq!(record.flow_selector.as_deref(), Some("invoice"));
    let body = String::from_utf8(server.store().body(&id).unwrap().unwrap()).unwrap();
    assert!(body.contains("Subject: [Invoice] March\r\n"), "{body}");
    assert!(!body.contains("X-Flow-Selector"), "{body}");

    let crash = b"From: shop@example.com\r\nSubject: please crash\r\n\r\nx\r\n";
    let id = send(&transport, &["a@example.net"], crash)
        .unwrap()
        .remove(0);
    let record = server.wait_until_done(&id);
    assert_eq!(record.status, MessageStatus::Held);
    assert_eq!(record.flow_id, Some(broken.id));
    let kinds: Vec<String> = server
        .store()
        .events(&id)
        .unwrap()
        .into_iter()
        .map(|event| event.kind.to_string())
        .collect();
    assert_eq!(kinds, ["SUBMITTED", "ERROR", "HELD"]);
    assert!(record.status_reason.unwrap().contains("trap"));
    assert!(!server.store().outbox().unwrap().contains(&id));

    let plain = b"From: shop@example.com\r\nSubject: hello\r\n\r\nx\r\n";
    let id = send(&transport, &["a@example.net"], plain)
        .unwrap()
        .remove(0);
    let record = server.wait_until_done(&id);
    assert_eq!(record.status, MessageStatus::Processed);
    assert_ne!(record.flow_id, Some(invoices.id));
    assert_ne!(record.flow_id, Some(broken.id));
}
