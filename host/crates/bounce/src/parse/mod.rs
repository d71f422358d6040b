//! Reading a returned message: which kind it is and, per recipient, what the notice says
//! (address, DSN action, status, reply code, diagnostic, the SMTP command that failed).
//!
//! The standard shapes are read field by field (RFC 3464 `message/delivery-status`,
//! RFC 5965 `message/feedback-report`, RFC 3834 `Auto-Submitted`); everything else falls
//! back to reading the human-readable text the way a person would: find the failed
//! addresses and the words next to them. Nothing here decides hard or soft; that is
//! [`super::classify`]'s job.

mod autoreply;
mod dsn;
mod feedback;
mod freetext;
mod reply;
mod returned;
mod ses;

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::Kind;
pub(crate) use freetext::addresses_in;
pub use reply::{
    SmtpCommand, all_enhanced_statuses, find_command, find_enhanced_status, find_reply_code,
};
pub use returned::ReturnedMessage;

/// Bodies larger than this are cut before the text scans: a notice says what it has to say
/// near the top, and the scans stay linear and quick on a hostile 50 MB "bounce".
const MAX_TEXT: usize = 256 * 1024;

/// What one recipient's part of a notice says, before classification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finding {
    /// The failed (or reported) recipient, lower-cased.
    pub recipient: Option<String>,
    /// The address as the sender wrote it, when the notice gives it beside the failed one.
    pub original_recipient: Option<String>,
    /// The forward or alias target that failed, when `recipient` is the written address
    /// (Exim's "generated from", Sendmail's X-Actual-Recipient).
    pub forwarded_to: Option<String>,
    /// The DSN `Action` field, lower-cased (failed, delayed, delivered, relayed, expanded).
    pub action: Option<String>,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: Option<String>,
    /// The SMTP reply code.
    pub reply_code: Option<u16>,
    /// The remote's answer or the notice's words about this recipient.
    pub diagnostic: Option<String>,
    /// The human-readable part's words about this recipient, when the diagnostic came from
    /// elsewhere (a DSN's Diagnostic-Code): a second witness for the cause.
    pub notice_text: Option<String>,
    /// The remote MTA, when stated.
    pub remote_mta: Option<String>,
    /// The SMTP command the remote refused, when the notice says.
    pub command: Option<SmtpCommand>,
    /// The reporting MTA decided this itself: a DSN group with neither `Remote-MTA` nor
    /// `Diagnostic-Code`, so no remote answered (a routing or local-delivery verdict, such as
    /// Exim's "Unknown user" for an address of its own domain).
    pub decided_locally: bool,
}

/// A message read, not yet classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The kind of message.
    pub kind: Kind,
    /// One finding per returned recipient; may be empty.
    pub findings: Vec<Finding>,
    /// The notice's own words (all human-readable text before the returned message),
    /// whitespace-collapsed: the fallback when a recipient's diagnostic names no cause.
    pub context: String,
    /// The notice's subject.
    pub subject: String,
    /// For complaints: the feedback type.
    pub feedback_type: Option<String>,
    /// The DSN's `Original-Envelope-Id`.
    pub envelope_id: Option<String>,
    /// The returned original message's headers.
    pub returned: Option<ReturnedMessage>,
}

impl Parsed {
    fn nothing(kind: Kind) -> Parsed {
        Parsed {
            kind,
            findings: Vec::new(),
            context: String::new(),
            subject: String::new(),
            feedback_type: None,
            envelope_id: None,
            returned: None,
        }
    }
}

/// The parts of a message that matter here, gathered in one walk over its MIME tree.
#[derive(Default)]
struct Parts {
    /// Human-readable text, in order (HTML turned into text).
    texts: Vec<String>,
    /// `message/delivery-status` bodies.
    delivery_status: Vec<String>,
    /// `message/feedback-report` bodies.
    feedback_reports: Vec<String>,
    /// The first attached message or header block: the returned original.
    returned: Option<ReturnedMessage>,
    /// The raw bytes of the first attached message, should it be a notice itself.
    returned_raw: Option<Vec<u8>>,
}

