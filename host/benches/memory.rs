//! Memory and disk of a running `sluice serve`: the resident memory of the server process and
//! the bytes of its data folder, measured from outside the process as an operator would.
//!
//! Two cases, each on a data folder of its own:
//!
//! 1. **Full flow**: 20 SMTP sessions submit N newsletters of ~20 KB (51 links, text that
//!    compresses like prose, not like a repeated paragraph) through the built-in flow
//!    template → tracking → archive → dkim (two RSA-2048 signatures: the platform's and the
//!    customer's), delivered to an SMTP sink on loopback. Prints VmRSS sampled during the run
//!    (peak) and at the end, VmHWM, the data folder, and what the store keeps per message.
//! 2. **Queued**: delivery off, Q small messages submitted through the demo account's default
//!    flow (archive, platform DKIM signature), so they all wait in the delivery queue. Prints
//!    VmRSS/VmHWM with them queued, then again after a restart with them still queued.
//!
//! 3. **Retention**: the full flow without its archive step (an archive keeps its message for
//!    at least a month), messages kept 5 seconds (`[retention] messages = "5s"`, purged every
//!    second): R rounds of M messages, then the store file's size after each round, once the
//!    last round's retention has passed, and after a restart (compaction at open). Shows the
//!    file bounded under continuous traffic.
//!
//! Resident memory is read from `/proc/PID/status`; it is printed, never asserted.
//!
//!     cargo bench --bench memory [-- MESSAGES QUEUED PER_ROUND [RETENTION_SECS]]
//!
//! (defaults 5000, 100000, 2000 and 5; a retention longer than the run shows the file
//! without the purge).
//!
//! `SLUICE_BIN=path` runs that `sluice` binary instead of the one cargo built.

// This bench sets up flows of its own, not the shared no-op one.
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice::dkim::KeyAlgorithm;
use sluice::server::Server;
use sluice::store::{MessageStatus, Store};
use sluice_test_support::arrivals::ArrivalSink;
use support::data_folder::{set_up, set_up_config};
use support::smtp_load::{SmtpSession, data_section};

const SESSIONS: usize = 20;

fn main() {
    if let Some(data) = std::env::args().nth(1).filter(|arg| arg.starts_with('/')) {
        let store = Store::open(&Path::new(&data).join("sluice.redb")).expect("store opens");
        report_statuses(&store);
        return;
    }
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let messages = numbers.first().copied().unwrap_or(5_000);
    let queued = numbers.get(1).copied().unwrap_or(100_000);
    let per_round = numbers.get(2).copied().unwrap_or(2_000);
    let kept = Duration::from_secs(numbers.get(3).copied().unwrap_or(5) as u64);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if messages > 0 {
        full_flow(&runtime, messages);
    }
    if queued > 0 {
        queued_messages(&runtime, queued);
    }
    if per_round > 0 {
        retention(&runtime, per_round, kept);
    }
}

/// Rounds of traffic in case 3.
const ROUNDS: usize = 6;
/// Case 3: continuous traffic with a short message retention; the store file's size.
fn retention(runtime: &tokio::runtime::Runtime, per_round: usize, kept: Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let login = set_up(set_up_flow(dir.path(), false));
    let sink = runtime.block_on(ArrivalSink::start());
    let config = format!(
        "[retention]\nmessages = \"{}s\"\npurge_interval = \"1s\"\n\
         [delivery.routes]\n\"*\" = \"{}\"\n",
        kept.as_secs(),
        sink.addr()
    );
    let mut server = ServeProcess::start(dir.path(), &config);
    let content = support::built_in_flow::newsletter();
    println!(
        "retention: template → tracking → dkim, messages kept {} s, {ROUNDS} rounds of {per_round} messages of {} bytes",
        kept.as_secs(),
        content.len()
    );
    let store_file = dir.path().join("sluice.redb");
    for round in 1..=ROUNDS {
        let started = Instant::now();
        runtime.block_on(submit_all(server.smtp, &login, &content, per_round));
        while sink.count() < round * per_round && started.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "  round {round}: {} delivered in all, {:.0} s, store file {:.1} MiB, {}",
            sink.count(),
            started.elapsed().as_secs_f64(),
            file_mib(&store_file),
            server.memory()
        );
    }
    // Every message's retention over, and a purge or two after it (a retention longer than a
    // minute is the run without the purge: no waiting for it).
    if kept <= Duration::from_secs(60) {
        std::thread::sleep(kept + Duration::from_secs(3));
        println!("  all purged: store file {:.1} MiB", file_mib(&store_file));
    }
    server.stop();
    let server = ServeProcess::start(dir.path(), &config);
    println!(
        "  after a restart (compacted at open): store file {:.1} MiB",
        file_mib(&store_file)
    );
    drop(server);
    let store = Store::open(&store_file).expect("store opens");
    println!(
        "  messages left: {}",
        store.message_ids_of(1).expect("ids").len()
    );
}

