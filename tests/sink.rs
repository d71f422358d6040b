//! The SMTP sink delivery tests run against, checked with an independent client (lettre) and
//! with raw command scripts.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use crate::util::sink::{Behaviour, OnConnect, SinkOptions, SmtpSink, Stage, TEMP_FAIL_REPLY};

const MESSAGE: &[u8] =
    b"From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\r\nThanks.\r\n.A line with a leading dot\r\n";

const WAIT: Duration = Duration::from_secs(5);

fn client(sink: &SmtpSink, tls: Tls) -> SmtpTransport {
    SmtpTransport::builder_dangerous(sink.addr().ip().to_string())
        .port(sink.addr().port())
        .tls(tls)
        .timeout(Some(Duration::from_secs(5)))
        .build()
}

fn plain(sink: &SmtpSink) -> SmtpTransport {
    client(sink, Tls::None)
}

fn send(
    transport: &SmtpTransport,
    recipients: &[&str],
) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
    let envelope = Envelope::new(
        Some("bounces@example.com".parse().unwrap()),
        recipients.iter().map(|r| r.parse().unwrap()).collect(),
    )
    .unwrap();
    transport.send_raw(&envelope, MESSAGE)
}

fn status(error: &lettre::transport::smtp::Error) -> String {
    error
        .status()
        .map(|code| code.to_string())
        .unwrap_or_else(|| error.to_string())
}

/// A client speaking SMTP line by line, for what lettre does not do (pipelining, sessions of
/// several messages, misbehaving servers).
struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(sink: &SmtpSink) -> Self {
        let stream = TcpStream::connect(sink.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Connects, reads the greeting and says EHLO; returns the EHLO reply.
    fn ehlo(sink: &SmtpSink) -> (Self, String) {
        let mut raw = Self::connect(sink);
        assert!(raw.reply().starts_with("220 "));
        raw.send("EHLO client.test\r\n");
        let ehlo = raw.reply();
        assert!(ehlo.starts_with("250-"), "{ehlo}");
        (raw, ehlo)
    }

    fn send(&mut self, text: &str) {
        self.reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    /// One whole reply, its lines joined with "\n"; panics when the connection ends first.
    fn reply(&mut self) -> String {
        self.try_reply().expect("the connection closed")
    }

    /// One whole reply, or `None` when the server closed the connection.
    fn try_reply(&mut self) -> Option<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                assert!(lines.is_empty(), "closed within a reply: {lines:?}");
                return None;
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Some(lines.join("\n"));
            }
        }
    }

    /// Sends a command and expects a reply with this code.
    fn expect(&mut self, command: &str, code: &str) -> String {
        self.send(command);
        let reply = self.reply();
        assert!(reply.starts_with(code), "{command:?} got {reply:?}");
        reply
    }

    /// Whether the server stays silent for `wait` (the connection open, nothing to read).
    fn silent_for(&mut self, wait: Duration) -> bool {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let silent = match self.reader.read(&mut byte) {
            Ok(_) => false,
            Err(error) => matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        silent
    }

    /// Whether the server closed the connection (without writing anything more).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(0))
    }

    fn quit(mut self) {
        self.expect("QUIT\r\n", "221 ");
        assert!(self.closed());
    }
}

/// Polls `condition` for up to five seconds.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

#[test]
fn accepts_and_records_a_message_from_a_real_client() {
    let sink = SmtpSink::start();
    let transport = plain(&sink);
    let response = send(&transport, &["ann@example.net", "bob@example.net"]).unwrap();
    assert_eq!(response.code().to_string(), "250");

    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.mail_from, "bounces@example.com");
    assert_eq!(message.rcpt_to, ["ann@example.net", "bob@example.net"]);
    // lettre ends the content with its own CRLF before the final dot; the leading dot of the
    // last line was stuffed by the client and removed by the sink.
    assert_eq!(message.data, [MESSAGE, b"\r\n"].concat());
    assert!(!message.tls);
    assert_eq!(message.session, 1);
    assert!(!message.helo.is_empty());
    assert!(message.mail_params.is_empty(), "{:?}", message.mail_params);
    assert_eq!(sink.connections(), 1);
    assert_eq!(sink.attempts_for("ANN@example.net"), 1);

    let commands = sink.commands(1);
    assert!(commands[0].starts_with("EHLO "), "{commands:?}");
    assert!(commands.contains(&"MAIL FROM:<bounces@example.com>".to_string()));
    assert!(commands.contains(&"RCPT TO:<bob@example.net>".to_string()));
    assert!(commands.contains(&"DATA".to_string()));
    // Content lines are not commands.
    assert!(
        !commands.iter().any(|c| c.contains("Subject")),
        "{commands:?}"
    );
    // lettre waits for each reply, so every command came in a read of its own.
    assert!(sink.batches(1).iter().all(|batch| batch.len() == 1));
}

