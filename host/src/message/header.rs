//! The header block (RFC 5322 section 2.2): finding, decoding and editing fields without
//! touching the bytes of the fields that are not edited.

use std::borrow::Cow;

use bytes::Bytes;
use mail_builder::headers::Header as _;
use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use super::{ForbiddenInHeader, MessageError};

/// RFC 5322 section 2.1.1: a line may not exceed 998 characters before CRLF.
const MAX_LINE: usize = 998;

/// Header fields whose value is an address list, encoded as such when not ASCII.
const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "sender",
    "resent-from",
    "resent-to",
    "resent-cc",
];

/// One header field inside a header block.
pub(super) struct Field<'a> {
    /// The whole field, continuation lines and final CRLF included.
    raw: &'a [u8],
    name_len: usize,
    /// Where it starts in the block.
    start: usize,
}

impl<'a> Field<'a> {
    /// The field name as written.
    pub(super) fn name(&self) -> &'a str {
        // Names were checked to be ASCII when the block was validated or written.
        std::str::from_utf8(&self.raw[..self.name_len]).unwrap_or("")
    }

    /// Case-insensitive name comparison.
    pub(super) fn is_named(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.trim())
    }

    /// The value unfolded, with RFC 2047 encoded-words decoded.
    pub(super) fn decoded_value(&self) -> String {
        let value = &self.raw[self.name_len + 1..];
        match MessageStream::new(value).parse_unstructured() {
            HeaderValue::Text(text) => text.into_owned(),
            _ => String::new(),
        }
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.raw.len()
    }
}

/// The fields of a header block, in order.
pub(super) fn fields(head: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut position = 0;
    std::iter::from_fn(move || {
        if position >= head.len() {
            return None;
        }
        let start = position;
        let mut end = start;
        // A field runs until a line that does not start with white space.
        loop {
            let line_end = head[end..]
                .windows(2)
                .position(|pair| pair == b"\r\n")
                .map_or(head.len(), |at| end + at + 2);
            end = line_end;
            if end >= head.len() || !matches!(head[end], b' ' | b'\t') {
                break;
            }
        }
        position = end;
        let raw = &head[start..end];
        let name_len = raw
            .iter()
            .position(|&byte| byte == b':')
            .unwrap_or(raw.len() - 1);
        Some(Field {
            raw,
            name_len,
            start,
        })
    })
}

/// Checks that every line of a block is a field or the continuation of one, and that no
/// value holds a control character other than TAB (and the CRLF that folds it).
pub(super) fn validate_block(head: &[u8]) -> Result<(), MessageError> {
    if matches!(head.first(), Some(b' ' | b'\t')) {
        return Err(MessageError::Malformed(
            "the first header line is a continuation line".into(),
        ));
    }
    for (number, field) in fields(head).enumerate() {
        let name = &field.raw[..field.name_len];
        let has_colon = field.raw.get(field.name_len) == Some(&b':');
        if !has_colon || name.is_empty() || !name.iter().all(|&byte| is_ftext(byte)) {
            let line =
                String::from_utf8_lossy(field.raw.split(|&b| b == b'\r').next().unwrap_or(&[]));
            return Err(MessageError::Malformed(format!(
                "header line {} is not a field: {:?}",
                number + 1,
                line.chars().take(80).collect::<String>()
            )));
        }
        if let Some(character) = control_in_value(&field.raw[field.name_len + 1..]) {
            return Err(MessageError::ControlCharacter {
                name: field.name().to_string(),
                character,
            });
        }
    }
    Ok(())
}

/// The first control character of a raw field value (folding CRLFs aside), as ASCII: bytes of
/// 8-bit text are left alone, they are not controls in any charset mail uses for headers.
fn control_in_value(value: &[u8]) -> Option<char> {
    let mut bytes = value.iter().copied().enumerate();
    while let Some((at, byte)) = bytes.next() {
        match byte {
            // Line ends were made CRLF when the message was read; a field's CRLFs are the one
            // that ends it and those before a continuation line.
            b'\r' if value.get(at + 1) == Some(&b'\n') => {
                bytes.next();
            }
            b'\t' => {}
            0..=0x1f | 0x7f => return Some(char::from(byte)),
            _ => {}
        }
    }
    None
}

/// RFC 5322 `ftext`: printable ASCII except colon.
fn is_ftext(byte: u8) -> bool {
    (33..=126).contains(&byte) && byte != b':'
}

/// Replaces every field named `name` with one field, where the first one stood.
pub(super) fn set(head: &[u8], name: &str, value: &str) -> Result<Bytes, MessageError> {
    let encoded = encode_field(name, value)?;
    let mut out = Vec::with_capacity(head.len() + encoded.len());
    let mut copied_to = 0;
    let mut written = false;
    for field in fields(head) {
        if !field.is_named(name) {
            continue;
        }
        let range = field.range();
        out.extend_from_slice(&head[copied_to..range.start]);
        if !written {
            out.extend_from_slice(&encoded);
            written = true;
        }
        copied_to = range.end;
    }
    out.extend_from_slice(&head[copied_to..]);
    if !written {
        out.extend_from_slice(&encoded);
    }
    Ok(Bytes::from(out))
}

/// Adds a field at the end of the block.
pub(super) fn append(head: &[u8], name: &str, value: &str) -> Result<Bytes, MessageError> {
    let encoded = encode_field(name, value)?;
    let mut out = Vec::with_capacity(head.len() + encoded.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&encoded);
    Ok(Bytes::from(out))
}

/// Removes every field named `name`.
pub(super) fn remove(head: &[u8], name: &str) -> Bytes {
    let mut out = Vec::with_capacity(head.len());
    for field in fields(head) {
        if !field.is_named(name) {
            out.extend_from_slice(field.raw);
        }
    }
    Bytes::from(out)
}

