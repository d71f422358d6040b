//! Turning what a notice says about a recipient into a reason and hard or soft.
//!
//! The reason weighs the remote's words and its enhanced status code together:
//!
//! The words are the remote's answer for the recipient. When it names no cause, what the
//! notice's human-readable part says about the same recipient counts where it fills in for a
//! missing code, agrees with the code, or names a reason that contradicts an x.1.1
//! ([`rules::CONTRADICTS_UNKNOWN_USER`]).
//!
//! | words for this recipient | status code | reason |
//! |---|---|---|
//! | name a reason that a code of the answer names too | any | that reason (both agree) |
//! | name a reason the code refines | 5.2.3, 4.4.7, ... | the code's finer reason ([`rules::STATUS_REFINES_TEXT`]) |
//! | name a reason | says something else, or generic | the words' first reason ([`rules::TEXT_RULES`] order) |
//! | name nothing | names a reason | the code's reason (RFC 3463, [`rules::STATUS_RULES`]) |
//! | name nothing | none, generic (x.0.0) or unknown | the notice's own words (less the answers for its other recipients), then the code's subject alone ([`rules::STATUS_SUBJECT_RULES`]), then the reply code, then `expired` for a delay, else `undefined` |
//!
//! Then two corrections: an "unknown user" that nothing corroborates (no x.1.x code, no
//! refusal at RCPT TO, no directory's own verdict, no mailbox lookup's words such as
//! "invalid mailbox", [`rules::MAILBOX_LOOKUP_VERDICTS`]) is a filter speaking
//! ([`rules::UNCONFIRMED_UNKNOWN_USER`]); a temporary "host unknown" is a DNS failure on
//! the way ([`rules::TEMPORARY_READING`]). Hard or soft then follows from the reason and how
//! final the failure is, in the one table of [`rules::class_of`]. Every verdict carries an
//! [`Explanation`]: the rule that decided and the words it matched.

pub mod rules;

use serde::Serialize;

use super::parse::{Finding, Parsed, SmtpCommand};
use super::{Class, Kind, Reason, RecipientVerdict, Report};
pub use rules::Finality;

/// The verdict on one SMTP answer or one returned recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Why it failed.
    pub reason: Reason,
    /// Hard (filter the address) or soft.
    pub class: Class,
}

/// Which piece of the notice decided a recipient's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Evidence {
    /// The remote's words and the enhanced status code name the same reason.
    WordsAndStatus,
    /// The remote's words for this recipient name the reason.
    Words,
    /// The enhanced status code's finer reading of what the words name (5.2.3 + "too large").
    StatusRefinesWords,
    /// The enhanced status code alone (RFC 3463, or a registered or provider code).
    Status,
    /// The notice's own words, not tied to one recipient's answer.
    NoticeWords,
    /// The SMTP reply code alone.
    ReplyCode,
    /// The delivery status says the message is only delayed.
    DelayedAction,
    /// Nothing in the notice names a cause.
    Nothing,
    /// The message is no bounce: its kind is the verdict.
    MessageKind,
}

/// A correction applied after the evidence named a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// "Unknown user" that no x.1.x code, RCPT TO refusal, directory verdict or mailbox
    /// lookup's words confirm.
    UnconfirmedUnknownUser,
    /// "Host unknown" under a temporary code: a DNS failure on the way.
    TemporaryHostLookup,
}

/// Why a verdict is what it is, for people (`sluice bounce classify --explain`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Which evidence decided the reason.
    pub evidence: Option<Evidence>,
    /// The rule's phrase that matched ("user unknown"), or the code that decided ("5.2.2").
    pub rule: Option<String>,
    /// The words of the notice the rule matched, as they stand there.
    pub matched: Option<String>,
    /// A correction applied afterwards, if one was.
    pub correction: Option<Correction>,
    /// The column of the hard/soft table that applied, for bounces.
    pub finality: Option<Finality>,
}

