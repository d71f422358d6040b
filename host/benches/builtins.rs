//! The built-in flow `template → tracking → archive → dkim` on a 20 KB newsletter, run the way
//! the pipeline runs it (fresh sandbox per step, host capabilities over a real store and real
//! keys), once with RSA-2048 keys and once with Ed25519 keys.
//!
//! `cargo bench --bench builtins` prints, per key type: the median time of each step (wall
//! clock, and the CPU time of the thread that ran it, which a busy machine inflates less), the
//! median of the host's DKIM signing alone (two signatures: platform and customer) and its
//! share of the flow, and messages/second with one flow per core on all cores. Storage of the
//! outcome is not included (benches/submit.rs measures the accept path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::dkim::{Dkim, DkimConfig, KeyAlgorithm};
use sluice::message::{Envelope, Message};
use sluice::plugin::builtin::load_builtins;
use sluice::plugin::registry::PluginRegistry;
use sluice::plugin::{HostServices, Plugin, PluginRuntime, RuntimeLimits, StepContext};
use sluice::services::AccountServices;
use sluice::store::{Store, Template};
use sluice::tracking::LinkSigner;

const WARMUP_FLOWS: usize = 50;
const MEASURED_FLOWS: usize = 600;
const THROUGHPUT_FLOWS_PER_THREAD: usize = 400;

const LAYOUT: &str = r#"<html><body><h1>Hello {{ name }}</h1>{{ message.html }}
<p><a href="https://shop.example/offer?id={{ id }}">Offer</a> · <a href="{{ online_link() }}">View online</a></p>
</body></html>"#;

const STEPS: [(&str, &str); 4] = [
    ("template", r#"{"template": "newsletter"}"#),
    ("tracking", "{}"),
    ("archive", r#"{"retention": "P1M"}"#),
    ("dkim", "{}"),
];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    // A busy machine must not fail a step on the default 100 ms deadline: the bench measures
    // time, not the deadline.
    let limits = RuntimeLimits {
        deadline: Duration::from_secs(5),
        cpu_budget: Duration::from_secs(5),
        ..RuntimeLimits::default()
    };
    let plugins_runtime = PluginRuntime::new(limits, None).expect("runtime");
    let registry = PluginRegistry::new();
    load_builtins(&plugins_runtime, &registry).expect("built-ins load");
    let steps: Vec<(Arc<Plugin>, &str)> = STEPS
        .iter()
        .map(|(name, config)| (registry.get(name).expect("built-in"), *config))
        .collect();
    let message = newsletter(20_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "built-in flow on a {} byte message; {} cores",
        message.size(),
        threads
    );

    for algorithm in [KeyAlgorithm::Rsa2048, KeyAlgorithm::Ed25519] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("bench.redb")).expect("store");
        let config = DkimConfig {
            platform_algorithm: algorithm,
            ..DkimConfig::default()
        };
        let dkim = Arc::new(Dkim::open(config, dir.path(), store.clone()).expect("dkim"));
        runtime.block_on(async {
            let identity = dkim
                .new_identity(1, "shop.example", algorithm, "bench")
                .expect("identity");
            store.create_identity(identity).await.expect("stored");
            store
                .put_template(Template {
                    id: 0,
                    account_id: 1,
                    name: "newsletter".into(),
                    subject: Some("News for {{ name }}".into()),
                    html: Some(LAYOUT.into()),
                    text: None,
                    updated_at: 0,
                })
                .await
                .expect("template");
        });
        let services: Arc<dyn HostServices> =
            Arc::new(AccountServices::new(store.clone(), Arc::clone(&dkim)));
        let links = Arc::new(LinkSigner::new([9; 32], "https://t.shop.example"));
        let context = StepContext {
            message_id: "bench".into(),
            account_id: 1,
            simulation: false,
            links,
            services: Some(services),
        };
        let flow = Flow {
            steps: &steps,
            context: &context,
        };

        for _ in 0..WARMUP_FLOWS {
            flow.run(&message);
        }
        let mut per_step: Vec<Vec<Duration>> = vec![Vec::new(); steps.len()];
        let mut cpu_per_step: Vec<Vec<Duration>> = vec![Vec::new(); steps.len()];
        let mut totals = Vec::with_capacity(MEASURED_FLOWS);
        let mut cpu_totals = Vec::with_capacity(MEASURED_FLOWS);
        let mut signed_input = None;
        for _ in 0..MEASURED_FLOWS {
            let (times, before_dkim) = flow.run(&message);
            totals.push(times.iter().map(|time| time.wall).sum::<Duration>());
            cpu_totals.push(times.iter().map(|time| time.cpu).sum::<Duration>());
            for (index, time) in times.into_iter().enumerate() {
                per_step[index].push(time.wall);
                cpu_per_step[index].push(time.cpu);
            }
            signed_input = Some(before_dkim);
        }
        let signed_input = signed_input.expect("ran").to_bytes();
        let mut signing = Vec::with_capacity(MEASURED_FLOWS);
        let mut cpu_signing = Vec::with_capacity(MEASURED_FLOWS);
        for _ in 0..MEASURED_FLOWS {
            let (started, cpu_started) = (Instant::now(), thread_cpu());
            dkim.sign(1, &signed_input).expect("signs");
            signing.push(started.elapsed());
            cpu_signing.push(thread_cpu() - cpu_started);
        }

        let throughput = {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..THROUGHPUT_FLOWS_PER_THREAD {
                            flow.run(&message);
                        }
                    });
                }
            });
            (threads * THROUGHPUT_FLOWS_PER_THREAD) as f64 / started.elapsed().as_secs_f64()
        };

        let total = median(&mut totals);
        let cpu_total = median(&mut cpu_totals);
        let sign = median(&mut signing);
        let cpu_sign = median(&mut cpu_signing);
        println!("\n{algorithm:?} keys (platform + customer signature)");
        for (((name, _), times), cpu) in STEPS
            .iter()
            .zip(per_step.iter_mut())
            .zip(cpu_per_step.iter_mut())
        {
            println!(
                "  step {name:<10} median {:>9.1} µs, CPU {:>9.1} µs",
                micros(median(times)),
                micros(median(cpu))
            );
        }
        println!(
            "  whole flow      median {:>9.1} µs, CPU {:>9.1} µs",
            micros(total),
            micros(cpu_total)
        );
        println!(
            "  DKIM signing    median {:>9.1} µs, CPU {:>9.1} µs ({:.0} % of the flow's CPU)",
            micros(sign),
            micros(cpu_sign),
            100.0 * cpu_sign.as_secs_f64() / cpu_total.as_secs_f64()
        );
        println!("  throughput      {throughput:>9.0} messages/s on {threads} threads");
    }
}