/// Reads one raw message. Never panics; unreadable input is `not-a-bounce`.
pub fn parse(raw: &[u8]) -> Parsed {
    parse_nested(raw, 0)
}

/// Reads a message that may be attached to another notice `depth` levels down.
fn parse_nested(raw: &[u8], depth: usize) -> Parsed {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Parsed::nothing(Kind::NotABounce);
    };
    let mut parts = Parts::default();
    collect_parts(&message, 0, &mut parts, 0);
    if parts.texts.iter().all(|text| text.trim().is_empty()) {
        // A MIME structure mail-parser could not follow (a boundary on an unfolded line,
        // an unknown multipart type) still has the notice somewhere in its body.
        let body = message
            .raw_message()
            .get(message.root_part().raw_body_offset() as usize..)
            .unwrap_or_default();
        let body = &body[..body.len().min(MAX_TEXT)];
        parts.texts = vec![String::from_utf8_lossy(body).into_owned()];
    }

    let subject = message.subject().unwrap_or_default().to_string();
    let sender = Sender::of(&message);

    // The text of the notice ends where the returned message starts; non-MIME notices
    // carry the original inline after a marker line.
    let full_text = parts.texts.join("\n");
    let (notice, inline_original) = freetext::split_at_original(&full_text);
    if parts.returned.is_none() {
        parts.returned = inline_original.and_then(ReturnedMessage::from_inline_text);
    }
    let context = collapse_whitespace(notice);

    if let Some(complaint) = feedback::read(
        &message,
        &parts.feedback_reports,
        parts.returned.as_ref(),
        notice,
    ) {
        return Parsed {
            kind: Kind::Complaint,
            findings: complaint.findings,
            context,
            subject,
            feedback_type: complaint.feedback_type,
            envelope_id: None,
            returned: parts.returned,
        };
    }
    if let Some((kind, findings)) = ses::read(notice) {
        return Parsed {
            kind,
            findings,
            context,
            subject,
            feedback_type: None,
            envelope_id: None,
            returned: parts.returned,
        };
    }

    let excluded = excluded_addresses(&sender, parts.returned.as_ref());
    let mut blocks = freetext::recipient_blocks(notice, &excluded);
    // Exim names every failed recipient in a header of the notice: any the text did not
    // single out still failed.
    if let Some(listed) = message.header_raw("X-Failed-Recipients") {
        for (_, address) in freetext::addresses_in(listed) {
            if !blocks.iter().any(|block| block.address == address) {
                blocks.push(freetext::block_around(notice, &address));
            }
        }
    }

    prefer_other_than_the_notices_own(&mut blocks, &message);

    // RFC 3464 first; text parts that carry DSN fields count too (some MTAs send the
    // delivery status as text/plain, or inline).
    let mut report = parts
        .delivery_status
        .iter()
        .map(|body| dsn::read(body))
        .fold(dsn::DeliveryStatus::default(), dsn::DeliveryStatus::merge);
    if report.recipients.is_empty() {
        // Fields in the text only count when they name a recipient: a stray "Status:"
        // line in a free-text notice is not a report.
        report = dsn::read(notice);
        if report
            .recipients
            .iter()
            .all(|group| group.recipient.is_none())
        {
            report.recipients.clear();
        }
    }
    if !report.recipients.is_empty() {
        let mut findings = dsn::findings(&report, &blocks, &context);
        name_the_sole_recipient(&mut findings, parts.returned.as_ref());
        let kind = if findings
            .iter()
            .all(|finding| is_success(finding.action.as_deref()))
        {
            Kind::DeliveryReport
        } else {
            Kind::Bounce
        };
        let findings = if kind == Kind::Bounce {
            findings
                .into_iter()
                .filter(|finding| !is_success(finding.action.as_deref()))
                .collect()
        } else {
            findings
        };
        return Parsed {
            kind,
            findings,
            context,
            subject,
            feedback_type: None,
            envelope_id: report.envelope_id,
            returned: parts.returned,
        };
    }

    // A gateway's notice that wraps the real one ("the following addresses had errors",
    // then the MTA's own bounce attached) names no recipient or no cause itself: read the
    // attached one, when it is a notice with codes of its own.
    let mut free_findings = freetext::findings(&blocks, &context);
    name_the_sole_recipient(&mut free_findings, parts.returned.as_ref());
    name_the_subjects_recipient(&mut free_findings, &subject, &excluded, &message);
    let says_little = free_findings
        .iter()
        .all(|f| f.status.is_none() && f.reply_code.is_none());
    if says_little
        && depth < 2
        && let Some(inner) = parts.returned_raw.as_deref()
    {
        let nested = parse_nested(inner, depth + 1);
        let useful = nested.findings.iter().any(|f| {
            f.recipient.is_some()
                && (blocks.is_empty() || f.status.is_some() || f.reply_code.is_some())
        });
        if nested.kind == Kind::Bounce && useful {
            return nested;
        }
    }

    // A person may write "could not be delivered" too: the words alone count only when
    // the message also returns an original, comes from the null sender, or is itself
    // attached to a notice.
    // A mail system's own message is a bounce when it says a delivery failed (words or
    // codes), or returns the original without complaining about it: a postmaster writing
    // about a message's content (spam, a virus, abuse) says nothing of the kind, and is no
    // bounce, whatever words the complaint uses.
    let has_failure_codes = free_findings.iter().any(|f| {
        f.status
            .as_deref()
            .is_some_and(|s| s.starts_with(['4', '5']))
            || f.reply_code.is_some_and(|c| c >= 400)
    });
    if !has_failure_codes && freetext::is_success_notice(&subject, &context) {
        return Parsed {
            context,
            subject,
            returned: parts.returned,
            ..Parsed::nothing(Kind::DeliveryReport)
        };
    }
    // A failure subject counts as a mail system's own, not as a person's reply to one or
    // forward of one ("Re: Undeliverable", "Fwd: Returned mail"), nor as any other sender's
    // news of a failed delivery (a parcel service's "Delivery failed") unless the message
    // also comes from the null sender, returns an original or carries codes.
    let failure_subject =
        freetext::is_bounce_subject(&subject) && !freetext::is_reply_or_forward(&subject);
    let has_codes = free_findings
        .iter()
        .any(|f| f.status.is_some() || f.reply_code.is_some());
    let says_failure = failure_subject || freetext::has_failure_phrase(&context) || has_codes;
    let looks_like_bounce = (sender.is_mail_system()
        && (says_failure
            || (parts.returned.is_some() && !freetext::is_content_complaint(&subject, &context))))
        || (failure_subject && (sender.null || parts.returned.is_some() || has_codes || depth > 0))
        || (freetext::has_failure_phrase(&context)
            && (parts.returned.is_some() || sender.null || depth > 0));
    let is_autoreply = autoreply::is_autoreply(&message, &subject);
    // A person's auto-reply may quote a failure; a mail system's notice may carry
    // Auto-Submitted too: only the sender tells them apart.
    if looks_like_bounce && (sender.is_mail_system() || !is_autoreply) {
        return Parsed {
            kind: Kind::Bounce,
            findings: free_findings,
            context,
            subject,
            feedback_type: None,
            envelope_id: None,
            returned: parts.returned,
        };
    }
    let kind = if is_autoreply {
        Kind::Autoreply
    } else {
        Kind::NotABounce
    };
    Parsed {
        context,
        subject,
        returned: parts.returned,
        ..Parsed::nothing(kind)
    }
}

