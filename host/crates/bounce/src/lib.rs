//! Returned mail: what an inbound message to the return-path or feedback-loop domain is
//! (bounce, complaint, auto-reply, delivery report or none of those), who it is about, and
//! whether a bounce is hard (the address will fail again) or soft.
//!
//! Two verbs, two modules: [`parse`] reads the raw message (RFC 3464 delivery status,
//! RFC 5965 feedback reports, RFC 3834 auto-replies and the free-text notices of real MTAs)
//! into per-recipient facts; [`classify`] turns each fact into a [`Reason`] and a [`Class`]
//! with the rules kept as data in [`classify::rules`]. [`classify_message`] runs both.
//!
//! Nothing here panics on any input: a message that cannot be read at all is `not-a-bounce`.

pub mod classify;
pub mod parse;

use serde::Serialize;

pub use classify::{
    Correction, Evidence, Explanation, Finality, Verdict, classify_reply, classify_reply_to,
};
pub use parse::ReturnedMessage;
pub use parse::SmtpCommand;

/// What kind of message came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A non-delivery report: at least one recipient failed or is delayed.
    Bounce,
    /// A spam complaint or opt-out from a feedback loop (ARF or a provider's own format).
    Complaint,
    /// A vacation notice or another automatic answer from a person's mailbox.
    Autoreply,
    /// A delivery status notification that only says delivered, relayed or expanded.
    DeliveryReport,
    /// Anything else (a person's reply, a newsletter, unreadable bytes).
    NotABounce,
}

impl Kind {
    /// The name used in JSON and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bounce => "bounce",
            Kind::Complaint => "complaint",
            Kind::Autoreply => "autoreply",
            Kind::DeliveryReport => "delivery-report",
            Kind::NotABounce => "not-a-bounce",
        }
    }
}

/// Hard: later mail to this address will very likely fail too. Soft: anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// The mailbox or domain does not exist or moved: filter the address.
    Hard,
    /// Temporary, or about this message or this sender: do not filter the address.
    Soft,
}

impl Class {
    /// The name used in JSON and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hard => "hard",
            Class::Soft => "soft",
        }
    }
}

/// Why a message bounced (or what else it is), named as sisimai's reasons and Flowmailer's
/// bounce subtypes are, so operators can look a reason up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The mailbox does not exist.
    UserUnknown,
    /// The domain does not exist or has no usable mail host.
    HostUnknown,
    /// The address moved and no longer receives mail here.
    HasMoved,
    /// The domain or host does not accept mail at all (null MX, RFC 7505).
    NotAccept,
    /// The mailbox is over quota.
    MailboxFull,
    /// The message is larger than the recipient's own limit.
    ExceedLimit,
    /// The message is larger than the receiving system accepts.
    MesgTooBig,
    /// The mailbox exists but is disabled, suspended or inactive.
    Suspend,
    /// A recipient-side filter refused the message (often looks like an unknown user).
    Filtered,
    /// The sender address or domain was refused.
    Rejected,
    /// The sending IP or host is blocked or listed.
    Blocked,
    /// The content was judged spam.
    SpamDetected,
    /// The content carries a virus.
    VirusDetected,
    /// A local policy of the receiving side refused the message.
    PolicyViolation,
    /// A security or authentication requirement was not met.
    SecurityError,
    /// SPF, DKIM or DMARC failed.
    AuthFailure,
    /// The sending IP has no or a mismatching reverse DNS name.
    RequirePtr,
    /// The sender's reputation is too low (volume or complaints).
    BadReputation,
    /// The message does not comply with RFC 5322 / 5321.
    NotCompliantRfc,
    /// The receiving host refused to relay.
    NoRelaying,
    /// Too many connections or messages in a short time.
    TooManyConn,
    /// Rate-limited: sending too fast to this recipient or domain.
    Speeding,
    /// Delivery kept failing until the message expired, or is delayed.
    Expired,
    /// Network trouble: no route, timeout, connection refused, DNS trouble.
    NetworkError,
    /// An error on the receiving (or sending) system.
    SystemError,
    /// The receiving system is out of disk or resources.
    SystemFull,
    /// A local delivery program failed.
    MailerError,
    /// The content was malformed (MIME, encoding, headers).
    ContentError,
    /// An SMTP syntax or protocol error.
    SyntaxError,
    /// Not classified yet; held for a decision.
    OnHold,
    /// A failure whose cause nothing in the message names.
    Undefined,
    /// Delivered (delivery reports).
    Delivered,
    /// A feedback-loop report (complaint, opt-out).
    Feedback,
    /// An auto-reply.
    Vacation,
}

