//! What a delivery attempt means for the message: delivered, try again later, or bounced, and
//! whether a bounce is hard (the address will fail again: filter it) or soft.

use std::time::Duration;

use super::client::{DeliveryFailure, Reply, Stage, TlsInfo};
use crate::bounce::{self, Class, SmtpCommand, Verdict};
use crate::plugin::classifier::AccountVerdict;
use crate::store::EventKind;
use crate::store::{AttemptRecord, Event, MessageStatus, now_millis};

/// How retries are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt.
    pub initial: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts: doubling from `initial` up to `max`, with
    /// ±20 % jitter so messages that failed together do not come back together.
    pub fn backoff(&self, attempts: u32, jitter_unit: f64) -> Duration {
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        let base = self.initial.saturating_mul(doubling).min(self.max);
        base.mul_f64(0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0))
    }
}

/// The bounce classifier's verdict on a permanent (5xx) reply: hard only when the address
/// itself is wrong (no such mailbox or domain, moved); a refusal of this message or this
/// sender is soft, whatever its code.
pub fn judge(reply: &Reply, stage: Option<Stage>) -> Verdict {
    let command = match stage {
        Some(Stage::MailFrom) => SmtpCommand::Mail,
        Some(Stage::Data | Stage::DataEnd) => SmtpCommand::Data,
        Some(Stage::RcptTo) | None => SmtpCommand::Rcpt,
        Some(_) => SmtpCommand::Connect,
    };
    let enhanced = reply
        .enhanced
        .map(|(class, subject, detail)| format!("{class}.{subject}.{detail}"));
    bounce::classify_reply_to(command, reply.code, enhanced.as_deref(), &reply.text)
}

/// The event detail for a remote's answer: its full reply, where it came from, the TLS used.
pub fn detail(reply: &str, mx: Option<&str>, tls: Option<&TlsInfo>) -> String {
    detail_value(reply, mx, tls).to_string()
}

fn detail_value(reply: &str, mx: Option<&str>, tls: Option<&TlsInfo>) -> serde_json::Value {
    let mut detail = serde_json::json!({ "reply": reply });
    if let Some(mx) = mx {
        detail["mx"] = mx.into();
    }
    if let Some(tls) = tls {
        detail["tls"] = serde_json::json!({ "version": tls.version, "cipher": tls.cipher });
    }
    detail
}

fn event(kind: EventKind, detail: String) -> Event {
    Event {
        kind,
        at: now_millis(),
        detail: Some(detail),
    }
}

/// The record for a message the remote accepted.
pub fn delivered(reply: &Reply, mx: &str, tls: Option<&TlsInfo>) -> AttemptRecord {
    AttemptRecord::Final {
        status: MessageStatus::Delivered,
        events: vec![event(
            EventKind::Delivered,
            detail(&reply.to_string(), Some(mx), tls),
        )],
        filter: None,
    }
}

/// The record for a failed attempt: retry while the message has not expired, else a soft
/// bounce; a permanent failure bounces at once, hard or soft.
pub fn failed(
    failure: &DeliveryFailure,
    mx: Option<&str>,
    attempts_before: u32,
    expires_at: u64,
    retry: &RetryPolicy,
    jitter_unit: f64,
    custom: Option<&AccountVerdict>,
) -> AttemptRecord {
    let snippet = failure.snippet();
    let attempt = event(EventKind::Attempt, detail(&snippet, mx, None));
    if failure.is_permanent() {
        let verdict = failure.reply().map(|reply| judge(reply, failure.stage()));
        let hard = match custom {
            Some(custom) => custom.verdict.hard,
            None => verdict.is_some_and(|verdict| verdict.class == Class::Hard),
        };
        let (kind, status) = if hard {
            (EventKind::HardBounce, MessageStatus::HardBounce)
        } else {
            (EventKind::SoftBounce, MessageStatus::SoftBounce)
        };
        let mut bounce_detail = detail_value(&snippet, mx, None);
        if let Some(verdict) = verdict {
            bounce_detail["reason"] = verdict.reason.as_str().into();
        }
        if let Some(custom) = custom {
            bounce_detail["builtInReason"] = bounce_detail["reason"].clone();
            bounce_detail["reason"] = custom.verdict.reason.clone().into();
            bounce_detail["classifiedBy"] = custom.plugin.clone().into();
        }
        return AttemptRecord::Final {
            status,
            events: vec![attempt, event(kind, bounce_detail.to_string())],
            filter: hard.then(|| ("hard-bounce".to_string(), snippet)),
        };
    }
    let due_at = now_millis() + retry.backoff(attempts_before + 1, jitter_unit).as_millis() as u64;
    if due_at < expires_at {
        return AttemptRecord::Retry {
            event: attempt,
            due_at,
        };
    }
    let expired = format!(
        "expired after {} attempts; last: {snippet}",
        attempts_before + 1
    );
    AttemptRecord::Final {
        status: MessageStatus::SoftBounce,
        events: vec![
            attempt,
            event(EventKind::SoftBounce, detail(&expired, mx, None)),
        ],
        filter: None,
    }
}

/// The record for a domain that can never receive mail (RFC 7505 null MX, or no such domain).
pub fn undeliverable_domain(reason: &str) -> AttemptRecord {
    AttemptRecord::Final {
        status: MessageStatus::HardBounce,
        events: vec![event(EventKind::HardBounce, detail(reason, None, None))],
        filter: Some(("hard-bounce".to_string(), reason.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        };
        assert_eq!(policy.backoff(1, 0.5), Duration::from_secs(60));
        assert_eq!(policy.backoff(2, 0.5), Duration::from_secs(120));
        assert_eq!(policy.backoff(30, 0.5), Duration::from_secs(3600));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_secs(48));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_secs(72));
    }

    fn reply(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> Reply {
        Reply {
            code,
            enhanced,
            text: text.into(),
        }
    }

    fn hard(reply: &Reply, stage: Stage) -> bool {
        judge(reply, Some(stage)).class == Class::Hard
    }

    #[test]
    fn only_a_wrong_address_is_hard() {
        let rcpt = Stage::RcptTo;
        assert!(hard(&reply(550, Some((5, 1, 1)), "User unknown"), rcpt));
        assert!(hard(
            &reply(550, Some((5, 1, 2)), "Bad destination system"),
            rcpt
        ));
        assert!(hard(&reply(550, None, "No such user here"), rcpt));
        assert!(!hard(&reply(552, Some((5, 2, 2)), "Mailbox full"), rcpt));
        assert!(!hard(
            &reply(550, Some((5, 7, 1)), "Message rejected as spam"),
            rcpt
        ));
        assert!(!hard(&reply(554, None, "Service unavailable"), rcpt));
        assert_eq!(
            judge(&reply(552, Some((5, 2, 2)), "Mailbox full"), Some(rcpt)).reason,
            bounce::Reason::MailboxFull
        );
    }
}