/// A notice that names no recipient at all is about the returned original's only one.
fn name_the_sole_recipient(findings: &mut [Finding], returned: Option<&ReturnedMessage>) {
    if let [finding] = findings
        && finding.recipient.is_none()
    {
        finding.recipient = returned.and_then(ReturnedMessage::sole_recipient);
    }
}

/// A notice whose text and returned original name no recipient may name it in its subject
/// ("Undeliverable mail to ann@...", "Delivery Report (failure) for ann@..."): the one
/// address there that is neither the sender's nor the notice's own addressee.
fn name_the_subjects_recipient(
    findings: &mut [Finding],
    subject: &str,
    excluded: &[String],
    message: &Message<'_>,
) {
    let [finding] = findings else {
        return;
    };
    if finding.recipient.is_some() {
        return;
    }
    let addressees = addressees_of(message);
    let mut named = freetext::addresses_in(subject)
        .map(|(_, address)| address)
        .filter(|address| !excluded.contains(address) && !addressees.contains(address))
        .filter(|address| {
            !address
                .split('@')
                .next()
                .is_some_and(is_mail_system_local_part)
        });
    if let (Some(address), None) = (named.next(), named.next()) {
        finding.recipient = Some(address);
    }
}

/// The notice's own `To` addresses, lower-cased.
fn addressees_of(message: &Message<'_>) -> Vec<String> {
    message
        .to()
        .map(|to| {
            to.iter()
                .filter_map(|addr| addr.address())
                .map(|a| a.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// A notice is addressed to the sender of the failed message, and signed by a mail system:
/// where the text names other addresses too, its addressee and a postmaster or
/// MAILER-DAEMON address ("Dear shop@...", "write to postmaster@...") are not the failed
/// recipients. Alone, they are kept (a message sent to oneself, or to a postmaster).
fn prefer_other_than_the_notices_own(blocks: &mut Vec<freetext::Block>, message: &Message<'_>) {
    let addressees = addressees_of(message);
    let is_the_notices_own = |block: &freetext::Block| {
        addressees.contains(&block.address)
            || block
                .address
                .split('@')
                .next()
                .is_some_and(is_mail_system_local_part)
    };
    if blocks.iter().any(|block| !is_the_notices_own(block)) {
        blocks.retain(|block| !is_the_notices_own(block));
    }
}

/// Delivered, relayed or expanded: a success, not a bounce.
fn is_success(action: Option<&str>) -> bool {
    matches!(action, Some("delivered" | "relayed" | "expanded"))
}

/// Walks the MIME tree from `part_id`, not descending into attached messages (those are
/// the returned original, kept whole).
fn collect_parts(message: &Message<'_>, part_id: u32, parts: &mut Parts, depth: usize) {
    // mail-parser bounds nesting itself; this guards the recursion here all the same.
    if depth > 32 {
        return;
    }
    let Some(part) = message.parts.get(part_id as usize) else {
        return;
    };
    let (ctype, subtype) = part
        .content_type()
        .map(|ct| {
            (
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or_default().to_ascii_lowercase(),
            )
        })
        .unwrap_or_else(|| ("text".into(), "plain".into()));
    match &part.body {
        PartType::Multipart(children) => {
            for child in children {
                if *child != part_id {
                    collect_parts(message, *child, parts, depth + 1);
                }
            }
        }
        PartType::Message(inner) => {
            if parts.returned.is_none() {
                parts.returned = Some(ReturnedMessage::from_message(inner));
                parts.returned_raw = message
                    .raw_message()
                    .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)
                    .map(|raw| raw[..raw.len().min(MAX_TEXT * 4)].to_vec());
            }
        }
        body => {
            let text = body_text(body);
            match (ctype.as_str(), subtype.as_str()) {
                ("message", "delivery-status" | "global-delivery-status") => {
                    parts.delivery_status.push(text)
                }
                ("message", "feedback-report") => parts.feedback_reports.push(text),
                // Returned headers; or an attached message mail-parser could not read as one,
                // whose headers are still worth having.
                ("text", "rfc822-headers" | "rfc822-header")
                | ("message", "rfc822-headers" | "global-headers" | "rfc822" | "global") => {
                    parts.returned = parts
                        .returned
                        .take()
                        .or_else(|| ReturnedMessage::from_header_text(&text));
                }
                ("text", _) if !is_named_attachment(part) => parts.texts.push(text),
                // A bare top-level body of an unknown type is still the notice's text.
                _ if part_id == 0 => parts.texts.push(text),
                _ => {}
            }
        }
    }
}

/// A text part sent as a named file (a header dump, a log) is not the notice's text.
fn is_named_attachment(part: &mail_parser::MessagePart<'_>) -> bool {
    part.attachment_name().is_some()
        && part
            .content_disposition()
            .is_some_and(|cd| cd.ctype().eq_ignore_ascii_case("attachment"))
}

/// The decoded text of a leaf part, cut to [`MAX_TEXT`].
fn body_text(body: &PartType<'_>) -> String {
    let text = match body {
        PartType::Text(text) => text.to_string(),
        PartType::Html(html) => mail_parser::decoders::html::html_to_text(html),
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT)]).into_owned()
        }
        PartType::Message(_) | PartType::Multipart(_) => String::new(),
    };
    truncate_to_char_boundary(text, MAX_TEXT)
}

