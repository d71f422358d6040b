//! The labelled bounce corpus in tests/data/bounces: its files and the expectations of
//! labels.tsv (described in that folder's NOTICE.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One row of labels.tsv: one expected recipient of one file.
#[derive(Clone, Debug)]
pub struct Label {
    pub file: String,
    /// bounce, arf or other.
    pub kind: String,
    pub reason: String,
    /// hard, soft or unknown.
    pub class: String,
    /// The failed recipient when the message itself states it.
    pub recipient: Option<String>,
    /// The forward or alias target that failed, when the notice names the written address
    /// as the recipient (Exim's "generated from", Sendmail's X-Actual-Recipient).
    pub forwarded_to: Option<String>,
    /// 1-based position among the file's expected recipients.
    pub index: usize,
    /// stable, contested, single-source or hand-labelled.
    pub agreement: String,
}

impl Label {
    /// Whether the row's reason and class are scored: every sisimai version agrees on it
    /// (`stable`), or it was labelled by hand from the notice's words (`hand-labelled`).
    pub fn is_scored(&self) -> bool {
        matches!(self.agreement.as_str(), "stable" | "hand-labelled")
    }
}

/// The corpus folder, kept with the workspace's test data.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/data/bounces")
}

/// The labels, grouped by file, each file's rows in recipient order.
pub fn labels() -> BTreeMap<String, Vec<Label>> {
    let text = std::fs::read_to_string(corpus_dir().join("labels.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let forwarded_to = column("forwarded_to");
    let (file, kind, reason, class, recipient, index, agreement) = (
        column("file"),
        column("kind"),
        column("expected_reason"),
        column("expected_class"),
        column("recipient"),
        column("rcpt_index"),
        column("label_agreement"),
    );
    let mut by_file: BTreeMap<String, Vec<Label>> = BTreeMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split('\t').collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or_default().trim().to_string();
        let label = Label {
            file: cell(file),
            kind: cell(kind),
            reason: cell(reason),
            class: cell(class),
            recipient: Some(cell(recipient).to_ascii_lowercase()).filter(|r| !r.is_empty()),
            forwarded_to: Some(cell(forwarded_to).to_ascii_lowercase()).filter(|r| !r.is_empty()),
            index: cell(index).parse().unwrap_or(1),
            agreement: cell(agreement),
        };
        by_file.entry(label.file.clone()).or_default().push(label);
    }
    for rows in by_file.values_mut() {
        rows.sort_by_key(|row| row.index);
    }
    by_file
}
