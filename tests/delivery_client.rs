//! The outbound SMTP client against a small scripted server on loopback: pipelining, session
//! reuse, STARTTLS, refusals, broken and stalled connections, endless and trickled replies,
//! dot-stuffing and 8BITMIME.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sluice::delivery::client::{
    ClientConfig, Credentials, DeliveryFailure, SmtpSession, Stage, TlsPolicy,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Long enough never to fire on a busy machine unless something is really stuck.
const PATIENT: Duration = Duration::from_secs(10);
/// For the tests that wait for a timeout on purpose.
const IMPATIENT: Duration = Duration::from_secs(1);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the server does once it has read the message.
#[derive(Clone, Copy, PartialEq)]
enum AtData {
    Accept,
    /// Drops the connection after the first line of the message.
    Drop,
    /// Reads the whole message and never answers.
    Stall,
}

#[derive(Clone)]
struct Script {
    extensions: Vec<&'static str>,
    starttls: bool,
    /// Offers STARTTLS, says 220, then answers the handshake with plain text.
    broken_tls: bool,
    /// Offers STARTTLS and sends a forged reply right behind its 220, before any handshake.
    inject_after_starttls: bool,
    refuse_ehlo: bool,
    silent: bool,
    rcpt_reply: &'static str,
    at_data: AtData,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            extensions: vec!["PIPELINING", "8BITMIME", "SIZE 1000000"],
            starttls: false,
            broken_tls: false,
            inject_after_starttls: false,
            refuse_ehlo: false,
            silent: false,
            rcpt_reply: "250 2.1.5 ok",
            at_data: AtData::Accept,
        }
    }
}

/// What the server saw.
#[derive(Default, Debug)]
struct Seen {
    connections: usize,
    commands: Vec<String>,
    /// Each message as received, unstuffed, without the final `.` line.
    messages: Vec<Vec<u8>>,
    tls: bool,
}

struct Sink {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Sink {
    async fn start(script: Script) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let acceptor = script.starttls.then(acceptor);
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(serve(
                    Box::new(tcp),
                    script.clone(),
                    acceptor.clone(),
                    shared.clone(),
                ));
            }
        });
        Sink { addr, seen }
    }

    fn commands(&self) -> Vec<String> {
        self.seen.lock().unwrap().commands.clone()
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().messages.clone()
    }
}

