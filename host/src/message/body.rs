//! The MIME body (RFC 2045-2049): reading the html and text alternatives and the attachments,
//! and writing a new MIME structure when a step changes them.
//!
//! Reading goes through mail-parser. Replacing the html or text alternative of a multipart
//! message rewrites that part alone, in place: every other byte of the message stays as it
//! was. Other changes (adding an alternative or an attachment, removing one, or replacing the
//! body of a single-part message) re-assemble the body with mail-builder while the header
//! fields other than the MIME ones stay exactly as they were.

use std::ops::Range;

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
                let info = describe(0, part);
                NewAttachment {
                    filename: info.filename.unwrap_or_default(),
                    content_type: info.content_type,
                    content: part.contents().to_vec(),
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
    match super::line_ends::to_crlf(text.as_bytes()) {
        // Only ASCII CR and LF were replaced by ASCII: the UTF-8 of the rest is untouched.
        Some(fixed) => String::from_utf8(fixed).expect("UTF-8 in, UTF-8 out"),
        // Already right (the usual case once a body has been through the host): no copy.
        None => text,
    }
}

/// The two body alternatives a step can read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Alternative {
    Text,
    Html,
}

/// What one parse of a message's MIME structure tells, kept with the message until its MIME
/// content changes: the steps of a flow read the html, the text and the attachment list
/// several times and edit the alternatives in place, and each of those used to parse (and
/// decode) the whole message again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct BodyView {
    html: Option<AlternativeView>,
    text: Option<AlternativeView>,
    attachments: Vec<AttachmentInfo>,
    /// The boundary of every multipart part: a part written in place must not hold a line
    /// that starts with one of them, or the parts would be cut differently when read again.
    boundaries: Vec<String>,
}

/// One body alternative as the parser read it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AlternativeView {
    /// The decoded content.
    content: String,
    /// Where the part (its header to its end) lies in the message's body, when it is a part
    /// of a multipart body that can be replaced alone; none for a single-part message.
    place: Option<Range<usize>>,
}

impl BodyView {
    /// Parses the message once and keeps what the steps read.
    pub(super) fn read(message: &Message) -> Self {
        let raw = message.to_bytes();
        let Some(parsed) = MessageParser::default().parse(&raw) else {
            return Self::default();
        };
        let body_start = message.head.len() + 2;
        let alternative = |which| {
            let id = first_body_id(&parsed, which)?;
            let part = parsed.parts.get(id)?;
            let content = match &part.body {
                PartType::Html(html) => html.to_string(),
                PartType::Text(text) => text.to_string(),
                _ => return None,
            };
            Some(AlternativeView {
                content,
                place: replaceable_place(&raw, body_start, id, part),
            })
        };
        let boundaries = parsed
            .parts
            .iter()
            .filter(|part| matches!(part.body, PartType::Multipart(_)))
            .filter_map(|part| part.content_type()?.attribute("boundary"))
            .map(str::to_string)
            .collect();
        Self {
            html: alternative(Alternative::Html),
            text: alternative(Alternative::Text),
            attachments: parsed
                .attachments()
                .enumerate()
                .map(|(index, part)| describe(index, part))
                .collect(),
            boundaries,
        }
    }

    fn alternative(&self, which: Alternative) -> Option<&AlternativeView> {
        match which {
            Alternative::Html => self.html.as_ref(),
            Alternative::Text => self.text.as_ref(),
        }
    }

    /// The decoded html or text, if the message has that alternative.
    pub(super) fn content(&self, which: Alternative) -> Option<&str> {
        self.alternative(which).map(|view| view.content.as_str())
    }

    /// The attachments and inline parts, in order.
    pub(super) fn attachments(&self) -> &[AttachmentInfo] {
        &self.attachments
    }

    /// The view after the part at `place` became `written` bytes holding `content`: parts
    /// after it move by the difference, nothing else changes.
    fn with_replaced(
        &self,
        which: Alternative,
        place: &Range<usize>,
        written: usize,
        content: String,
    ) -> Self {
        let moved = |other: &Range<usize>| {
            if other.start >= place.end {
                (other.start - place.end + place.start + written)
                    ..(other.end - place.end + place.start + written)
            } else {
                other.clone()
            }
        };
        let mut next = self.clone();
        for (kind, slot) in [
            (Alternative::Html, &mut next.html),
            (Alternative::Text, &mut next.text),
        ] {
            let Some(view) = slot else { continue };
            if kind == which {
                *view = AlternativeView {
                    content: content.clone(),
                    place: Some(place.start..place.start + written),
                };
            } else if let Some(other) = &view.place {
                view.place = Some(moved(other));
            }
        }
        next
    }
}

