//! SMTP submission throughput: N concurrent SMTP sessions submit
//! 20 KB messages to a server in this process, with the durable store and a default flow of
//! one no-op step. Prints accepted messages/second and the p50/p99 time from the end of DATA
//! to the 250 reply; then the same over the REST API.
//!
//! The client is the one written below rather than lettre: lettre leaves Nagle's algorithm
//! on, which with delayed ACKs adds ~40 ms to every message and measures the client, not the
//! server. This one sets TCP_NODELAY and pipelines MAIL, RCPT and DATA (RFC 2920), as bulk
//! senders do.
//!
//!     cargo bench --bench submit [-- SESSIONS MESSAGES_PER_SESSION]

mod support;

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use base64::Engine as _;
use sluice::server::Server;
use sluice::store::MessageStatus;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sessions = numbers.first().copied().unwrap_or(20);
    let per_session = numbers.get(1).copied().unwrap_or(250);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::config(dir.path());
    // Submission alone: processed mail stays queued (benches/deliver.rs measures delivery).
    config.delivery.enabled = false;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime
        .block_on(Server::start(config))
        .expect("server starts");
    let demo = server.created_demo.clone().expect("demo login");
    runtime.block_on(support::no_op_flow(&server));

    let body = "lorem ipsum dolor sit amet consectetur adipiscing elit\r\n".repeat(20_000 / 57);
    let content = format!(
        "From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\r\n{body}"
    );
    let addr = server.smtp_addr;
    let login = (demo.username.clone(), demo.password.clone());
    let started = Instant::now();
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|_| {
                let content = content.clone();
                let login = login.clone();
                tokio::spawn(async move { session(addr, login, &content, per_session).await })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("session task"));
        }
        all
    });
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    let at = |q: f64| latencies[((total as f64 - 1.0) * q) as usize];

    // Wait for the flows, to report that the pipeline kept up.
    let waited = Instant::now();
    let processed = loop {
        let done = server
            .store
            .messages_of(1)
            .unwrap()
            .iter()
            .filter(|record| record.status == MessageStatus::Processed)
            .count();
        if done >= total || waited.elapsed() > Duration::from_secs(120) {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    println!(
        "SMTP submission: {sessions} sessions x {per_session} messages of {} bytes",
        content.len()
    );
    println!(
        "  accepted      {:.0} messages/s ({total} in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  ack latency   p50 {:.2} ms, p99 {:.2} ms (one message's SMTP transaction, durable)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    println!(
        "  flows         {processed} of {total} processed {:.2} s after the last acknowledgement",
        waited.elapsed().as_secs_f64()
    );

    rest_bench(&runtime, &server, &demo, sessions, per_session, &body);
}

/// The same load over the REST API: `sessions` concurrent clients submitting JSON messages
/// with a 20 KB text body.
fn rest_bench(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    demo: &sluice::server::DemoCredentials,
    clients: usize,
    per_client: usize,
    text: &str,
) {
    let base = format!("http://{}", server.api_addr);
    let http = reqwest::Client::new();
    let token: serde_json::Value = runtime.block_on(async {
        http.post(format!("{base}/oauth/token"))
            .form(&[
                ("client_id", demo.client_id.as_str()),
                ("client_secret", demo.client_secret.as_str()),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json")
    });
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let message = serde_json::json!({
        "messageType": "EMAIL",
        "senderAddress": "shop@example.com",
        "recipientAddress": "ann@example.net",
        "subject": "Your order",
        "text": text,
    })
    .to_string();
    let url = format!("{base}/{}/messages/submit", demo.account_id);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (http, url, token, message) =
                    (http.clone(), url.clone(), token.clone(), message.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_client);
                    for _ in 0..per_client {
                        let sent = Instant::now();
                        let response = http
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(message.clone())
                            .send()
                            .await
                            .expect("submit");
                        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
                        latencies.push(sent.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("client task"));
        }
        all
    });
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    let at = |q: f64| latencies[((total as f64 - 1.0) * q) as usize];
    println!("REST submission: {clients} clients x {per_client} messages, 20 KB text each");
    println!(
        "  accepted      {:.0} messages/s ({total} in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  201 latency   p50 {:.2} ms, p99 {:.2} ms (durable)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}

/// One SMTP session: EHLO, AUTH PLAIN, then `count` pipelined transactions; returns the time
/// from sending MAIL to reading the 250 after the data, per message.
async fn session(
    addr: SocketAddr,
    (user, password): (String, String),
    content: &str,
    count: usize,
) -> Vec<Duration> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read);
    support::reply(&mut replies, "220").await;
    write.write_all(b"EHLO bench.example\r\n").await.unwrap();
    support::reply(&mut replies, "250").await;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    write
        .write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())
        .await
        .unwrap();
    support::reply(&mut replies, "235").await;
    let mut data = content.replace("\r\n.", "\r\n..").into_bytes();
    data.extend_from_slice(b"\r\n.\r\n");
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        write
            .write_all(b"MAIL FROM:<shop@example.com> BODY=8BITMIME\r\nRCPT TO:<ann@example.net>\r\nDATA\r\n")
            .await
            .unwrap();
        support::reply(&mut replies, "250").await;
        support::reply(&mut replies, "250").await;
        support::reply(&mut replies, "354").await;
        write.write_all(&data).await.unwrap();
        support::reply(&mut replies, "250").await;
        latencies.push(sent.elapsed());
    }
    write.write_all(b"QUIT\r\n").await.unwrap();
    latencies
}