fn acceptor() -> TlsAcceptor {
    let generated = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

struct Conn {
    io: Box<dyn Io>,
    buffer: Vec<u8>,
}

impl Conn {
    /// One line with its line ending; None at the end of the connection.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                return Some(self.buffer.drain(..=end).collect());
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn say(&mut self, text: &str) {
        let _ = self.io.write_all(text.as_bytes()).await;
        let _ = self.io.flush().await;
    }
}

async fn serve(io: Box<dyn Io>, script: Script, tls: Option<TlsAcceptor>, seen: Arc<Mutex<Seen>>) {
    let mut conn = Conn {
        io,
        buffer: Vec::new(),
    };
    if script.silent {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return;
    }
    conn.say("220 sink.test ESMTP\r\n").await;
    // Only a server that answered EHLO has announced PIPELINING.
    let pipelining = script.extensions.contains(&"PIPELINING") && !script.refuse_ehlo;
    // Replies to MAIL and RCPT wait for DATA when pipelining (RFC 2920 allows it): a client
    // that waited for them between commands would hang and time out.
    let mut held = String::new();
    let mut recipient = false;
    let mut secure = false;
    while let Some(line) = conn.line().await {
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        seen.lock().unwrap().commands.push(command.clone());
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" if script.refuse_ehlo => "502 5.5.2 what?".to_string(),
            "EHLO" => {
                let mut lines = vec!["sink.test"];
                lines.extend(&script.extensions);
                let offers_tls = tls.is_some() || script.broken_tls || script.inject_after_starttls;
                if offers_tls && !secure {
                    lines.push("STARTTLS");
                }
                let last = lines.len() - 1;
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, line)| format!("250{}{line}", if i == last { ' ' } else { '-' }))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            }
            "HELO" => "250 sink.test".into(),
            "STARTTLS" if script.inject_after_starttls => {
                conn.say("220 2.0.0 go ahead\r\n250 2.0.0 forged\r\n").await;
                return;
            }
            "STARTTLS" => {
                conn.say("220 2.0.0 go ahead\r\n").await;
                if script.broken_tls {
                    // After a pause, so it reaches the handshake rather than the 220's read.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    conn.say("250 this is not TLS\r\n").await;
                    return;
                }
                let acceptor = tls.clone().unwrap();
                let Ok(stream) = acceptor.accept(conn.io).await else {
                    return;
                };
                conn.io = Box::new(stream);
                secure = true;
                seen.lock().unwrap().tls = true;
                continue;
            }
            "AUTH" if command.eq_ignore_ascii_case("AUTH LOGIN") => {
                let mut answers = Vec::new();
                for prompt in ["VXNlcm5hbWU6", "UGFzc3dvcmQ6"] {
                    conn.say(&format!("334 {prompt}\r\n")).await;
                    let Some(answer) = conn.line().await else {
                        return;
                    };
                    let answer = String::from_utf8_lossy(&answer).trim_end().to_string();
                    answers.push(String::from_utf8(BASE64.decode(answer).unwrap()).unwrap());
                }
                seen.lock().unwrap().commands.push(answers.join(":"));
                if answers == ["relay-user", "relay-pass"] {
                    "235 2.7.0 ok".into()
                } else {
                    "535 5.7.8 no".into()
                }
            }
            "MAIL" => "250 2.1.0 ok".into(),
            "RCPT" => {
                recipient = script.rcpt_reply.starts_with('2');
                script.rcpt_reply.into()
            }
            "DATA" if !recipient => "554 5.5.1 no valid recipients".into(),
            "DATA" => {
                conn.say(&format!("{held}354 go on\r\n")).await;
                held.clear();
                let mut message = Vec::new();
                loop {
                    let Some(line) = conn.line().await else {
                        return;
                    };
                    if line == b".\r\n" {
                        break;
                    }
                    if script.at_data == AtData::Drop {
                        return;
                    }
                    message.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                }
                seen.lock().unwrap().messages.push(message);
                recipient = false;
                if script.at_data == AtData::Stall {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                conn.say("250 2.0.0 queued\r\n").await;
                continue;
            }
            "RSET" => {
                recipient = false;
                "250 2.0.0 ok".into()
            }
            "QUIT" => {
                conn.say("221 2.0.0 bye\r\n").await;
                return;
            }
            _ => "500 5.5.1 unknown command".into(),
        };
        held.push_str(&reply);
        held.push_str("\r\n");
        if !(pipelining && matches!(verb.as_str(), "MAIL" | "RCPT")) {
            conn.say(&held).await;
            held.clear();
        }
    }
}

fn config(tls: TlsPolicy) -> ClientConfig {
    ClientConfig::new("client.test")
        .with_all_timeouts(PATIENT)
        .with_tls(tls)
}

async fn connect(sink: &Sink, config: &ClientConfig) -> Result<SmtpSession, DeliveryFailure> {
    SmtpSession::connect(sink.addr, "mx.test", config).await
}

const MESSAGE: &[u8] = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n";

#[tokio::test]
async fn pipelined_send_does_not_wait_between_commands() {
    let sink = Sink::start(Script::default()).await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(session.tls_info().is_none());
    assert_eq!(session.size_limit(), Some(1_000_000));
    let reply = session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap();
    assert_eq!(reply.to_string(), "250 2.0.0 queued");
    assert_eq!(sink.messages(), vec![MESSAGE.to_vec()]);
    let commands = sink.commands();
    assert_eq!(
        commands[1..],
        [
            format!("MAIL FROM:<a@example.com> SIZE={}", MESSAGE.len()),
            "RCPT TO:<b@example.net>".to_string(),
            "DATA".to_string(),
        ]
    );
    session.quit().await.unwrap();
}

