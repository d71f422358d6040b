//! The SMTP dialogue byte by byte, over a raw socket: pipelining, command order, limits,
//! timeouts, AUTH LOGIN, and an enhanced status code on every reply that should have one.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::util::TestServer;

struct Dialogue {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Dialogue {
    fn open(server: &TestServer) -> Self {
        let stream = TcpStream::connect(server.server.smtp_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut dialogue = Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(dialogue.reply().starts_with("220 "));
        dialogue
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// Reads one whole reply (all its lines) and returns its last line.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "short reply line {line:?}");
            if line.as_bytes()[3] != b'-' {
                return line.trim_end().to_string();
            }
        }
    }

    /// Sends one command and checks the start of its reply.
    fn expect(&mut self, command: &str, reply_start: &str) {
        self.send(&format!("{command}\r\n"));
        let reply = self.reply();
        assert!(reply.starts_with(reply_start), "{command} -> {reply}");
    }

    fn login(&mut self, server: &TestServer) {
        let (user, password) = server.demo_login();
        self.expect("EHLO client.example", "250 ");
        let plain = STANDARD.encode(format!("\0{user}\0{password}"));
        self.expect(&format!("AUTH PLAIN {plain}"), "235 2.7.0");
    }
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = TestServer::start(|_| {});
    let (user, password) = server.demo_login();
    let mut dialogue = Dialogue::open(&server);
    let plain = STANDARD.encode(format!("\0{user}\0{password}"));
    dialogue.send(&format!(
        "EHLO client.example\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<app@example.com>\r\n\
         RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
    ));
    let replies: Vec<String> = (0..6).map(|_| dialogue.reply()).collect();
    let codes: Vec<&str> = replies.iter().map(|reply| &reply[..3]).collect();
    assert_eq!(
        codes,
        ["250", "235", "250", "250", "250", "354"],
        "{replies:?}"
    );
    dialogue.send("Subject: pipelined\r\n\r\n..a line starting with a dot\r\n.\r\nQUIT\r\n");
    let queued = dialogue.reply();
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    assert!(dialogue.reply().starts_with("221 2.0.0"));
    let ids: Vec<&str> = queued["250 2.0.0 Ok: queued as ".len()..]
        .split(' ')
        .collect();
    assert_eq!(ids.len(), 2);
    let body = String::from_utf8(server.store().body(ids[0]).unwrap().unwrap()).unwrap();
    assert!(
        body.ends_with("\r\n.a line starting with a dot\r\n"),
        "{body:?}"
    );
}

#[test]
fn commands_out_of_order_get_5xx_with_enhanced_codes() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "503 5.5.1");
    dialogue.expect("EHLO client.example", "250 ");
    dialogue.expect("MAIL FROM:<app@example.com>", "530 5.7.0");
    dialogue.expect("RCPT TO:<a@example.net>", "503 5.5.1");
    dialogue.expect("DATA", "503 5.5.1");
    dialogue.expect("FROBNICATE", "500 5.5.1");
    dialogue.expect("AUTH CRAM-MD5", "504 5.5.4");
    dialogue.expect(&format!("NOOP {}", "x".repeat(5000)), "500 5.5.6");
    dialogue.expect("NOOP", "250 2.0.0");
    dialogue.expect("VRFY someone", "252 2.5.0");
    dialogue.expect("RSET", "250 2.0.0");
    dialogue.expect("QUIT", "221 2.0.0");
}

#[test]
fn recipients_per_transaction_are_capped() {
    let server = TestServer::start(|config| config.smtp.max_recipients = 3);
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    for n in 0..3 {
        dialogue.expect(&format!("RCPT TO:<r{n}@example.net>"), "250 2.1.5");
    }
    dialogue.expect("RCPT TO:<r3@example.net>", "452 4.5.3");
    dialogue.expect("RCPT TO:<no-at-sign>", "501 5.1.3");
}

#[test]
fn the_size_declared_in_mail_from_is_checked() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com> SIZE=999999999", "552 5.3.4");
    dialogue.expect("MAIL FROM:<app@example.com> SIZE=1000", "250 2.1.0");
}

#[test]
fn auth_login_works_step_by_step() {
    let server = TestServer::start(|_| {});
    let (user, password) = server.demo_login();
    let mut dialogue = Dialogue::open(&server);
    dialogue.expect("EHLO client.example", "250 ");
    dialogue.expect("AUTH LOGIN", "334 VXNlcm5hbWU6");
    dialogue.expect(&STANDARD.encode(user), "334 UGFzc3dvcmQ6");
    dialogue.expect(&STANDARD.encode(password), "235 2.7.0");
    dialogue.expect("AUTH LOGIN", "503 5.5.1");
}

#[test]
fn an_idle_connection_is_closed_with_421() {
    let server = TestServer::start(|config| config.smtp.command_timeout_secs = 1);
    let mut dialogue = Dialogue::open(&server);
    dialogue.expect("EHLO client.example", "250 ");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(dialogue.reply().starts_with("421 4.4.2"));
}

#[test]
fn a_dot_right_after_data_ends_the_message() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.expect("RCPT TO:<a@example.net>", "250 2.1.5");
    dialogue.expect("DATA", "354");
    // An empty message: only the trace field the server adds, which is a valid header.
    dialogue.expect(".", "250 2.0.0");
    dialogue.expect("QUIT", "221 2.0.0");
}

#[test]
fn a_helo_name_with_control_characters_is_refused_and_never_reaches_received() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.expect("EHLO evil\0name.example", "501 5.5.2");
    dialogue.expect("HELO evil\u{1}name", "501 5.5.2");
    dialogue.expect("EHLO evil\tname", "501 5.5.2");
    // Nothing was greeted, so no transaction can start.
    dialogue.expect("MAIL FROM:<app@example.com>", "503 5.5.1");
    dialogue.login(&server);
    dialogue.expect("EHLO bad\u{7f}.example", "501 5.5.2");
    // The earlier, valid name stays the one recorded.
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.expect("RCPT TO:<a@example.net>", "250 2.1.5");
    dialogue.expect("DATA", "354");
    dialogue.send("Subject: greeted\r\n\r\nbody\r\n.\r\n");
    let queued = dialogue.reply();
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    let id = &queued["250 2.0.0 Ok: queued as ".len()..];
    let body = String::from_utf8(server.store().body(id).unwrap().unwrap()).unwrap();
    assert!(
        body.starts_with("Received: from client.example ("),
        "{body:?}"
    );
}

#[test]
fn a_header_with_a_nul_is_refused_at_the_end_of_data_and_folded_ones_are_taken() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.expect("RCPT TO:<a@example.net>", "250 2.1.5");
    dialogue.expect("DATA", "354");
    dialogue.send("Subject: a\0b\r\n\r\nbody\r\n.\r\n");
    let refused = dialogue.reply();
    assert!(refused.starts_with("554 5.6.0"), "{refused}");
    assert!(
        refused.contains("NUL") && !refused.contains("CR or LF"),
        "{refused}"
    );
    assert!(server.store().messages_of(1).unwrap().is_empty());

    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.expect("RCPT TO:<a@example.net>", "250 2.1.5");
    dialogue.expect("DATA", "354");
    dialogue.send("Subject: folded\r\n over two lines\r\nX-Tab:\ta\tb\r\n\r\nbody\r\n.\r\n");
    let queued = dialogue.reply();
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    let id = &queued["250 2.0.0 Ok: queued as ".len()..];
    assert_eq!(
        server
            .store()
            .message(id)
            .unwrap()
            .unwrap()
            .subject
            .as_deref(),
        Some("folded over two lines")
    );
}
