//! The Sluice set-up and the one load generator of the side-by-side relay run
//! (`bench/relay.sh`: the generator straight into smtp-sink, Postfix, Postfix + OpenDKIM and
//! Sluice, all on loopback). Three commands:
//!
//! - `set-up DATA no-steps|built-in [--store-url URL]` prepares a data folder (and, with a
//!   URL, a PostgreSQL database) for `sluice serve`: the demo
//!   account with a default flow without steps, or the built-in flow template → tracking →
//!   archive → dkim with two RSA-2048 keys (the platform's and a validated customer
//!   identity's). Prints the demo account's SMTP login, `USER PASSWORD`.
//! - `message-size` prints the size of the message `load` sends.
//! - `load ADDR MESSAGES --sink-counter FILE` sends the ~20 KB newsletter with 51 links
//!   (`support::built_in_flow::newsletter`, the one the other benches send) MESSAGES times over
//!   20 SMTP sessions to any SMTP server, with AUTH PLAIN only when given `--auth USER:PASSWORD`.
//!   Every session is opened (and authenticated) before the clock starts, so the run measures
//!   messages, not logins. The clock stops when smtp-sink's running counter (its `-c` output,
//!   redirected to FILE) has counted MESSAGES more messages: throughput is end to end. With
//!   `--cpu-of PID,...` it also reads the CPU time (user + system, from `/proc/PID/stat`) of
//!   those processes and all their descendants, living and reaped, before and after. Prints
//!   one line, `rate=MSG/S cpu_ms=MS_PER_MESSAGE db_cpu_ms=MS_PER_MESSAGE p50_ms=MS p99_ms=MS`,
//!   where p50/p99 are of the acknowledgement: from a message's last byte written to its 250,
//!   and `db_cpu_ms` is the CPU of the database server given with `--db-cpu-of PID` (else -).
//!   ADDR may name several servers, comma-separated (nodes of one platform): the sessions take
//!   them in turn.
//!
//! By hand (bench/relay.sh runs the binary cargo builds for this):
//!
//! ```text
//! cargo bench --bench relay -- set-up /tmp/data built-in
//! cargo bench --bench relay -- load 127.0.0.1:2525 5000 --sink-counter /tmp/sink.out \
//!     --auth USER:PASSWORD --cpu-of 1234
//! ```

// This bench sets up flows of its own, not the shared no-op one.
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use sluice::dkim::KeyAlgorithm;
use sluice::server::Server;
use support::data_folder::{set_up, set_up_config};
use support::smtp_load::{SmtpSession, data_section};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepares a data folder for `sluice serve` and prints the SMTP login, `USER PASSWORD`.
    SetUp {
        /// The data folder (made if missing).
        data: PathBuf,
        /// The demo account's default flow.
        flow: FlowKind,
        /// The store's PostgreSQL database (`[store] url`); absent, the data folder's redb file.
        #[arg(long)]
        store_url: Option<String>,
    },
    /// Sends the newsletter MESSAGES times and prints throughput, CPU and acknowledgement times.
    Load {
        /// The SMTP server under test; several, comma-separated (the nodes of one platform),
        /// take the sessions in turn.
        #[arg(value_delimiter = ',', required = true)]
        addr: Vec<SocketAddr>,
        /// Messages in all, shared evenly by the sessions.
        messages: usize,
        /// Where smtp-sink's `-c` counters are written: the run ends when they count MESSAGES more.
        #[arg(long)]
        sink_counter: PathBuf,
        /// Concurrent SMTP sessions.
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        /// `USER:PASSWORD` for AUTH PLAIN; without it the sessions do not authenticate.
        #[arg(long)]
        auth: Option<String>,
        /// The processes under test: their CPU time, with all their descendants', is measured.
        #[arg(long, value_delimiter = ',')]
        cpu_of: Vec<u32>,
        /// A database server the system under test uses (its postmaster): its CPU time, with
        /// its backends', is measured on its own and printed as `db_cpu_ms`.
        #[arg(long, value_delimiter = ',')]
        db_cpu_of: Vec<u32>,
        /// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`).
        #[arg(long, default_value_t = 100)]
        clock_ticks: u64,
    },
    /// Prints the size of the message `load` sends, in bytes.
    MessageSize,
}