/// Where part `id` lies in the body, if it can be replaced alone: it is not the message
/// itself, lies inside the body and ends where its closing boundary's line break starts.
fn replaceable_place(
    raw: &[u8],
    body_start: usize,
    id: usize,
    part: &mail_parser::MessagePart<'_>,
) -> Option<Range<usize>> {
    let (start, end) = (part.offset_header as usize, part.offset_end as usize);
    let inside = id != 0
        && start >= body_start
        && start <= end
        && raw
            .get(end..)
            .is_some_and(|rest| rest.starts_with(b"\r\n--"));
    inside.then(|| start - body_start..end - body_start)
}

/// True when a line of `part` starts with `--` and one of the boundaries (compared without
/// regard to case, to be safe with lenient readers).
fn holds_a_boundary(part: &[u8], boundaries: &[String]) -> bool {
    let starts_a_boundary = |after: usize| {
        boundaries.iter().any(|boundary| {
            part.get(after..after + boundary.len())
                .is_some_and(|found| found.eq_ignore_ascii_case(boundary.as_bytes()))
        })
    };
    // Lines starting with "--" are few: found with memchr, not by a window at every byte.
    (part.starts_with(b"--") && starts_a_boundary(2))
        || memchr::memmem::find_iter(part, b"\n--").any(|at| starts_a_boundary(at + 3))
}

/// Replaces the first part of the wanted kind with `content`, encoded anew, leaving every
/// other byte of the message as it was: the top-level header, the other parts, the
/// boundaries. The part's own header becomes its Content-Type (UTF-8) and
/// Content-Transfer-Encoding, as a re-assembled body would have it. Returns false, changing
/// nothing, when there is no such part inside a multipart body, or when the encoded content
/// would hold one of the message's boundaries (the caller re-assembles, with new boundaries).
///
/// The message's parsed view is carried over, not thrown away: the new part is known, and
/// the parts after it only move.
pub(super) fn replace_alternative_in_place(
    message: &mut Message,
    which: Alternative,
    content: &str,
) -> Result<bool, MessageError> {
    let view = message.view();
    let Some(place) = view
        .alternative(which)
        .and_then(|alternative| alternative.place.clone())
    else {
        return Ok(false);
    };
    let media_type = match which {
        Alternative::Text => "text/plain",
        Alternative::Html => "text/html",
    };
    let content = crlf_line_ends(content.to_string());
    let mut new_part = Vec::with_capacity(content.len() + content.len() / 8 + 100);
    super::text_part::write(media_type, &content, &mut new_part);
    if holds_a_boundary(&new_part, &view.boundaries) {
        return Ok(false);
    }
    let body = &message.body;
    let mut new_body = Vec::with_capacity(body.len() - place.len() + new_part.len());
    new_body.extend_from_slice(&body[..place.start]);
    new_body.extend_from_slice(&new_part);
    new_body.extend_from_slice(&body[place.end..]);
    let next = view.with_replaced(which, &place, new_part.len(), content);
    message.replace_body_keeping_view(Bytes::from(new_body), next);
    Ok(true)
}

/// One body alternative, decoded, from the message's parsed view.
pub(super) fn alternative(message: &Message, which: Alternative) -> Option<String> {
    message.view().content(which).map(str::to_string)
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

/// Describes the attachments of a message, from its parsed view.
pub(super) fn attachment_infos(message: &Message) -> Vec<AttachmentInfo> {
    message.view().attachments().to_vec()
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

/// What a step is told of an attachment; its content is not copied (the parsed view keeps
/// only this, and a message's attachments can be most of its bytes).
fn describe(index: usize, part: &mail_parser::MessagePart<'_>) -> AttachmentInfo {
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
    AttachmentInfo {
        index,
        filename: part.attachment_name().map(str::to_string),
        content_type,
        disposition: if inline { "inline" } else { "attachment" }.to_string(),
        content_id: part
            .content_id()
            .map(|cid| cid.trim_matches(|c| c == '<' || c == '>').to_string()),
        size: part.contents().len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boundary_is_found_only_where_a_line_starts_with_it() {
        let boundaries = ["outer-1".to_string(), "Inner-2".to_string()];
        for (part, holds) in [
            (&b"--outer-1\r\ntext"[..], true),
            (b"text\r\n--inner-2--\r\n", true),
            (b"text\r\n--outer-", false),
            (b"text --outer-1 in a line\r\n", false),
            (b"text\r\n-- outer-1\r\n", false),
            (b"text\r\n--other\r\n--OUTER-1", true),
            (b"", false),
            (b"--", false),
        ] {
            assert_eq!(
                holds_a_boundary(part, &boundaries),
                holds,
                "{}",
                String::from_utf8_lossy(part)
            );
        }
    }
}