impl Reason {
    /// The name used in JSON and events (sisimai's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserUnknown => "userunknown",
            Reason::HostUnknown => "hostunknown",
            Reason::HasMoved => "hasmoved",
            Reason::NotAccept => "notaccept",
            Reason::MailboxFull => "mailboxfull",
            Reason::ExceedLimit => "exceedlimit",
            Reason::MesgTooBig => "mesgtoobig",
            Reason::Suspend => "suspend",
            Reason::Filtered => "filtered",
            Reason::Rejected => "rejected",
            Reason::Blocked => "blocked",
            Reason::SpamDetected => "spamdetected",
            Reason::VirusDetected => "virusdetected",
            Reason::PolicyViolation => "policyviolation",
            Reason::SecurityError => "securityerror",
            Reason::AuthFailure => "authfailure",
            Reason::RequirePtr => "requireptr",
            Reason::BadReputation => "badreputation",
            Reason::NotCompliantRfc => "notcompliantrfc",
            Reason::NoRelaying => "norelaying",
            Reason::TooManyConn => "toomanyconn",
            Reason::Speeding => "speeding",
            Reason::Expired => "expired",
            Reason::NetworkError => "networkerror",
            Reason::SystemError => "systemerror",
            Reason::SystemFull => "systemfull",
            Reason::MailerError => "mailererror",
            Reason::ContentError => "contenterror",
            Reason::SyntaxError => "syntaxerror",
            Reason::OnHold => "onhold",
            Reason::Undefined => "undefined",
            Reason::Delivered => "delivered",
            Reason::Feedback => "feedback",
            Reason::Vacation => "vacation",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one returned recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecipientVerdict {
    /// The recipient the notice is about, lower-cased, when the notice names one.
    pub recipient: Option<String>,
    /// The address the sender used, when the notice names another one before forwarding or
    /// aliasing (DSN `Original-Recipient`, "generated from", "expanded from"), lower-cased.
    pub original_recipient: Option<String>,
    /// The address an alias or forward of `recipient` led to, which is the one that failed,
    /// when the notice names the written address as its recipient (Exim's DSN with
    /// "generated from" and `X-Failed-Recipients`, Sendmail's `X-Actual-Recipient`),
    /// lower-cased. Postfix names the failed target as `recipient` itself (with the written
    /// one as `original_recipient`), so this stays empty there.
    pub forwarded_to: Option<String>,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: Option<String>,
    /// The SMTP reply code, e.g. 550.
    pub reply_code: Option<u16>,
    /// The remote's words (or the notice's), whitespace-collapsed.
    pub diagnostic: Option<String>,
    /// Why it bounced, or what else the message is.
    pub reason: Reason,
    /// Hard or soft for bounces; `None` for everything that is not a bounce.
    pub class: Option<Class>,
    /// The DSN `Action` (failed, delayed, delivered, ...), when the notice is a DSN.
    pub action: Option<String>,
    /// The remote MTA that answered, when stated.
    pub remote_mta: Option<String>,
    /// Which rule decided the reason and on which words.
    pub explanation: Explanation,
}

/// Everything learnt from one inbound message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// What the message is.
    pub kind: Kind,
    /// One entry per returned recipient (at least one, possibly with no address).
    pub recipients: Vec<RecipientVerdict>,
    /// For complaints: the feedback type (abuse, opt-out, auth-failure, ...).
    pub feedback_type: Option<String>,
    /// The DSN's `Original-Envelope-Id` (our ENVID), when present.
    pub envelope_id: Option<String>,
    /// The headers of the returned original message, for mapping back to our message.
    pub returned: Option<ReturnedMessage>,
}

/// Parses and classifies one raw inbound message.
pub fn classify_message(raw: &[u8]) -> Report {
    let parsed = parse::parse(raw);
    classify::classify(parsed)
}

#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod older_mta_tests;
#[cfg(test)]
mod tests;
