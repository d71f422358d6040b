//! Per-call overhead of the same step, reading one header of a 20 KB message, written in Rust,
//! JavaScript (componentize-js) and Python (componentize-py): compile time, the first call
//! after loading, and the steady state (median and p99 of single calls timed one by one).
//!
//! `cargo bench --bench languages`; a filter word (`rust`, `javascript`, `python`) selects
//! languages. The JavaScript and Python steps are built with their pinned toolchains as the
//! tests build them (tests/support/src/languages.rs); a language that cannot be built or loaded
//! here is reported as skipped, with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::message::{Envelope, Message};
use sluice::plugin::{Grants, Plugin, PluginRuntime, RuntimeLimits};
use sluice_test_support::languages;

const WARMUP_CALLS: usize = 100;
const MEASURED_CALLS: usize = 1000;
const READ_HEADER: &str = r#"{"behaviour": "read-header"}"#;

/// The guest components host/build.rs builds, one constant per crate.
// A bench uses only some of them.
#[allow(dead_code)]
mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

fn main() {
    // `cargo bench` passes `--bench`; a filter word selects languages by name.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let message = text_message(20_000);
    println!(
        "{:<11} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "read-header", "compile", "first call", "median", "p99", "size"
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
        if filter
            .as_ref()
            .is_some_and(|word| !language.contains(word.as_str()))
        {
            continue;
        }
        match measure(&source, &message) {
            Ok(figures) => println!(
                "{language:<11} {:>10} {:>10} {:>12} {:>12} {:>6} MB",
                shown(figures.compile),
                shown(figures.first_call),
                shown(figures.median),
                shown(figures.p99),
                format!("{:.1}", figures.size as f64 / 1e6)
            ),
            Err(why) => println!("{language:<11} skipped: {why}"),
        }
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
    size: usize,
}

fn measure(source: &Source, message: &Message) -> Result<Figures, String> {
    let path = match source {
        Source::Built(path) => path.into(),
        Source::Project(folder) => {
            languages::build(folder)
                .map_err(|unavailable| unavailable.to_string())?
                .path
        }
    };
    let bytes = std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    // No compiled-code cache, so the compile time is the component's own; the deadline leaves
    // room for an interpreter's first call on a busy machine.
    let limits = RuntimeLimits {
        deadline: Duration::from_secs(5),
        ..RuntimeLimits::default()
    };
    let runtime = PluginRuntime::new(limits, None).map_err(|error| error.to_string())?;
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
    let mut samples = Vec::with_capacity(MEASURED_CALLS);
    for _ in 0..MEASURED_CALLS {
        let started = Instant::now();
        call(&plugin, message)?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Ok(Figures {
        compile,
        first_call,
        median: at(0.5),
        p99: at(0.99),
        size: bytes.len(),
    })
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
