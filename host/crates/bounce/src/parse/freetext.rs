//! Reading a notice the way a person does when no machine-readable report is attached:
//! where the returned original starts, which addresses failed, and which words belong to
//! which address. Works on any MTA's wording because it looks at layout (an address on its
//! own line, an address after "to" or "recipient") rather than at one MTA's sentences.

use super::{Finding, collapse_whitespace, find_command, find_enhanced_status, find_reply_code};

/// A recipient's diagnostic is cut to this many bytes (the full text stays in the context).
const MAX_DIAGNOSTIC: usize = 1000;
/// At most this many recipients are read from one notice.
const MAX_RECIPIENTS: usize = 500;
/// At most this many address mentions are weighed (a hostile notice may hold thousands).
const MAX_OCCURRENCES: usize = 5000;

/// Words in a separator line that announce the returned original message.
const ORIGINAL_MARKERS: &[&str] = &[
    "original message",
    "copy of the message",
    "copy of your message",
    "returned message",
    "unsent message",
    "undelivered message",
    "original mail",
    "message headers follow",
    "headers of the original",
    "header of the original",
    "original headers",
    "below this line",
    "message text follows",
    "message follows",
    "received message",
    "原文",
    "元のメッセージ",
];

/// Subjects of delivery notices (lower-case substrings).
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered",
    "delivery fail",
    "delivery status notification",
    "delivery notification",
    "delivery failure",
    "delivery problem",
    "returned mail",
    "returning message",
    "returning to sender",
    "mail failed",
    "delivery delayed",
    "delayed mail",
    "failure notice",
    "mail delivery",
    "mail system error",
    "could not be delivered",
    "could not send",
    "not delivered",
    "delivery has failed",
    "error sending your mail",
    "message you sent blocked",
    "non remis",
    "non recapitabile",
    "nicht zustellbar",
    "unzustellbar",
    "no entregado",
    "недоставленное",
    "не доставлено",
    "配信不能",
    "配送エラー",
];

/// Sentences of delivery notices (lower-case, whitespace-collapsed substrings).
const FAILURE_PHRASES: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "was not delivered",
    "wasn't able to deliver",
    "unable to deliver",
    "could not deliver",
    "delivery has failed",
    "delivery failed",
    "failed permanently",
    "permanent error",
    "permanent fatal error",
    "following address(es) failed",
    "following addresses had",
    "following recipients",
    "error delivering your mail",
    "did not like our",
    "undeliverable",
    "delivery to the following recipient",
    "returned to sender",
    "message could not be sent",
    "failed addresses",
    "did not reach the following",
    "could not be reached",
    // The same in the languages of European MTAs' and gateways' own notices.
    "nicht zugestellt werden",
    "konnte nicht zugestellt",
    "n'a pas pu être remis",
    "n'a pas pu être distribué",
    "no se pudo entregar",
    "no pudo ser entregado",
    "non è stato possibile recapitare",
    "non è stato recapitato",
    "kon niet worden afgeleverd",
    "niet worden bezorgd",
    "não foi possível entregar",
    "не удалось доставить",
];

/// Sentences of a notice that says a message arrived or was passed on: Exchange's and
/// Domino's "Delivered:"/"Relayed:" receipts in free text, the text part of a success DSN.
const SUCCESS_PHRASES: &[&str] = &[
    "was delivered to",
    "were delivered to",
    "has been delivered to",
    "have been delivered to",
    "successfully delivered",
    "successfully relayed",
    "was relayed to",
    "has been relayed to",
    "delivery to these recipients or groups is complete",
    "delivery to the following recipients succeeded",
    "delivery to the following recipient succeeded",
];

/// Subject beginnings of success receipts (lower-case).
const SUCCESS_SUBJECTS: &[&str] = &["delivered:", "relayed:", "delivery receipt"];

/// Whether a notice says its message arrived (see [`SUCCESS_PHRASES`]) and says nothing
/// failed: a receipt, not a bounce, however much of the original it returns.
pub fn is_success_notice(subject: &str, context: &str) -> bool {
    let subject = subject.trim().to_lowercase();
    let lower = context.to_lowercase();
    let says_success = SUCCESS_SUBJECTS.iter().any(|s| subject.starts_with(s))
        || SUCCESS_PHRASES.iter().any(|p| lower.contains(p));
    says_success && !is_bounce_subject(&subject) && !has_failure_phrase(context)
}

