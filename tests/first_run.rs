//! The first run, tried as a newcomer tries it: `sluice serve` on an empty data folder with
//! the embedded default configuration (only the listen addresses moved to free ports), then
//! the recipe it prints, twice: the REST half run literally with curl and sh, the SMTP half
//! (swaks in the recipe) sent with lettre using the printed login, sender and recipient.
//! Every message must end DELIVERED, to the capture and not to a mail server, DKIM-signed
//! with the platform key the server printed, with nothing on the filter list; and the API call
//! the text names must show them with their events.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::Tls;
use lettre::{SmtpTransport, Transport};
use mail_auth::common::verify::VerifySignature as _;
use mail_auth::{AuthenticatedMessage, DkimResult};
use serde_json::Value;
use sluice::store::MessageStatus;

use crate::util::dns::DnsServer;
use crate::util::dns::ResolveThrough as _;
use crate::util::sink::SmtpSink;
use crate::util::{Api, TestServer, email, event_detail, event_kinds};

/// The line `serve` prints after the recipe; its next line is the key's TXT value.
const DKIM_LINE: &str = "Publish the platform's DKIM key as TXT at ";

/// `sluice serve`, killed when dropped, with everything it printed so far.
struct Serve {
    child: Child,
    printed: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `sluice serve` on `data` with the default configuration, listening on free
    /// loopback ports, and waits until it has printed the recipe and the DKIM record.
    fn start(folder: &Path) -> Serve {
        let config = folder.join("listen.toml");
        std::fs::write(
            &config,
            "[smtp]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(folder.join("sluice-data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let printed = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&printed);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut printed = sink.lock().unwrap();
                printed.push_str(&line);
                printed.push('\n');
            }
        });
        let serve = Serve { child, printed };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !serve.printed().contains("Returned mail") {
            assert!(
                Instant::now() < deadline,
                "serve printed no recipe:\n{}",
                serve.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The printed lines from the first one containing `first` through the first one after it
/// containing `last`.
fn lines_between(text: &str, first: &str, last: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.contains(first))
        .unwrap_or_else(|| panic!("no line with {first:?} in:\n{text}"));
    let end = start
        + lines[start..]
            .iter()
            .position(|line| line.contains(last))
            .unwrap_or_else(|| panic!("no line with {last:?} after {first:?} in:\n{text}"));
    lines[start..=end].join("\n")
}

/// The word after `flag` in the printed swaks command.
fn swaks_argument(swaks: &str, flag: &str) -> String {
    let words: Vec<&str> = swaks.split_whitespace().collect();
    let at = words
        .iter()
        .position(|word| *word == flag)
        .unwrap_or_else(|| panic!("no {flag} in {swaks}"));
    words[at + 1].to_string()
}

/// Runs shell commands as a user pastes them, and returns what they printed.
fn shell(script: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh runs");
    assert!(
        output.status.success(),
        "{script}\nfailed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Sends what the printed swaks command sends, with lettre: the printed server, port, login,
/// sender and recipient, AUTH PLAIN without TLS (the demo source allows it from loopback).
fn send_like_swaks(swaks: &str, subject: &str) {
    let transport = SmtpTransport::builder_dangerous(swaks_argument(swaks, "--server"))
        .port(swaks_argument(swaks, "--port").parse().unwrap())
        .credentials(Credentials::new(
            swaks_argument(swaks, "--auth-user"),
            swaks_argument(swaks, "--auth-password"),
        ))
        .authentication(vec![Mechanism::Plain])
        .tls(Tls::None)
        .build();
    let (from, to) = (
        swaks_argument(swaks, "--from"),
        swaks_argument(swaks, "--to"),
    );
    let envelope = Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
    let message =
        format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nThis is a test mailing\r\n");
    transport
        .send_raw(&envelope, message.as_bytes())
        .expect("the SMTP half of the recipe is accepted");
}

/// Verifies every DKIM signature of `raw` against the key published in `dns`: (d=, passed).
fn dkim_results(dns: &DnsServer, raw: &[u8]) -> Vec<(String, bool)> {
    let resolver = sluice::dns::Resolver::new(&dns.config()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = AuthenticatedMessage::parse(raw).expect("a parsable message");
    runtime.block_on(async {
        resolver
            .message_authenticator()
            .verify_dkim(&message)
            .await
            .iter()
            .map(|output| {
                let domain = output
                    .signature()
                    .map(|signature| signature.domain().to_string())
                    .unwrap_or_default();
                (domain, output.result() == &DkimResult::Pass)
            })
            .collect()
    })
}

#[test]
fn the_printed_recipe_run_twice_ends_delivered_to_the_capture_both_times() {
    let folder = tempfile::tempdir().unwrap();
    let serve = Serve::start(folder.path());
    let printed = serve.printed();

    let swaks = lines_between(&printed, "swaks --server", "--to ");
    let token = lines_between(&printed, "TOKEN=$(curl", "access_token");
    let submit = lines_between(&printed, "curl -i ", "Hello from Sluice");
    let list = lines_between(&printed, "messages?addevents=true", "Authorization");
    assert!(
        printed.contains("captured/<message id>.eml"),
        "the text says where captured mail is kept:\n{printed}"
    );

    let mut submitted = Vec::new();
    for attempt in ["first", "second"] {
        send_like_swaks(&swaks, &format!("The {attempt} try over SMTP"));
        let answer = shell(&format!("{token}\n{submit}"));
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
        let location = answer
            .lines()
            .find_map(|line| line.strip_prefix("location: "))
            .unwrap_or_else(|| panic!("no Location in {answer}"));
        submitted.push(location.trim().rsplit('/').next().unwrap().to_string());
    }

    // The API call the text names, run as printed, until all four have left the queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let listed: Value = serde_json::from_str(&shell(&format!("{token}\n{list}"))).unwrap();
        let messages = listed.as_array().unwrap().clone();
        let settled = messages.len() == 4
            && messages.iter().all(|message| {
                !["SUBMITTED", "PROCESSED"].contains(&message["status"].as_str().unwrap())
            });
        if settled {
            break messages;
        }
        assert!(Instant::now() < deadline, "not settled: {listed:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for id in &submitted {
        assert!(
            messages.iter().any(|message| message["id"] == id.as_str()),
            "{id} is not listed"
        );
    }

    // The platform's key as serve printed it, published where a verifier looks for it.
    let dkim = lines_between(&printed, DKIM_LINE, "v=DKIM1");
    let (name, value) = dkim.split_once(":\n").unwrap();
    let dns = DnsServer::start();
    dns.set_txt(name.trim_start_matches(DKIM_LINE), value.trim());

    let data = folder.path().join("sluice-data");
    for message in &messages {
        let id = message["id"].as_str().unwrap();
        assert_eq!(message["status"], "DELIVERED", "{message:#}");
        assert_eq!(message["recipientAddress"], "someone@example.net");
        let kinds: Vec<&str> = message["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["type"].as_str().unwrap())
            .collect();
        // Newest first, as Flowmailer lists a message's events.
        assert_eq!(
            kinds,
            ["DELIVERED", "PROCESSED", "SUBMITTED"],
            "{message:#}"
        );
        // Delivered to the capture, and saying so: never taken for a real delivery.
        let delivered: Value =
            serde_json::from_str(message["events"][0]["snippet"].as_str().unwrap()).unwrap();
        assert_eq!(delivered["mx"], "sluice-capture");
        assert!(
            delivered["reply"].as_str().unwrap().contains("not sent"),
            "{delivered}"
        );
        assert_eq!(delivered["captured"], format!("captured/{id}.eml"));

        // The copy the capture kept is the message as it would have left: DKIM-signed with
        // the platform key, after a Return-Path with the message's own VERP address.
        let copy = std::fs::read(data.join(format!("captured/{id}.eml"))).unwrap();
        let text = String::from_utf8_lossy(&copy);
        assert!(
            text.starts_with(&format!("Return-Path: <b+{id}.")),
            "{text}"
        );
        assert_eq!(
            dkim_results(&dns, &copy),
            [("sluice.example".to_string(), true)],
            "{text}"
        );
    }

    let token_value = shell(&format!("{token}\nprintf %s \"$TOKEN\""));
    let api = lines_between(&printed, "curl -i ", "curl -i ")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches("/messages/submit")
        .to_string();
    let filters: Value = reqwest::blocking::Client::new()
        .get(format!("{api}/filters"))
        .bearer_auth(token_value)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        filters,
        serde_json::json!([]),
        "the filter list stays empty"
    );
}

#[test]
fn a_static_route_takes_example_mail_past_the_capture() {
    let sink = SmtpSink::start();
    let route = sink.addr().to_string();
    let server = TestServer::start_capturing(move |config| {
        config.delivery.timeout_secs = 5;
        config
            .delivery
            .routes
            .insert("routed.example".into(), route.into());
    });
    let api = Api::demo(&server);
    let mut routed = email("Routed");
    routed["recipientAddress"] = "ann@routed.example".into();
    let routed = api.submit(routed);
    let mut captured = email("Captured");
    captured["recipientAddress"] = "bob@shop.example".into();
    let captured = api.submit(captured);

    for id in [&routed, &captured] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.store().message(id).unwrap().unwrap().status != MessageStatus::Delivered {
            assert!(
                Instant::now() < deadline,
                "{id}: {:?}",
                event_kinds(&server, id)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    assert_eq!(sink.attempts_for("ann@routed.example"), 1);
    assert_eq!(sink.attempts_for("bob@shop.example"), 0);
    let sent = event_detail(&server, &routed, "DELIVERED");
    assert_ne!(sent["mx"], "sluice-capture", "{sent}");
    let kept = event_detail(&server, &captured, "DELIVERED");
    assert_eq!(kept["mx"], "sluice-capture", "{kept}");

    assert!(server.captured_to("ann@routed.example").is_empty());
    let copies = server.wait_for_captured("bob@shop.example", 1);
    assert_eq!(copies.len(), 1);
    assert!(copies[0].contains("Subject: Captured"), "{}", copies[0]);
    // The second message to the same address is kept after the first.
    let mut again = email("Captured again");
    again["recipientAddress"] = "bob@shop.example".into();
    api.submit(again);
    let copies = server.wait_for_captured("bob@shop.example", 2);
    assert!(
        copies[1].contains("Subject: Captured again"),
        "{}",
        copies[1]
    );
}
