//! Per-call overhead of the same step, reading one header of a 20 KB message, written in Rust,
//! JavaScript (componentize-js) and Python (componentize-py): compile time, the first call
//! after loading, and the steady state (median and p99 of single calls timed one by one, and
//! the CPU time the thread spent per call on average, in user space and in the kernel: on a
//! machine that other work keeps busy, wall-clock medians grow with the load and CPU time far
//! less; `-` where the calls took too little CPU for the kernel's 10 ms tick to measure).
//!
//! `cargo bench --bench languages`; a filter word (`rust`, `javascript`, `python`) selects
//! languages, `--calls N` sets the number of measured calls (1000), and `--compiled DIR` takes
//! compiled code from (and stores it in) a compiled-code cache there, which makes the compile
//! column a cache read, and `--concurrent-calls N` sizes the instance pool for N calls (64, as
//! configured by default): for profiling the calls alone, e.g. with `--concurrent-calls 1`
//! (valgrind cannot reserve the default pool's 1 TiB of address space) under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*steady_state_calls*'`.
//! The JavaScript and Python steps are built with their pinned toolchains as the tests build
//! them (tests/support/src/languages.rs); a language that cannot be built or loaded here is
//! reported as skipped, with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::message::{Envelope, Message};
use sluice::plugin::{CompiledCache, Grants, Plugin, PluginRuntime, RuntimeLimits};
use sluice_test_support::languages;

const WARMUP_CALLS: usize = 100;
const DEFAULT_MEASURED_CALLS: usize = 1000;
const READ_HEADER: &str = r#"{"behaviour": "read-header"}"#;

/// The guest components host/build.rs builds, one constant per crate.
// A bench uses only some of them.
#[allow(dead_code)]
mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

fn main() {
    let options = Options::from_args();
    let message = text_message(20_000);
    println!(
        "{:<11} {:>10} {:>10} {:>12} {:>12} {:>19} {:>8}",
        "read-header", "compile", "first call", "median", "p99", "CPU/call user+sys", "size"
    );
    for (language, source) in [
        ("rust", Source::Built(guests::TEST_MISBEHAVE)),
        (
            "javascript",
            Source::Project("tests/components/js-misbehave"),
        ),
        (
            "python",
            Source::Project("tests/components/python-misbehave"),
        ),
    ] {
        if options
            .filter
            .as_ref()
            .is_some_and(|word| !language.contains(word.as_str()))
        {
            continue;
        }
        match measure(&source, &message, &options) {
            Ok(figures) => println!(
                "{language:<11} {:>10} {:>10} {:>12} {:>12} {:>19} {:>6} MB",
                shown(figures.compile),
                shown(figures.first_call),
                shown(figures.median),
                shown(figures.p99),
                figures.cpu.map_or_else(
                    || "-".to_string(),
                    |(user, sys)| format!("{}+{}", shown(user), shown(sys))
                ),
                format!("{:.1}", figures.size as f64 / 1e6)
            ),
            Err(why) => println!("{language:<11} skipped: {why}"),
        }
    }
}

/// What the command line asks for.
struct Options {
    /// Only the languages whose name contains this word.
    filter: Option<String>,
    /// Calls timed for the median and p99.
    calls: usize,
    /// A compiled-code cache to compile through.
    compiled: Option<std::path::PathBuf>,
    /// Calls the instance pool is sized for, when not the default.
    concurrent_calls: Option<u32>,
}

impl Options {
    fn from_args() -> Self {
        let mut options = Options {
            filter: None,
            calls: DEFAULT_MEASURED_CALLS,
            compiled: None,
            concurrent_calls: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--calls" => {
                    options.calls = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n > 0)
                        .expect("--calls takes a positive number")
                }
                "--concurrent-calls" => {
                    options.concurrent_calls = Some(
                        args.next()
                            .and_then(|n| n.parse().ok())
                            .expect("--concurrent-calls takes a number"),
                    )
                }
                "--compiled" => {
                    options.compiled = Some(args.next().expect("--compiled takes a folder").into())
                }
                // `cargo bench` passes `--bench`.
                flag if flag.starts_with("--") => {}
                word => options.filter = Some(word.to_string()),
            }
        }
        options
    }
}