/// Words of a message that complains about a message's content rather than reporting a
/// failed delivery (an abuse desk, a postmaster, a recipient objecting to spam).
const CONTENT_COMPLAINT_PHRASES: &[&str] = &[
    "complaint",
    "abuse report",
    "abuse desk",
    "reported as spam",
    "marked as spam",
    "spam report",
    "unsolicited",
    "inappropriate content",
    "offensive content",
    "objectionable",
    "stop sending",
    "remove me",
    "unsubscribe me",
];

/// Whether a message complains about content (see [`CONTENT_COMPLAINT_PHRASES`]).
pub fn is_content_complaint(subject: &str, context: &str) -> bool {
    let text = format!("{subject} {context}").to_lowercase();
    CONTENT_COMPLAINT_PHRASES.iter().any(|p| text.contains(p))
}

/// The notice's words up to the returned original, and the rest (if a marker was found).
pub fn split_at_original(text: &str) -> (&str, Option<&str>) {
    let mut offset = 0;
    let mut seen_text = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if seen_text && (is_original_marker(trimmed) || starts_copied_headers(trimmed)) {
            let rest_start = if is_original_marker(trimmed) {
                offset + line.len()
            } else {
                offset
            };
            return (&text[..offset], Some(&text[rest_start..]));
        }
        seen_text |= !trimmed.is_empty();
        offset += line.len();
    }
    (text, None)
}

fn is_original_marker(line: &str) -> bool {
    if line.is_empty() || line.len() > 120 {
        return false;
    }
    let lower = line.to_lowercase();
    let separator = line.starts_with(['-', '=', '*', '_', '#']);
    let bare = lower.trim_end_matches(['.', ':', ' ']);
    // "... follows", "... below", or a line ending in a colon: what comes next is it.
    let announces = bare.ends_with("follows")
        || bare.ends_with("follow")
        || bare.ends_with("below")
        || bare.ends_with("attached")
        || line.ends_with(':');
    (separator || announces) && ORIGINAL_MARKERS.iter().any(|m| lower.contains(m))
}

/// A copied header block without a marker line: the original starts here.
fn starts_copied_headers(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.starts_with("return-path:")
        || lower.starts_with("received: from")
        || lower.starts_with("dkim-signature:")
}

/// Prefixes that mail clients put on a reply or a forward, in the languages they are
/// written in ("Re:", "Fwd:", German "AW:"/"WG:", French "TR:", Nordic "SV:", Dutch
/// "Antw:", Italian "R:"/"I:", Spanish/Portuguese "RV:"/"ENC:").
const REPLY_OR_FORWARD_PREFIXES: &[&str] = &[
    "re:", "re :", "fw:", "fwd:", "fw :", "aw:", "wg:", "tr:", "sv:", "vs:", "antw:", "r:", "i:",
    "rv:", "enc:", "res:",
];

/// Whether a subject is a person's reply to or forward of another message.
pub fn is_reply_or_forward(subject: &str) -> bool {
    let lower = subject.trim_start().to_lowercase();
    REPLY_OR_FORWARD_PREFIXES
        .iter()
        .any(|prefix| lower.starts_with(prefix))
}

/// Whether a subject reads like a delivery notice's.
pub fn is_bounce_subject(subject: &str) -> bool {
    let lower = subject.to_lowercase();
    BOUNCE_SUBJECTS.iter().any(|s| lower.contains(s))
}

/// Whether the (whitespace-collapsed) text says a delivery failed.
pub fn has_failure_phrase(context: &str) -> bool {
    let lower = context.to_lowercase();
    FAILURE_PHRASES.iter().any(|p| lower.contains(p))
}

/// One failed address and the text that belongs to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The address, lower-cased.
    pub address: String,
    /// From the address's line to the next recipient's line.
    pub text: String,
    /// The address the sender used, when the block says the failed one came from it
    /// ("expanded from", "generated from": an alias or a forward).
    pub original: Option<String>,
}

/// Words that introduce the address an alias or forward was made from.
const ORIGINAL_RECIPIENT_MARKERS: &[&str] = &[
    "expanded from",
    "generated from",
    "forwarded from",
    "original recipient",
    "original address",
    "original-recipient",
    "originally to",
    "aliased from",
];

/// The address after an [`ORIGINAL_RECIPIENT_MARKERS`] phrase near the start of a block.
fn original_recipient_in(block: &str, address: &str) -> Option<String> {
    let head = cut(block, 600).to_lowercase();
    ORIGINAL_RECIPIENT_MARKERS.iter().find_map(|marker| {
        let at = head.find(marker)? + marker.len();
        let window = cut(&head[at..], 120);
        addresses_in(&window)
            .next()
            .map(|(_, original)| original)
            .filter(|original| original != address)
    })
}

