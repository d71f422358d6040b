//! A server killed (SIGKILL) while it accepts a stream of messages loses none it acknowledged,
//! and after a restart every one of them continues through its flow.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::{SmtpTransport, Transport};
use sluice::store::MessageStatus;

use crate::util::TestServer;
use crate::util::guests;

#[test]
fn acknowledged_messages_survive_sigkill_and_continue_their_flow() {
    // Set up: a default flow with a slow step, so that at the kill some messages are
    // acknowledged but not yet through their flow.
    let setup = TestServer::start(|_| {});
    let (user, password) = setup.demo_login();
    let step = setup.upload_guest(guests::TEST_MISBEHAVE);
    setup.set_default_flow(
        &step,
        serde_json::json!({"behaviour": "busy", "millis": 60, "version": "v"}),
    );
    let dir = setup.stop();

    // The real binary, on that data folder.
    let config = dir.path().join("test.toml");
    // One flow at a time, so the spool holds a backlog when the server is killed.
    let store = crate::util::stopped_store_url(dir.path())
        .map(|url| format!("[store]\nurl = {url:?}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "pipeline_workers = 1\n[smtp]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [runtime]\ndeadline = 5000\ncpu_budget = 5000\n[delivery]\nenabled = false\n[inbound]\nlisten = \"127.0.0.1:0\"\n\
             [dashboard]\nlisten = \"127.0.0.1:0\"\n{store}"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--data"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread to its end: the server must never write into a closed pipe.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("smtp=").nth(1) {
                let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its SMTP address");
    let (host, port) = address.rsplit_once(':').unwrap();

    let transport = SmtpTransport::builder_dangerous(host)
        .port(port.parse().unwrap())
        .credentials(Credentials::new(user, password))
        .authentication(vec![Mechanism::Plain])
        .build();
    let envelope = Envelope::new(
        Some("shop@example.com".parse().unwrap()),
        vec!["ann@example.net".parse().unwrap()],
    )
    .unwrap();
    let mut acknowledged = Vec::new();
    let started = Instant::now();
    while acknowledged.len() < 40 && started.elapsed() < Duration::from_secs(60) {
        let content = format!(
            "From: shop@example.com\r\nSubject: order {}\r\n\r\nx\r\n",
            acknowledged.len()
        );
        let response = transport.send_raw(&envelope, content.as_bytes()).unwrap();
        let text = response.message().collect::<Vec<_>>().join(" ");
        let id = text.split_once("queued as ").unwrap().1.trim().to_string();
        acknowledged.push(id);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 40);

    // After a restart every acknowledged message is there and goes through its flow.
    // A generous deadline: a loaded test machine must not turn the slow step into a timeout.
    let restarted = TestServer::start_in(dir, |config| {
        config.runtime.deadline = Duration::from_secs(5);
        config.runtime.cpu_budget = Duration::from_secs(5);
    });
    let still_spooled_at_start = restarted.store().spooled().unwrap().len();
    for id in &acknowledged {
        let record = restarted.wait_until_done(id);
        assert_eq!(
            record.status,
            MessageStatus::Processed,
            "{id}: {:?}",
            restarted.store().events(id).unwrap()
        );
        let body = String::from_utf8(restarted.store().body(id).unwrap().unwrap()).unwrap();
        assert!(body.contains("X-Version: v"), "{id} went through the step");
    }
    assert!(
        still_spooled_at_start > 0,
        "the kill should have caught messages before their flow ran"
    );
}