fn truncate_to_char_boundary(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Collapses every run of whitespace to one space and trims.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Who sent the notice, as far as telling a mail system from a person goes.
struct Sender {
    address: Option<String>,
    name: String,
    /// From, Return-Path or Sender is empty (`<>`): the null sender of notices.
    null: bool,
}

impl Sender {
    fn of(message: &Message<'_>) -> Sender {
        let from = message.from().and_then(|from| from.first());
        let address = from
            .and_then(|addr| addr.address())
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty());
        let name = from
            .and_then(|addr| addr.name())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let null = address.is_none()
            || message
                .header_raw("Return-Path")
                .is_some_and(|rp| rp.trim() == "<>");
        Sender {
            address,
            name,
            null,
        }
    }

    /// MAILER-DAEMON, postmaster and friends: the senders of delivery notices.
    fn is_mail_system(&self) -> bool {
        const SYSTEM_NAMES: &[&str] = &[
            "mailer-daemon",
            "mail delivery",
            "mail deliver",
            "postmaster",
            "mail administrator",
            "system administrator",
            "content-filter",
            "mailer daemon",
        ];
        let local = self
            .address
            .as_deref()
            .and_then(|a| a.split('@').next())
            .unwrap_or_default();
        is_mail_system_local_part(local) || SYSTEM_NAMES.iter().any(|n| self.name.contains(n))
    }
}

/// The local parts of the senders of delivery notices.
const SYSTEM_LOCAL_PARTS: &[&str] = &[
    "mailer-daemon",
    "mailerdaemon",
    "mail-daemon",
    "postmaster",
    "post_master",
    "poostmaster",
    "mail.delivery.system",
    "mdaemon",
    "bounce",
    "bounces",
];

/// Whether a local part is a mail system's (MAILER-DAEMON, postmaster, ...).
fn is_mail_system_local_part(local: &str) -> bool {
    let local = local.to_ascii_lowercase();
    SYSTEM_LOCAL_PARTS.contains(&local.as_str()) || local.starts_with("mailer-daemon")
}

/// Addresses that are never the failed recipient: the notice's sender and the returned
/// message's sender (they show up in "MAIL FROM:<...>" lines and copied headers).
fn excluded_addresses(sender: &Sender, returned: Option<&ReturnedMessage>) -> Vec<String> {
    let mut excluded = Vec::new();
    if let Some(address) = &sender.address {
        excluded.push(address.clone());
    }
    if let Some(returned) = returned {
        excluded.extend(returned.sender_addresses());
    }
    excluded
}