/// Writes `Name: value CRLF`, encoding a non-ASCII value as RFC 2047 encoded-words and folding
/// a line that would be too long.
fn encode_field(name: &str, value: &str) -> Result<Vec<u8>, MessageError> {
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(is_ftext) {
        return Err(MessageError::InvalidHeaderName(name.to_string()));
    }
    match super::forbidden_in_header(value) {
        None => {}
        Some(ForbiddenInHeader::LineBreak) => {
            return Err(MessageError::HeaderInjection {
                name: name.to_string(),
            });
        }
        Some(ForbiddenInHeader::Control(character)) => {
            return Err(MessageError::ControlCharacter {
                name: name.to_string(),
                character,
            });
        }
    }
    let mut out = Vec::with_capacity(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if value.is_ascii() && name.len() + 2 + value.len() <= MAX_LINE {
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
        return Ok(out);
    }
    let lowercase = name.to_ascii_lowercase();
    let written = if ADDRESS_FIELDS.contains(&lowercase.as_str()) {
        address_list(value).map(|list| list.write_header(&mut out, name.len() + 2))
    } else {
        None
    };
    match written {
        Some(result) => result,
        None => {
            mail_builder::headers::text::Text::new(value).write_header(&mut out, name.len() + 2)
        }
    }
    .map_err(|error| MessageError::Malformed(error.to_string()))?;
    Ok(out)
}

/// Parses an address list so its display names can be encoded without breaking the addresses.
fn address_list(value: &str) -> Option<mail_builder::headers::address::Address<'static>> {
    use mail_builder::headers::address::{Address, EmailAddress};

    let mut line = value.as_bytes().to_vec();
    line.extend_from_slice(b"\r\n");
    let parsed = MessageStream::new(&line).parse_address();
    let list = parsed.as_address()?.as_list()?;
    let addresses: Option<Vec<Address<'static>>> = list
        .iter()
        .map(|addr| {
            Some(Address::Address(EmailAddress {
                name: addr.name.as_ref().map(|n| Cow::Owned(n.to_string())),
                email: Cow::Owned(addr.address.as_ref()?.to_string()),
            }))
        })
        .collect();
    let mut addresses = addresses?;
    match addresses.len() {
        0 => None,
        1 => addresses.pop(),
        _ => Some(Address::List(addresses)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_fields_are_one_field() {
        let head = b"A: 1\r\nB: two\r\n  lines\r\nC: 3\r\n";
        let names: Vec<_> = fields(head).map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        let b = fields(head).nth(1).unwrap();
        assert_eq!(b.decoded_value(), "two lines");
    }

    #[test]
    fn set_keeps_the_position_of_the_first_and_drops_the_rest() {
        let head = b"A: 1\r\nX: old\r\nB: 2\r\nx: older\r\n";
        let out = set(head, "X", "new").unwrap();
        assert_eq!(&out[..], b"A: 1\r\nX: new\r\nB: 2\r\n");
    }

    #[test]
    fn remove_takes_every_field_of_the_name() {
        let head = b"A: 1\r\nX: old\r\n cont\r\nB: 2\r\nx: older\r\n";
        assert_eq!(&remove(head, "x")[..], b"A: 1\r\nB: 2\r\n");
    }

    #[test]
    fn non_ascii_display_names_keep_the_address_readable() {
        let field = encode_field("From", "Jörg Müller <joerg@example.com>").unwrap();
        let text = String::from_utf8(field).unwrap();
        assert!(text.is_ascii());
        assert!(text.contains("<joerg@example.com>"), "{text}");
        let head = text.into_bytes();
        let decoded = fields(&head).next().unwrap().decoded_value();
        assert!(decoded.contains("Jörg Müller"), "{decoded}");
    }

    #[test]
    fn long_ascii_values_are_folded() {
        let value = "word ".repeat(300);
        let field = encode_field("X-Long", value.trim()).unwrap();
        assert!(
            field
                .split(|&b| b == b'\n')
                .all(|line| line.len() <= MAX_LINE + 1)
        );
    }

    #[test]
    fn control_characters_in_values_are_found_but_not_folding_or_tabs() {
        assert!(validate_block(b"A: one\r\n\ttwo\r\nB:\tx\ty\r\n").is_ok());
        assert!(validate_block("C: Jörg Müller\r\n".as_bytes()).is_ok());
        assert_eq!(
            validate_block(b"A: ok\r\nB: one\r\n two\0\r\n"),
            Err(MessageError::ControlCharacter {
                name: "B".into(),
                character: '\0'
            })
        );
        assert_eq!(control_in_value(b" a\x1bb\r\n"), Some('\u{1b}'));
        assert_eq!(control_in_value(b" a\x7f\r\n"), Some('\u{7f}'));
        // A CR that is not part of a CRLF is not a line end.
        assert_eq!(control_in_value(b" a\rb\r\n"), Some('\r'));
        assert!(matches!(
            encode_field("X", "a\u{0}b"),
            Err(MessageError::ControlCharacter {
                character: '\0',
                ..
            })
        ));
        assert!(matches!(
            encode_field("X", "a\nb\0"),
            Err(MessageError::HeaderInjection { .. })
        ));
    }

    #[test]
    fn lines_that_are_not_fields_are_refused() {
        assert!(validate_block(b"Subject: x\r\nnot a field\r\n").is_err());
        assert!(validate_block(b" continuation first\r\n").is_err());
        assert!(validate_block(b"Subject: x\r\n\tcontinued\r\n").is_ok());
    }
}
