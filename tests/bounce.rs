//! The bounce classifier over the labelled corpus (tests/data/bounces): a printed report of
//! how far it agrees with the labels, the targets asserted, and a bounded
//! mutation run that must never panic.
//!
//! `cargo test --test sluice bounce -- --nocapture` prints the report; with
//! `BOUNCE_REPORT_ALL=1` it also lists every file's verdicts.

use std::collections::BTreeMap;

use sluice::bounce::{Kind, RecipientVerdict, Report, classify_message};

use crate::util::bounce_corpus::{Label, corpus_dir, labels};

/// A ratio as a percentage, for the report.
fn percent(hits: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        100.0 * hits as f64 / total as f64
    }
}

/// The verdict a label row is about: the one for the labelled address if the label names
/// one and the classifier found it, else the one at the same position.
fn verdict_for<'r>(label: &Label, verdicts: &'r [RecipientVerdict]) -> Option<&'r RecipientVerdict> {
    label
        .recipient
        .as_ref()
        .and_then(|address| {
            verdicts
                .iter()
                .find(|v| v.recipient.as_deref() == Some(address.as_str()))
        })
        .or_else(|| verdicts.get(label.index.saturating_sub(1)))
}

#[derive(Default)]
struct Tally {
    hits: usize,
    total: usize,
    misses: Vec<String>,
}

impl Tally {
    fn count(&mut self, hit: bool, miss: impl FnOnce() -> String) {
        self.total += 1;
        if hit {
            self.hits += 1;
        } else {
            self.misses.push(miss());
        }
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<44} {:>4}/{:<4} {:6.1} %",
            self.hits,
            self.total,
            percent(self.hits, self.total)
        )
    }
}

fn describe(verdict: Option<&RecipientVerdict>) -> String {
    match verdict {
        None => "(no verdict)".into(),
        Some(v) => format!(
            "{}/{} status={} code={} rcpt={} diag={:.140}",
            v.reason,
            v.class.map(|c| c.as_str()).unwrap_or("-"),
            v.status.as_deref().unwrap_or("-"),
            v.reply_code.map(|c| c.to_string()).unwrap_or("-".into()),
            v.recipient.as_deref().unwrap_or("-"),
            v.diagnostic.as_deref().unwrap_or("-"),
        ),
    }
}

#[test]
fn bounce_corpus_agrees_with_the_labels() {
    let labels = labels();
    let mut reports: BTreeMap<String, Report> = BTreeMap::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            reports.insert(name, classify_message(&raw));
        }
    }
    let show_all = std::env::var_os("BOUNCE_REPORT_ALL").is_some();

    let mut parsed = Tally::default();
    let mut kind = Tally::default();
    let mut class = Tally::default();
    let mut reason = Tally::default();
    let mut recipient = Tally::default();
    let mut complaint = Tally::default();
    let mut not_bounce = Tally::default();
    for (file, report) in &reports {
        let rows = labels.get(file).cloned().unwrap_or_default();
        // Parsed: the message was read into something (at least one line to print, and a
        // bounce has a diagnostic, status or reply code to go on).
        let read = !report.recipients.is_empty()
            && (report.kind != Kind::Bounce
                || report.recipients.iter().any(|v| {
                    v.diagnostic.is_some() || v.status.is_some() || v.reply_code.is_some()
                }));
        parsed.count(read, || format!("{file}: nothing read"));
        let expected_kind = rows.first().map(|r| r.kind.as_str()).unwrap_or("other");
        let kind_ok = match expected_kind {
            "bounce" => report.kind == Kind::Bounce,
            "arf" => report.kind == Kind::Complaint,
            _ => report.kind != Kind::Bounce && report.kind != Kind::Complaint,
        };
        kind.count(kind_ok, || {
            format!("{file}: expected {expected_kind}, got {}", report.kind.as_str())
        });
        if show_all {
            println!("{file}: {}", report.kind.as_str());
            for v in &report.recipients {
                println!("    {}", describe(Some(v)));
            }
        }
        for row in &rows {
            let verdict = verdict_for(row, &report.recipients);
            match row.kind.as_str() {
                "arf" => complaint.count(report.kind == Kind::Complaint, || {
                    format!("{file}: a feedback report read as {}", report.kind.as_str())
                }),
                "other" => not_bounce.count(report.kind != Kind::Bounce, || {
                    format!("{file}: {} counted as a bounce", row.reason)
                }),
                _ => {}
            }
            if let Some(address) = &row.recipient {
                recipient.count(
                    report
                        .recipients
                        .iter()
                        .any(|v| v.recipient.as_deref() == Some(address.as_str())),
                    || format!("{file}: {address} not found; got {}", describe(verdict)),
                );
            }
            if row.kind == "bounce" && row.agreement == "stable" {
                class.count(
                    verdict.and_then(|v| v.class).map(|c| c.as_str()) == Some(row.class.as_str()),
                    || format!("{file}#{}: expected {}/{}, got {}", row.index, row.reason, row.class, describe(verdict)),
                );
                reason.count(
                    verdict.map(|v| v.reason.as_str()) == Some(row.reason.as_str()),
                    || format!("{file}#{}: expected {}, got {}", row.index, row.reason, describe(verdict)),
                );
            }
        }
    }

    println!("bounce corpus: {} files, {} label rows", reports.len(), labels.values().map(Vec::len).sum::<usize>());
    println!("{}", parsed.line("files parsed"));
    println!("{}", kind.line("kind recognised (bounce/complaint/other)"));
    println!("{}", class.line("hard/soft agreement (stable bounce rows)"));
    println!("{}", reason.line("reason agreement (stable bounce rows)"));
    println!("{}", recipient.line("recipient extraction (labelled rows)"));
    println!("{}", complaint.line("ARF samples recognised as complaints"));
    println!("{}", not_bounce.line("other samples not counted as bounces"));
    for (title, tally) in [
        ("kind", &kind),
        ("hard/soft", &class),
        ("recipient", &recipient),
        ("complaint", &complaint),
        ("not-a-bounce", &not_bounce),
        ("reason", &reason),
    ] {
        for miss in &tally.misses {
            println!("  {title} miss: {miss}");
        }
    }

    assert!(percent(class.hits, class.total) >= 95.0, "hard/soft agreement below 95 %");
    assert!(percent(recipient.hits, recipient.total) >= 98.0, "recipient extraction below 98 %");
    assert_eq!(complaint.hits, complaint.total, "a feedback report was not a complaint");
    assert_eq!(not_bounce.hits, not_bounce.total, "a sample that is no bounce counted as one");
}
