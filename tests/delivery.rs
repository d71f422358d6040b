//! Delivery end to end: the real server sends processed mail to a scriptable SMTP sink on
//! loopback, reached through a static route or through MX records served by the test DNS
//! server, and records what each attempt came to.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::delivery::routing::{RouteConfig, SmartHost};
use sluice::store::MessageStatus;

use crate::util::dns::DnsServer;
use crate::util::dns::ResolveThrough as _;
use crate::util::guests;
use crate::util::sink::{Behaviour, OnConnect, SinkOptions, SmtpSink, Stage};
use crate::util::{Api, TestServer, event_detail, event_kinds};

/// A server that delivers everything to the sink.
fn server_for(sink: &SmtpSink, adjust: impl FnOnce(&mut sluice::config::Config)) -> TestServer {
    let route = sink.addr().to_string();
    TestServer::start(move |config| {
        config.delivery.enabled = true;
        config.delivery.retry_initial_secs = 1;
        config.delivery.retry_max_secs = 2;
        config.delivery.timeout_secs = 5;
        config.delivery.routes.insert("*".into(), route.into());
        adjust(config);
    })
}

fn submit(api: &Api, recipient: &str) -> String {
    api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@shop.example",
        "recipientAddress": recipient,
        "subject": "Order 42",
        "text": "Your order ships today.\n.A line that starts with a dot.\n",
    }))
}

/// Waits until the message's delivery is over (or `timeout` passes); returns its record.
fn wait_for_status(
    server: &TestServer,
    id: &str,
    done: impl Fn(MessageStatus) -> bool,
    timeout: Duration,
) -> sluice::store::MessageRecord {
    let started = Instant::now();
    loop {
        let record = server.store().message(id).unwrap().unwrap();
        if done(record.status) {
            return record;
        }
        assert!(
            started.elapsed() < timeout,
            "message {id} still {:?} after {timeout:?}: {:?}",
            record.status,
            event_kinds(server, id)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn is_final(status: MessageStatus) -> bool {
    matches!(
        status,
        MessageStatus::Delivered
            | MessageStatus::SoftBounce
            | MessageStatus::HardBounce
            | MessageStatus::Rejected
            | MessageStatus::Held
    )
}

const FINAL: Duration = Duration::from_secs(20);

#[test]
fn mail_is_delivered_over_starttls_with_a_verp_return_path() {
    let sink = SmtpSink::start();
    let server = server_for(&sink, |_| {});
    let api = Api::demo(&server);
    let id = submit(&api, "ann@example.net");
    let record = wait_for_status(&server, &id, is_final, FINAL);
    assert_eq!(
        record.status,
        MessageStatus::Delivered,
        "{:?}",
        event_kinds(&server, &id)
    );
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "DELIVERED"]
    );
    let detail = event_detail(&server, &id, "DELIVERED");
    assert!(
        detail["reply"].as_str().unwrap().starts_with("250"),
        "{detail}"
    );
    assert!(
        detail["tls"]["version"]
            .as_str()
            .unwrap()
            .starts_with("TLS"),
        "{detail}"
    );

    let received = sink.wait_for(1, FINAL);
    assert!(received[0].tls);
    assert_eq!(received[0].rcpt_to, ["ann@example.net"]);
    let from = &received[0].mail_from;
    assert!(
        from.starts_with(&format!("b+{id}.")) && from.ends_with("@bounce.sluice.example"),
        "{from}"
    );
    // The header From is the sender's own, and the body arrives byte for byte.
    let data = String::from_utf8(received[0].data.clone()).unwrap();
    let from_line = data.lines().find(|line| line.starts_with("From:")).unwrap();
    assert!(from_line.contains("app@shop.example"), "{from_line}");
    assert!(
        data.contains("\r\n.A line that starts with a dot.\r\n"),
        "{data}"
    );
    assert_eq!(
        server.store().body(&id).unwrap().unwrap(),
        received[0].data,
        "delivered exactly as stored"
    );
}

#[test]
fn a_temporary_failure_is_retried_until_it_succeeds() {
    let sink = SmtpSink::start();
    sink.set_behaviour(
        "bob@example.net",
        Behaviour::TempFailThenAccept {
            at: Stage::Rcpt,
            times: 2,
        },
    );
    let server = server_for(&sink, |_| {});
    let id = submit(&Api::demo(&server), "bob@example.net");
    let record = wait_for_status(&server, &id, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Delivered);
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "ATTEMPT", "ATTEMPT", "DELIVERED"]
    );
    let attempt = event_detail(&server, &id, "ATTEMPT");
    assert!(
        attempt["reply"].as_str().unwrap().starts_with("451 4.3.0"),
        "{attempt}"
    );
    assert_eq!(sink.attempts_for("bob@example.net"), 3);
    assert_eq!(sink.received().len(), 1);
}