/// The failed addresses of a notice, each with its part of the text.
pub fn recipient_blocks(notice: &str, excluded: &[String]) -> Vec<Block> {
    let lines = line_spans(notice);
    // Every recipient-looking occurrence: (line number, address, strong?).
    let mut occurrences: Vec<(usize, String, bool)> = Vec::new();
    // The lines indented deeper than "<ann@...>: host x said: 550 ..." continue that
    // answer: an address there is quoted by the remote (often our own sender), not another
    // recipient. Holds the indent of the line that started such an answer.
    let mut answer_indent: Option<usize> = None;
    // Addresses named as the original of another: recipients only when nothing else is.
    let mut originals: Vec<(usize, String)> = Vec::new();
    for (number, (start, end)) in lines.iter().enumerate() {
        let line = &notice[*start..*end];
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if !line.trim().is_empty() && answer_indent.is_some_and(|outer| indent > outer) {
            continue;
        }
        answer_indent = None;
        if is_other_header_line(line) {
            continue;
        }
        if occurrences.len() >= MAX_OCCURRENCES {
            break;
        }
        // An address right after another one ("to: a@x, b@y") stands where that one does.
        let mut previous: Option<(usize, Position)> = None;
        for (at, address) in addresses_in(line) {
            let listed = previous
                .filter(|(end, _)| *end <= at && is_list_separator(&line[*end..at]))
                .map(|(_, position)| position);
            let position = listed.unwrap_or_else(|| position(&line[..at]));
            previous = Some((at + address.len(), position));
            if excluded.contains(&address) {
                continue;
            }
            match position {
                Position::Sender => {}
                Position::Original => originals.push((number, address)),
                position => {
                    if says_more_after(line, at + address.len()) {
                        answer_indent = Some(indent);
                    }
                    occurrences.push((number, address, position == Position::Strong));
                }
            }
        }
    }
    if occurrences.is_empty() {
        occurrences.extend(
            originals
                .iter()
                .map(|(number, address)| (*number, address.clone(), true)),
        );
    }
    // Strong positions are trusted when there are any; a notice that only mentions the
    // address in a sentence still names its recipient.
    let strong = occurrences.iter().any(|o| o.2);
    occurrences.retain(|o| o.2 || !strong);
    let mut recipients: Vec<(usize, String)> = Vec::new();
    for (number, address, _) in &occurrences {
        if recipients.len() >= MAX_RECIPIENTS {
            break;
        }
        if !recipients.iter().any(|(_, known)| known == address) {
            recipients.push((*number, address.clone()));
        }
    }
    recipients
        .iter()
        .map(|(first_line, address)| {
            // The block runs to the next line that names another recipient (a notice may
            // repeat its list, in two languages), or just this line and its indented
            // continuation when the diagnostic follows the address on the same line.
            let next_other = occurrences
                .iter()
                .map(|(number, other, _)| (*number, other))
                .find(|(number, other)| number > first_line && *other != address)
                .map(|(number, _)| number)
                .unwrap_or(lines.len());
            let (line_start, line_end) = lines[*first_line];
            let line = &notice[line_start..line_end];
            let end_line = if has_inline_diagnostic(line, address) {
                let continuation = lines[first_line + 1..next_other]
                    .iter()
                    .take_while(|(s, e)| {
                        notice[*s..*e].starts_with([' ', '\t']) && !notice[*s..*e].trim().is_empty()
                    })
                    .count();
                first_line + 1 + continuation
            } else {
                next_other
            };
            let end = lines.get(end_line).map(|(s, _)| *s).unwrap_or(notice.len());
            let text = notice[line_start..end].to_string();
            Block {
                original: original_recipient_in(&text, address)
                    .or_else(|| original_just_above(&originals, &occurrences, *first_line))
                    .filter(|original| original != address),
                address: address.clone(),
                text,
            }
        })
        .collect()
}

/// An "Original address:" line right above a recipient's line (Messaging Server writes it
/// first): at most two lines up, with no other recipient's line between.
fn original_just_above(
    originals: &[(usize, String)],
    occurrences: &[(usize, String, bool)],
    first_line: usize,
) -> Option<String> {
    originals
        .iter()
        .filter(|(number, _)| *number < first_line && first_line - number <= 2)
        .filter(|(number, _)| {
            !occurrences
                .iter()
                .any(|(other, _, _)| other > number && *other < first_line)
        })
        .map(|(_, address)| address.clone())
        .next_back()
}