#[test]
fn rejects_a_scripted_recipient_at_rcpt_and_keeps_the_others() {
    let sink = SmtpSink::start();
    sink.set_behaviour(
        "nobody@example.net",
        Behaviour::PermFail {
            at: Stage::Rcpt,
            reply: "550 5.1.1 no such user".into(),
        },
    );
    let error = send(&plain(&sink), &["nobody@example.net"]).unwrap_err();
    assert!(error.is_permanent(), "{error}");
    assert_eq!(status(&error), "550");
    assert_eq!(sink.attempts_for("nobody@example.net"), 1);

    let (mut raw, _) = Raw::ehlo(&sink);
    raw.expect("MAIL FROM:<bounces@example.com>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    let rejected = raw.expect("RCPT TO:<Nobody@Example.net>\r\n", "550 ");
    assert_eq!(rejected, "550 5.1.1 no such user");
    raw.expect("DATA\r\n", "354 ");
    raw.expect("Hello\r\n.\r\n", "250 ");
    raw.quit();

    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["ann@example.net"]);
    assert_eq!(received[0].data, b"Hello\r\n");
    assert_eq!(received[0].session, 2);
    assert_eq!(sink.attempts_for("nobody@example.net"), 2);
    assert_eq!(sink.attempts_for("ann@example.net"), 1);
}

