//! The MIME body (RFC 2045-2049): reading the html and text alternatives and the attachments,
//! and writing a new MIME structure when a step changes them.
//!
//! Reading goes through mail-parser; a change re-assembles the body with mail-builder while the
//! header fields other than the MIME ones stay exactly as they were.

use bytes::Bytes;
use mail_builder::MessageBuilder;
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

/// One body alternative, decoded, without reading the attachments.
pub(super) fn alternative(message: &Message, which: Alternative) -> Option<String> {
    let raw = message.to_bytes();
    let parsed = MessageParser::default().parse(&raw)?;
    first_body(&parsed, which)
}

/// The first part of the wanted kind among the parser's text or html bodies (the parser lists
/// an html part among the text bodies when there is no text part, and the other way round).
fn first_body(parsed: &mail_parser::Message<'_>, which: Alternative) -> Option<String> {
    let ids = match which {
        Alternative::Text => &parsed.text_body,
        Alternative::Html => &parsed.html_body,
    };
    ids.iter()
        .find_map(|&id| match (&parsed.parts.get(id as usize)?.body, which) {
            (PartType::Html(html), Alternative::Html) => Some(html.to_string()),
            (PartType::Text(text), Alternative::Text) => Some(text.to_string()),
            _ => None,
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
