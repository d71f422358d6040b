//! End to end: SMTP submission → a flow of one no-op step → delivery to a local SMTP sink,
//! with 20 KB messages, all in this process on loopback.
//!
//! Prints messages/second from the first submission to the last delivery with clients sending
//! as fast as they can, then, at half that rate, the p50/p99 time from a message's
//! acknowledgement (the 250 after DATA) to the sink's 250 for it.
//!
//!     cargo bench --bench deliver [-- SESSIONS MESSAGES_PER_SESSION]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sluice::server::Server;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// When each message (by id) reached the sink.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sessions = numbers.first().copied().unwrap_or(20);
    let per_session = numbers.get(1).copied().unwrap_or(250);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let arrivals: Arrivals = Arc::default();
    let sink = runtime.block_on(start_sink(Arc::clone(&arrivals)));

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::config(dir.path());
    config
        .delivery
        .routes
        .insert("*".into(), sink.to_string().into());
    let server = runtime
        .block_on(Server::start(config))
        .expect("server starts");
    let demo = server.created_demo.clone().expect("demo login");
    runtime.block_on(support::no_op_flow(&server));

    let body = "lorem ipsum dolor sit amet consectetur adipiscing elit\r\n".repeat(20_000 / 57);
    let content = format!(
        "From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\r\n{body}"
    );
    let login = (demo.username.clone(), demo.password.clone());
    let addr = server.smtp_addr;
    let total = sessions * per_session;
    println!(
        "SMTP in → one no-op step → SMTP out to a loopback sink; {} byte messages",
        content.len()
    );

    // Full speed.
    let started = Instant::now();
    runtime.block_on(submit_all(
        addr,
        &login,
        &content,
        sessions,
        per_session,
        None,
    ));
    let submitted = started.elapsed();
    wait_for(&arrivals, total, Duration::from_secs(300));
    let elapsed = started.elapsed();
    let full_rate = total as f64 / elapsed.as_secs_f64();
    println!("  full speed    {sessions} sessions x {per_session} messages");
    println!(
        "    submitted   {:.0} messages/s ({total} in {:.2} s)",
        total as f64 / submitted.as_secs_f64(),
        submitted.as_secs_f64()
    );
    println!(
        "    delivered   {full_rate:.0} messages/s end to end ({total} in {:.2} s)",
        elapsed.as_secs_f64()
    );

    // Half that load, paced: acknowledgement → delivery latency.
    let rate = full_rate / 2.0;
    let paced_total = total.min((rate * 10.0) as usize).max(sessions);
    let paced_per_session = paced_total / sessions;
    let interval = Duration::from_secs_f64(sessions as f64 / rate);
    let before = arrivals.lock().unwrap().len();
    let acked = runtime.block_on(submit_all(
        addr,
        &login,
        &content,
        sessions,
        paced_per_session,
        Some(interval),
    ));
    wait_for(&arrivals, before + acked.len(), Duration::from_secs(300));
    let arrived = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> = acked
        .iter()
        .filter_map(|(id, at)| Some(arrived.get(id)?.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!(
        "  at {rate:.0} messages/s ({} messages): acknowledgement → delivered p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}

fn wait_for(arrivals: &Arrivals, count: usize, timeout: Duration) {
    let started = Instant::now();
    while arrivals.lock().unwrap().len() < count {
        assert!(
            started.elapsed() < timeout,
            "only {} of {count} delivered",
            arrivals.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `sessions` SMTP sessions of `count` messages each, `interval` apart when pacing;
/// returns each message's id and the moment its 250 arrived.
async fn submit_all(
    addr: SocketAddr,
    login: &(String, String),
    content: &str,
    sessions: usize,
    count: usize,
    interval: Option<Duration>,
) -> Vec<(String, Instant)> {
    let tasks: Vec<_> = (0..sessions)
        .map(|index| {
            let (content, login) = (content.to_string(), login.clone());
            // Paced sessions start spread over one interval, so the load is even.
            let offset = interval.map(|every| every.mul_f64(index as f64 / sessions as f64));
            tokio::spawn(async move {
                if let Some(offset) = offset {
                    tokio::time::sleep(offset).await;
                }
                session(addr, login, &content, count, interval).await
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("session"));
    }
    all
}

async fn session(
    addr: SocketAddr,
    (user, password): (String, String),
    content: &str,
    count: usize,
    interval: Option<Duration>,
) -> Vec<(String, Instant)> {
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
    let mut acked = Vec::with_capacity(count);
    let mut next = tokio::time::Instant::now();
    for _ in 0..count {
        if let Some(every) = interval {
            tokio::time::sleep_until(next).await;
            next += every;
        }
        write
            .write_all(b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<ann@example.net>\r\nDATA\r\n")
            .await
            .unwrap();
        support::reply(&mut replies, "250").await;
        support::reply(&mut replies, "250").await;
        support::reply(&mut replies, "354").await;
        write.write_all(&data).await.unwrap();
        let last = support::reply(&mut replies, "250").await;
        let id = last
            .rsplit("queued as ")
            .next()
            .and_then(|ids| ids.split_whitespace().next())
            .expect("the message id in the reply")
            .to_string();
        acked.push((id, Instant::now()));
    }
    write.write_all(b"QUIT\r\n").await.unwrap();
    acked
}

/// A minimal receiving MTA: plain ESMTP with PIPELINING, records when each message (by the
/// id in its VERP return path) was accepted.
async fn start_sink(arrivals: Arrivals) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(sink_session(stream, Arc::clone(&arrivals)));
        }
    });
    addr
}

async fn sink_session(stream: TcpStream, arrivals: Arrivals) {
    stream.set_nodelay(true).ok();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut current = None;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if command.starts_with("EHLO") {
            b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n"
        } else if command.starts_with("MAIL FROM:") {
            // b+<id>.<mac>@domain
            current = line
                .split("b+")
                .nth(1)
                .and_then(|rest| rest.split('.').next())
                .map(str::to_string);
            b"250 2.1.0 ok\r\n"
        } else if command.starts_with("RCPT TO:") {
            b"250 2.1.5 ok\r\n"
        } else if command == "DATA" {
            if write.write_all(b"354 go on\r\n").await.is_err() {
                return;
            }
            if read_data(&mut reader).await.is_err() {
                return;
            }
            if let Some(id) = current.take() {
                arrivals.lock().unwrap().insert(id, Instant::now());
            }
            b"250 2.0.0 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"250 2.0.0 ok\r\n"
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads message content up to the line with a single dot. It searches each read as a whole
/// (with the last four bytes of the one before, for a marker split between reads): the sink
/// shares the machine with the server, so it must cost little next to it.
async fn read_data(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<()> {
    const END: &[u8] = b"\r\n.\r\n";
    let mut window = Vec::with_capacity(64 * 1024);
    let mut buffer = [0u8; 32 * 1024];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let keep = window.len().min(END.len() - 1);
        window.drain(..window.len() - keep);
        window.extend_from_slice(&buffer[..read]);
        if window.windows(END.len()).any(|candidate| candidate == END) {
            return Ok(());
        }
    }
}
