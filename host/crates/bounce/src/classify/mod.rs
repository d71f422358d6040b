//! Turning what a notice says about a recipient into a reason and hard or soft.
//!
//! The order of evidence: the recipient's own diagnostic text (a specific diagnosis beats a
//! generic code: "550 5.7.1 user unknown" is an unknown user), then the enhanced status
//! code, then the rest of the notice's words, then the bare reply code. The rules
//! themselves are data in [`rules`].

pub mod rules;

use serde::Serialize;

use super::parse::{Finding, Parsed, SmtpCommand};
use super::{Class, Kind, Reason, RecipientVerdict, Report};

/// The verdict on one SMTP answer or one returned recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Why it failed.
    pub reason: Reason,
    /// Hard (filter the address) or soft.
    pub class: Class,
}

/// Judges a synchronous SMTP reply to RCPT TO, as delivery gets it: the reply code, the
/// enhanced status code if the remote sent one (`"5.1.1"`), and the reply's text.
///
/// Delivery judges its 5xx replies with it (`delivery::outcome::judge`):
///
/// ```
/// use sluice_bounce::{Class, classify_reply};
/// // From a delivery `Reply { code, enhanced: Some((5, 1, 1)), text }`:
/// let enhanced = Some((5u8, 1u16, 1u16)).map(|(c, s, d)| format!("{c}.{s}.{d}"));
/// let verdict = classify_reply(550, enhanced.as_deref(), "5.1.1 <ann@example.net>: User unknown");
/// assert_eq!(verdict.class, Class::Hard);
/// ```
pub fn classify_reply(code: u16, enhanced: Option<&str>, text: &str) -> Verdict {
    classify_reply_to(SmtpCommand::Rcpt, code, enhanced, text)
}

/// Judges a synchronous SMTP reply to the given command (an "unknown user" answer to DATA
/// is a filter, not a missing mailbox).
pub fn classify_reply_to(
    command: SmtpCommand,
    code: u16,
    enhanced: Option<&str>,
    text: &str,
) -> Verdict {
    let finding = Finding {
        status: enhanced.map(str::to_string),
        reply_code: Some(code),
        diagnostic: Some(text.to_string()),
        command: Some(command),
        ..Finding::default()
    };
    let reason = reason_of(&finding, "");
    Verdict {
        reason,
        class: rules::class_of(reason, is_permanent(&finding)),
    }
}

/// Classifies every finding of a parsed message.
pub fn classify(parsed: Parsed) -> Report {
    let context = rules::normalize(&parsed.context);
    let mut recipients: Vec<RecipientVerdict> = parsed
        .findings
        .iter()
        .map(|finding| {
            let (reason, class) = match parsed.kind {
                Kind::Bounce => {
                    let reason = reason_of(finding, &context);
                    (reason, Some(rules::class_of(reason, is_permanent(finding))))
                }
                Kind::Complaint => (Reason::Feedback, None),
                Kind::Autoreply => (Reason::Vacation, None),
                Kind::DeliveryReport => (Reason::Delivered, None),
                Kind::NotABounce => (Reason::Undefined, None),
            };
            RecipientVerdict {
                recipient: finding.recipient.clone(),
                status: finding.status.clone(),
                reply_code: finding.reply_code,
                diagnostic: finding.diagnostic.clone(),
                reason,
                class,
                action: finding.action.clone(),
                remote_mta: finding.remote_mta.clone(),
            }
        })
        .collect();
    if recipients.is_empty() {
        // Every message answers with at least one line, so a caller always learns the kind.
        let (reason, class) = match parsed.kind {
            Kind::Bounce => (Reason::Undefined, Some(Class::Soft)),
            Kind::Complaint => (Reason::Feedback, None),
            Kind::Autoreply => (Reason::Vacation, None),
            Kind::DeliveryReport => (Reason::Delivered, None),
            Kind::NotABounce => (Reason::Undefined, None),
        };
        recipients.push(RecipientVerdict {
            recipient: None,
            status: None,
            reply_code: None,
            diagnostic: None,
            reason,
            class,
            action: None,
            remote_mta: None,
        });
    }
    Report {
        kind: parsed.kind,
        recipients,
        feedback_type: parsed.feedback_type,
        envelope_id: parsed.envelope_id,
        returned: parsed.returned,
    }
}

/// The reason for one finding, weighing its text, its codes and the notice's words.
fn reason_of(finding: &Finding, context: &str) -> Reason {
    let diagnostic = rules::normalize(finding.diagnostic.as_deref().unwrap_or_default());
    let by_text = rules::reason_for_text(&diagnostic);
    let by_status = finding.status.as_deref().and_then(rules::reason_for_status);
    let reason = match (by_text, by_status) {
        (Some(text), Some(status)) if rules::STATUS_REFINES_TEXT.contains(&(status, text)) => {
            status
        }
        (Some(text), _) => text,
        (None, Some(status)) => status,
        (None, None) => rules::reason_for_text(context)
            .or_else(|| finding.reply_code.and_then(rules::reason_for_reply_code))
            .unwrap_or(if finding.action.as_deref() == Some("delayed") {
                Reason::Expired
            } else {
                Reason::Undefined
            }),
    };
    // An "unknown user" needs corroboration: the status code says so, or the remote
    // refused the address at RCPT TO.
    if reason == Reason::UserUnknown
        && !finding
            .status
            .as_deref()
            .is_some_and(rules::status_names_destination)
        && finding.command != Some(SmtpCommand::Rcpt)
        && !rules::DIRECTORY_VERDICTS.iter().any(|phrase| {
            rules::pattern_matches(phrase, &diagnostic) || rules::pattern_matches(phrase, context)
        })
    {
        return rules::UNCONFIRMED_UNKNOWN_USER;
    }
    if !is_permanent(finding)
        && let Some((_, temporary)) = rules::TEMPORARY_READING.iter().find(|(r, _)| *r == reason)
    {
        return *temporary;
    }
    reason
}

/// Permanent unless a code or the DSN action says temporary.
fn is_permanent(finding: &Finding) -> bool {
    if finding.action.as_deref() == Some("delayed") {
        return false;
    }
    match (finding.status.as_deref(), finding.reply_code) {
        (Some(status), _) => !status.starts_with('4'),
        (None, Some(code)) => code >= 500,
        (None, None) => true,
    }
}