#[tokio::test]
async fn one_connection_carries_several_messages() {
    let sink = Sink::start(Script::default()).await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    session
        .send("a@example.com", "b@example.net", b"first\r\n")
        .await
        .unwrap();
    session.reset().await.unwrap();
    session
        .send("", "c@example.net", b"second\r\n")
        .await
        .unwrap();
    assert!(session.is_usable());
    session.quit().await.unwrap();
    assert_eq!(sink.seen.lock().unwrap().connections, 1);
    assert_eq!(
        sink.messages(),
        vec![b"first\r\n".to_vec(), b"second\r\n".to_vec()]
    );
    let commands = sink.commands();
    assert!(commands.contains(&"RSET".to_string()));
    assert!(commands.contains(&"MAIL FROM:<> SIZE=8".to_string()));
    assert_eq!(commands.last().unwrap(), "QUIT");
}

#[tokio::test]
async fn starttls_is_used_when_offered_and_recorded() {
    let sink = Sink::start(Script {
        starttls: true,
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let info = session.tls_info().unwrap().clone();
    assert!(info.version.starts_with("TLSv1."), "{info:?}");
    assert!(info.cipher.starts_with("TLS"), "{info:?}");
    session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap();
    session.quit().await.unwrap();
    assert!(sink.seen.lock().unwrap().tls);
    let commands = sink.commands();
    assert_eq!(
        commands[..3],
        ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    );
    assert_eq!(sink.messages(), vec![MESSAGE.to_vec()]);
}

#[tokio::test]
async fn starttls_is_skipped_when_disabled() {
    let sink = Sink::start(Script {
        starttls: true,
        ..Script::default()
    })
    .await;
    let session = connect(&sink, &config(TlsPolicy::Disabled)).await.unwrap();
    assert!(session.tls_info().is_none());
    assert!(!sink.commands().contains(&"STARTTLS".to_string()));
}

#[tokio::test]
async fn required_tls_fails_without_starttls() {
    let sink = Sink::start(Script::default()).await;
    let failure = connect(&sink, &config(TlsPolicy::Require))
        .await
        .unwrap_err();
    let DeliveryFailure::Tls(text) = &failure else {
        panic!("{failure:?}");
    };
    assert!(text.contains("required"), "{text}");
    assert!(!failure.is_permanent());
    assert!(!sink.commands().iter().any(|c| c.starts_with("MAIL")));
}

#[tokio::test]
async fn permanent_recipient_refusal_keeps_the_reply_and_the_session() {
    let sink = Sink::start(Script {
        rcpt_reply: "550 5.1.1 user unknown",
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let failure = session
        .send("a@example.com", "nobody@example.net", MESSAGE)
        .await
        .unwrap_err();
    assert!(failure.is_permanent());
    assert_eq!(failure.stage(), Some(Stage::RcptTo));
    assert_eq!(failure.snippet(), "550 5.1.1 user unknown");
    assert_eq!(failure.reply().unwrap().enhanced, Some((5, 1, 1)));
    // The failed transaction was reset and the session can go on.
    assert!(session.is_usable());
    assert_eq!(sink.commands().last().unwrap(), "RSET");
    assert!(sink.messages().is_empty());
    session.reset().await.unwrap();
}

#[tokio::test]
async fn transient_refusal_without_pipelining_stops_early() {
    let sink = Sink::start(Script {
        extensions: vec!["8BITMIME"],
        rcpt_reply: "450 4.2.1 try later",
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let failure = session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap_err();
    assert!(!failure.is_permanent());
    assert!(matches!(
        &failure,
        DeliveryFailure::Rejected { stage: Stage::RcptTo, reply } if reply.code == 450
    ));
    let commands = sink.commands();
    assert!(!commands.contains(&"DATA".to_string()), "{commands:?}");
    assert!(commands[1].starts_with("MAIL FROM:<a@example.com>"));
    assert!(!commands[1].contains("SIZE="), "SIZE was not offered");
    assert!(session.is_usable());
}

#[tokio::test]
async fn helo_is_used_when_ehlo_is_refused() {
    let sink = Sink::start(Script {
        refuse_ehlo: true,
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(session.ehlo_reply().is_none());
    assert_eq!(session.capabilities(), 0);
    session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        sink.commands()[..2],
        ["EHLO client.test", "HELO client.test"]
    );
}

#[tokio::test]
async fn a_connection_dropped_during_data_is_a_connection_failure() {
    let sink = Sink::start(Script {
        at_data: AtData::Drop,
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let failure = session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap_err();
    assert!(
        matches!(failure, DeliveryFailure::Connection(_)),
        "{failure:?}"
    );
    assert!(!failure.is_permanent());
    assert!(!session.is_usable());
    let again = session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap_err();
    assert!(matches!(again, DeliveryFailure::Connection(_)));
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let sink = Sink::start(Script {
        at_data: AtData::Stall,
        ..Script::default()
    })
    .await;
    let config = ClientConfig::new("client.test").with_all_timeouts(IMPATIENT);
    let mut session = connect(&sink, &config).await.unwrap();
    let started = Instant::now();
    let failure = session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap_err();
    assert_eq!(
        failure,
        DeliveryFailure::Timeout {
            stage: Stage::DataEnd
        }
    );
    assert!(!failure.is_permanent());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!session.is_usable());
}

#[tokio::test]
async fn a_silent_server_times_out_at_the_greeting() {
    let sink = Sink::start(Script {
        silent: true,
        ..Script::default()
    })
    .await;
    let config = ClientConfig::new("client.test").with_all_timeouts(IMPATIENT);
    let failure = connect(&sink, &config).await.unwrap_err();
    assert_eq!(
        failure,
        DeliveryFailure::Timeout {
            stage: Stage::Greeting
        }
    );
}

#[tokio::test]
async fn leading_dots_survive_the_trip() {
    let sink = Sink::start(Script::default()).await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let message = b"Subject: dots\r\n\r\n.leading\r\n..two\r\n.\r\nno final line end";
    session
        .send("a@example.com", "b@example.net", message)
        .await
        .unwrap();
    let mut expected = message.to_vec();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(sink.messages(), vec![expected]);
}

#[tokio::test]
async fn an_eight_bit_message_is_declared_or_refused() {
    let message = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes();
    let sink = Sink::start(Script::default()).await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    session
        .send("a@example.com", "b@example.net", message)
        .await
        .unwrap();
    assert_eq!(
        sink.commands()[1],
        format!(
            "MAIL FROM:<a@example.com> SIZE={} BODY=8BITMIME",
            message.len()
        )
    );
    assert_eq!(sink.messages(), vec![message.to_vec()]);

    // Without 8BITMIME the message is refused before anything is sent, rather than mangled.
    let sink = Sink::start(Script {
        extensions: vec!["PIPELINING"],
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let failure = session
        .send("a@example.com", "b@example.net", message)
        .await
        .unwrap_err();
    assert!(
        matches!(&failure, DeliveryFailure::Unsupported(text) if text.contains("8BITMIME")),
        "{failure:?}"
    );
    assert!(failure.is_permanent());
    assert!(session.is_usable());
    assert!(!sink.commands().iter().any(|c| c.starts_with("MAIL")));
    // A non-ASCII address needs SMTPUTF8, which this server lacks too.
    let failure = session
        .send("a@example.com", "j\u{f6}rg@example.net", b"x\r\n")
        .await
        .unwrap_err();
    assert!(failure.is_permanent(), "{failure:?}");
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_not_sent() {
    let sink = Sink::start(Script {
        extensions: vec!["PIPELINING", "SIZE 10"],
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let failure = session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap_err();
    assert!(failure.is_permanent(), "{failure:?}");
    assert!(failure.snippet().contains("SIZE"), "{failure}");
}

#[tokio::test]
async fn a_failed_handshake_is_a_transient_tls_failure() {
    for policy in [TlsPolicy::Opportunistic, TlsPolicy::Require] {
        let sink = Sink::start(Script {
            broken_tls: true,
            ..Script::default()
        })
        .await;
        let failure = connect(&sink, &config(policy)).await.unwrap_err();
        let DeliveryFailure::Tls(text) = &failure else {
            panic!("{policy:?}: {failure:?}");
        };
        assert_eq!(
            text.contains("required"),
            policy == TlsPolicy::Require,
            "{text}"
        );
        assert!(!failure.is_permanent());
        // No falling back to plain text on the same connection.
        assert!(!sink.commands().iter().any(|c| c.starts_with("MAIL")));
    }
}

#[tokio::test]
async fn plain_text_behind_the_starttls_reply_is_refused() {
    let sink = Sink::start(Script {
        inject_after_starttls: true,
        ..Script::default()
    })
    .await;
    let failure = connect(&sink, &config(TlsPolicy::Opportunistic))
        .await
        .unwrap_err();
    assert!(
        matches!(&failure, DeliveryFailure::Tls(text) if text.contains("before the TLS handshake")),
        "{failure:?}"
    );
}

fn login_config(password: &str) -> ClientConfig {
    let mut config = config(TlsPolicy::Require);
    config.credentials = Some(Credentials {
        username: "relay-user".into(),
        password: password.into(),
    });
    config
}

#[tokio::test]
async fn auth_login_is_used_when_plain_is_not_offered() {
    let sink = Sink::start(Script {
        starttls: true,
        extensions: vec!["PIPELINING", "AUTH LOGIN"],
        ..Script::default()
    })
    .await;
    let mut session = connect(&sink, &login_config("relay-pass")).await.unwrap();
    session
        .send("a@example.com", "b@example.net", MESSAGE)
        .await
        .unwrap();
    let commands = sink.commands();
    assert!(
        commands.contains(&"relay-user:relay-pass".to_string()),
        "{commands:?}"
    );

    let refused = connect(&sink, &login_config("wrong")).await.unwrap_err();
    assert_eq!(refused.stage(), Some(Stage::Auth));
    assert!(refused.is_permanent(), "{refused:?}");
}

#[tokio::test]
async fn credentials_never_go_out_without_tls_or_a_mechanism_we_speak() {
    let plain = Sink::start(Script {
        extensions: vec!["AUTH PLAIN LOGIN"],
        ..Script::default()
    })
    .await;
    let mut config = login_config("relay-pass");
    // Even when the policy would allow plain text, AUTH waits for TLS.
    config.tls = TlsPolicy::Opportunistic;
    let failure = connect(&plain, &config).await.unwrap_err();
    assert!(matches!(failure, DeliveryFailure::Tls(_)), "{failure:?}");
    assert!(
        plain
            .commands()
            .iter()
            .all(|line| !line.starts_with("AUTH"))
    );

    let unknown = Sink::start(Script {
        starttls: true,
        extensions: vec!["AUTH CRAM-MD5"],
        ..Script::default()
    })
    .await;
    let failure = connect(&unknown, &login_config("relay-pass"))
        .await
        .unwrap_err();
    assert!(
        matches!(failure, DeliveryFailure::Unsupported(_)),
        "{failure:?}"
    );
}

/// A server that greets with `bytes`, written `piece` bytes at a time `pause` apart, and then
/// holds the connection open without a word.
async fn greeter(bytes: Vec<u8>, piece: usize, pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        for chunk in bytes.chunks(piece) {
            if socket.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
        tokio::time::sleep(PATIENT).await;
    });
    addr
}

#[tokio::test]
async fn an_endless_greeting_is_refused_not_buffered() {
    // Empty continuation lines: nothing but line ends, as fast as the network goes.
    let flood = b"220-\r\n".repeat(1 << 20);
    let addr = greeter(flood, 64 * 1024, Duration::ZERO).await;
    let started = Instant::now();
    let failure = SmtpSession::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap_err();
    match &failure {
        DeliveryFailure::Connection(why) => assert!(why.contains("lines"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!failure.is_permanent());
    assert!(started.elapsed() < PATIENT);
}

#[tokio::test]
async fn a_trickled_greeting_cannot_outlast_the_timeout() {
    // A byte every 10 ms keeps the connection busy, but the timeout is for the whole reply.
    let slow = [&b"220 mx.test "[..], &b"x".repeat(10_000)].concat();
    let addr = greeter(slow, 1, Duration::from_millis(10)).await;
    let config = ClientConfig::new("client.test").with_all_timeouts(IMPATIENT);
    let started = Instant::now();
    let failure = SmtpSession::connect(addr, "mx.test", &config)
        .await
        .unwrap_err();
    assert_eq!(
        failure,
        DeliveryFailure::Timeout {
            stage: Stage::Greeting
        }
    );
    assert!(started.elapsed() < IMPATIENT * 5);
}
