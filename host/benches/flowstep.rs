//! Per-step overhead of the Flowstep sandbox: instantiate + call + apply, with the pooling
//! allocator and a fresh Store per call, for messages of 2 KB, 20 KB and 200 KB.
//!
//! `cargo bench --bench flowstep` prints one line per case: median, p90 and p99 of single
//! calls timed one by one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::message::{Envelope, Message};
use sluice::plugin::{Grants, Plugin, PluginRuntime, RuntimeLimits};

const WARMUP_CALLS: usize = 300;
const MEASURED_CALLS: usize = 3000;

fn main() {
    // `cargo bench` passes `--bench`; a filter word selects cases by name.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let runtime = PluginRuntime::new(RuntimeLimits::default(), None).expect("runtime");
    let misbehave = load(&runtime, guests::TEST_MISBEHAVE);
    let prefix = load(&runtime, guests::SUBJECT_PREFIX);

    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "case (pooling, fresh Store per call)", "median", "p90", "p99"
    );
    for size in [2_000, 20_000, 200_000] {
        let message = sized_message(size);
        let label = format!("{} KB", size / 1000);
        let read = format!("read one header, {label}");
        bench(&filter, &read, || {
            misbehave
                .run(&message, r#"{"behaviour": "read-header"}"#)
                .expect("read-header");
        });
        let rewrite = format!("rewrite the html part, {label}");
        bench(&filter, &rewrite, || {
            misbehave
                .run(
                    &message,
                    r#"{"behaviour": "rewrite-html", "find": "lorem", "replace": "LOREM"}"#,
                )
                .expect("rewrite-html");
        });
    }

    let message = sized_message(20_000);
    bench(&filter, "chain of 4 steps, 20 KB", || {
        let steps: [(&Arc<Plugin>, &str); 4] = [
            (&misbehave, r#"{"behaviour": "read-header"}"#),
            (
                &misbehave,
                r#"{"behaviour": "set-header", "name": "X-Campaign", "value": "winter"}"#,
            ),
            (&prefix, r#"{"prefix": "[news]"}"#),
            (&misbehave, r#"{"behaviour": "read-header"}"#),
        ];
        let mut current = message.clone();
        for (plugin, config) in steps {
            current = plugin.run(&current, config).expect("step").message;
        }
    });
}

/// The guest components host/build.rs builds, one constant per crate.
// A bench uses only some of them.
#[allow(dead_code)]
mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

fn load(runtime: &Arc<PluginRuntime>, component: &str) -> Arc<Plugin> {
    let bytes = std::fs::read(component).expect("guest component built by build.rs");
    runtime
        .load(component, &bytes, Grants::none())
        .expect("loads")
}

/// A multipart/alternative message of about `size` bytes, half text, half html.
fn sized_message(size: usize) -> Message {
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    let part = size / 2;
    let text: String = words.repeat(part / words.len() + 1)[..part].to_string();
    let html = format!("<html><body><p>{}</p></body></html>", &text[..part - 40]);
    let raw = format!(
        "From: Shop <shop@example.com>\r\nTo: ann@example.net\r\nSubject: Your order\r\n\
         Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b--\r\n"
    );
    Message::parse(raw.into_bytes(), envelope()).expect("bench message parses")
}

fn envelope() -> Envelope {
    Envelope {
        sender: "bounces@example.com".into(),
        recipient: "ann@example.net".into(),
    }
}

fn bench(filter: &Option<String>, name: &str, mut call: impl FnMut()) {
    if filter
        .as_ref()
        .is_some_and(|word| !name.contains(word.as_str()))
    {
        return;
    }
    for _ in 0..WARMUP_CALLS {
        call();
    }
    let mut samples: Vec<Duration> = (0..MEASURED_CALLS)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        name,
        micros(at(0.5)),
        micros(at(0.9)),
        micros(at(0.99))
    );
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}
