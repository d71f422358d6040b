//! End to end: SMTP submission → a flow → delivery to a local SMTP sink, with 20 KB messages,
//! all in this process on loopback. The flow is one no-op step, or with `built-in` the
//! built-in flow template → tracking → archive → dkim with two RSA-2048 signatures (the
//! platform's and the customer's) on a newsletter with 51 links.
//!
//! Prints messages/second from the first submission to the last delivery with clients sending
//! as fast as they can, and the CPU time this process spent per message meanwhile (server,
//! load generator and sink together), then, at half that rate, the p50/p99 time from a
//! message's acknowledgement (the 250 after DATA) to the sink's 250 for it.
//!
//!     cargo bench --bench deliver [-- [built-in] SESSIONS MESSAGES_PER_SESSION]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice::dkim::KeyAlgorithm;
use sluice::server::Server;
use sluice_test_support::arrivals::ArrivalSink;
use support::smtp_load::{SmtpSession, data_section};

fn main() {
    let built_in = std::env::args().skip(1).any(|arg| arg == "built-in");
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sessions = numbers.first().copied().unwrap_or(20);
    let per_session = numbers.get(1).copied().unwrap_or(250);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let sink = runtime.block_on(ArrivalSink::start());

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = support::config(dir.path());
    config
        .delivery
        .routes
        .insert("*".into(), sink.addr().to_string().into());
    if built_in {
        // A busy machine must not hold messages on the default 100 ms step deadline: the
        // bench measures throughput, not the deadline.
        config.runtime.deadline = Duration::from_secs(5);
        config.runtime.cpu_budget = Duration::from_secs(5);
    }
    let server = runtime
        .block_on(Server::start(config))
        .expect("server starts");
    let demo = server.created_demo.clone().expect("demo login");
    let (content, flow) = if built_in {
        runtime.block_on(support::built_in_flow::make_default(
            &server,
            KeyAlgorithm::Rsa2048,
        ));
        (
            support::built_in_flow::newsletter(),
            "the built-in flow (template → tracking → archive → dkim, 2 × RSA-2048)",
        )
    } else {
        runtime.block_on(support::no_op_flow(&server));
        let body = "lorem ipsum dolor sit amet consectetur adipiscing elit\r\n".repeat(20_000 / 57);
        (
            format!(
                "From: Shop <news@shop.example>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\r\n{body}"
            ),
            "one no-op step",
        )
    };
    let login = (demo.username.clone(), demo.password.clone());
    let addr = server.smtp_addr;
    let total = sessions * per_session;
    println!(
        "SMTP in → {flow} → SMTP out to a loopback sink; {} byte messages",
        content.len()
    );

    // Full speed.
    let cpu_before = process_cpu();
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
    wait_for(&sink, total, Duration::from_secs(300));
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
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
    println!(
        "    CPU         {:.2} ms per message (this process: server, generator and sink)",
        cpu.as_secs_f64() * 1e3 / total as f64
    );

    // Half that load, paced: acknowledgement → delivery latency.
    let rate = full_rate / 2.0;
    let paced_total = total.min((rate * 10.0) as usize).max(sessions);
    let paced_per_session = paced_total / sessions;
    let interval = Duration::from_secs_f64(sessions as f64 / rate);
    let before = sink.count();
    let acked = runtime.block_on(submit_all(
        addr,
        &login,
        &content,
        sessions,
        paced_per_session,
        Some(interval),
    ));
    wait_for(&sink, before + acked.len(), Duration::from_secs(300));
    let arrived: HashMap<String, Instant> = sink
        .arrivals()
        .into_iter()
        .filter_map(|arrival| Some((verp_id(&arrival.return_path)?.to_string(), arrival.at)))
        .collect();
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

/// The CPU time (user and system) all threads of this process have used so far.
fn process_cpu() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(spent.tv_sec as u64, spent.tv_nsec as u32)
}

fn wait_for(sink: &ArrivalSink, count: usize, timeout: Duration) {
    let started = Instant::now();
    while sink.count() < count {
        assert!(
            started.elapsed() < timeout,
            "only {} of {count} delivered",
            sink.count()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The message id in a VERP return path, `b+<id>.<mac>@domain`.
fn verp_id(return_path: &str) -> Option<&str> {
    let (local, _domain) = return_path.rsplit_once('@')?;
    let (id, _mac) = local.strip_prefix("b+")?.rsplit_once('.')?;
    Some(id)
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
    login: (String, String),
    content: &str,
    count: usize,
    interval: Option<Duration>,
) -> Vec<(String, Instant)> {
    let mut session = SmtpSession::open(addr, Some(&login)).await;
    let data = data_section(content);
    let mut acked = Vec::with_capacity(count);
    let mut next = tokio::time::Instant::now();
    for _ in 0..count {
        if let Some(every) = interval {
            tokio::time::sleep_until(next).await;
            next += every;
        }
        let acknowledged = session.send(&data).await;
        let id = acknowledged
            .queued_id()
            .expect("the message id in the reply")
            .to_string();
        acked.push((id, acknowledged.at));
    }
    session.quit().await;
    acked
}