/// Where a step's component comes from.
enum Source {
    /// A Rust guest host/build.rs built, by its path.
    Built(&'static str),
    /// A JavaScript or Python project folder, built here with its pinned toolchain.
    Project(&'static str),
}

struct Figures {
    compile: Duration,
    first_call: Duration,
    median: Duration,
    p99: Duration,
    /// Mean CPU time per steady-state call in user space and in the kernel, where the OS
    /// says (Linux) and the calls took long enough to measure it.
    cpu: Option<(Duration, Duration)>,
    size: usize,
}

fn measure(source: &Source, message: &Message, options: &Options) -> Result<Figures, String> {
    let path = match source {
        Source::Built(path) => path.into(),
        Source::Project(folder) => {
            languages::build(folder)
                .map_err(|unavailable| unavailable.to_string())?
                .path
        }
    };
    let bytes = std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    // No compiled-code cache unless asked, so the compile time is the component's own; the
    // deadline leaves room for an interpreter's first call on a busy machine (or under a
    // profiler).
    let defaults = RuntimeLimits::default();
    let limits = RuntimeLimits {
        deadline: Duration::from_secs(5),
        cpu_budget: Duration::from_secs(5),
        concurrent_calls: options
            .concurrent_calls
            .unwrap_or(defaults.concurrent_calls),
        ..defaults
    };
    let cache = options
        .compiled
        .as_ref()
        .map(CompiledCache::open)
        .transpose()
        .map_err(|error| format!("the compiled-code cache: {error}"))?;
    let runtime = PluginRuntime::new(limits, cache).map_err(|error| error.to_string())?;
    let started = Instant::now();
    let compiled = runtime.compile(&bytes).map_err(|error| error.to_string())?;
    let compile = started.elapsed();
    let plugin = runtime
        .load_compiled("bench", compiled, Grants::none())
        .map_err(|error| error.to_string())?;

    let started = Instant::now();
    call(&plugin, message)?;
    let first_call = started.elapsed();
    for _ in 0..WARMUP_CALLS {
        call(&plugin, message)?;
    }
    let cpu_before = thread_cpu_time();
    let mut samples = steady_state_calls(&plugin, message, options.calls)?;
    let cpu = thread_cpu_time()
        .zip(cpu_before)
        .map(|((user, sys), (user_before, sys_before))| (user - user_before, sys - sys_before))
        // Counted in clock ticks: under 20 of them (a Rust step's thousand calls) the mean
        // would be mostly rounding.
        .filter(|(user, sys)| *user + *sys >= 20 * CLOCK_TICK)
        .map(|(user, sys)| {
            let calls = options.calls as u32;
            (user / calls, sys / calls)
        });
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Ok(Figures {
        compile,
        first_call,
        median: at(0.5),
        p99: at(0.99),
        cpu,
        size: bytes.len(),
    })
}

/// Times `calls` single calls. Not inlined, so a profiler can count this part alone.
#[inline(never)]
fn steady_state_calls(
    plugin: &Arc<Plugin>,
    message: &Message,
    calls: usize,
) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call(plugin, message)?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// The unit of `/proc/*/stat` times: USER_HZ, 100 per second on every Linux architecture.
const CLOCK_TICK: Duration = Duration::from_millis(10);

/// The CPU time this thread has used so far, in user space and in the kernel (page faults,
/// `madvise` resetting a slot), from `/proc/thread-self/stat`, in clock ticks: the mean over a
/// thousand JavaScript or Python calls is good to a few percent. None off Linux.
fn thread_cpu_time() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: state
    // is field 3, utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u32>().ok();
    Some((CLOCK_TICK * ticks(14)?, CLOCK_TICK * ticks(15)?))
}

fn call(plugin: &Arc<Plugin>, message: &Message) -> Result<(), String> {
    plugin
        .run(message, READ_HEADER)
        .map(drop)
        .map_err(|failed| failed.failure.to_string())
}

fn shown(duration: Duration) -> String {
    if duration >= Duration::from_millis(10) {
        format!("{:.0} ms", duration.as_secs_f64() * 1e3)
    } else if duration >= Duration::from_millis(1) {
        format!("{:.2} ms", duration.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} µs", duration.as_secs_f64() * 1e6)
    }
}

/// A text/plain message of about `size` bytes.
fn text_message(size: usize) -> Message {
    let line = "The quick brown fox jumps over the lazy dog, again and again.\r\n";
    let body = line.repeat(size / line.len() + 1);
    let raw = format!(
        "From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\
         Message-ID: <languages-bench@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    );
    Message::parse(raw.into_bytes(), envelope()).expect("bench message parses")
}

fn envelope() -> Envelope {
    Envelope {
        sender: "bounces@example.com".into(),
        recipient: "ann@example.net".into(),
    }
}
