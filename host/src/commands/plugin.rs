//! `sluice plugin new`, `check` and `run`: the quickest way to write and try a Flowstep; and
//! `sluice plugin enable`, an operator's way to let a disabled plugin run again.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::scaffold::{self, Language};
use sluice::message::{Envelope, Message};
use sluice::plugin::policy::{ImportTreatment, check_import, denial_reason};
use sluice::plugin::{Capability, Grants, PluginRuntime, RuntimeLimits, StepOutcome};

/// Exit code when the step held the message.
const EXIT_HELD: u8 = 3;
/// Exit code when the step discarded the message.
const EXIT_DISCARDED: u8 = 4;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Validates a component against the flowstep world and lists its exports and its
    /// imports, each as granted, inert, denied-if-called or refused (with the reason).
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// A privileged capability to grant (dkim, archive, tracking, online-link, templates).
        #[arg(long = "grant", value_parser = parse_capability)]
        grants: Vec<Capability>,
    },
    /// Runs one step on a message read from stdin; prints the resulting message on stdout
    /// and the outcome and log on stderr.
    Run {
        /// The component (.wasm).
        file: PathBuf,
        /// The step's JSON configuration.
        #[arg(long, default_value = "{}")]
        config: String,
        /// The JSON data the message was submitted with.
        #[arg(long)]
        data: Option<String>,
        /// Envelope sender.
        #[arg(long, default_value = "sender@example.com")]
        sender: String,
        /// Envelope recipient.
        #[arg(long, default_value = "recipient@example.net")]
        recipient: String,
        /// A privileged capability to grant.
        #[arg(long = "grant", value_parser = parse_capability)]
        grants: Vec<Capability>,
        /// Print a JSON report instead of the message.
        #[arg(long)]
        json: bool,
        /// Run the step this many times, each in a fresh sandbox as in service, and report
        /// the first call's time and the median, p90 and p99 of the others.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
    },
    /// Creates a Flowstep project that builds with one command and passes `plugin check`.
    New {
        /// The project's name (lowercase letters, digits, '-'); also its folder's.
        name: String,
        /// The language to write the step in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Language,
        /// The folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Lets a plugin that failed its way to disabled run again for an account, in the store
    /// of a stopped server (a running one takes `POST /{account}/plugins/{plugin}/enable`).
    Enable {
        /// The plugin: an uploaded one's sha256, or the name of one in the plugin folder.
        plugin: String,
        /// The account it was disabled for.
        #[arg(long)]
        account: u64,
        /// The server's configuration file, when it has one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data folder (overrides `data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn parse_capability(name: &str) -> Result<Capability, String> {
    Capability::from_interface(name).ok_or_else(|| {
        let known: Vec<&str> = Capability::ALL.iter().map(|cap| cap.interface()).collect();
        format!("unknown capability {name:?}; known: {}", known.join(", "))
    })
}

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check { file, grants } => check(file, Grants::of(grants)),
        PluginCommand::Run {
            file,
            config,
            data,
            sender,
            recipient,
            grants,
            json,
            repeat,
        } => run_step(
            file,
            &config,
            data,
            Envelope { sender, recipient },
            Grants::of(grants),
            json,
            repeat,
        ),
        PluginCommand::New { name, lang, dir } => new_project(lang, &name, &dir),
        PluginCommand::Enable {
            plugin,
            account,
            config,
            data,
        } => enable(&plugin, account, config.as_deref(), data),
    }
}

fn new_project(language: Language, name: &str, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let root = scaffold::create(language, name, dir)?;
    let (build, component) = language.build_hint(name);
    println!("created {}", root.display());
    println!("next:");
    println!("    cd {}", root.display());
    println!("    {build}");
    println!("    sluice plugin check {component}");
    println!(
        "    sluice plugin run {component} --config '{{\"prefix\": \"[TEST]\"}}' < message.eml"
    );
    Ok(ExitCode::SUCCESS)
}

fn enable(
    reference: &str,
    account_id: u64,
    config: Option<&std::path::Path>,
    data: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut config = sluice::config::Config::load(config)?;
    if let Some(data) = data {
        config.data_dir = data;
    }
    let is_sha256 = reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit());
    let sha256 = if is_sha256 {
        reference.to_ascii_lowercase()
    } else {
        let file = config.plugins_path().join(format!("{reference}.wasm"));
        let bytes = std::fs::read(&file).map_err(|error| {
            anyhow::anyhow!("no plugin {reference} ({}): {error}", file.display())
        })?;
        sluice::plugin::hex_sha256(&bytes)
    };
    let store = sluice::store::Store::open_configured(&config).map_err(|error| {
        anyhow::anyhow!(
            "cannot open the store ({error}); while the server runs, use \
             POST /{account_id}/plugins/{reference}/enable"
        )
    })?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let was_disabled = tokio.block_on(store.clear_plugin_disabled(&sha256, account_id))?;
    if was_disabled {
        println!("plugin {reference} ({sha256}) runs again for account {account_id}");
    } else {
        println!("plugin {reference} ({sha256}) was not disabled for account {account_id}");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_component(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))
}