/// The four steps with their context, run as the pipeline runs them.
struct Flow<'a> {
    steps: &'a [(Arc<Plugin>, &'a str)],
    context: &'a StepContext,
}

/// The time one step took.
struct StepTime {
    /// Wall clock.
    wall: Duration,
    /// CPU time of the thread that ran it.
    cpu: Duration,
}

impl Flow<'_> {
    /// Runs every step; returns each step's time and the message the dkim step got.
    fn run(&self, message: &Message) -> (Vec<StepTime>, Message) {
        let mut current = message.clone();
        let mut times = Vec::with_capacity(self.steps.len());
        let mut before_last = current.clone();
        for (index, (plugin, config)) in self.steps.iter().enumerate() {
            if index + 1 == self.steps.len() {
                before_last = current.clone();
            }
            let (started, cpu_started) = (Instant::now(), thread_cpu());
            let run = plugin
                .run_blocking(&current, config, Some(self.context.clone()))
                .expect("step runs");
            times.push(StepTime {
                wall: started.elapsed(),
                cpu: thread_cpu() - cpu_started,
            });
            current = run.message;
        }
        (times, before_last)
    }
}

/// The CPU time (user and system) this thread has used so far.
fn thread_cpu() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(spent.tv_sec as u64, spent.tv_nsec as u32)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// An application mail of about `size` bytes: an html part with a few links and a text part.
fn newsletter(size: usize) -> Message {
    let paragraph = "<p>Our winter range is here: <a href=\"https://shop.example/p/1\">coats</a>, \
         <a href=\"https://shop.example/p/2\">boots</a> and more, with free returns.</p>\n";
    let html = paragraph.repeat(size / 2 / paragraph.len() + 1);
    let text = "Our winter range is here: coats, boots and more, with free returns.\n"
        .repeat(size / 2 / 70 + 1);
    let raw = format!(
        "From: Shop <news@shop.example>\r\nTo: ann@example.net\r\nSubject: Winter\r\n\
         Message-ID: <bench@shop.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    );
    Message::parse(
        raw.into_bytes(),
        Envelope {
            sender: "news@shop.example".into(),
            recipient: "ann@example.net".into(),
        },
    )
    .expect("a valid message")
    .with_data(Some(r#"{"name": "Ann", "id": 7}"#.into()))
}