#[test]
fn fails_at_the_end_of_data_when_scripted_there() {
    let sink = SmtpSink::start();
    sink.set_default(Behaviour::PermFail {
        at: Stage::Data,
        reply: "554 5.7.1 content rejected".into(),
    });
    sink.set_behaviour(
        "later@example.net",
        Behaviour::TempFail {
            at: Stage::Data,
            reply: "452 4.2.2 mailbox full".into(),
        },
    );
    let (mut raw, _) = Raw::ehlo(&sink);
    raw.expect("MAIL FROM:<>\r\n", "250 ");
    // Both recipients pass RCPT; the first in order decides the answer to the content.
    raw.expect("RCPT TO:<later@example.net>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.expect("DATA\r\n", "354 ");
    let reply = raw.expect("Hello\r\n.\r\n", "452 ");
    assert_eq!(reply, "452 4.2.2 mailbox full");
    raw.expect("MAIL FROM:<>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.expect("DATA\r\n", "354 ");
    raw.expect("Hello\r\n.\r\n", "554 5.7.1 content rejected");
    raw.quit();
    assert!(sink.received().is_empty());

    sink.set_default(Behaviour::Accept);
    send(&plain(&sink), &["ann@example.net"]).unwrap();
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
}

#[test]
fn temp_fails_a_recipient_the_first_times_then_accepts() {
    let sink = SmtpSink::start();
    sink.set_behaviour(
        "grey@example.net",
        Behaviour::TempFailThenAccept {
            at: Stage::Rcpt,
            times: 2,
        },
    );
    let transport = plain(&sink);
    for attempt in 1..=2 {
        let error = send(&transport, &["grey@example.net"]).unwrap_err();
        assert!(error.is_transient(), "attempt {attempt}: {error}");
        assert_eq!(status(&error), "451");
        assert_eq!(sink.attempts_for("grey@example.net"), attempt);
    }
    assert!(sink.received().is_empty());
    send(&transport, &["grey@example.net"]).unwrap();
    assert_eq!(sink.attempts_for("grey@example.net"), 3);
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["grey@example.net"]);

    // At the end of data: the RCPT passes, the content is answered 4xx once.
    sink.set_default(Behaviour::TempFailThenAccept {
        at: Stage::Data,
        times: 1,
    });
    let (mut raw, _) = Raw::ehlo(&sink);
    for expected in [TEMP_FAIL_REPLY, "250 "] {
        raw.expect("MAIL FROM:<bounces@example.com>\r\n", "250 ");
        raw.expect("RCPT TO:<dave@example.net>\r\n", "250 ");
        raw.expect("DATA\r\n", "354 ");
        raw.expect("Hi\r\n.\r\n", expected);
    }
    raw.quit();
    assert_eq!(sink.attempts_for("dave@example.net"), 2);
    assert_eq!(sink.wait_for(2, WAIT).len(), 2);
}

#[test]
fn starttls_with_a_real_client() {
    let sink = SmtpSink::start();
    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    send(&client(&sink, Tls::Required(tls)), &["ann@example.net"]).unwrap();
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    let commands = sink.commands(1);
    let ehlos = commands.iter().filter(|c| c.starts_with("EHLO ")).count();
    assert_eq!(ehlos, 2, "EHLO again after STARTTLS: {commands:?}");
    assert!(commands.contains(&"STARTTLS".to_string()));

    // A client that trusts exactly the sink's certificate verifies it.
    let certificate = Certificate::from_der(SmtpSink::certificate_der()).unwrap();
    let tls = TlsParameters::builder("localhost".into())
        .add_root_certificate(certificate)
        .build_rustls()
        .unwrap();
    send(&client(&sink, Tls::Required(tls)), &["bob@example.net"]).unwrap();
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    assert!(received[1].tls);

    // Without STARTTLS on offer a client that requires it gives up, and nothing arrives.
    sink.set_tls(false);
    let (mut raw, ehlo) = Raw::ehlo(&sink);
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    raw.expect("STARTTLS\r\n", "502 ");
    raw.quit();
    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    assert!(send(&client(&sink, Tls::Required(tls)), &["cy@example.net"]).is_err());
    assert_eq!(sink.received().len(), 2);
}

#[test]
fn serves_pipelined_commands_and_several_messages_per_session() {
    let sink = SmtpSink::start();
    let (mut raw, ehlo) = Raw::ehlo(&sink);
    for extension in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 0",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(ehlo.lines().any(|line| &line[4..] == extension), "{ehlo}");
    }
    raw.send(
        "MAIL FROM:<bounces@example.com> BODY=8BITMIME SIZE=20\r\n\
         RCPT TO:<ann@example.net>\r\n\
         RCPT TO:<bob@example.net> NOTIFY=NEVER\r\n\
         DATA\r\n",
    );
    for code in ["250 ", "250 ", "250 ", "354 "] {
        let reply = raw.reply();
        assert!(reply.starts_with(code), "{reply}");
    }
    // Dot-stuffed content, then the next transaction in the same write.
    raw.send(
        "..dotted\r\nplain\r\n\r\n.\r\n\
         RSET\r\n\
         MAIL FROM:<>\r\n\
         RCPT TO:<cy@example.net>\r\n\
         DATA\r\n",
    );
    for code in ["250 ", "250 ", "250 ", "250 ", "354 "] {
        let reply = raw.reply();
        assert!(reply.starts_with(code), "{reply}");
    }
    // An empty message: the terminator right away.
    raw.send(".\r\nNOOP\r\n");
    assert!(raw.reply().starts_with("250 "));
    assert!(raw.reply().starts_with("250 "));
    raw.quit();

    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].rcpt_to, ["ann@example.net", "bob@example.net"]);
    assert_eq!(received[0].mail_params, ["BODY=8BITMIME", "SIZE=20"]);
    assert_eq!(received[0].data, b".dotted\r\nplain\r\n\r\n");
    assert_eq!(received[1].mail_from, "");
    assert_eq!(received[1].rcpt_to, ["cy@example.net"]);
    assert_eq!(received[1].data, b"");
    assert!(received.iter().all(|message| message.session == 1));
    assert_eq!(sink.connections(), 1);

    let batches = sink.batches(1);
    assert!(
        batches.contains(&vec![
            "MAIL FROM:<bounces@example.com> BODY=8BITMIME SIZE=20".to_string(),
            "RCPT TO:<ann@example.net>".to_string(),
            "RCPT TO:<bob@example.net> NOTIFY=NEVER".to_string(),
            "DATA".to_string(),
        ]),
        "{batches:?}"
    );
    assert!(
        batches.contains(&vec![
            "RSET".to_string(),
            "MAIL FROM:<>".to_string(),
            "RCPT TO:<cy@example.net>".to_string(),
            "DATA".to_string(),
        ]),
        "{batches:?}"
    );
    assert_eq!(sink.commands(1).last().unwrap(), "QUIT");
}