/// The blocks a file holds, in MiB (redb's file is sparse where it grew but never wrote).
fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |metadata| {
        (std::os::unix::fs::MetadataExt::blocks(&metadata) * 512) as f64 / 1048576.0
    })
}

/// Case 1: the built-in flow with delivery to a sink.
fn full_flow(runtime: &tokio::runtime::Runtime, messages: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let login = set_up(set_up_flow(dir.path(), true));
    let sink = runtime.block_on(ArrivalSink::start());
    let mut server = ServeProcess::start(
        dir.path(),
        &format!("[delivery.routes]\n\"*\" = \"{}\"\n", sink.addr()),
    );
    let content = support::built_in_flow::newsletter();
    println!(
        "full flow: template → tracking → archive → dkim (2 × RSA-2048), {messages} messages of {} bytes, {SESSIONS} sessions",
        content.len()
    );
    println!("  at start          {}", server.memory());
    let peak = server.sample_peak_rss();
    let started = Instant::now();
    runtime.block_on(submit_all(server.smtp, &login, &content, messages));
    // Until all are delivered, or none was for 30 s (a message held by its flow never is).
    let (mut last_count, mut last_change) = (0, Instant::now());
    while sink.count() < messages && last_change.elapsed() < Duration::from_secs(30) {
        if sink.count() != last_count {
            (last_count, last_change) = (sink.count(), Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    // Deliveries are recorded in the background after the sink's 250: let them settle.
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "  after {messages} ({:.0} s)  {}, peak sampled VmRSS {} MiB",
        elapsed.as_secs_f64(),
        server.memory(),
        peak.load(Ordering::Relaxed) >> 20
    );
    server.stop();
    report_disk(dir.path(), messages);
}

/// Case 2: many small messages through the demo flow, delivery off, then a restart.
fn queued_messages(runtime: &tokio::runtime::Runtime, queued: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let login = set_up(async {
        let server = Server::start(set_up_config(dir.path()))
            .await
            .expect("server starts");
        server.created_demo.clone().expect("demo login")
    });
    let delivery_off = "[delivery]\nenabled = false\n";
    let mut server = ServeProcess::start(dir.path(), delivery_off);
    let content = "From: Shop <shop@example.com>\r\nTo: ann@example.net\r\n\
                   Subject: Your order\r\n\r\nYour order ships today.\r\n";
    println!(
        "queued: {queued} messages of {} bytes, demo flow (archive, dkim), delivery off",
        content.len()
    );
    println!("  at start          {}", server.memory());
    let peak = server.sample_peak_rss();
    let started = Instant::now();
    let smtp_login = (login.username.clone(), login.password.clone());
    let ids = runtime.block_on(submit_all(server.smtp, &smtp_login, content, queued));
    println!(
        "  submitted in {:.0} s   {}",
        started.elapsed().as_secs_f64(),
        server.memory()
    );
    let api = ApiClient::connect(server.api, &login.client_id, &login.client_secret);
    let last = ids.last().expect("submitted");
    while api.status(last) == "SUBMITTED" {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "  all through their flow ({:.0} s)  {}, peak sampled VmRSS {} MiB",
        started.elapsed().as_secs_f64(),
        server.memory(),
        peak.load(Ordering::Relaxed) >> 20
    );
    server.stop();
    let mut server = ServeProcess::start(dir.path(), delivery_off);
    std::thread::sleep(Duration::from_secs(5));
    println!("  after a restart   {}", server.memory());
    server.stop();
    report_disk(dir.path(), queued);
}

/// Just enough of the REST API to follow a message.
struct ApiClient {
    base: String,
    http: reqwest::blocking::Client,
    token: String,
}

impl ApiClient {
    fn connect(api: SocketAddr, client_id: &str, secret: &str) -> Self {
        let base = format!("http://{api}");
        let http = reqwest::blocking::Client::new();
        let answer: serde_json::Value = http
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("client_id", client_id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .and_then(|response| response.json())
            .expect("a token");
        let token = answer["access_token"]
            .as_str()
            .expect("a token")
            .to_string();
        Self { base, http, token }
    }

    /// A message's status as the API shows it.
    fn status(&self, id: &str) -> String {
        let message: serde_json::Value = self
            .http
            .get(format!("{}/1/messages/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .and_then(|response| response.json())
            .expect("the message");
        message["status"].as_str().unwrap_or_default().to_string()
    }
}

/// Prints how many messages of a data folder are in each status, and the queues' lengths:
/// what to look at when a run does not finish.
fn report_statuses(store: &Store) {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut reasons = std::collections::BTreeSet::new();
    for record in store.messages_of(1).expect("records") {
        *counts.entry(format!("{:?}", record.status)).or_default() += 1;
        if record.status == MessageStatus::Held {
            let events = store.events(&record.id).expect("events");
            reasons.extend(events.into_iter().filter_map(|event| event.detail));
        }
    }
    for reason in reasons.iter().take(5) {
        println!("  held: {reason}");
    }
    println!(
        "{counts:?}; spool {}, outbox {}",
        store.spooled().expect("spool").len(),
        store.outbox().expect("outbox").len()
    );
}

/// Prints the data folder's size and what the store keeps per message.
fn report_disk(data: &Path, messages: usize) {
    let folder = folder_bytes(data);
    let store_file = std::fs::metadata(data.join("sluice.redb"))
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let store = Store::open(&data.join("sluice.redb")).expect("store opens");
    let mut kept = 0u64;
    let mut counted = 0u64;
    for id in store.message_ids_of(1).expect("ids") {
        counted += 1;
        kept += store.body(&id).expect("body").map_or(0, |body| body.len()) as u64;
        kept += store
            .archive(&id)
            .expect("archive")
            .map_or(0, |(_, body)| body.len()) as u64;
        // The submitted copy, when the flow changed the message (else the body is it).
        if let sluice::store::SubmittedCopy::Kept { body, .. } =
            store.submitted_copy(&id).expect("submitted copy")
            && store.body(&id).expect("body").as_deref() != Some(body.as_slice())
        {
            kept += body.len() as u64;
        }
    }
    println!(
        "  disk: data folder {:.1} MiB ({:.1} KiB per message), store file {:.1} MiB; \
         content kept (submitted + final + archived copy) {:.1} KiB per message over {counted} messages; \
         folder / content {:.2}",
        folder as f64 / 1048576.0,
        folder as f64 / 1024.0 / messages as f64,
        store_file as f64 / 1048576.0,
        kept as f64 / 1024.0 / counted.max(1) as f64,
        folder as f64 / kept.max(1) as f64,
    );
    report_statuses(&store);
}

fn folder_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => folder_bytes(&entry.path()),
            // Blocks allocated, not the length: a sparse file costs what it holds.
            Ok(metadata) => std::os::unix::fs::MetadataExt::blocks(&metadata) * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Makes the built-in flow the demo account's default, RSA-2048 keys for the platform and
/// the customer, with or without its archive step; returns the demo login.
async fn set_up_flow(data: &Path, archive: bool) -> (String, String) {
    // The platform's key is RSA-2048 by default.
    let server = Server::start(set_up_config(data))
        .await
        .expect("server starts");
    let demo = server.created_demo.clone().expect("demo login");
    support::built_in_flow::make_default_steps(&server, KeyAlgorithm::Rsa2048, archive).await;
    (demo.username, demo.password)
}

/// A `sluice serve` child process on a data folder, every listener on a free loopback port.
struct ServeProcess {
    child: Child,
    smtp: SocketAddr,
    api: SocketAddr,
    sampling: Arc<AtomicBool>,
}

impl ServeProcess {
    fn start(data: &Path, extra_config: &str) -> Self {
        let config = data.join("bench.toml");
        std::fs::write(
            &config,
            format!(
                // A generous step deadline: a busy machine must not hold messages.
                "[runtime]\ndeadline = 5000\n[smtp]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\n[dashboard]\nlisten = \"127.0.0.1:0\"\n\
                 {extra_config}"
            ),
        )
        .expect("config written");
        // SLUICE_BIN measures another build (a copy of an earlier one, to compare); target/
        // is shared, so the path cargo gives may hold a newer build by the time this runs.
        let binary = std::env::var_os("SLUICE_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
            PathBuf::from,
        );
        let mut child = Command::new(binary)
            .args(["serve", "--data"])
            .arg(data)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice serve starts");
        // Read the log to its end on a thread: the server must never write into a closed pipe.
        let log = BufReader::new(child.stderr.take().expect("stderr"));
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in log.lines().map_while(Result::ok) {
                // What went wrong in the server shows beside the figures.
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("  server: {line}");
                }
                let field = |name: &str| -> Option<SocketAddr> {
                    line.split(name)
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                };
                if let (Some(smtp), Some(api)) = (field(" smtp="), field(" api=")) {
                    let _ = found.send((smtp, api));
                }
            }
        });
        let (smtp, api) = address
            .recv_timeout(Duration::from_secs(300))
            .expect("the server logs its addresses");
        Self {
            child,
            smtp,
            api,
            sampling: Arc::new(AtomicBool::new(true)),
        }
    }

    fn status_field(&self, field: &str) -> u64 {
        status_kib(&proc_status_path(self.child.id()), field) << 10
    }

    /// VmRSS and VmHWM now, in MiB.
    fn memory(&self) -> String {
        format!(
            "VmRSS {} MiB, VmHWM {} MiB",
            self.status_field("VmRSS") >> 20,
            self.status_field("VmHWM") >> 20
        )
    }

    /// Samples VmRSS every 100 ms on a thread until the process stops; the largest seen.
    fn sample_peak_rss(&self) -> Arc<AtomicU64> {
        let peak = Arc::new(AtomicU64::new(0));
        let (seen, running) = (Arc::clone(&peak), Arc::clone(&self.sampling));
        let status = proc_status_path(self.child.id());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                seen.fetch_max(status_kib(&status, "VmRSS") << 10, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        peak
    }

    /// Stops the server as Ctrl-C does and waits for it to exit.
    fn stop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

fn proc_status_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/status"))
}

/// A `kB` field of `/proc/PID/status` (0 once the process is gone).
fn status_kib(status: &Path, field: &str) -> u64 {
    std::fs::read_to_string(status)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Submits `total` messages over `SESSIONS` SMTP sessions; returns their ids in order.
async fn submit_all(
    addr: SocketAddr,
    login: &(String, String),
    content: &str,
    total: usize,
) -> Vec<String> {
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|index| {
            let count = total / SESSIONS + usize::from(index < total % SESSIONS);
            let (content, login) = (content.to_string(), login.clone());
            tokio::spawn(async move { session(addr, login, &content, count).await })
        })
        .collect();
    let mut ids = Vec::with_capacity(total);
    for task in tasks {
        ids.extend(task.await.expect("session"));
    }
    ids.sort();
    ids
}

async fn session(
    addr: SocketAddr,
    login: (String, String),
    content: &str,
    count: usize,
) -> Vec<String> {
    let mut session = SmtpSession::open(addr, Some(&login)).await;
    let data = data_section(content);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let acknowledged = session.send(&data).await;
        let id = acknowledged
            .queued_id()
            .expect("the message id in the reply")
            .to_string();
        ids.push(id);
    }
    session.quit().await;
    ids
}