#[test]
fn a_message_that_keeps_failing_expires_as_a_soft_bounce() {
    let sink = SmtpSink::start();
    sink.set_default(Behaviour::TempFail {
        at: Stage::Data,
        reply: "452 4.2.2 mailbox full".into(),
    });
    // Expiring at once: the first temporary failure is also the last attempt.
    let server = server_for(&sink, |config| config.delivery.expiry_hours = 0);
    let id = submit(&Api::demo(&server), "carol@example.net");
    let record = wait_for_status(&server, &id, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::SoftBounce);
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "ATTEMPT", "SOFTBOUNCE"]
    );
    let bounce = event_detail(&server, &id, "SOFTBOUNCE");
    assert!(
        bounce["reply"]
            .as_str()
            .unwrap()
            .contains("452 4.2.2 mailbox full"),
        "{bounce}"
    );
    assert!(
        server
            .store()
            .filtered(1, "carol@example.net")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_hard_bounce_filters_the_recipient_until_the_customer_removes_it() {
    let sink = SmtpSink::start();
    sink.set_behaviour(
        "gone@example.net",
        Behaviour::PermFail {
            at: Stage::Rcpt,
            reply: "550 5.1.1 no such user".into(),
        },
    );
    let server = server_for(&sink, |_| {});
    let api = Api::demo(&server);
    let first = submit(&api, "gone@example.net");
    let record = wait_for_status(&server, &first, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::HardBounce);
    assert_eq!(
        event_kinds(&server, &first),
        ["SUBMITTED", "PROCESSED", "ATTEMPT", "HARDBOUNCE"]
    );

    let filters: Value = api.get("filters").send().unwrap().json().unwrap();
    assert_eq!(filters.as_array().unwrap().len(), 1, "{filters:#}");
    assert_eq!(filters[0]["recipientAddress"], "gone@example.net");
    assert_eq!(filters[0]["reason"], "hard-bounce");
    assert_eq!(filters[0]["messageId"], first.as_str());
    assert!(filters[0]["snippet"].as_str().unwrap().contains("5.1.1"));

    // The next message to that address is not sent.
    let second = submit(&api, "gone@example.net");
    let record = wait_for_status(&server, &second, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Rejected);
    assert_eq!(
        event_kinds(&server, &second),
        ["SUBMITTED", "PROCESSED", "REJECT"]
    );
    assert_eq!(sink.attempts_for("gone@example.net"), 1);

    // The mailbox exists again; the customer removes the entry and mail flows.
    sink.set_behaviour("gone@example.net", Behaviour::Accept);
    let searched: Value = api
        .get("filters?address=GONE@")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entry_id = crate::util::id_of(&searched[0]);
    let other = crate::util::second_account(&server);
    let response = other
        .http
        .delete(other.url(&format!("filters/{entry_id}")))
        .bearer_auth(&other.token)
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "another account cannot remove it"
    );
    let response = api
        .http
        .delete(api.url(&format!("filters/{entry_id}")))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let third = submit(&api, "gone@example.net");
    let record = wait_for_status(&server, &third, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Delivered);

    // Added by hand: filtered too.
    let response = api
        .post("filters")
        .json(&json!({"recipientAddress": "Stop@Example.net"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let fourth = submit(&api, "stop@example.net");
    let record = wait_for_status(&server, &fourth, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Rejected);
}

#[test]
fn a_permanent_failure_that_is_not_about_the_address_is_a_soft_bounce() {
    let sink = SmtpSink::start();
    sink.set_default(Behaviour::PermFail {
        at: Stage::Data,
        reply: "554 5.7.1 message refused as spam".into(),
    });
    let server = server_for(&sink, |_| {});
    let id = submit(&Api::demo(&server), "dan@example.net");
    let record = wait_for_status(&server, &id, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::SoftBounce);
    assert!(
        server
            .store()
            .filtered(1, "dan@example.net")
            .unwrap()
            .is_none()
    );
}

#[test]
fn mx_records_route_mail_and_a_null_mx_bounces_at_once() {
    let sink = SmtpSink::start();
    let dns = DnsServer::start();
    dns.set_mx(
        "mx.example",
        &[(10, "down.mx.example"), (20, "up.mx.example")],
    );
    dns.set_a("up.mx.example", "127.0.0.1".parse().unwrap());
    // The preferred host has no address: the next one is used.
    dns.set_mx("nomail.example", &[(0, ".")]);
    let port = sink.addr().port();
    let dns_config = dns.config();
    let server = TestServer::start(move |config| {
        config.dns = dns_config;
        config.delivery.enabled = true;
        config.delivery.mx_port = port;
        config.delivery.timeout_secs = 5;
    });
    let api = Api::demo(&server);
    let routed = submit(&api, "eve@mx.example");
    let nowhere = submit(&api, "frank@nomail.example");
    let record = wait_for_status(&server, &routed, is_final, FINAL);
    assert_eq!(
        record.status,
        MessageStatus::Delivered,
        "{:?}",
        event_kinds(&server, &routed)
    );
    let delivered = event_detail(&server, &routed, "DELIVERED");
    assert!(
        delivered["mx"]
            .as_str()
            .unwrap()
            .starts_with("up.mx.example"),
        "{delivered}"
    );

    let record = wait_for_status(&server, &nowhere, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::HardBounce);
    assert_eq!(
        event_kinds(&server, &nowhere),
        ["SUBMITTED", "PROCESSED", "HARDBOUNCE"]
    );
    assert!(
        event_detail(&server, &nowhere, "HARDBOUNCE")["reply"]
            .as_str()
            .unwrap()
            .contains("null MX")
    );
    assert_eq!(sink.attempts_for("frank@nomail.example"), 0);
}

#[test]
fn messages_to_one_domain_share_a_connection() {
    let sink = SmtpSink::start_with(SinkOptions {
        tls: false,
        ..SinkOptions::default()
    });
    let server = server_for(&sink, |config| {
        config.delivery.max_connections_per_domain = 1;
        // Queued together, so one connection carries them all.
        config.delivery.enabled = false;
    });
    let api = Api::demo(&server);
    let ids: Vec<String> = (0..4)
        .map(|n| submit(&api, &format!("user{n}@example.net")))
        .collect();
    for id in &ids {
        wait_for_status(
            &server,
            id,
            |status| status == MessageStatus::Processed,
            FINAL,
        );
    }
    let dir = server.stop();
    let route = sink.addr().to_string();
    let server = TestServer::start_in(dir, move |config| {
        config.delivery.enabled = true;
        config.delivery.max_connections_per_domain = 1;
        config.delivery.routes.insert("*".into(), route.into());
    });
    for id in &ids {
        let record = wait_for_status(&server, id, is_final, FINAL);
        assert_eq!(record.status, MessageStatus::Delivered);
    }
    let received = sink.wait_for(4, FINAL);
    assert!(
        received
            .iter()
            .all(|message| message.session == received[0].session)
    );
    assert_eq!(sink.connections(), 1);
    let commands = sink.commands(received[0].session);
    assert_eq!(
        commands
            .iter()
            .filter(|line| line.starts_with("MAIL FROM"))
            .count(),
        4,
        "{commands:?}"
    );
}

#[test]
fn the_per_domain_connection_limit_holds() {
    let sink = SmtpSink::start_with(SinkOptions {
        tls: false,
        ..SinkOptions::default()
    });
    sink.set_delay(Duration::from_millis(150));
    let server = server_for(&sink, |config| {
        config.delivery.max_connections_per_domain = 2
    });
    let api = Api::demo(&server);
    let ids: Vec<String> = (0..10)
        .map(|n| submit(&api, &format!("user{n}@limited.example")))
        .collect();
    for id in &ids {
        let record = wait_for_status(&server, id, is_final, FINAL);
        assert_eq!(record.status, MessageStatus::Delivered);
    }
    assert_eq!(sink.received().len(), 10);
    let peak = sink.max_concurrent_connections();
    assert!(peak <= 2, "{peak} connections at once");
    assert_eq!(peak, 2, "the second connection was used");
}

#[test]
fn a_restart_during_retries_loses_nothing_and_delivers_once() {
    let sink = SmtpSink::start();
    sink.set_behaviour(
        "gina@example.net",
        Behaviour::TempFailThenAccept {
            at: Stage::Rcpt,
            times: 1,
        },
    );
    let route = sink.addr().to_string();
    let server = server_for(&sink, |config| config.delivery.retry_initial_secs = 3);
    let api = Api::demo(&server);
    let retried = submit(&api, "gina@example.net");
    let delivered = submit(&api, "hank@example.net");
    wait_for_status(&server, &delivered, is_final, FINAL);
    let started = Instant::now();
    while !event_kinds(&server, &retried).contains(&"ATTEMPT".to_string()) {
        assert!(started.elapsed() < FINAL, "no first attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = server.stop();

    let server = TestServer::start_in(dir, move |config| {
        config.delivery.enabled = true;
        config.delivery.retry_initial_secs = 1;
        config.delivery.routes.insert("*".into(), route.into());
    });
    let record = wait_for_status(&server, &retried, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Delivered);
    // Give a wrongly repeated delivery the time to happen before counting.
    std::thread::sleep(Duration::from_millis(1500));
    let received = sink.received();
    let count = |rcpt: &str| {
        received
            .iter()
            .filter(|message| message.rcpt_to == [rcpt])
            .count()
    };
    assert_eq!(count("gina@example.net"), 1);
    assert_eq!(
        count("hank@example.net"),
        1,
        "delivered before the restart, not again"
    );
}

#[test]
fn a_step_that_redirects_the_copy_sends_it_to_the_new_recipient() {
    let sink = SmtpSink::start();
    let server = server_for(&sink, |_| {});
    let step = server.upload_guest(guests::TEST_MISBEHAVE);
    server.set_default_flow(
        &step,
        json!({"behaviour": "redirect", "to": "qa@example.org"}),
    );
    let api = Api::demo(&server);
    let id = submit(&api, "customer@example.net");
    let record = wait_for_status(&server, &id, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Delivered);
    assert_eq!(record.recipient, "qa@example.org");
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "REDIRECTED", "DELIVERED"]
    );
    let received = sink.wait_for(1, FINAL);
    assert_eq!(received[0].rcpt_to, ["qa@example.org"]);
    assert_eq!(sink.attempts_for("customer@example.net"), 0);
}

#[test]
fn a_host_that_refuses_the_session_is_retried_not_bounced() {
    let sink = SmtpSink::start();
    sink.set_on_connect(OnConnect::Refuse("554 5.7.1 no service for you".into()));
    let server = server_for(&sink, |_| {});
    let id = submit(&Api::demo(&server), "ivy@example.net");
    let started = Instant::now();
    while !event_kinds(&server, &id).contains(&"ATTEMPT".to_string()) {
        assert!(started.elapsed() < FINAL, "no attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    let attempt = event_detail(&server, &id, "ATTEMPT");
    assert!(
        attempt["reply"].as_str().unwrap().contains("554 5.7.1"),
        "{attempt}"
    );
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::Processed,
        "still queued"
    );
    sink.set_on_connect(OnConnect::Greet);
    let record = wait_for_status(&server, &id, is_final, FINAL);
    assert_eq!(record.status, MessageStatus::Delivered);
    assert!(
        server
            .store()
            .filtered(1, "ivy@example.net")
            .unwrap()
            .is_none()
    );
}

fn smart_host(sink: &SmtpSink, password: &str, verify_certificate: bool) -> RouteConfig {
    RouteConfig::SmartHost(SmartHost {
        address: sink.addr().to_string(),
        username: "relay-user".into(),
        password: Some(password.into()),
        password_env: None,
        verify_certificate,
    })
}

fn relay_sink() -> SmtpSink {
    SmtpSink::start_with(SinkOptions {
        login: Some(("relay-user".into(), "relay-pass".into())),
        ..SinkOptions::default()
    })
}

#[test]
fn a_smart_host_takes_mail_for_every_domain_after_auth_over_one_session() {
    let sink = relay_sink();
    // Queued while delivery is off, so one session can carry them all.
    let server = server_for(&sink, |config| config.delivery.enabled = false);
    let api = Api::demo(&server);
    let ids: Vec<String> = ["ann@one.example", "bob@two.example", "cy@three.example"]
        .iter()
        .map(|recipient| submit(&api, recipient))
        .collect();
    for id in &ids {
        wait_for_status(&server, id, |s| s == MessageStatus::Processed, FINAL);
    }
    let dir = server.stop();
    let route = smart_host(&sink, "relay-pass", false);
    let server = TestServer::start_in(dir, move |config| {
        config.delivery.enabled = true;
        config.delivery.max_connections_per_domain = 1;
        config.delivery.routes.insert("*".into(), route);
    });
    for id in &ids {
        let record = wait_for_status(&server, id, is_final, FINAL);
        assert_eq!(record.status, MessageStatus::Delivered);
    }
    let received = sink.wait_for(3, FINAL);
    for message in &received {
        assert!(message.tls, "credentials only travel over TLS");
        assert_eq!(message.authenticated.as_deref(), Some("relay-user"));
        assert_eq!(message.session, received[0].session);
    }
    let commands = sink.commands(received[0].session);
    assert_eq!(
        commands
            .iter()
            .filter(|line| line.starts_with("AUTH"))
            .count(),
        1,
        "{commands:?}"
    );
}

#[test]
fn a_refused_login_or_an_unverified_relay_defers_and_never_bounces() {
    let sink = relay_sink();
    let wrong_password = smart_host(&sink, "not-the-password", false);
    let server = server_for(&sink, move |config| {
        config.delivery.routes.insert("*".into(), wrong_password);
    });
    let api = Api::demo(&server);
    let id = submit(&api, "ann@example.net");
    let attempt = wait_for_event(&server, &id, "ATTEMPT");
    assert!(attempt.contains("535"), "{attempt}");
    drop(server);

    // The sink's certificate is self-signed: a relay whose certificate must verify gets no
    // password and no message.
    let unverified = smart_host(&sink, "relay-pass", true);
    let server = server_for(&sink, move |config| {
        config.delivery.routes.insert("*".into(), unverified);
    });
    let api = Api::demo(&server);
    let id = submit(&api, "ann@example.net");
    let attempt = wait_for_event(&server, &id, "ATTEMPT");
    assert!(attempt.to_lowercase().contains("certificate"), "{attempt}");
    let record = server.store().message(&id).unwrap().unwrap();
    assert!(!is_final(record.status), "{:?}", record.status);
    assert!(sink.received().is_empty());
    assert!(
        sink.commands(sink.connections())
            .iter()
            .all(|line| !line.starts_with("AUTH")),
        "a password went to an unverified relay"
    );
}

/// Waits for the message's first event of `kind`; returns its detail.
fn wait_for_event(server: &TestServer, id: &str, kind: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(event) = server
            .store()
            .events(id)
            .unwrap()
            .into_iter()
            .find(|event| event.kind.as_str() == kind)
        {
            return event.detail.unwrap_or_default();
        }
        assert!(
            started.elapsed() < FINAL,
            "no {kind}: {:?}",
            event_kinds(server, id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_rate_limit_spaces_out_one_domain_and_leaves_the_others_alone() {
    let sink = SmtpSink::start_with(SinkOptions {
        tls: false,
        ..SinkOptions::default()
    });
    let server = server_for(&sink, |config| {
        config
            .delivery
            .rate_limits
            .insert("slow.example".into(), "10/s".parse().unwrap());
    });
    let api = Api::demo(&server);
    let started = Instant::now();
    let limited: Vec<String> = (0..25)
        .map(|n| submit(&api, &format!("user{n}@slow.example")))
        .collect();
    let free = submit(&api, "ann@fast.example");
    for id in limited.iter().chain([&free]) {
        let record = wait_for_status(&server, id, is_final, FINAL);
        assert_eq!(record.status, MessageStatus::Delivered);
    }
    // Ten go at once (a full bucket), the other fifteen at ten a second.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "25 messages at 10/s took only {elapsed:?}"
    );
}
