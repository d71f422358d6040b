//! Returned mail end to end: a message is delivered to the sink, then a bounce or a feedback
//! report for it reaches the MX over SMTP, and the message, the filter list and the next
//! message to that recipient show it.

use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::{Address, SmtpTransport, Transport};
use serde_json::{Value, json};
use sluice::store::MessageStatus;

use crate::util::guests;
use crate::util::sink::{Behaviour, SinkOptions, SmtpSink, Stage};
use crate::util::{Api, TestServer, event_detail, event_kinds, id_of};

const PATIENCE: Duration = Duration::from_secs(20);

fn server_for(sink: &SmtpSink) -> TestServer {
    let route = sink.addr().to_string();
    TestServer::start(move |config| {
        config.delivery.enabled = true;
        config.delivery.routes.insert("*".into(), route.into());
        config.inbound.feedback_domains = vec!["fbl.sluice.example".into()];
    })
}

fn plain_sink() -> SmtpSink {
    SmtpSink::start_with(SinkOptions {
        tls: false,
        ..SinkOptions::default()
    })
}

fn submit(api: &Api, recipient: &str) -> String {
    api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@shop.example",
        "recipientAddress": recipient,
        "subject": "Your order",
        "text": "It ships today.\n",
    }))
}

fn wait_for(server: &TestServer, id: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let kinds = event_kinds(server, id);
        if done(&kinds) {
            return kinds;
        }
        assert!(started.elapsed() < PATIENCE, "{id}: {kinds:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn delivered(server: &TestServer, sink: &SmtpSink, id: &str) -> (String, String) {
    wait_for(server, id, |kinds| {
        kinds.iter().any(|kind| kind == "DELIVERED")
    });
    let received = sink
        .received()
        .into_iter()
        .find(|message| message.mail_from.starts_with(&format!("b+{id}.")))
        .expect("the sink has the message");
    let data = String::from_utf8(received.data).unwrap();
    (received.mail_from, data)
}

/// Sends raw mail to the MX; returns its answer to the end of data.
fn send_to_mx(
    server: &TestServer,
    from: Option<&str>,
    to: &str,
    content: &str,
) -> Result<String, String> {
    let mx = server.server.mx_addr.expect("the MX runs");
    let transport = SmtpTransport::builder_dangerous(mx.ip().to_string())
        .port(mx.port())
        .build();
    let envelope = Envelope::new(
        from.map(|from| from.parse::<Address>().unwrap()),
        vec![to.parse::<Address>().unwrap()],
    )
    .unwrap();
    transport
        .send_raw(&envelope, content.as_bytes())
        .map(|response| response.message().collect::<Vec<_>>().join(" "))
        .map_err(|error| error.to_string())
}

/// A Postfix-style DSN for `recipient` with the returned headers of `original`.
fn dsn(recipient: &str, status: &str, diagnostic: &str, original: &str) -> String {
    let headers = original.split("\r\n\r\n").next().unwrap();
    format!(
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
         To: postmaster@bounce.sluice.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.net\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {headers}\r\n\
         \r\n\
         --b1--\r\n"
    )
}

/// Uploads the test bounce classifier; returns the API's view of it.
fn upload_classifier(api: &Api) -> Value {
    api.post("plugins")
        .header("Content-Type", "application/wasm")
        .body(crate::util::guest_bytes(guests::TEST_BOUNCE_OVERRIDE))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Uploads the test bounce classifier and installs it as the account's.
fn install_classifier(api: &Api) {
    let uploaded = upload_classifier(api);
    let installed = api
        .put("bounce_classifier")
        .json(&json!({ "plugin": uploaded["sha256"] }))
        .send()
        .unwrap();
    assert!(installed.status().is_success(), "{:?}", installed.text());
}

fn filters(api: &Api) -> Value {
    api.get("filters").send().unwrap().json().unwrap()
}

#[test]
fn a_hard_bounce_filters_the_recipient_and_the_next_message_is_rejected() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    let first = submit(&api, "ann@example.net");
    let (return_path, sent) = delivered(&server, &sink, &first);

    let bounce = dsn(
        "ann@example.net",
        "5.1.1",
        "550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown",
        &sent,
    );
    let answer = send_to_mx(&server, None, &return_path, &bounce).unwrap();
    assert!(answer.contains("received as r"), "{answer}");

    let kinds = wait_for(&server, &first, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    assert_eq!(
        kinds,
        ["SUBMITTED", "PROCESSED", "DELIVERED", "HARDBOUNCE"],
        "a bounce after delivery is recorded after it"
    );
    let record = server.store().message(&first).unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::HardBounce);
    let detail = event_detail(&server, &first, "HARDBOUNCE");
    assert_eq!(detail["reason"], "userunknown", "{detail}");
    assert_eq!(detail["status"], "5.1.1", "{detail}");
    assert_eq!(detail["replyCode"], 550, "{detail}");

    let list = filters(&api);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list[0]["recipientAddress"], "ann@example.net");
    assert_eq!(list[0]["reason"], "hard-bounce");
    assert_eq!(list[0]["messageId"], first.as_str());

    let second = submit(&api, "ann@example.net");
    let kinds = wait_for(&server, &second, |kinds| {
        kinds.iter().any(|kind| kind == "REJECT")
    });
    assert_eq!(kinds, ["SUBMITTED", "PROCESSED", "REJECT"]);

    // The customer removes the entry and mail flows again.
    let entry = id_of(&list[0]);
    let response = api
        .http
        .delete(api.url(&format!("filters/{entry}")))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let third = submit(&api, "ann@example.net");
    delivered(&server, &sink, &third);
}