#[test]
fn enforces_sequence_and_size() {
    let sink = SmtpSink::start_with(SinkOptions {
        tls: false,
        advertise_pipelining: false,
        max_size: Some(64),
        login: None,
    });
    let mut raw = Raw::connect(&sink);
    assert!(raw.reply().starts_with("220 "));
    raw.expect("MAIL FROM:<a@example.com>\r\n", "503 ");
    raw.expect("HELO client.test\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "503 ");
    raw.expect("MAIL FROM:<a@example.com>\r\n", "250 ");
    raw.expect("DATA\r\n", "554 ");
    raw.expect("RSET\r\n", "250 ");
    raw.expect("BOGUS\r\n", "500 ");
    raw.expect("NOOP\r\n", "250 ");
    let ehlo = raw.expect("EHLO client.test\r\n", "250-");
    assert!(ehlo.contains("SIZE 64"), "{ehlo}");
    assert!(!ehlo.contains("PIPELINING"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    raw.expect("MAIL FROM:<a@example.com> SIZE=65\r\n", "552 ");
    raw.expect("MAIL FROM:<a@example.com> SIZE=10\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.expect("DATA\r\n", "354 ");
    let big = "x".repeat(70);
    raw.expect(&format!("{big}\r\n.\r\n"), "552 ");
    raw.expect("MAIL FROM:<a@example.com>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.expect("DATA\r\n", "354 ");
    raw.expect("small\r\n.\r\n", "250 ");
    raw.quit();
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].data, b"small\r\n");
    assert_eq!(received[0].helo, "client.test");
}

#[test]
fn drops_the_connection_after_data_or_on_rcpt() {
    let sink = SmtpSink::start();
    sink.set_default(Behaviour::DropAfterData);
    let (mut raw, _) = Raw::ehlo(&sink);
    raw.expect("MAIL FROM:<bounces@example.com>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.expect("DATA\r\n", "354 ");
    raw.send("Hello\r\n.\r\n");
    assert!(raw.closed(), "closed with no reply");
    assert!(sink.received().is_empty());
    // A real client sees a failure that is not an SMTP reply.
    let error = send(&plain(&sink), &["ann@example.net"]).unwrap_err();
    assert!(error.status().is_none(), "{error}");

    sink.set_default(Behaviour::Accept);
    sink.set_behaviour("gone@example.net", Behaviour::DropOnRcpt);
    let (mut raw, _) = Raw::ehlo(&sink);
    raw.expect("MAIL FROM:<bounces@example.com>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.send("RCPT TO:<gone@example.net>\r\n");
    assert!(raw.closed(), "closed with no reply");
    assert_eq!(sink.attempts_for("gone@example.net"), 1);

    sink.clear_behaviours();
    send(&plain(&sink), &["gone@example.net"]).unwrap();
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
}

#[test]
fn stalls_and_refuses_as_scripted() {
    let sink = SmtpSink::start();
    sink.set_default(Behaviour::Stall { at: Stage::Data });
    let (mut raw, _) = Raw::ehlo(&sink);
    raw.expect("MAIL FROM:<bounces@example.com>\r\n", "250 ");
    raw.expect("RCPT TO:<ann@example.net>\r\n", "250 ");
    raw.expect("DATA\r\n", "354 ");
    raw.send("Hello\r\n.\r\nNOOP\r\n");
    assert!(raw.silent_for(Duration::from_millis(300)));
    assert!(sink.received().is_empty());
    // The client gives up: the sink lets the connection go.
    raw.reader.get_ref().shutdown(Shutdown::Both).unwrap();
    assert!(eventually(|| sink.open_connections() == 0));

    sink.set_default(Behaviour::Accept);
    sink.set_on_connect(OnConnect::Stall);
    let mut raw = Raw::connect(&sink);
    assert!(raw.silent_for(Duration::from_millis(300)), "no greeting");
    drop(raw);

    sink.set_on_connect(OnConnect::Refuse("421 4.3.2 too busy".into()));
    let mut raw = Raw::connect(&sink);
    assert_eq!(raw.reply(), "421 4.3.2 too busy");
    assert!(raw.closed());

    sink.set_on_connect(OnConnect::Drop);
    let mut raw = Raw::connect(&sink);
    assert_eq!(raw.try_reply(), None);

    sink.set_on_connect(OnConnect::Greet);
    send(&plain(&sink), &["ann@example.net"]).unwrap();
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    assert_eq!(sink.connections(), 5);
}

#[test]
fn counts_concurrent_connections() {
    let sink = SmtpSink::start();
    // One after another: never two open at once (QUIT is answered after the connection stops
    // counting).
    for _ in 0..3 {
        let (mut raw, _) = Raw::ehlo(&sink);
        // Reconnects as soon as QUIT is answered, without waiting for the close.
        raw.expect("QUIT\r\n", "221 ");
    }
    assert_eq!(sink.connections(), 3);
    assert_eq!(sink.max_concurrent_connections(), 1);

    let (first, _) = Raw::ehlo(&sink);
    let (second, _) = Raw::ehlo(&sink);
    assert_eq!(sink.open_connections(), 2);
    assert_eq!(sink.max_concurrent_connections(), 2);
    first.quit();
    second.quit();
    assert_eq!(sink.open_connections(), 0);

    // Two real clients at once, each message held for a while: their connections overlap.
    sink.set_delay(Duration::from_millis(800));
    let started = Instant::now();
    let ready = std::sync::Barrier::new(3);
    std::thread::scope(|scope| {
        for rcpt in ["ann@example.net", "bob@example.net", "cy@example.net"] {
            let (sink, ready) = (&sink, &ready);
            scope.spawn(move || {
                let transport = plain(sink);
                ready.wait();
                send(&transport, &[rcpt]).unwrap()
            });
        }
    });
    assert!(started.elapsed() >= Duration::from_millis(800));
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3);
    assert_eq!(sink.max_concurrent_connections(), 3);
    let mut sessions: Vec<u64> = received.iter().map(|message| message.session).collect();
    sessions.sort_unstable();
    assert_eq!(sessions, [6, 7, 8]);
}

#[test]
fn stops_when_dropped() {
    let sink = SmtpSink::start();
    sink.set_default(Behaviour::Stall { at: Stage::Rcpt });
    let addr = sink.addr();
    let (mut raw, _) = Raw::ehlo(&sink);
    raw.expect("MAIL FROM:<bounces@example.com>\r\n", "250 ");
    raw.send("RCPT TO:<ann@example.net>\r\n");
    let started = Instant::now();
    drop(sink);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(raw.closed(), "a stalled connection is closed too");
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn pipelines_under_tls_and_ignores_clear_text_sent_after_starttls() {
    let sink = SmtpSink::start();
    let (mut raw, ehlo) = Raw::ehlo(&sink);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    // A command injected after STARTTLS in the same clear-text write must be thrown away.
    raw.send("STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n");
    assert!(raw.reply().starts_with("220 "));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            SmtpSink::certificate_der(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .unwrap();
    let tcp = raw.reader.into_inner();
    let mut tls = BufReader::new(rustls::StreamOwned::new(connection, tcp));
    type TlsStream = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;
    let send = |tls: &mut TlsStream, text: &str| {
        tls.get_mut().write_all(text.as_bytes()).unwrap();
        tls.get_mut().flush().unwrap();
    };
    let read = |tls: &mut TlsStream| {
        let mut lines = String::new();
        loop {
            let mut line = String::new();
            assert_ne!(tls.read_line(&mut line).unwrap(), 0, "closed after {lines}");
            lines.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return lines;
            }
        }
    };
    // Before EHLO again, MAIL is out of sequence: the session started over.
    send(&mut tls, "MAIL FROM:<a@example.com>\r\n");
    assert!(read(&mut tls).starts_with("503 "));
    send(&mut tls, "EHLO client.test\r\n");
    let ehlo = read(&mut tls);
    assert!(
        ehlo.contains("PIPELINING") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    send(
        &mut tls,
        "MAIL FROM:<a@example.com>\r\nRCPT TO:<ann@example.net>\r\nDATA\r\n",
    );
    for code in ["250 ", "250 ", "354 "] {
        let reply = read(&mut tls);
        assert!(reply.starts_with(code), "{reply}");
    }
    send(&mut tls, "secret\r\n.\r\nQUIT\r\n");
    assert!(read(&mut tls).starts_with("250 "));
    assert!(read(&mut tls).starts_with("221 "));

    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert_eq!(received[0].data, b"secret\r\n");
    let commands = sink.commands(1);
    assert!(
        !commands.iter().any(|c| c.contains("injected")),
        "{commands:?}"
    );
    assert!(sink.batches(1).contains(&vec![
        "MAIL FROM:<a@example.com>".to_string(),
        "RCPT TO:<ann@example.net>".to_string(),
        "DATA".to_string(),
    ]));
}