/// The demo account's default flow in a prepared data folder.
#[derive(Clone, Copy, ValueEnum)]
enum FlowKind {
    /// A flow without steps: the message is relayed as submitted.
    NoSteps,
    /// template → tracking → archive → dkim, two RSA-2048 signatures.
    BuiltIn,
}

/// The run stops when the sink has counted nothing new for this long.
const STALL: Duration = Duration::from_secs(60);

fn main() {
    // `cargo bench` passes `--bench` to every bench binary.
    let cli = Cli::parse_from(std::env::args().filter(|arg| arg != "--bench"));
    match cli.command {
        Command::SetUp {
            data,
            flow,
            store_url,
        } => {
            let (user, password) = set_up_data_folder(&data, flow, store_url);
            println!("{user} {password}");
        }
        Command::MessageSize => println!("{}", support::built_in_flow::newsletter().len()),
        Command::Load {
            addr,
            messages,
            sink_counter,
            sessions,
            auth,
            cpu_of,
            db_cpu_of,
            clock_ticks,
        } => {
            let login = auth.map(|login| {
                let (user, password) = login.split_once(':').expect("--auth USER:PASSWORD");
                (user.to_string(), password.to_string())
            });
            let run = Run {
                addr,
                messages,
                sessions,
                login,
                sink_counter,
                processes: cpu_of,
                database: db_cpu_of,
                clock_ticks,
            };
            let result = run.go();
            let millis = |cpu: Option<Duration>| {
                cpu.map_or("-".to_string(), |cpu| {
                    format!("{:.3}", cpu.as_secs_f64() * 1e3)
                })
            };
            println!(
                "rate={:.1} cpu_ms={} db_cpu_ms={} p50_ms={:.2} p99_ms={:.2}",
                result.rate,
                millis(result.cpu_per_message),
                millis(result.database_cpu_per_message),
                result.acknowledgement_p50.as_secs_f64() * 1e3,
                result.acknowledgement_p99.as_secs_f64() * 1e3,
            );
        }
    }
}

/// Makes the demo account and its default flow in `data` with a server in this process.
fn set_up_data_folder(data: &Path, flow: FlowKind, store_url: Option<String>) -> (String, String) {
    std::fs::create_dir_all(data).expect("data folder");
    let mut config = set_up_config(data);
    config.store.url = store_url;
    set_up(async {
        // The platform's key is RSA-2048 by default.
        let server = Server::start(config).await.expect("server starts");
        let demo = server.created_demo.clone().expect("a new data folder");
        match flow {
            FlowKind::NoSteps => {
                support::make_default_flow(&server, "no steps", Vec::new()).await;
            }
            FlowKind::BuiltIn => {
                support::built_in_flow::make_default(&server, KeyAlgorithm::Rsa2048).await;
            }
        }
        (demo.username, demo.password)
    })
}

/// One measured run of the load generator.
struct Run {
    addr: Vec<SocketAddr>,
    messages: usize,
    sessions: usize,
    login: Option<(String, String)>,
    sink_counter: PathBuf,
    processes: Vec<u32>,
    database: Vec<u32>,
    clock_ticks: u64,
}

/// What a run measured.
struct Measured {
    /// Messages per second from the first message sent to the sink counting the last.
    rate: f64,
    /// CPU time of the processes under test per message, when there are some.
    cpu_per_message: Option<Duration>,
    /// CPU time of the database server per message, when one is given.
    database_cpu_per_message: Option<Duration>,
    acknowledgement_p50: Duration,
    acknowledgement_p99: Duration,
}