impl Explanation {
    /// One sentence for people: which evidence decided, on which words, and what followed.
    pub fn sentence(&self, reason: Reason, class: Option<Class>) -> String {
        let matched = self.matched.as_deref().unwrap_or_default();
        let rule = self.rule.as_deref().unwrap_or_default();
        // What the evidence said before a correction turned it into `reason`.
        let said = match self.correction {
            Some(Correction::UnconfirmedUnknownUser) => Reason::UserUnknown,
            Some(Correction::TemporaryHostLookup) => Reason::HostUnknown,
            None => reason,
        };
        let mut sentence = match self.evidence {
            Some(Evidence::WordsAndStatus) => format!(
                "the answer's words \"{matched}\" (rule \"{rule}\") and its status code both say {said}"
            ),
            Some(Evidence::Words) => {
                format!("the answer's words \"{matched}\" (rule \"{rule}\") say {said}")
            }
            Some(Evidence::StatusRefinesWords) => {
                format!("the words \"{matched}\" are refined by status {rule} to {said}")
            }
            Some(Evidence::Status) => format!("status code {rule} means {said}"),
            Some(Evidence::NoticeWords) => {
                format!("the notice's words \"{matched}\" (rule \"{rule}\") say {said}")
            }
            Some(Evidence::ReplyCode) => format!("reply code {rule} means {said}"),
            Some(Evidence::DelayedAction) => format!("the message is delayed, so {said}"),
            Some(Evidence::Nothing) => format!("nothing in the notice names a cause: {said}"),
            Some(Evidence::MessageKind) | None => format!("the message is {said}"),
        };
        match self.correction {
            Some(Correction::UnconfirmedUnknownUser) => sentence.push_str(
                ", read as filtered: no x.1.x code, RCPT TO refusal, directory verdict or mailbox lookup confirms it",
            ),
            Some(Correction::TemporaryHostLookup) => sentence
                .push_str(", read as networkerror: a temporary code means a DNS failure on the way"),
            None => {}
        }
        if let (Some(class), Some(finality)) = (class, self.finality) {
            let finality = match finality {
                Finality::Permanent => "permanent",
                Finality::GaveUp => "temporary, but given up",
                Finality::Delayed => "still delayed",
            };
            sentence.push_str(&format!("; {finality}, so {}", class.as_str()));
        }
        sentence
    }
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
    let (reason, explanation) = decide(&finding, ("", ""));
    Verdict {
        reason,
        class: rules::class_of(reason, explanation.finality.unwrap_or(Finality::Permanent)),
    }
}