#[test]
fn a_soft_bounce_marks_the_message_without_filtering() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    let id = submit(&api, "full@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    let bounce = dsn(
        "full@example.net",
        "5.2.2",
        "552 5.2.2 <full@example.net>: Mailbox full",
        &sent,
    );
    send_to_mx(&server, None, &return_path, &bounce).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "SOFTBOUNCE")
    });
    assert_eq!(
        event_detail(&server, &id, "SOFTBOUNCE")["reason"],
        "mailboxfull"
    );
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::SoftBounce
    );
    assert_eq!(filters(&api).as_array().unwrap().len(), 0);
}

#[test]
fn a_feedback_report_is_a_complaint_that_filters_the_recipient() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    // The source wants a copy of each complaint.
    let sources: Value = api.get("sources").send().unwrap().json().unwrap();
    let mut source = sources[0].clone();
    source["feedbackAddress"] = json!("abuse-desk@shop.example");
    let response = api
        .put(&format!("sources/{}", id_of(&source)))
        .json(&source)
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.text());
    let id = submit(&api, "bob@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    // The receiving mailbox provider adds Return-Path at final delivery, and its feedback
    // loop sends the headers back to the address we registered, not to the return path.
    let original = format!("Return-Path: <{return_path}>\r\n{sent}");
    let report = format!(
        "From: feedback@provider.example\r\n\
         To: fbl@fbl.sluice.example\r\n\
         Subject: Abuse report\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"f1\"\r\n\
         \r\n\
         --f1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         This is an email abuse report for an email message received from IP 192.0.2.1.\r\n\
         \r\n\
         --f1\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: Provider-FBL/1.0\r\n\
         Version: 1\r\n\
         Original-Rcpt-To: bob@example.net\r\n\
         \r\n\
         --f1\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n\
         {original}\r\n\
         --f1--\r\n"
    );
    send_to_mx(
        &server,
        Some("feedback@provider.example"),
        "fbl@fbl.sluice.example",
        &report,
    )
    .unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "COMPLAINT")
    });
    assert_eq!(
        event_detail(&server, &id, "COMPLAINT")["feedbackType"],
        "abuse"
    );
    // Delivered it was; the complaint does not change that.
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    let list = filters(&api);
    assert_eq!(list[0]["recipientAddress"], "bob@example.net");
    assert_eq!(list[0]["reason"], "complaint");
    let next = submit(&api, "bob@example.net");
    wait_for(&server, &next, |kinds| {
        kinds.iter().any(|kind| kind == "REJECT")
    });

    // The copy for the source went out as a message of its own.
    let started = Instant::now();
    let copy = loop {
        if let Some(copy) = sink
            .received()
            .into_iter()
            .find(|message| message.rcpt_to == ["abuse-desk@shop.example"])
        {
            break copy;
        }
        assert!(started.elapsed() < PATIENCE, "no copy of the complaint");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = String::from_utf8_lossy(&copy.data);
    assert!(
        text.contains(&format!("Spam complaint about message {id}")),
        "{text}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&copy.data)
        .unwrap();
    let attached = parsed.attachment(0).expect("the report is attached");
    let attached = String::from_utf8_lossy(attached.contents());
    assert!(attached.contains("Feedback-Type: abuse"), "{attached}");
}

#[test]
fn a_bounce_that_lost_its_return_path_is_noted_by_message_id_but_proves_nothing() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    let id = submit(&api, "cy@example.net");
    let (_, sent) = delivered(&server, &sink, &id);

    // Anyone can write to postmaster@ and quote a Message-ID: naming another recipient
    // matches nothing...
    let forged = dsn(
        "someone-else@example.net",
        "5.1.1",
        "550 5.1.1 user unknown",
        &sent,
    );
    let answer = send_to_mx(&server, None, "postmaster@bounce.sluice.example", &forged).unwrap();
    let forged_id = answer.rsplit(' ').next().unwrap().to_string();
    let settled = wait_settled(&server, &forged_id);
    assert!(settled.matched.is_empty(), "{settled:?}");

    // ...and naming the right one adds the event, unverified, without bouncing the message
    // or filtering the address.
    let bounce = dsn("cy@example.net", "5.1.1", "550 5.1.1 user unknown", &sent);
    send_to_mx(&server, None, "postmaster@bounce.sluice.example", &bounce).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    assert_eq!(event_detail(&server, &id, "HARDBOUNCE")["verified"], false);
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    assert_eq!(filters(&api).as_array().unwrap().len(), 0);
}

