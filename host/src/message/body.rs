//! The MIME body (RFC 2045-2049): reading the html and text alternatives and the attachments,
//! and writing a new MIME structure when a step changes them.
//!
//! Reading goes through mail-parser. Replacing the html or text alternative of a multipart
//! message rewrites that part alone, in place: every other byte of the message stays as it
//! was. Other changes (adding an alternative or an attachment, removing one, or replacing the
//! body of a single-part message) re-assemble the body with mail-builder while the header
//! fields other than the MIME ones stay exactly as they were.

use bytes::Bytes;
use mail_builder::MessageBuilder;
use mail_builder::mime::MimePart;
use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::{Message, MessageError, header};

/// Top-level fields that describe the MIME structure and are rewritten with it.
const MIME_FIELDS: &[&str] = &[
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-ID",
    "Content-Description",
];

/// What a step learns of one attachment without its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Position among the attachments.
    pub index: usize,
    /// File name from Content-Disposition or Content-Type.
    pub filename: Option<String>,
    /// Media type, e.g. `application/pdf`.
    pub content_type: String,
    /// `attachment` or `inline`.
    pub disposition: String,
    /// Content-ID without angle brackets.
    pub content_id: Option<String>,
    /// Decoded size in bytes.
    pub size: usize,
}

/// An attachment with its decoded content, as read from a message or added by a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAttachment {
    /// File name.
    pub filename: String,
    /// Media type.
    pub content_type: String,
    /// Decoded bytes.
    pub content: Vec<u8>,
    /// Inline part (referenced by `cid:`) rather than a download.
    pub inline: bool,
    /// Content-ID without angle brackets.
    pub content_id: Option<String>,
}

/// The parts of a message a step can read and replace.
pub(super) struct Content {
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
    pub(super) attachments: Vec<NewAttachment>,
}

impl Content {
    /// Reads the alternatives and attachments of a message.
    pub(super) fn read(message: &Message) -> Self {
        let raw = message.to_bytes();
        let Some(parsed) = MessageParser::default().parse(&raw) else {
            return Self {
                text: None,
                html: None,
                attachments: Vec::new(),
            };
        };
        let attachments = parsed
            .attachments()
            .map(|part| {
                let (info, content) = describe(0, part);
                NewAttachment {
                    filename: info.filename.unwrap_or_default(),
                    content_type: info.content_type,
                    content,
                    inline: info.disposition == "inline",
                    content_id: info.content_id,
                }
            })
            .collect();
        Self {
            text: first_body(&parsed, Alternative::Text),
            html: first_body(&parsed, Alternative::Html),
            attachments,
        }
    }

    /// Writes this content as the message's new MIME body, keeping its non-MIME fields.
    pub(super) fn write_into(self, message: &mut Message) -> Result<(), MessageError> {
        let mut builder = MessageBuilder::new();
        if let Some(text) = self.text {
            builder = builder.text_body(crlf_line_ends(text));
        }
        if let Some(html) = self.html {
            builder = builder.html_body(crlf_line_ends(html));
        }
        for attachment in self.attachments {
            builder = if attachment.inline {
                let cid = attachment.content_id.unwrap_or(attachment.filename);
                builder.inline(attachment.content_type, cid, attachment.content)
            } else {
                builder.attachment(
                    attachment.content_type,
                    attachment.filename,
                    attachment.content,
                )
            };
        }
        let mut written = Vec::new();
        builder
            .write_body(&mut written)
            .map_err(|error| MessageError::Malformed(error.to_string()))?;
        let written = Bytes::from(written);
        let (mime_head, body) = super::split_head_body(&written)?;

        let mut head = message.head.clone();
        for name in MIME_FIELDS {
            head = header::remove(&head, name);
        }
        let mut new_head = Vec::with_capacity(head.len() + mime_head.len() + 20);
        new_head.extend_from_slice(&head);
        if !header::fields(&head).any(|field| field.is_named("MIME-Version")) {
            new_head.extend_from_slice(b"MIME-Version: 1.0\r\n");
        }
        new_head.extend_from_slice(&mime_head);
        message.replace_content(Bytes::from(new_head), body);
        Ok(())
    }
}

/// A body's lines ended with CRLF whatever a step wrote (LF, CR or a mix): a bare LF or CR
/// in a message is against RFC 5322, and receivers read it in different ways.
fn crlf_line_ends(text: String) -> String {
    if !text.bytes().any(|byte| byte == b'\n' || byte == b'\r') {
        return text;
    }
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            other => out.push(other),
        }
    }
    out
}

/// The two body alternatives a step can read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Alternative {
    Text,
    Html,
}