/// The block of an address known to have failed: the first line that names it and the
/// indented lines after it, or the whole notice when it does not name the address.
pub fn block_around(notice: &str, address: &str) -> Block {
    let lower = notice.to_ascii_lowercase();
    let text = lower
        .find(address)
        .map(|at| {
            let start = notice[..at].rfind('\n').map_or(0, |n| n + 1);
            let mut end = notice[at..].find('\n').map_or(notice.len(), |n| at + n + 1);
            for line in notice[end..].split_inclusive('\n') {
                if !line.starts_with([' ', '\t']) || line.trim().is_empty() {
                    break;
                }
                end += line.len();
            }
            notice[start..end].to_string()
        })
        .unwrap_or_else(|| notice.to_string());
    Block {
        original: original_recipient_in(&text, address),
        address: address.to_string(),
        text,
    }
}

/// Whether a line goes on after an address ends ("<ann@...>: host x said:", "ann@..., bob@...")
/// rather than closing it.
fn says_more_after(line: &str, address_end: usize) -> bool {
    line.get(address_end..).is_some_and(|rest| {
        !rest
            .trim_matches(|c: char| c.is_whitespace() || ">)]\"'".contains(c))
            .is_empty()
    })
}

/// Whether the text between two addresses only separates list items (`>, <`, `; `, ` and `).
fn is_list_separator(between: &str) -> bool {
    let rest = between.trim_matches(|c: char| c.is_whitespace() || "<>\"',;".contains(c));
    rest.is_empty() || rest.eq_ignore_ascii_case("and")
}

/// Byte ranges of the lines of a text.
fn line_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        spans.push((offset, offset + line.len()));
        offset += line.len();
    }
    spans
}

/// Whether a line says more than the address: "addr: host x said: 550 ...", "addr [User
/// unknown]". Then the line (and its indented continuation) is the recipient's whole story.
fn has_inline_diagnostic(line: &str, address: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let Some(at) = lower.find(address) else {
        return false;
    };
    let after = &lower[at + address.len()..];
    let words: String = after
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect();
    words.split_whitespace().map(str::len).sum::<usize>() >= 8
}

/// Where an address sits in its line, judged by the words just before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// Alone at the start of a line, or right after "to", "recipient", "address", ...
    Strong,
    /// Somewhere in a sentence.
    Weak,
    /// After "from", "sender", "MAIL FROM": the sender, not a recipient.
    Sender,
    /// After "original recipient:" or "originally to": the address the failed one was
    /// made from, read into its recipient's [`Block::original`], not a recipient itself.
    Original,
}

fn position(before: &str) -> Position {
    let lower = before.to_lowercase();
    let words = lower
        .trim_end()
        .trim_end_matches(['<', '"', '\'', '(', '[', '`', ' ', '\t']);
    const SENDER_WORDS: &[&str] = &[
        "from",
        "from:",
        "sender",
        "sender:",
        "envelope-from",
        "return-path:",
        "reply-to:",
        "by",
        "contact",
    ];
    const RECIPIENT_WORDS: &[&str] = &[
        "to",
        "to:",
        "rcpt to:",
        "recipient",
        "recipient:",
        "recipients:",
        "recipient(s):",
        "address",
        "address:",
        "addresses:",
        "address(es):",
        "addressee:",
        "for",
        "user",
        "user:",
        "mailbox",
        "mailbox:",
        "account",
        "failed:",
        "errors:",
        "destinataire:",
        "empfänger:",
        "宛先:",
        "адресат:",
        "получатель:",
    ];
    let mut last_words = words.rsplit([' ', '\t']);
    let last_word = last_words.next().unwrap_or_default();
    let word_before = last_words.next().unwrap_or_default();
    // "Sender Address:", "Return address:", "From address": the sender, however labelled.
    let names_sender = matches!(word_before, "sender" | "from" | "return" | "reply")
        && last_word.trim_end_matches(':') == "address";
    if SENDER_WORDS.contains(&last_word) || names_sender {
        return Position::Sender;
    }
    // "Original recipient:", "Original address:", "Original-Recipient:", "originally to":
    // the address as the sender wrote it, beside the one that failed (X.400 gateways,
    // Exchange, Sun/Oracle Messaging Server).
    let names_original = (word_before.ends_with("original")
        && (last_word.starts_with("recipient") || last_word.starts_with("address")))
        || last_word == "original-recipient:"
        || (word_before == "originally" && last_word == "to");
    if names_original {
        return Position::Original;
    }
    // A list marker ("1)", "-", "*") may precede a listed address; a reply code or status
    // ("550 5.1.1 <ann@...>") means the line is an answer that quotes it.
    let quotes_an_answer =
        find_reply_code(words).is_some() || find_enhanced_status(words).is_some();
    let start_of_line = !quotes_an_answer
        && words
            .trim_matches(|c: char| c.is_whitespace() || "-*>•·:.0123456789)".contains(c))
            .is_empty();
    if start_of_line || RECIPIENT_WORDS.contains(&last_word) {
        Position::Strong
    } else {
        Position::Weak
    }
}

