//! How well the classifier generalises: the corpus split into deterministic folds by a hash
//! of each file's bytes, and into MTA families, each scored on its own.
//!
//! A rule table has no training step, so "develop on some folds, report on the others" is a
//! working discipline this report enforces: the misses of the development folds are listed,
//! those of the report folds ([`REPORT_FOLDS`], or `BOUNCE_REPORT_FOLDS=3,4`) are not, so
//! rules are written from the development misses and judged on the report folds' figures.
//! `BOUNCE_SHOW_REPORT_MISSES=1` lists them too (after the rules are written, to see what
//! generalised badly); `BOUNCE_HOLDOUT_FAMILY=lhost-postfix` hides one MTA family's misses
//! the same way.

use std::collections::BTreeMap;

/// How many folds the corpus is split into.
pub const FOLDS: u64 = 5;

/// The folds whose misses are not listed: the held-out part of the corpus, scored but not
/// looked at while rules are written.
pub const REPORT_FOLDS: &[u64] = &[3, 4];

/// The fold of a file: FNV-1a of its bytes. A sample never moves between folds when others
/// are added or when it is renamed (the samples are byte-for-byte copies, never edited).
pub fn fold_of(contents: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in contents {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % FOLDS
}

/// The report folds in force: `BOUNCE_REPORT_FOLDS` (comma-separated) or [`REPORT_FOLDS`].
pub fn report_folds() -> Vec<u64> {
    match std::env::var("BOUNCE_REPORT_FOLDS") {
        Ok(list) => list
            .split(',')
            .filter_map(|k| k.trim().parse::<u64>().ok())
            .collect(),
        Err(_) => REPORT_FOLDS.to_vec(),
    }
}

/// The family of a file: its name without the sample number ("lhost-postfix-13.eml" →
/// "lhost-postfix"): one MTA or one receiving provider.
pub fn family_of(file: &str) -> String {
    let stem = file.trim_end_matches(".eml");
    match stem.rsplit_once('-') {
        Some((family, number)) if number.bytes().all(|b| b.is_ascii_digit()) => family.to_string(),
        _ => stem.to_string(),
    }
}

/// Whether a file's misses stay unlisted: it is in a report fold (unless
/// `BOUNCE_SHOW_REPORT_MISSES` is set) or in the family `BOUNCE_HOLDOUT_FAMILY` names.
pub fn is_held_out(file: &str, fold: u64) -> bool {
    let in_report_fold =
        std::env::var_os("BOUNCE_SHOW_REPORT_MISSES").is_none() && report_folds().contains(&fold);
    let family = std::env::var("BOUNCE_HOLDOUT_FAMILY").ok();
    in_report_fold || family.is_some_and(|f| family_of(file) == f || family_of(file).ends_with(&f))
}

/// What one file scored: hits and totals per measure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Score {
    pub class_hits: usize,
    pub class_total: usize,
    pub reason_hits: usize,
    pub recipient_hits: usize,
    pub recipient_total: usize,
    pub kind_hits: usize,
    pub kind_total: usize,
}

impl Score {
    pub fn add(&mut self, other: &Score) {
        self.class_hits += other.class_hits;
        self.class_total += other.class_total;
        self.reason_hits += other.reason_hits;
        self.recipient_hits += other.recipient_hits;
        self.recipient_total += other.recipient_total;
        self.kind_hits += other.kind_hits;
        self.kind_total += other.kind_total;
    }

    /// Hard/soft agreement in percent (100 when there is nothing to score).
    pub fn class_percent(&self) -> f64 {
        percent(self.class_hits, self.class_total)
    }

    fn row(&self, name: &str, files: usize) -> String {
        format!(
            "{name:<28} {files:>4} {:>5.1} % ({:>3}/{:<3}) {:>5.1} % {:>5.1} % ({:>3}/{:<3}) {:>5.1} %",
            self.class_percent(),
            self.class_hits,
            self.class_total,
            percent(self.reason_hits, self.class_total),
            percent(self.recipient_hits, self.recipient_total),
            self.recipient_hits,
            self.recipient_total,
            percent(self.kind_hits, self.kind_total),
        )
    }
}

fn percent(hits: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        100.0 * hits as f64 / total as f64
    }
}

/// Prints the per-fold, development/report, per-family and per-origin tables; returns each
/// fold's score and the report folds' score together.
pub fn report(
    scores: &BTreeMap<String, Score>,
    fold_of_file: &BTreeMap<String, u64>,
) -> (Vec<Score>, Score) {
    let header = format!(
        "{:<28} {:>4} {:>21} {:>7} {:>21} {:>7}",
        "part", "files", "hard/soft (stable)", "reason", "recipients", "kind"
    );
    let mut folds = vec![(Score::default(), 0usize); FOLDS as usize];
    let mut families: BTreeMap<String, (Score, usize)> = BTreeMap::new();
    let mut whole = Score::default();
    for (file, score) in scores {
        let fold = &mut folds[fold_of_file[file] as usize];
        fold.0.add(score);
        fold.1 += 1;
        let family = families.entry(family_of(file)).or_default();
        family.0.add(score);
        family.1 += 1;
        whole.add(score);
    }
    println!("\nper fold (FNV-1a of the file's bytes mod {FOLDS}):\n{header}");
    for (k, (score, files)) in folds.iter().enumerate() {
        println!("{}", score.row(&format!("fold {k}"), *files));
    }
    println!("{}", whole.row("whole corpus", scores.len()));
    let worst = folds
        .iter()
        .map(|(s, _)| s.class_percent())
        .fold(f64::INFINITY, f64::min);
    println!("worst fold hard/soft: {worst:.1} %");

    let held_out = report_folds();
    let (mut development, mut reported) = ((Score::default(), 0), (Score::default(), 0));
    for (k, (score, files)) in folds.iter().enumerate() {
        let part = if held_out.contains(&(k as u64)) {
            &mut reported
        } else {
            &mut development
        };
        part.0.add(score);
        part.1 += files;
    }
    let names = |report: bool| {
        (0..FOLDS)
            .filter(|k| held_out.contains(k) == report)
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("\ndeveloped on / reported on (misses of the report folds are not listed):\n{header}");
    println!(
        "{}",
        development.0.row(
            &format!("development folds {}", names(false)),
            development.1
        )
    );
    println!(
        "{}",
        reported
            .0
            .row(&format!("report folds {}", names(true)), reported.1)
    );

    println!(
        "\nper family (leave-one-family-out: the family's row is its held-out score):\n{header}"
    );
    for (family, (score, files)) in &families {
        println!("{}", score.row(family, *files));
    }
    // Families grouped by who wrote the notice: the sending MTA (lhost), the receiving
    // provider (rhost), or a standard shape (arf, rfc3464, rfc3834).
    let mut groups: BTreeMap<&str, (Score, usize)> = BTreeMap::new();
    for (family, (score, files)) in &families {
        let group = match family.split_once('-') {
            Some((origin @ ("lhost" | "rhost"), _)) => origin,
            _ => family.as_str(),
        };
        let entry = groups.entry(group).or_default();
        entry.0.add(score);
        entry.1 += files;
    }
    println!("\nper origin:\n{header}");
    for (group, (score, files)) in &groups {
        println!("{}", score.row(group, *files));
    }
    (
        folds.into_iter().map(|(score, _)| score).collect(),
        reported.0,
    )
}