/// Replaces the first part of the wanted kind with `content`, encoded anew, leaving every
/// other byte of the message as it was: the top-level header, the other parts, the
/// boundaries. The part's own header becomes its Content-Type (UTF-8) and
/// Content-Transfer-Encoding, as a re-assembled body would have it. Returns false, changing
/// nothing, when there is no such part inside a multipart body (the caller re-assembles).
pub(super) fn replace_alternative_in_place(
    message: &mut Message,
    which: Alternative,
    content: &str,
) -> Result<bool, MessageError> {
    let raw = message.to_bytes();
    let Some(parsed) = MessageParser::default().parse(&raw) else {
        return Ok(false);
    };
    let Some(id) = first_body_id(&parsed, which) else {
        return Ok(false);
    };
    // Part 0 is the message itself: a single-part body has no part to replace alone.
    let Some(part) = parsed.parts.get(id).filter(|_| id != 0) else {
        return Ok(false);
    };
    let (start, end) = (part.offset_header as usize, part.offset_end as usize);
    // The body starts after the head and its empty line; a part must lie inside it and end
    // where its closing boundary's line break starts.
    let body_start = message.head.len() + 2;
    if start < body_start
        || start > end
        || !raw
            .get(end..)
            .is_some_and(|rest| rest.starts_with(b"\r\n--"))
    {
        return Ok(false);
    }
    let media_type = match which {
        Alternative::Text => "text/plain",
        Alternative::Html => "text/html",
    };
    let mut new_part = Vec::with_capacity(content.len() + content.len() / 8 + 100);
    MimePart::new(media_type, crlf_line_ends(content.to_string()))
        .write_part(&mut new_part)
        .map_err(|error| MessageError::Malformed(error.to_string()))?;
    let body = &message.body;
    let (before, after) = (start - body_start, end - body_start);
    let mut new_body = Vec::with_capacity(body.len() - (after - before) + new_part.len());
    new_body.extend_from_slice(&body[..before]);
    new_body.extend_from_slice(&new_part);
    new_body.extend_from_slice(&body[after..]);
    let head = message.head.clone();
    message.replace_content(head, Bytes::from(new_body));
    Ok(true)
}

/// One body alternative, decoded, without reading the attachments.
pub(super) fn alternative(message: &Message, which: Alternative) -> Option<String> {
    let raw = message.to_bytes();
    let parsed = MessageParser::default().parse(&raw)?;
    first_body(&parsed, which)
}

/// The first part of the wanted kind among the parser's text or html bodies (the parser lists
/// an html part among the text bodies when there is no text part, and the other way round).
fn first_body(parsed: &mail_parser::Message<'_>, which: Alternative) -> Option<String> {
    let id = first_body_id(parsed, which)?;
    match &parsed.parts.get(id)?.body {
        PartType::Html(html) => Some(html.to_string()),
        PartType::Text(text) => Some(text.to_string()),
        _ => None,
    }
}

/// The index among the parser's parts of the part [`first_body`] reads.
fn first_body_id(parsed: &mail_parser::Message<'_>, which: Alternative) -> Option<usize> {
    let ids = match which {
        Alternative::Text => &parsed.text_body,
        Alternative::Html => &parsed.html_body,
    };
    ids.iter().map(|&id| id as usize).find(|&id| {
        matches!(
            (parsed.parts.get(id).map(|part| &part.body), which),
            (Some(PartType::Html(_)), Alternative::Html)
                | (Some(PartType::Text(_)), Alternative::Text)
        )
    })
}

/// Describes the attachments of a message.
pub(super) fn attachment_infos(message: &Message) -> Vec<AttachmentInfo> {
    let raw = message.to_bytes();
    let Some(parsed) = MessageParser::default().parse(&raw) else {
        return Vec::new();
    };
    parsed
        .attachments()
        .enumerate()
        .map(|(index, part)| describe(index, part).0)
        .collect()
}

/// The decoded content of one attachment.
pub(super) fn attachment_content(message: &Message, index: usize) -> Option<Vec<u8>> {
    let raw = message.to_bytes();
    let parsed = MessageParser::default().parse(&raw)?;
    parsed
        .attachments()
        .nth(index)
        .map(|part| part.contents().to_vec())
}

fn describe(index: usize, part: &mail_parser::MessagePart<'_>) -> (AttachmentInfo, Vec<u8>) {
    let content_type = part.content_type().map_or_else(
        || "application/octet-stream".to_string(),
        |ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        },
    );
    let inline = match part.content_disposition() {
        Some(disposition) => disposition.ctype().eq_ignore_ascii_case("inline"),
        None => matches!(part.body, PartType::InlineBinary(_)),
    };
    let content = part.contents().to_vec();
    let info = AttachmentInfo {
        index,
        filename: part.attachment_name().map(str::to_string),
        content_type,
        disposition: if inline { "inline" } else { "attachment" }.to_string(),
        content_id: part
            .content_id()
            .map(|cid| cid.trim_matches(|c| c == '<' || c == '>').to_string()),
        size: content.len(),
    };
    (info, content)
}
