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
fn a_data_that_trickles_in_is_cut_off_with_421() {
    let server = TestServer::start(|config| config.smtp.max_data_secs = 2);
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.expect("RCPT TO:<a@example.net>", "250 2.1.5");
    dialogue.expect("DATA", "354");
    // One byte at a time, each well within the per-read timeout, for longer than DATA may
    // take in all.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let mut writer = dialogue.writer.try_clone().unwrap();
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            for _ in 0..150 {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || writer.write_all(b"x").is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let reply = dialogue.reply();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    let mut rest = String::new();
    assert_eq!(
        dialogue.reader.read_line(&mut rest).unwrap_or(0),
        0,
        "{rest}"
    );
}

#[test]
fn the_bytes_of_a_bdat_chunk_are_never_run_as_commands() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    let chunk = "RCPT TO:<victim@example.net>\r\nNOOP\r\nQUIT\r\n";
    dialogue.send(&format!("BDAT {} LAST\r\n{chunk}", chunk.len()));
    let mut replies = Vec::new();
    loop {
        let mut line = String::new();
        match dialogue.reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => replies.push(line.trim_end().to_string()),
        }
    }
    assert!(
        !replies.iter().any(|reply| reply.starts_with("250 2.1.5")
            || reply.starts_with("250 2.0.0 OK")
            || reply.starts_with("221")),
        "the chunk was read as commands: {replies:?}"
    );
    assert!(
        replies
            .first()
            .is_some_and(|reply| reply.starts_with("421 ")),
        "{replies:?}"
    );
}

#[test]
fn a_bdat_whose_size_cannot_be_read_closes_the_connection() {
    let server = TestServer::start(|_| {});
    let mut dialogue = Dialogue::open(&server);
    dialogue.login(&server);
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.send("BDAT 12x\r\nNOOP\r\nQUIT\r\n");
    let reply = dialogue.reply();
    assert!(reply.starts_with("421 "), "{reply}");
    let mut rest = String::new();
    assert_eq!(
        dialogue.reader.read_line(&mut rest).unwrap_or(0),
        0,
        "{rest}"
    );
}

/// Starts a transaction and sends `body` (without the final dot); returns the reply to DATA
/// if it was not 354.
fn start_data(dialogue: &mut Dialogue, body: &[u8]) -> Option<String> {
    dialogue.expect("MAIL FROM:<app@example.com>", "250 2.1.0");
    dialogue.expect("RCPT TO:<a@example.net>", "250 2.1.5");
    dialogue.send("DATA\r\n");
    let reply = dialogue.reply();
    if !reply.starts_with("354") {
        return Some(reply);
    }
    dialogue.writer.write_all(body).unwrap();
    None
}

/// A whole transaction; returns the last reply (to DATA or to the final dot).
fn transaction(dialogue: &mut Dialogue, body: &[u8]) -> String {
    if let Some(reply) = start_data(dialogue, body) {
        return reply;
    }
    dialogue.send(".\r\n");
    dialogue.reply()
}

/// A message of about `bytes` bytes in lines of 100.
fn big_message(bytes: usize) -> Vec<u8> {
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    let line = format!("{}\r\n", "y".repeat(98));
    while message.len() < bytes {
        message.extend_from_slice(line.as_bytes());
    }
    message
}

/// Runs transactions on `dialogue` until one ends with a reply starting with `wanted`.
fn until_reply(dialogue: &mut Dialogue, body: &[u8], wanted: &str) {
    let started = std::time::Instant::now();
    loop {
        let reply = transaction(dialogue, body);
        if reply.starts_with(wanted) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never got {wanted}, last {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until unfinished messages hold at least `bytes` of the server's memory budget.
fn wait_for_budget_use(server: &TestServer, at_least: usize) {
    let budget = &server.server.data_budget;
    let started = std::time::Instant::now();
    while budget.used() < at_least {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the unfinished message never arrived: {} bytes held",
            budget.used()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unfinished_data_over_the_memory_budget_gets_452_until_it_is_released() {
    let server = TestServer::start(|config| config.smtp.max_data_memory_bytes = 2 << 20);
    let big = big_message(1_500_000);
    let second = big_message(1_000_000);

    let mut holder = Dialogue::open(&server);
    holder.login(&server);
    assert_eq!(start_data(&mut holder, &big), None);
    wait_for_budget_use(&server, big.len());
    // The other's message does not fit beside it: its bytes are read and dropped, and the
    // connection goes on.
    let mut other = Dialogue::open(&server);
    other.login(&server);
    let refused = transaction(&mut other, &second);
    assert!(refused.starts_with("452 4.3.1"), "{refused}");

    holder.send(".\r\n");
    let done = holder.reply();
    assert!(done.starts_with("250 2.0.0"), "{done}");
    let accepted = transaction(&mut other, &second);
    assert!(accepted.starts_with("250 2.0.0"), "{accepted}");

    // A holder that goes away gives its memory back too.
    let mut quitter = Dialogue::open(&server);
    quitter.login(&server);
    assert_eq!(start_data(&mut quitter, &big), None);
    wait_for_budget_use(&server, big.len());
    let refused = transaction(&mut other, &second);
    assert!(refused.starts_with("452 4.3.1"), "{refused}");
    drop(quitter);
    until_reply(&mut other, &second, "250 2.0.0");
    other.expect("QUIT", "221 2.0.0");
    let started = std::time::Instant::now();
    while server.server.data_budget.used() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "memory never given back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
