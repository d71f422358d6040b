//! Complaints: RFC 5965 feedback reports (read with mail-auth's ARF parser) and the common
//! formats that are not ARF: Microsoft's JMRP (the complained-about message attached with
//! `X-HmXmrOriginalRecipient`), Feedback-Type fields in a plain text body, Apple Mail's
//! one-click unsubscribe, and "complaint"/"abuse report" messages that attach the original.

use mail_auth::report::Feedback;
use mail_parser::Message;

use super::{Finding, ReturnedMessage};

/// Subjects of complaint messages that attach the original (lower-case substrings).
const COMPLAINT_SUBJECTS: &[&str] = &[
    "complaint about message",
    "abuse report",
    "spam report",
    "spam complaint",
    "feedback loop",
    "fbl report",
];

/// A recognised complaint.
pub struct Complaint {
    /// The complained-about recipient(s), when the report says.
    pub findings: Vec<Finding>,
    /// abuse, fraud, opt-out, auth-failure, ...
    pub feedback_type: Option<String>,
}

/// Reads a complaint, if the message is one.
pub fn read(
    message: &Message<'_>,
    feedback_reports: &[String],
    returned: Option<&ReturnedMessage>,
    notice: &str,
) -> Option<Complaint> {
    if let Some(report) = feedback_reports.first() {
        return Some(from_arf_fields(report));
    }
    // Feedback fields in a text part (some loops send the report as text/plain).
    if notice.lines().any(|line| {
        line.trim_start()
            .to_ascii_lowercase()
            .starts_with("feedback-type:")
    }) {
        return Some(from_arf_fields(notice));
    }
    if let Some(recipient) = returned.and_then(|r| r.header("X-HmXmrOriginalRecipient")) {
        return Some(Complaint {
            findings: vec![finding(first_address(recipient))],
            feedback_type: Some("abuse".into()),
        });
    }
    if message
        .header_raw("X-Apple-Unsubscribe")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        // The person who asks to be let go is the one who sent this.
        let from = message
            .from()
            .and_then(|from| from.first())
            .and_then(|addr| addr.address())
            .map(|a| a.to_ascii_lowercase());
        return Some(Complaint {
            findings: vec![finding(from)],
            feedback_type: Some("opt-out".into()),
        });
    }
    let subject = message.subject().unwrap_or_default().to_lowercase();
    if returned.is_some() && COMPLAINT_SUBJECTS.iter().any(|s| subject.contains(s)) {
        let recipient = returned
            .and_then(|r| r.header("To"))
            .and_then(first_address);
        return Some(Complaint {
            findings: vec![finding(recipient)],
            feedback_type: Some("abuse".into()),
        });
    }
    None
}

/// The recipient and type of an ARF report body. mail-auth reads the fields; its
/// feedback-type enum folds the less common types (opt-out, ...) into `Other`, so the type
/// name is taken from the field itself.
fn from_arf_fields(report: &str) -> Complaint {
    let feedback = Feedback::parse_arf(report.as_bytes());
    let recipient = feedback
        .as_ref()
        .and_then(|f| f.original_rcpt_to())
        .and_then(first_address)
        .or_else(|| field(report, "Original-Rcpt-To").and_then(|v| first_address(&v)));
    let feedback_type = field(report, "Feedback-Type")
        .map(|v| v.to_ascii_lowercase())
        .filter(|v| !v.is_empty());
    Complaint {
        findings: vec![finding(recipient)],
        feedback_type,
    }
}

fn finding(recipient: Option<String>) -> Finding {
    Finding {
        recipient,
        ..Finding::default()
    }
}

/// The value of the first `name:` line.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (n, v) = line.trim_start().split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn first_address(value: &str) -> Option<String> {
    super::freetext::addresses_in(value).next().map(|(_, a)| a)
}