#[test]
fn a_delay_warning_and_a_later_soft_bounce_do_not_undo_what_is_known() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    let id = submit(&api, "eve@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    let delayed = dsn(
        "eve@example.net",
        "4.4.1",
        "451 4.4.1 connection timed out",
        &sent,
    )
    .replace("Action: failed", "Action: delayed");
    send_to_mx(&server, None, &return_path, &delayed).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "DELAYED")
    });
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::Delivered
    );

    let hard = dsn("eve@example.net", "5.1.1", "550 5.1.1 user unknown", &sent);
    send_to_mx(&server, None, &return_path, &hard).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    let soft = dsn("eve@example.net", "5.2.2", "552 5.2.2 mailbox full", &sent);
    send_to_mx(&server, None, &return_path, &soft).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "SOFTBOUNCE")
    });
    assert_eq!(
        server.store().message(&id).unwrap().unwrap().status,
        MessageStatus::HardBounce,
        "a soft bounce does not undo a hard one"
    );
}

/// Waits until returned mail has been analysed; returns its record.
fn wait_settled(server: &TestServer, returned_id: &str) -> sluice::store::ReturnedMail {
    let started = Instant::now();
    loop {
        let returned = server.store().returned(returned_id).unwrap().unwrap();
        if returned.analysis.is_some() {
            return returned;
        }
        assert!(started.elapsed() < PATIENCE, "never analysed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_mx_takes_only_our_addresses_and_keeps_what_it_cannot_read() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    let id = submit(&api, "dan@example.net");
    let (return_path, _) = delivered(&server, &sink, &id);

    // No relaying, and a return path with a forged MAC is nobody's.
    for stranger in [
        "someone@elsewhere.example",
        "anyone@bounce.sluice.example",
        "b+0123456789abcdef0123456789.00112233445566778899@elsewhere.example",
    ] {
        let refused = send_to_mx(&server, None, stranger, "Subject: x\r\n\r\nx\r\n").unwrap_err();
        assert!(
            refused.contains("550") || refused.contains("Relaying"),
            "{refused}"
        );
    }
    // A genuine return path is taken on any domain (a customer's bounce. CNAME).
    let (local, _) = return_path.split_once('@').unwrap();
    let elsewhere = format!("{local}@bounce.customer.example");
    let garbage = "\u{1}\u{2} not a report at all\r\n\r\n\u{ff}\r\n";
    let answer = send_to_mx(&server, None, &elsewhere, garbage).unwrap();
    let returned_id = answer.rsplit(' ').next().unwrap().to_string();
    let returned = wait_settled(&server, &returned_id);
    assert_eq!(returned.analysis.unwrap()["kind"], "not-a-bounce");
    assert_eq!(
        event_kinds(&server, &id),
        ["SUBMITTED", "PROCESSED", "DELIVERED"],
        "an unreadable message changes nothing"
    );
    // Nobody logs in here.
    let mx = server.server.mx_addr.unwrap();
    let mut stream = std::net::TcpStream::connect(mx).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"EHLO client.example\r\nAUTH PLAIN AGEAYg==\r\n",
    )
    .unwrap();
    let mut replies = Vec::new();
    while !replies
        .last()
        .is_some_and(|line: &String| line.starts_with("502"))
    {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(!line.is_empty(), "{replies:?}");
        replies.push(line.trim_end().to_string());
    }
    assert!(
        replies
            .iter()
            .filter(|line| line.starts_with("250"))
            .all(|line| !line.contains("AUTH")),
        "{replies:?}"
    );

    // The listener is still there.
    send_to_mx(
        &server,
        None,
        "postmaster@bounce.sluice.example",
        "Subject: hi\r\n\r\nhi\r\n",
    )
    .unwrap();
}

#[test]
fn returned_mail_kept_before_a_restart_is_settled_after_it_and_its_content_expires() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);
    let id = submit(&api, "fay@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    let dir = server.stop();

    // Stored with no worker running, as a crash right after the MX's 250 would leave it.
    let bounce = dsn("fay@example.net", "5.1.1", "550 5.1.1 user unknown", &sent);
    let returned_id = {
        let store = crate::util::stopped_store(dir.path());
        let mail = sluice::store::ReturnedMail {
            id: format!("r{}", sluice::store::new_message_id()),
            received_at: sluice::store::now_millis(),
            mail_from: String::new(),
            recipients: vec![return_path],
            peer: "192.0.2.1".into(),
            analysis: None,
            matched: Vec::new(),
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let id = runtime
            .block_on(store.put_returned(mail, bounce.into_bytes()))
            .unwrap()
            .id;
        drop(store);
        // The writer thread closes the database once the last handle is gone.
        std::thread::sleep(Duration::from_millis(300));
        id
    };

    let sink_route = sink.addr().to_string();
    let server = TestServer::start_in(dir, move |config| {
        config.delivery.enabled = true;
        config.delivery.routes.insert("*".into(), sink_route.into());
    });
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    let settled = wait_settled(&server, &returned_id);
    assert_eq!(settled.matched, std::slice::from_ref(&id));

    // Past the keeping time the content goes and the analysis stays.
    let later = sluice::store::now_millis() + 1000;
    let dropped = server
        .block_on(server.store().purge_returned_bodies(later))
        .unwrap();
    assert_eq!(dropped, 1);
    assert!(
        server
            .store()
            .returned_body(&returned_id)
            .unwrap()
            .is_none()
    );
    let kept = server.store().returned(&returned_id).unwrap().unwrap();
    assert_eq!(kept.analysis.unwrap()["kind"], "bounce");
}

#[test]
fn an_accounts_own_classifier_overrides_the_built_in_verdict() {
    let sink = plain_sink();
    let server = server_for(&sink);
    let api = Api::demo(&server);

    // Uploaded like any plugin; the API says which kind it is.
    let uploaded = upload_classifier(&api);
    assert_eq!(uploaded["kind"], "bounce-classifier", "{uploaded}");
    let sha = uploaded["sha256"].as_str().unwrap().to_string();

    // A Flowstep is not a classifier.
    let flowstep = server.upload_guest(guests::TEST_MISBEHAVE);
    let refused = api
        .put("bounce_classifier")
        .json(&json!({ "plugin": flowstep }))
        .send()
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let installed = api
        .put("bounce_classifier")
        .json(&json!({ "plugin": sha }))
        .send()
        .unwrap();
    assert!(installed.status().is_success(), "{:?}", installed.text());

    // The built-in verdict on a full mailbox is soft; this account's classifier says hard.
    let id = submit(&api, "gil@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    let full = dsn("gil@example.net", "5.2.2", "552 5.2.2 Mailbox full", &sent);
    send_to_mx(&server, None, &return_path, &full).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    let detail = event_detail(&server, &id, "HARDBOUNCE");
    assert_eq!(detail["reason"], "mailbox-abandoned", "{detail}");
    assert_eq!(detail["builtInReason"], "mailboxfull", "{detail}");
    assert_eq!(detail["classifiedBy"], sha.as_str(), "{detail}");
    assert_eq!(filters(&api)[0]["recipientAddress"], "gil@example.net");

    // It judges the remote's 5xx replies during delivery too.
    sink.set_behaviour(
        "ida@example.net",
        Behaviour::PermFail {
            at: Stage::Rcpt,
            reply: "552 5.2.2 Mailbox full".into(),
        },
    );
    let id = submit(&api, "ida@example.net");
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    let detail = event_detail(&server, &id, "HARDBOUNCE");
    assert_eq!(detail["classifiedBy"], sha.as_str(), "{detail}");
    assert_eq!(detail["builtInReason"], "mailboxfull", "{detail}");

    // A classifier that traps leaves the built-in verdict.
    let id = submit(&api, "jo@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    let trap = dsn(
        "jo@example.net",
        "5.2.2",
        "552 5.2.2 Mailbox full classifier-trap",
        &sent,
    );
    send_to_mx(&server, None, &return_path, &trap).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "SOFTBOUNCE")
    });
    let detail = event_detail(&server, &id, "SOFTBOUNCE");
    assert_eq!(detail["reason"], "mailboxfull", "{detail}");
    assert!(detail.get("classifiedBy").is_none(), "{detail}");

    // Removed, the built-in verdict applies again.
    let removed = api
        .http
        .delete(api.url("bounce_classifier"))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(removed.status(), reqwest::StatusCode::NO_CONTENT);
    let id = submit(&api, "hal@example.net");
    let (return_path, sent) = delivered(&server, &sink, &id);
    let full = dsn("hal@example.net", "5.2.2", "552 5.2.2 Mailbox full", &sent);
    send_to_mx(&server, None, &return_path, &full).unwrap();
    wait_for(&server, &id, |kinds| {
        kinds.iter().any(|kind| kind == "SOFTBOUNCE")
    });
}