impl Run {
    fn go(&self) -> Measured {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let data = data_section(&support::built_in_flow::newsletter());
        let sessions = runtime.block_on(async {
            let opening: Vec<_> = (0..self.sessions)
                .map(|index| {
                    let (addr, login) = (self.addr[index % self.addr.len()], self.login.clone());
                    tokio::spawn(async move { SmtpSession::open(addr, login.as_ref()).await })
                })
                .collect();
            let mut sessions = Vec::with_capacity(opening.len());
            for session in opening {
                sessions.push(session.await.expect("session opens"));
            }
            sessions
        });

        let counted_before = sink_count(&self.sink_counter);
        let cpu_before = self.cpu(&self.processes);
        let database_before = self.cpu(&self.database);
        let started = Instant::now();
        let sending: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(index, mut session)| {
                let count = self.messages / self.sessions
                    + usize::from(index < self.messages % self.sessions);
                let data = data.clone();
                runtime.spawn(async move {
                    let mut waited = Vec::with_capacity(count);
                    for _ in 0..count {
                        waited.push(session.send(&data).await.waited);
                    }
                    session.quit().await;
                    waited
                })
            })
            .collect();
        let target = counted_before + self.messages as u64;
        let (mut counted, mut last_change) = (counted_before, Instant::now());
        while counted < target {
            std::thread::sleep(Duration::from_millis(2));
            let now = sink_count(&self.sink_counter);
            if now != counted {
                (counted, last_change) = (now, Instant::now());
            }
            assert!(
                last_change.elapsed() < STALL,
                "the sink counted {} of {} messages, then nothing for {} s",
                counted - counted_before,
                self.messages,
                STALL.as_secs()
            );
        }
        let elapsed = started.elapsed();
        let cpu_after = self.cpu(&self.processes);
        let database_after = self.cpu(&self.database);

        let mut waited: Vec<Duration> = runtime.block_on(async {
            let mut all = Vec::with_capacity(self.messages);
            for session in sending {
                all.extend(session.await.expect("session"));
            }
            all
        });
        waited.sort();
        let at = |q: f64| waited[((waited.len() as f64 - 1.0) * q) as usize];
        Measured {
            rate: self.messages as f64 / elapsed.as_secs_f64(),
            cpu_per_message: cpu_before
                .zip(cpu_after)
                .map(|(before, after)| after.saturating_sub(before) / self.messages as u32),
            database_cpu_per_message: database_before
                .zip(database_after)
                .map(|(before, after)| after.saturating_sub(before) / self.messages as u32),
            acknowledgement_p50: at(0.5),
            acknowledgement_p99: at(0.99),
        }
    }

    /// The CPU time `processes` and their descendants have used so far.
    fn cpu(&self, processes: &[u32]) -> Option<Duration> {
        if processes.is_empty() {
            return None;
        }
        let ticks = process_tree_ticks(processes);
        Some(Duration::from_secs_f64(
            ticks as f64 / self.clock_ticks as f64,
        ))
    }
}

/// The messages smtp-sink has counted, from its `-c` output: records `sess=N quit=N mesg=N`,
/// each ended by a carriage return, the last one possibly still being written.
fn sink_count(counter: &Path) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(counter) else {
        return 0;
    };
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(128)));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    let complete = tail.rsplit_once('\r').map_or("", |(complete, _)| complete);
    complete
        .rsplit_once("mesg=")
        .and_then(|(_, count)| count.parse().ok())
        .unwrap_or(0)
}

/// User and system clock ticks of these processes and their descendants: the living ones'
/// own, and the reaped ones' as their parents' `cutime` and `cstime` hold them.
fn process_tree_ticks(roots: &[u32]) -> u64 {
    // pid → (parent, ticks)
    let mut processes = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(parsed) = parse_stat(&stat) {
            processes.insert(pid, parsed);
        }
    }
    let in_tree = |mut pid: u32| {
        // Walk up the parents; a cycle cannot happen, but a bound costs nothing.
        for _ in 0..64 {
            if roots.contains(&pid) {
                return true;
            }
            match processes.get(&pid) {
                Some(&(parent, _)) if parent != 0 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    processes
        .iter()
        .filter(|(pid, _)| in_tree(**pid))
        .map(|(_, (_, ticks))| ticks)
        .sum()
}

/// The parent and utime + stime + cutime + cstime of a `/proc/PID/stat` line (proc(5): the
/// command name in parentheses may hold spaces, so fields count from its closing one).
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state (field 3), ppid (4), ..., utime (14), stime, cutime, cstime (17).
    let parent = fields.get(1)?.parse().ok()?;
    let ticks = fields
        .get(11..15)?
        .iter()
        .map(|field| field.parse::<i64>().ok().map(|value| value.max(0) as u64))
        .sum::<Option<u64>>()?;
    Some((parent, ticks))
}
