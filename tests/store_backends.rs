//! The whole server on each of the store's backends: a message submitted over SMTP goes
//! through its flow and is delivered to a sink on loopback, and what the store recorded
//! survives a restart, with the store in the redb file and with `[store] url` naming a
//! PostgreSQL database. One body, both backends.

use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::Tls;
use lettre::{SmtpTransport, Transport};
use sluice::store::MessageStatus;

use crate::util::postgres::TestDatabase;
use crate::util::sink::SmtpSink;
use crate::util::{TestServer, event_kinds};

const MESSAGE: &[u8] = b"From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\r\nIt ships today.\r\n";

/// Starts a server delivering to `sink`, its store in `database` when one is given.
fn start(dir: tempfile::TempDir, sink: &SmtpSink, database: Option<&TestDatabase>) -> TestServer {
    let route = sink.addr().to_string();
    let url = database.map(|database| database.url().to_string());
    TestServer::start_in(dir, move |config| {
        config.delivery.enabled = true;
        config.delivery.timeout_secs = 5;
        config.delivery.routes.insert("*".into(), route.into());
        config.store.url = url;
        config.store.max_connections = 4;
    })
}

/// Sends the message over SMTP with the demo login; returns the id the server queued it as.
fn submit(server: &TestServer, login: &(String, String)) -> String {
    let transport = SmtpTransport::builder_dangerous(server.server.smtp_addr.ip().to_string())
        .port(server.server.smtp_addr.port())
        .credentials(Credentials::new(login.0.clone(), login.1.clone()))
        .authentication(vec![Mechanism::Plain])
        .tls(Tls::None)
        .build();
    let envelope = Envelope::new(
        Some("shop@example.com".parse().unwrap()),
        vec!["ann@example.net".parse().unwrap()],
    )
    .unwrap();
    let response = transport.send_raw(&envelope, MESSAGE).unwrap();
    let text: String = response.message().collect::<Vec<_>>().join(" ");
    text.split_once("queued as ")
        .map(|(_, id)| id.trim().to_string())
        .expect("the reply names the message")
}

fn wait_delivered(server: &TestServer, id: &str) {
    let started = Instant::now();
    loop {
        let status = server.store().message(id).unwrap().unwrap().status;
        if status == MessageStatus::Delivered {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "message {id} still {status:?}: {:?}",
            event_kinds(server, id)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn submitted_over_smtp_is_delivered_and_kept_across_a_restart(database: Option<TestDatabase>) {
    let sink = SmtpSink::start();
    let server = start(tempfile::tempdir().unwrap(), &sink, database.as_ref());
    let login = server.demo_login();
    let id = submit(&server, &login);
    wait_delivered(&server, &id);
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "DELIVERED"]
    );
    let received = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(received[0].rcpt_to, ["ann@example.net"]);
    assert_eq!(server.store().body(&id).unwrap().unwrap(), received[0].data);

    // Started again on the same store: the message, its events and the demo login are there,
    // and a second message goes the same way.
    let dir = server.stop();
    assert_eq!(
        dir.path().join("sluice.redb").exists(),
        database.is_none(),
        "the redb file is the store exactly when no [store] url is set"
    );
    let server = start(dir, &sink, database.as_ref());
    assert!(
        server.server.created_demo.is_none(),
        "the demo is made once"
    );
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    let second = submit(&server, &login);
    wait_delivered(&server, &second);
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).len(), 2);
}

#[test]
fn redb_submitted_over_smtp_is_delivered_and_kept_across_a_restart() {
    submitted_over_smtp_is_delivered_and_kept_across_a_restart(None);
}

#[test]
fn postgres_submitted_over_smtp_is_delivered_and_kept_across_a_restart() {
    let Some(database) = TestDatabase::create(
        "store_backends::postgres_submitted_over_smtp_is_delivered_and_kept_across_a_restart",
    ) else {
        return;
    };
    submitted_over_smtp_is_delivered_and_kept_across_a_restart(Some(database));
}