#[test]
fn the_mx_tells_one_address_with_too_many_connections_to_come_back_later() {
    let sink = plain_sink();
    let route = sink.addr().to_string();
    let server = TestServer::start(move |config| {
        config.delivery.routes.insert("*".into(), route.into());
        config.inbound.max_connections_per_ip = 2;
    });
    let mx = server.server.mx_addr.unwrap();
    let greeting = |stream: &std::net::TcpStream| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line).unwrap();
        line
    };
    let first = std::net::TcpStream::connect(mx).unwrap();
    let second = std::net::TcpStream::connect(mx).unwrap();
    assert!(greeting(&first).starts_with("220"));
    assert!(greeting(&second).starts_with("220"));
    let third = std::net::TcpStream::connect(mx).unwrap();
    assert!(greeting(&third).starts_with("421"));

    // A connection that ends gives its place back.
    drop(first);
    let started = Instant::now();
    loop {
        let again = std::net::TcpStream::connect(mx).unwrap();
        if greeting(&again).starts_with("220") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the place never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn another_accounts_bounce_settles_while_one_accounts_classifier_sleeps() {
    let sink = plain_sink();
    let route = sink.addr().to_string();
    let server = TestServer::start(move |config| {
        config.delivery.enabled = true;
        config.delivery.routes.insert("*".into(), route.into());
        // Never disabled here, so only the account's share of classifier calls bounds it; a
        // long deadline makes each sleeping call hold its slot for a second.
        config.runtime.failures_before_disable = 0;
        config.runtime.deadline = Duration::from_secs(1);
    });
    let api = Api::demo(&server);
    install_classifier(&api);

    let other = crate::util::second_account(&server);
    server.set_default_flow_of(2, Vec::new());

    // Each of these asks the first account's classifier, which sleeps until stopped: at
    // least 24 x 1 s / 4 calls at once = 6 s of it.
    let submitted: Vec<(String, String)> = (0..24)
        .map(|n| {
            let recipient = format!("full{n}@example.net");
            (submit(&api, &recipient), recipient)
        })
        .collect();
    let sleepy: Vec<(String, String, String)> = submitted
        .into_iter()
        .map(|(id, recipient)| {
            let (return_path, sent) = delivered(&server, &sink, &id);
            let report = dsn(
                &recipient,
                "5.2.2",
                "552 5.2.2 Mailbox full classifier-sleep",
                &sent,
            );
            (id, return_path, report)
        })
        .collect();
    let theirs = submit(&other, "gone@example.org");
    let (their_return_path, their_sent) = delivered(&server, &sink, &theirs);
    let their_bounce = dsn(
        "gone@example.org",
        "5.1.1",
        "550 5.1.1 No such user",
        &their_sent,
    );

    for (_, return_path, report) in &sleepy {
        send_to_mx(&server, None, return_path, report).unwrap();
    }
    send_to_mx(&server, None, &their_return_path, &their_bounce).unwrap();
    wait_for(&server, &theirs, |kinds| {
        kinds.iter().any(|kind| kind == "HARDBOUNCE")
    });
    let unsettled = sleepy
        .iter()
        .filter(|(id, _, _)| {
            !event_kinds(&server, id)
                .iter()
                .any(|kind| kind.ends_with("BOUNCE"))
        })
        .count();
    assert!(
        unsettled > 0,
        "the other account's bounce settled only after every sleeping classifier call"
    );
    // The sleeping classifier was stopped each time; the built-in verdict stands.
    for (id, _, _) in &sleepy {
        wait_for(&server, id, |kinds| {
            kinds.iter().any(|kind| kind == "SOFTBOUNCE")
        });
    }
}
