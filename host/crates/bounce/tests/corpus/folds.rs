//! How well the classifier generalises: the corpus split into deterministic folds by file
//! name and into MTA families, each scored on its own.
//!
//! A rule table has no training step, so "develop on four folds, report on the fifth" is a
//! working discipline this report supports: with `BOUNCE_HOLDOUT_FOLD=k` (or
//! `BOUNCE_HOLDOUT_FAMILY=lhost-postfix`) the miss listings of the corpus report leave that
//! part out, so rules are written from the other misses and then checked on the held-out
//! part's figures, which are printed without their misses.

use std::collections::BTreeMap;

/// How many folds the corpus is split into.
pub const FOLDS: u64 = 5;

/// The fold of a file: FNV-1a of its name, so a file never moves between folds when others
/// are added.
pub fn fold_of(file: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in file.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % FOLDS
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

/// Whether a file is held out by `BOUNCE_HOLDOUT_FOLD` / `BOUNCE_HOLDOUT_FAMILY`.
pub fn is_held_out(file: &str) -> bool {
    let fold = std::env::var("BOUNCE_HOLDOUT_FOLD")
        .ok()
        .and_then(|k| k.parse::<u64>().ok());
    let family = std::env::var("BOUNCE_HOLDOUT_FAMILY").ok();
    fold.is_some_and(|k| fold_of(file) == k)
        || family.is_some_and(|f| family_of(file) == f || family_of(file).ends_with(&f))
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

/// Prints the per-fold, per-family and leave-one-family-out tables; returns each fold's
/// score.
pub fn report(scores: &BTreeMap<String, Score>) -> Vec<Score> {
    let header = format!(
        "{:<28} {:>4} {:>21} {:>7} {:>21} {:>7}",
        "part", "files", "hard/soft (stable)", "reason", "recipients", "kind"
    );
    let mut folds = vec![(Score::default(), 0usize); FOLDS as usize];
    let mut families: BTreeMap<String, (Score, usize)> = BTreeMap::new();
    let mut whole = Score::default();
    for (file, score) in scores {
        let fold = &mut folds[fold_of(file) as usize];
        fold.0.add(score);
        fold.1 += 1;
        let family = families.entry(family_of(file)).or_default();
        family.0.add(score);
        family.1 += 1;
        whole.add(score);
    }
    println!("\nper fold (FNV-1a of the file name mod {FOLDS}):\n{header}");
    for (k, (score, files)) in folds.iter().enumerate() {
        println!("{}", score.row(&format!("fold {k}"), *files));
    }
    println!("{}", whole.row("whole corpus", scores.len()));
    let worst = folds
        .iter()
        .map(|(s, _)| s.class_percent())
        .fold(f64::INFINITY, f64::min);
    println!("worst fold hard/soft: {worst:.1} %");

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
    folds.into_iter().map(|(score, _)| score).collect()
}
