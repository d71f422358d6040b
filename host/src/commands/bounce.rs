//! `sluice bounce classify`: what Sluice makes of a returned message, so an operator can
//! check a puzzling bounce by hand and the corpus can be scored from the shell.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use sluice::bounce::{Report, classify_message};

#[derive(Subcommand)]
pub enum BounceCommand {
    /// Classifies returned messages; prints one JSON object per line per returned recipient:
    /// file, kind, recipient, original_recipient, forwarded_to, class, reason, status,
    /// reply_code, diagnostic.
    Classify {
        /// Raw messages (.eml); `-` reads one message from stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Adds `explanation` to each line: which rule decided the reason (evidence, the
        /// rule's phrase or code, the notice's matched words, a correction), the column of
        /// the hard/soft table (finality), and all of it as one `sentence`.
        #[arg(long)]
        explain: bool,
    },
}

pub fn run(command: BounceCommand) -> anyhow::Result<ExitCode> {
    match command {
        BounceCommand::Classify { files, explain } => classify(&files, explain),
    }
}

fn classify(files: &[PathBuf], explain: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for file in files {
        let name = file.display().to_string();
        let raw = if name == "-" {
            let mut raw = Vec::new();
            std::io::stdin().read_to_end(&mut raw).map(|_| raw)
        } else {
            std::fs::read(file)
        };
        match raw {
            Ok(raw) => {
                for line in json_lines(&name, &classify_message(&raw), explain) {
                    writeln!(out, "{line}")?;
                }
            }
            Err(error) => {
                // One unreadable file does not hide the verdicts on the others.
                eprintln!("sluice: cannot read {name}: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One JSON object per returned recipient (a report always has at least one).
fn json_lines(file: &str, report: &Report, explain: bool) -> Vec<String> {
    report
        .recipients
        .iter()
        .map(|verdict| {
            let mut line = serde_json::json!({
                "file": file,
                "kind": report.kind.as_str(),
                "recipient": verdict.recipient,
                "original_recipient": verdict.original_recipient,
                "forwarded_to": verdict.forwarded_to,
                "class": verdict.class.map(|class| class.as_str()),
                "reason": verdict.reason.as_str(),
                "status": verdict.status,
                "reply_code": verdict.reply_code,
                "diagnostic": verdict.diagnostic,
            });
            if explain {
                let mut explanation =
                    serde_json::to_value(&verdict.explanation).unwrap_or(serde_json::Value::Null);
                explanation["sentence"] = verdict
                    .explanation
                    .sentence(verdict.reason, verdict.class)
                    .into();
                line["explanation"] = explanation;
            }
            line.to_string()
        })
        .collect()
}
