//! The returned original message (or its headers), as attached or quoted by the notice: what
//! later ties a bounce back to the message we sent (Message-ID, Return-Path, our own headers).

use mail_parser::{Message, MessageParser};
use serde::Serialize;

/// At most this many headers are kept from a returned message.
const MAX_HEADERS: usize = 200;
/// Header values longer than this are cut.
const MAX_VALUE: usize = 4096;

/// The headers of the returned original message, in order, unfolded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReturnedMessage {
    /// `(name, value)` pairs as they appear, folding removed.
    pub headers: Vec<(String, String)>,
}

impl ReturnedMessage {
    /// From a message mail-parser read as an attached `message/rfc822`.
    pub(crate) fn from_message(message: &Message<'_>) -> ReturnedMessage {
        let headers = message
            .headers_raw()
            .take(MAX_HEADERS)
            .map(|(name, value)| (name.to_string(), unfold(value)))
            .collect();
        ReturnedMessage { headers }
    }

    /// From a header block given as text (`text/rfc822-headers`, or a message/rfc822 part
    /// that did not parse as a message).
    pub(crate) fn from_header_text(text: &str) -> Option<ReturnedMessage> {
        let start = text.trim_start_matches(['\r', '\n', ' ', '\t']);
        let message = MessageParser::default().parse_headers(start.as_bytes())?;
        let returned = Self::from_message(&message);
        (!returned.headers.is_empty()).then_some(returned)
    }

    /// From the text after a notice's "original message follows" marker: the header block
    /// starts at the first line that looks like a header field.
    pub(crate) fn from_inline_text(text: &str) -> Option<ReturnedMessage> {
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            if looks_like_header_field(line) {
                return Self::from_header_text(&text[offset..]);
            }
            offset += line.len();
            if offset > 16 * 1024 {
                break;
            }
        }
        None
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The returned message's Message-ID, without angle brackets.
    pub fn message_id(&self) -> Option<String> {
        let value = self.header("Message-ID")?;
        let id = value.trim().trim_matches(['<', '>']).trim();
        (!id.is_empty()).then(|| id.to_string())
    }

    /// The returned message's Return-Path address (its envelope sender: our VERP address).
    pub fn return_path(&self) -> Option<String> {
        self.header("Return-Path").and_then(first_address)
    }

    /// The addresses the returned message was sent from (From, Sender, Return-Path, Reply-To).
    pub(crate) fn sender_addresses(&self) -> Vec<String> {
        ["From", "Sender", "Return-Path", "Reply-To"]
            .iter()
            .filter_map(|name| self.header(name))
            .filter_map(first_address)
            .collect()
    }
}

impl ReturnedMessage {
    /// The one address the returned message was written to (To and Cc together), when
    /// there is exactly one: the failed recipient of a notice that names none itself.
    pub(crate) fn sole_recipient(&self) -> Option<String> {
        let mut addresses: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("To") || name.eq_ignore_ascii_case("Cc"))
            .flat_map(|(_, value)| {
                super::freetext::addresses_in(value)
                    .map(|(_, a)| a)
                    .collect::<Vec<_>>()
            })
            .collect();
        addresses.dedup();
        match addresses.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }
}

/// A header line: a field name of printable characters without spaces, then a colon.
pub(crate) fn looks_like_header_field(line: &str) -> bool {
    let Some((name, _)) = line.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name.len() < 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VALUE));
    for word in value.split_whitespace() {
        if out.len() + word.len() >= MAX_VALUE {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The first address-looking token of a header value, lower-cased.
fn first_address(value: &str) -> Option<String> {
    super::freetext::addresses_in(value).next().map(|(_, a)| a)
}