fn check(file: PathBuf, grants: Grants) -> anyhow::Result<ExitCode> {
    let bytes = read_component(&file)?;
    let runtime = PluginRuntime::new(RuntimeLimits::default(), None)?;
    let compiled = match runtime.compile(&bytes) {
        Ok(compiled) => compiled,
        Err(error) => {
            eprintln!("{}: rejected: {error}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", file.display())?;
    writeln!(out, "  sha256  {}", compiled.sha256())?;
    writeln!(out, "  imports")?;
    for import in &compiled.summary().imports {
        let verdict = match check_import(import, &grants) {
            Ok(ImportTreatment::DeniedIfCalled) => {
                format!("denied-if-called: {}", denial_reason(import))
            }
            Ok(treatment) => treatment.to_string(),
            Err(error) => format!("REFUSED: {}", error.reason),
        };
        writeln!(out, "    {import:<44} {verdict}")?;
    }
    writeln!(out, "  exports")?;
    for export in &compiled.summary().exports {
        writeln!(out, "    {export}")?;
    }
    drop(out);
    match runtime.load_compiled("check", compiled, grants) {
        Ok(plugin) => {
            println!(
                "ok: implements sluice:flowstep@{}",
                plugin.contract_version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{}: rejected: {error}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_step(
    file: PathBuf,
    config: &str,
    data: Option<String>,
    envelope: Envelope,
    grants: Grants,
    json: bool,
    repeat: u32,
) -> anyhow::Result<ExitCode> {
    let bytes = read_component(&file)?;
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    let message = Message::parse(raw, envelope)
        .map_err(|error| anyhow::anyhow!("the message on stdin: {error}"))?
        .with_data(data);

    let runtime = PluginRuntime::new(RuntimeLimits::default(), None)?;
    let plugin = runtime
        .load("cli", &bytes, grants)
        .map_err(|error| anyhow::anyhow!("{}: rejected: {error}", file.display()))?;
    let mut result = plugin.run(&message, config);
    let mut elapsed = Vec::new();
    while let Ok(run) = &result {
        elapsed.push(run.report.elapsed);
        if elapsed.len() >= repeat as usize {
            break;
        }
        result = plugin.run(&message, config);
    }
    let timing = (repeat > 1 && !elapsed.is_empty()).then(|| CallTimes::of(&elapsed));

    let (report, outcome, output, failure) = match &result {
        Ok(run) => (&run.report, Some(&run.outcome), Some(&run.message), None),
        Err(failed) => (&*failed.report, None, None, Some(&failed.failure)),
    };
    if json {
        let value = serde_json::json!({
            "outcome": outcome.map(|outcome| match outcome {
                StepOutcome::Continue => serde_json::json!({"continue": null}),
                StepOutcome::Hold(reason) => serde_json::json!({"hold": reason}),
                StepOutcome::Discard(reason) => serde_json::json!({"discard": reason}),
            }),
            "error": failure.map(|failure| serde_json::json!({
                "code": failure.code(),
                "message": failure.to_string(),
            })),
            "changed": output.map(|output| output.to_bytes() != message.to_bytes()),
            "elapsed_us": report.elapsed.as_micros() as u64,
            "cpu_us": report.cpu.as_micros() as u64,
            "fuel_consumed": report.fuel_consumed,
            "logs": report.logs,
            "timing": timing.as_ref().map(CallTimes::to_json),
            "message": output.map(|message| String::from_utf8_lossy(&message.to_bytes()).into_owned()),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for line in &report.logs {
            eprintln!("[{}] {}", line.level, line.message);
        }
        if let Some(message) = output {
            std::io::stdout().write_all(&message.to_bytes())?;
        }
        match (outcome, failure) {
            (Some(StepOutcome::Continue), _) => {
                eprintln!("outcome: continue ({:?})", report.elapsed)
            }
            (Some(StepOutcome::Hold(reason)), _) => eprintln!("outcome: hold: {reason}"),
            (Some(StepOutcome::Discard(reason)), _) => eprintln!("outcome: discard: {reason}"),
            (None, Some(failure)) => eprintln!("failed ({}): {failure}", failure.code()),
            (None, None) => {}
        }
        if let Some(timing) = &timing {
            eprintln!("{timing}");
        }
    }
    Ok(match (outcome, failure) {
        (Some(StepOutcome::Continue), _) => ExitCode::SUCCESS,
        (Some(StepOutcome::Hold(_)), _) => ExitCode::from(EXIT_HELD),
        (Some(StepOutcome::Discard(_)), _) => ExitCode::from(EXIT_DISCARDED),
        _ => ExitCode::FAILURE,
    })
}

/// The times of repeated calls: the first apart, since it pays for what later calls reuse.
struct CallTimes {
    calls: usize,
    first: Duration,
    /// Median, p90 and p99 of the calls after the first, when there were any.
    rest: Option<[Duration; 3]>,
}

impl CallTimes {
    fn of(elapsed: &[Duration]) -> Self {
        let mut rest = elapsed.get(1..).unwrap_or_default().to_vec();
        rest.sort();
        let at = |quantile: f64| rest[((rest.len() - 1) as f64 * quantile).round() as usize];
        Self {
            calls: elapsed.len(),
            first: elapsed.first().copied().unwrap_or_default(),
            rest: (!rest.is_empty()).then(|| [at(0.5), at(0.9), at(0.99)]),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let micros = |duration: Duration| duration.as_micros() as u64;
        serde_json::json!({
            "calls": self.calls,
            "first_us": micros(self.first),
            "median_us": self.rest.map(|[median, _, _]| micros(median)),
            "p90_us": self.rest.map(|[_, p90, _]| micros(p90)),
            "p99_us": self.rest.map(|[_, _, p99]| micros(p99)),
        })
    }
}

impl std::fmt::Display for CallTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timing: {} calls, first {:?}", self.calls, self.first)?;
        if let Some([median, p90, p99]) = self.rest {
            write!(f, "; then median {median:?}, p90 {p90:?}, p99 {p99:?}")?;
        }
        Ok(())
    }
}