/// Classifies every finding of a parsed message.
pub fn classify(parsed: Parsed) -> Report {
    let kind_only = || Explanation {
        evidence: Some(Evidence::MessageKind),
        ..Explanation::default()
    };
    let mut recipients: Vec<RecipientVerdict> = parsed
        .findings
        .iter()
        .map(|finding| {
            let (reason, class, explanation) = match parsed.kind {
                Kind::Bounce => {
                    let raw_context = context_for(finding, &parsed);
                    let context = rules::normalize(&raw_context);
                    let (reason, explanation) = decide(finding, (&raw_context, &context));
                    let finality = explanation.finality.unwrap_or(Finality::Permanent);
                    (reason, Some(rules::class_of(reason, finality)), explanation)
                }
                Kind::Complaint => (Reason::Feedback, None, kind_only()),
                Kind::Autoreply => (Reason::Vacation, None, kind_only()),
                Kind::DeliveryReport => (Reason::Delivered, None, kind_only()),
                Kind::NotABounce => (Reason::Undefined, None, kind_only()),
            };
            RecipientVerdict {
                recipient: finding.recipient.clone(),
                original_recipient: finding.original_recipient.clone(),
                forwarded_to: finding.forwarded_to.clone(),
                status: finding.status.clone(),
                reply_code: finding.reply_code,
                diagnostic: finding.diagnostic.clone(),
                reason,
                class,
                action: finding.action.clone(),
                remote_mta: finding.remote_mta.clone(),
                explanation,
            }
        })
        .collect();
    if recipients.is_empty() {
        // Every message answers with at least one line, so a caller always learns the kind.
        let (reason, class, explanation) = match parsed.kind {
            Kind::Bounce => (
                Reason::Undefined,
                Some(Class::Soft),
                Explanation {
                    evidence: Some(Evidence::Nothing),
                    ..Explanation::default()
                },
            ),
            Kind::Complaint => (Reason::Feedback, None, kind_only()),
            Kind::Autoreply => (Reason::Vacation, None, kind_only()),
            Kind::DeliveryReport => (Reason::Delivered, None, kind_only()),
            Kind::NotABounce => (Reason::Undefined, None, kind_only()),
        };
        recipients.push(RecipientVerdict {
            recipient: None,
            original_recipient: None,
            forwarded_to: None,
            status: None,
            reply_code: None,
            diagnostic: None,
            reason,
            class,
            action: None,
            remote_mta: None,
            explanation,
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

/// The notice's own words as a fallback for one recipient: without the answers given for
/// the notice's other recipients, so that one recipient's "mailbox is full" does not become
/// the reason of another whose own line names no cause.
fn context_for(finding: &Finding, parsed: &Parsed) -> String {
    let collapse = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let own = finding.diagnostic.as_deref().map(collapse);
    let mut context = parsed.context.clone();
    for other in &parsed.findings {
        let Some(words) = other.diagnostic.as_deref().map(collapse) else {
            continue;
        };
        if words.is_empty() || Some(&words) == own.as_ref() {
            continue;
        }
        context = context.replace(&words, " ");
    }
    context
}

/// The reason for one finding and why: the table of the module documentation. `context` is
/// the notice's own words, as written and normalized.
fn decide(finding: &Finding, (raw_context, context): (&str, &str)) -> (Reason, Explanation) {
    let by_status = finding.status.as_deref().and_then(rules::reason_for_status);
    // The remote's words; when they name no cause, the human-readable part's words about
    // the same recipient, where they fill in for a missing code, agree with it, or say why
    // an address-level code (5.1.1 "mailbox full") was really given.
    let mut raw_diagnostic = finding.diagnostic.as_deref().unwrap_or_default();
    let mut diagnostic = rules::normalize(raw_diagnostic);
    let mut words = rules::phrase_matches(&diagnostic);
    if words.is_empty()
        && let Some(text) = finding.notice_text.as_deref()
    {
        let normalized = rules::normalize(text);
        let found = rules::phrase_matches(&normalized);
        let weighs = match (by_status, found.first()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(status), Some(first)) => {
                found.iter().any(|m| m.reason == status)
                    || (status == Reason::UserUnknown
                        && rules::CONTRADICTS_UNKNOWN_USER.contains(&first.reason))
            }
        };
        if weighs {
            (raw_diagnostic, diagnostic, words) = (text, normalized, found);
        }
    }
    let finality = finality_of(finding);
    let mut explanation = Explanation {
        finality: Some(finality),
        ..Explanation::default()
    };
    let from_words = |m: &rules::PhraseMatch, explanation: &mut Explanation| {
        explanation.rule = Some(m.phrase.to_string());
        explanation.matched = Some(original_words(raw_diagnostic, &diagnostic, m.span));
    };
    // The codes of the answer: the Status field and any the remote's words quote.
    let code_reasons: Vec<Reason> = finding
        .status
        .iter()
        .cloned()
        .chain(super::parse::all_enhanced_statuses(raw_diagnostic))
        .filter_map(|status| rules::reason_for_status(&status))
        .collect();
    let agreeing = words.iter().find(|m| code_reasons.contains(&m.reason));
    let refined = by_status
        .zip(words.first())
        .filter(|(status, first)| rules::STATUS_REFINES_TEXT.contains(&(*status, first.reason)));
    let reason = if let Some(m) = agreeing {
        explanation.evidence = Some(Evidence::WordsAndStatus);
        from_words(m, &mut explanation);
        m.reason
    } else if let Some((status, m)) = refined {
        explanation.evidence = Some(Evidence::StatusRefinesWords);
        from_words(m, &mut explanation);
        explanation.rule = finding.status.clone();
        status
    } else if let Some(m) = words.first() {
        explanation.evidence = Some(Evidence::Words);
        from_words(m, &mut explanation);
        m.reason
    } else if let Some(status) = by_status {
        explanation.evidence = Some(Evidence::Status);
        explanation.rule = finding.status.clone();
        explanation.matched = finding.status.clone();
        status
    } else if let Some(m) = rules::phrase_matches(context).into_iter().next() {
        explanation.evidence = Some(Evidence::NoticeWords);
        explanation.rule = Some(m.phrase.to_string());
        explanation.matched = Some(original_words(raw_context, context, m.span));
        m.reason
    } else if let Some(status) = finding
        .status
        .as_deref()
        .and_then(rules::reason_for_status_subject)
    {
        explanation.evidence = Some(Evidence::Status);
        explanation.rule = finding.status.clone();
        explanation.matched = finding.status.clone();
        status
    } else if let Some(reason) = finding.reply_code.and_then(rules::reason_for_reply_code) {
        explanation.evidence = Some(Evidence::ReplyCode);
        explanation.rule = finding.reply_code.map(|code| code.to_string());
        explanation.matched = explanation.rule.clone();
        reason
    } else if finality == Finality::Delayed {
        explanation.evidence = Some(Evidence::DelayedAction);
        explanation.rule = Some("action: delayed".into());
        Reason::Expired
    } else {
        explanation.evidence = Some(Evidence::Nothing);
        Reason::Undefined
    };
    if reason == Reason::UserUnknown && !unknown_user_is_confirmed(finding, &diagnostic, context) {
        explanation.correction = Some(Correction::UnconfirmedUnknownUser);
        return (rules::UNCONFIRMED_UNKNOWN_USER, explanation);
    }
    if finality != Finality::Permanent
        && let Some((_, temporary)) = rules::TEMPORARY_READING.iter().find(|(r, _)| *r == reason)
    {
        explanation.correction = Some(Correction::TemporaryHostLookup);
        return (*temporary, explanation);
    }
    (reason, explanation)
}

/// An "unknown user" counts when the status code says the address was looked up and
/// refused, the remote refused it at RCPT TO, the reporting MTA decided it itself (its own
/// users, no remote asked), or the words are a directory's own verdict or a mailbox
/// lookup's result.
fn unknown_user_is_confirmed(finding: &Finding, diagnostic: &str, context: &str) -> bool {
    let said = |phrases: &[&str]| {
        phrases.iter().any(|phrase| {
            rules::pattern_matches(phrase, diagnostic) || rules::pattern_matches(phrase, context)
        })
    };
    finding
        .status
        .as_deref()
        .is_some_and(rules::status_names_destination)
        || finding.command == Some(SmtpCommand::Rcpt)
        || finding.decided_locally
        || said(rules::DIRECTORY_VERDICTS)
        || said(rules::MAILBOX_LOOKUP_VERDICTS)
        || (finding.command.is_none()
            && (said(rules::RCPT_STAGE_PHRASES) || said(rules::STANDARD_MAILBOX_UNAVAILABLE)))
}

/// The words of `raw` at a span of its normalized form: the same bytes when lower-casing
/// kept the length (it does for ASCII), else the normalized words.
fn original_words(raw: &str, normalized: &str, (start, end): (usize, usize)) -> String {
    let collapsed = rules::collapse_and_mask(raw);
    if collapsed.len() == normalized.len()
        && collapsed.is_char_boundary(start)
        && collapsed.is_char_boundary(end)
    {
        collapsed[start..end].to_string()
    } else {
        normalized[start..end].to_string()
    }
}

/// How final a failure is: delayed when the DSN says so, or a temporary code that is still
/// being retried; given up when a temporary code ends a failed notice; else permanent.
fn finality_of(finding: &Finding) -> Finality {
    if finding.action.as_deref() == Some("delayed") {
        return Finality::Delayed;
    }
    let temporary = match (finding.status.as_deref(), finding.reply_code) {
        (Some(status), _) => status.starts_with('4'),
        (None, Some(code)) => code < 500,
        (None, None) => false,
    };
    match (temporary, finding.action.as_deref()) {
        (false, _) => Finality::Permanent,
        (true, Some("failed")) => Finality::GaveUp,
        // A live 4xx reply (no notice around it) will be retried.
        (true, _) => Finality::Delayed,
    }
}