/// Header fields quoted in a notice that name the sender or the original message, never
/// the failed recipient ("To:" quotes the original's header, not the failure).
const QUOTED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "sender",
    "reply-to",
    "return-path",
    "errors-to",
    "message-id",
    "in-reply-to",
    "references",
    "received",
    "date",
    "subject",
    "delivered-to",
    "dkim-signature",
    "authentication-results",
];

/// Whether a line is a quoted header field of the original (see [`QUOTED_HEADERS`]), or
/// an `X-` field other than the failed-recipient ones.
fn is_other_header_line(line: &str) -> bool {
    let line = line.trim_start();
    if !super::returned::looks_like_header_field(line) {
        return false;
    }
    let name = line
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    QUOTED_HEADERS.contains(&name.as_str())
        || (name.starts_with("x-") && !name.contains("recipient"))
}

/// Every address-looking token in a text, with its byte offset, lower-cased.
pub fn addresses_in(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let bytes = text.as_bytes();
    let local_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
    let domain_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'@')
        .filter_map(move |(at, _)| {
            let mut start = at;
            while start > 0 && local_char(bytes[start - 1]) && at - start < 128 {
                start -= 1;
            }
            while start < at && matches!(bytes[start], b'.' | b'\'' | b'`' | b'=') {
                start += 1;
            }
            let mut end = at + 1;
            while end < bytes.len() && domain_char(bytes[end]) && end - at < 256 {
                end += 1;
            }
            while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
                end -= 1;
            }
            let local = &text[start..at];
            let domain = &text[at + 1..end];
            let valid = !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with(['.', '-'])
                && domain.rsplit('.').next().is_some_and(|tld| {
                    tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
                });
            valid.then(|| (start, format!("{local}@{domain}").to_ascii_lowercase()))
        })
}

/// One finding per block; a notice naming no address still gives one finding.
pub fn findings(blocks: &[Block], context: &str) -> Vec<Finding> {
    let action = if is_delay_notice(context) {
        "delayed"
    } else {
        "failed"
    };
    let mut findings = if blocks.is_empty() {
        vec![finding_from_text(None, context, None)]
    } else {
        let single = blocks.len() == 1;
        blocks
            .iter()
            .map(|block| {
                let fallback = single.then_some(context);
                let mut finding =
                    finding_from_text(Some(block.address.clone()), &block.text, fallback);
                finding.original_recipient = block.original.clone();
                finding
            })
            .collect()
    };
    for finding in &mut findings {
        finding.action = Some(action.into());
    }
    findings
}

/// What the sending MTA says of itself when it has not given up yet: a delay warning, the
/// free-text counterpart of a DSN's `Action: delayed`. Only the sender's own sentences: a
/// remote's "temporarily deferred" is quoted in final notices too.
const DELAY_PHRASES: &[&str] = &[
    "warning only",
    "will be retried",
    "will retry",
    "will keep trying",
    "will continue trying",
    "will continue to try",
    "delivery attempts will continue",
    "has not yet been delivered",
    "not yet been delivered",
    "delivery incomplete",
    "delivery has been delayed",
    "delay notification",
    "no action is required on your part",
    "warning message only",
    "has been delayed",
    "still undelivered",
];

/// Whether a notice (whitespace-collapsed) is a delay warning, not a final failure.
pub fn is_delay_notice(context: &str) -> bool {
    let lower = context.to_lowercase();
    DELAY_PHRASES.iter().any(|p| lower.contains(p))
}

fn finding_from_text(recipient: Option<String>, text: &str, fallback: Option<&str>) -> Finding {
    let diagnostic = cut(&collapse_whitespace(text), MAX_DIAGNOSTIC);
    let status = find_enhanced_status(text).or_else(|| fallback.and_then(find_enhanced_status));
    let reply_code = find_reply_code(text).or_else(|| fallback.and_then(find_reply_code));
    let command = find_command(text).or_else(|| fallback.and_then(find_command));
    Finding {
        recipient,
        original_recipient: None,
        forwarded_to: None,
        action: Some("failed".into()),
        status,
        reply_code,
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
        notice_text: None,
        remote_mta: None,
        command,
        decided_locally: false,
    }
}

/// Cuts a string to at most `max` bytes on a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
