//! One recipient's copy of a mail as the pipeline carries it, and the edits Flowsteps make.
//!
//! The header block and the body are kept apart as shared byte buffers: reading a message or
//! changing a header never copies the body, and a message nobody changed is written out
//! byte for byte as it came in.

mod body;
mod header;
pub(crate) mod line_ends;
mod text_part;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

pub use body::AttachmentInfo;
pub use body::NewAttachment;

/// The SMTP envelope of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM; empty for the null sender.
    pub sender: String,
    /// RCPT TO: the one recipient this copy is for.
    pub recipient: String,
}

/// Why a message or an edit of it was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A header field name outside RFC 5322 `ftext`.
    #[error("header name {0:?} is not a valid field name")]
    InvalidHeaderName(String),
    /// A header value carrying a line break, which would let a step smuggle in other fields.
    #[error("the value of header {name:?} contains CR or LF")]
    HeaderInjection {
        /// The field whose value was refused.
        name: String,
    },
    /// A header value holding NUL or another control character (TAB aside), which receivers
    /// truncate or read differently from what the checks here saw.
    #[error("the value of header {name:?} contains {}", describe_control(*character))]
    ControlCharacter {
        /// The field whose value was refused.
        name: String,
        /// The first control character found.
        character: char,
    },
    /// An envelope address that is not a plain `local@domain`.
    #[error("{0:?} is not a valid envelope address")]
    InvalidAddress(String),
    /// The message would grow past the size limit.
    #[error("the message would be {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size after the edit.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Bytes that are not an RFC 5322 message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A character a header value may not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForbiddenInHeader {
    /// CR or LF: it would end the field, and what follows would be read as another field or
    /// as the body.
    LineBreak,
    /// NUL or another control character other than TAB.
    Control(char),
}

/// The first reason `value` may not be written as (part of) a header field's value: a line
/// break before any other control character, as that is the one that injects. TAB is allowed.
pub fn forbidden_in_header(value: &str) -> Option<ForbiddenInHeader> {
    if value.contains(['\r', '\n']) {
        return Some(ForbiddenInHeader::LineBreak);
    }
    value
        .chars()
        .find(|&c| c.is_control() && c != '\t')
        .map(ForbiddenInHeader::Control)
}

/// A control character as people read it in an error: `a NUL character (U+0000)`.
pub fn describe_control(character: char) -> String {
    match character {
        '\0' => "a NUL character (U+0000)".into(),
        '\r' | '\n' => format!("a line break (U+{:04X})", u32::from(character)),
        other => format!("the control character U+{:04X}", u32::from(other)),
    }
}

/// A mail message: envelope, RFC 5322 content and the JSON data it was submitted with.
#[derive(Clone, Debug)]
pub struct Message {
    envelope: Envelope,
    /// Header fields, each ending in CRLF, without the empty line that ends them.
    head: Bytes,
    /// Everything after the empty line.
    body: Bytes,
    data: Option<Arc<str>>,
    /// The MIME structure as one parse read it, made on first use and shared by the copies of
    /// this message (a step works on a copy) until one of them changes its MIME content.
    view: Arc<OnceLock<body::BodyView>>,
}

/// Whether a header field of this name shapes how the body is read (its type, boundary,
/// transfer encoding, disposition): changing one makes the parsed view stale.
fn shapes_the_body(name: &str) -> bool {
    name.len() >= 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"Content-")
        || name.eq_ignore_ascii_case("MIME-Version")
}

/// Whether `address` is a plain `local@domain` a message may be sent to: something before
/// the last `@`, a dot in the domain, and nothing that would break an envelope or a header.
pub fn is_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
}

/// The longest Message-ID read: a msg-id has no folding white space inside, so it fits on
/// one line, and RFC 5322 lines end by 998 bytes. Sent copies are indexed by it, so a longer
/// one (which a client can send) must not become a key: some stores refuse long keys.
pub const MAX_MESSAGE_ID_BYTES: usize = 998;

/// A Message-ID field's value without white space and angle brackets, as both sent copies
/// and returned mail are indexed by it; none when nothing is left or it is longer than
/// [`MAX_MESSAGE_ID_BYTES`].
pub fn bare_message_id(value: &str) -> Option<String> {
    let id = value
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && id.len() <= MAX_MESSAGE_ID_BYTES).then(|| id.to_string())
}

impl Message {
    /// Reads an RFC 5322 message. Bare LF line ends are turned into CRLF, as SMTP requires.
    pub fn parse(raw: impl Into<Bytes>, envelope: Envelope) -> Result<Self, MessageError> {
        let raw = normalize_line_ends(raw.into());
        let (head, body) = split_head_body(&raw)?;
        header::validate_block(&head)?;
        Ok(Self {
            envelope,
            head,
            body,
            data: None,
            view: Arc::default(),
        })
    }

    /// Attaches the JSON `data` the message was submitted with.
    pub fn with_data(mut self, data: Option<String>) -> Self {
        self.data = data.map(Arc::from);
        self
    }

    /// The SMTP envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The submitted JSON data, if any.
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// The size in bytes of the message as it would be sent.
    pub fn size(&self) -> usize {
        self.head.len() + 2 + self.body.len()
    }

    /// The whole message, CRLF line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.size());
        raw.extend_from_slice(&self.head);
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.body);
        raw
    }

    /// The header fields, without the empty line after them.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The body: everything after the empty line.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The first field with this name (case-insensitive), unfolded and decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        header::fields(&self.head)
            .find(|field| field.is_named(name))
            .map(|field| field.decoded_value())
    }

    /// The Message-ID, without its angle brackets.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID")
            .and_then(|value| bare_message_id(&value))
    }

    /// Every field with this name, in order, unfolded and decoded.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        header::fields(&self.head)
            .filter(|field| field.is_named(name))
            .map(|field| field.decoded_value())
            .collect()
    }

    /// Every field of the message as (name, decoded value), in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        header::fields(&self.head)
            .map(|field| (field.name().to_string(), field.decoded_value()))
            .collect()
    }

    /// Replaces every field of this name with one, where the first stood (or at the end).
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), MessageError> {
        self.head = header::set(&self.head, name, value)?;
        self.forget_view_if_shaped_by(name);
        Ok(())
    }

    /// Adds a field after the existing ones.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), MessageError> {
        self.head = header::append(&self.head, name, value)?;
        self.forget_view_if_shaped_by(name);
        Ok(())
    }

    /// Puts complete, already encoded fields (each ending in CRLF, folded as they are) in
    /// front of the others: trace and signature fields go on top (RFC 5321 §4.4, RFC 6376
    /// §5.6).
    pub fn prepend_fields(&mut self, fields: &str) -> Result<(), MessageError> {
        header::validate_block(fields.as_bytes())?;
        let mut head = Vec::with_capacity(fields.len() + self.head.len());
        head.extend_from_slice(fields.as_bytes());
        head.extend_from_slice(&self.head);
        self.head = Bytes::from(head);
        if header::fields(fields.as_bytes()).any(|field| shapes_the_body(field.name())) {
            self.view = Arc::default();
        }
        Ok(())
    }

    /// Removes every field of this name.
    pub fn remove_header(&mut self, name: &str) {
        if header::fields(&self.head).any(|field| field.is_named(name)) {
            self.head = header::remove(&self.head, name);
            self.forget_view_if_shaped_by(name);
        }
    }

    /// Sends this copy to another recipient.
    pub fn set_envelope_recipient(&mut self, address: &str) -> Result<(), MessageError> {
        if !is_envelope_address(address) {
            return Err(MessageError::InvalidAddress(address.to_string()));
        }
        self.envelope.recipient = address.to_string();
        Ok(())
    }

    /// Replaces the whole content; envelope and data stay.
    pub fn set_raw(&mut self, raw: impl Into<Bytes>) -> Result<(), MessageError> {
        let replaced = Message::parse(raw, self.envelope.clone())?;
        self.head = replaced.head;
        self.body = replaced.body;
        self.view = Arc::default();
        Ok(())
    }

    /// The html body, decoded, if there is an html part.
    pub fn html(&self) -> Option<String> {
        body::alternative(self, body::Alternative::Html)
    }

    /// The plain-text body, decoded, if there is a text part.
    pub fn text(&self) -> Option<String> {
        body::alternative(self, body::Alternative::Text)
    }

    /// Sets the html body, adding an html alternative when there was none. An html part of a
    /// multipart body is replaced in place: the rest of the message stays byte for byte.
    pub fn set_html(&mut self, html: &str) -> Result<(), MessageError> {
        if body::replace_alternative_in_place(self, body::Alternative::Html, html)? {
            return Ok(());
        }
        let mut content = body::Content::read(self);
        content.html = Some(html.to_string());
        content.write_into(self)
    }

    /// Sets the plain-text body, adding a text alternative when there was none. A text part
    /// of a multipart body is replaced in place: the rest of the message stays byte for byte.
    pub fn set_text(&mut self, text: &str) -> Result<(), MessageError> {
        if body::replace_alternative_in_place(self, body::Alternative::Text, text)? {
            return Ok(());
        }
        let mut content = body::Content::read(self);
        content.text = Some(text.to_string());
        content.write_into(self)
    }

    /// The attachments and inline parts, in order.
    pub fn attachments(&self) -> Vec<AttachmentInfo> {
        body::attachment_infos(self)
    }

    /// The decoded content of attachment `index`.
    pub fn attachment_content(&self, index: usize) -> Option<Vec<u8>> {
        body::attachment_content(self, index)
    }

    /// Adds an attachment or inline part.
    pub fn add_attachment(&mut self, attachment: NewAttachment) -> Result<(), MessageError> {
        let mut content = body::Content::read(self);
        content.attachments.push(attachment);
        content.write_into(self)
    }

    /// Removes attachment `index`; false when there is none.
    pub fn remove_attachment(&mut self, index: usize) -> Result<bool, MessageError> {
        let mut content = body::Content::read(self);
        if index >= content.attachments.len() {
            return Ok(false);
        }
        content.attachments.remove(index);
        content.write_into(self)?;
        Ok(true)
    }

    fn replace_content(&mut self, head: Bytes, body: Bytes) {
        self.head = head;
        self.body = body;
        self.view = Arc::default();
    }

    /// A new body whose parsed view the caller knows (a part replaced in place).
    fn replace_body_keeping_view(&mut self, body: Bytes, view: body::BodyView) {
        self.body = body;
        self.view = Arc::new(OnceLock::from(view));
    }

    /// The MIME structure, parsed on first use and kept until the MIME content changes.
    fn view(&self) -> &body::BodyView {
        self.view.get_or_init(|| body::BodyView::read(self))
    }

    /// Drops the parsed view when a change to this field may change how the body is read.
    fn forget_view_if_shaped_by(&mut self, name: &str) {
        if shapes_the_body(name) {
            self.view = Arc::default();
        }
    }
}

/// True for `local@domain` without spaces, controls or angle brackets.
fn is_envelope_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && address.len() <= 320
        && address
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>' | ','))
}

/// Turns bare LF (and bare CR) into CRLF; returns the input untouched when it is already right.
fn normalize_line_ends(raw: Bytes) -> Bytes {
    match line_ends::to_crlf(&raw) {
        Some(fixed) => Bytes::from(fixed),
        None => raw,
    }
}

/// Splits CRLF content at the empty line that ends the header fields.
fn split_head_body(raw: &Bytes) -> Result<(Bytes, Bytes), MessageError> {
    if raw.starts_with(b"\r\n") {
        return Ok((Bytes::new(), raw.slice(2..)));
    }
    if let Some(end) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
        return Ok((raw.slice(..end + 2), raw.slice(end + 4..)));
    }
    if raw.is_empty() {
        return Err(MessageError::Malformed("the message is empty".into()));
    }
    // Header fields only, no body.
    if raw.ends_with(b"\r\n") {
        Ok((raw.clone(), Bytes::new()))
    } else {
        let mut head = raw.to_vec();
        head.extend_from_slice(b"\r\n");
        Ok((Bytes::from(head), Bytes::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            sender: "app@example.com".into(),
            recipient: "rcpt@example.net".into(),
        }
    }

    const SIMPLE: &[u8] = b"From: App <app@example.com>\r\nTo: rcpt@example.net\r\nSubject: Hello\r\n =?utf-8?q?W=C3=B6rld?=\r\n\r\nBody line\r\n";

    #[test]
    fn unchanged_message_is_byte_identical() {
        let message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        assert_eq!(message.to_bytes(), SIMPLE);
        assert_eq!(message.size(), SIMPLE.len());
    }

    #[test]
    fn a_body_a_step_writes_with_bare_line_feeds_goes_out_with_crlf() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        message.set_text("order.\r\n\n-- \nbye\rend\n").unwrap();
        message.set_html("<p>a</p>\n<p>b</p>").unwrap();
        let raw = message.to_bytes();
        for (at, byte) in raw.iter().enumerate() {
            match byte {
                b'\n' => assert_eq!(raw[at - 1], b'\r', "bare LF at {at}: {raw:?}"),
                b'\r' => assert_eq!(raw[at + 1], b'\n', "bare CR at {at}: {raw:?}"),
                _ => {}
            }
        }
        assert_eq!(
            message.text().as_deref(),
            Some("order.\r\n\r\n-- \r\nbye\r\nend\r\n")
        );
    }

    #[test]
    fn the_message_id_is_read_without_brackets() {
        let raw = b"Message-ID:\r\n <abc@shop.example> \r\nSubject: x\r\n\r\nbody";
        let message = Message::parse(Bytes::from_static(raw), envelope()).unwrap();
        assert_eq!(message.message_id().as_deref(), Some("abc@shop.example"));
        let message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        assert_eq!(message.message_id(), None);
        assert_eq!(bare_message_id(" <> "), None);
        let longest = format!("{}@shop.example", "a".repeat(MAX_MESSAGE_ID_BYTES - 13));
        assert_eq!(
            bare_message_id(&format!("<{longest}>")),
            Some(longest.clone())
        );
        let raw = format!("Message-ID: <a{longest}>\r\nSubject: x\r\n\r\nbody");
        let message = Message::parse(Bytes::from(raw), envelope()).unwrap();
        assert_eq!(message.message_id(), None, "one byte too long");
    }

    #[test]
    fn headers_are_unfolded_and_decoded() {
        let message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        assert_eq!(message.header("subject").as_deref(), Some("Hello Wörld"));
        assert_eq!(message.header("X-Missing"), None);
    }

    #[test]
    fn set_header_replaces_in_place_and_leaves_body() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        message.set_header("Subject", "Changed").unwrap();
        assert_eq!(
            message.to_bytes(),
            b"From: App <app@example.com>\r\nTo: rcpt@example.net\r\nSubject: Changed\r\n\r\nBody line\r\n"
        );
    }

    #[test]
    fn non_ascii_values_are_encoded() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        message.set_header("Subject", "Grüße aus Köln").unwrap();
        let head = String::from_utf8(message.head().to_vec()).unwrap();
        assert!(head.is_ascii(), "{head}");
        assert_eq!(message.header("Subject").as_deref(), Some("Grüße aus Köln"));
    }

    #[test]
    fn line_breaks_in_values_are_refused() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        let error = message.set_header("X-Note", "a\r\nBcc: x@y").unwrap_err();
        assert_eq!(
            error,
            MessageError::HeaderInjection {
                name: "X-Note".into()
            }
        );
        assert!(matches!(
            message.set_header("Bad Name", "x"),
            Err(MessageError::InvalidHeaderName(_))
        ));
        assert_eq!(message.to_bytes(), SIMPLE);
    }

    #[test]
    fn a_nul_or_control_character_in_a_value_is_refused_as_such() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        let error = message.set_header("X-Note", "a\0b").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("NUL") && !text.contains("CR or LF"), "{text}");
        let error = message.append_header("X-Note", "a\u{1b}b").unwrap_err();
        assert!(error.to_string().contains("U+001B"), "{error}");
        let error = message.set_header("X-Note", "a\u{85}b").unwrap_err();
        assert!(error.to_string().contains("U+0085"), "{error}");
        assert_eq!(message.to_bytes(), SIMPLE);
        message.set_header("X-Note", "tab\tis fine").unwrap();
        assert_eq!(message.header("X-Note").as_deref(), Some("tab\tis fine"));
    }

    #[test]
    fn raw_content_with_control_characters_in_a_header_is_refused() {
        for raw in [
            &b"Subject: a\0b\r\n\r\nbody"[..],
            b"Subject: ok\r\nX-Note: one\r\n two\x01\r\n\r\nbody",
            b"Subject: a\x7fb\r\n\r\nbody",
        ] {
            let error = Message::parse(raw, envelope()).unwrap_err();
            assert!(
                !error.to_string().contains("CR or LF"),
                "{error} for {raw:?}"
            );
            let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
            assert!(message.set_raw(raw).is_err(), "{raw:?}");
            assert_eq!(message.to_bytes(), SIMPLE);
        }
        let error = Message::parse(&b"Subject: a\0b\r\n\r\nbody"[..], envelope()).unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
        // Folding, tabs, 8-bit text and control bytes in the body stay allowed.
        let raw = "Subject: one\r\n two\r\nX-Name: Jörg\tMüller\r\n\r\nbody \0 \x1b\r\n";
        let message = Message::parse(raw.as_bytes().to_vec(), envelope()).unwrap();
        assert_eq!(message.header("Subject").as_deref(), Some("one two"));
        assert_eq!(message.to_bytes(), raw.as_bytes());
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        let message = Message::parse(&b"Subject: x\n\nbody\n"[..], envelope()).unwrap();
        assert_eq!(message.to_bytes(), b"Subject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn setting_html_on_a_text_message_adds_an_alternative() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        assert_eq!(message.html(), None);
        message.set_html("<p>Hi</p>").unwrap();
        assert_eq!(message.html().as_deref(), Some("<p>Hi</p>"));
        assert_eq!(message.text().as_deref(), Some("Body line\r\n"));
        assert_eq!(message.header("Subject").as_deref(), Some("Hello Wörld"));
        let reparsed = Message::parse(message.to_bytes(), envelope()).unwrap();
        assert_eq!(reparsed.html().as_deref(), Some("<p>Hi</p>"));
    }

    #[test]
    fn attachments_can_be_added_read_and_removed() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        message
            .add_attachment(NewAttachment {
                filename: "report.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.4 test".to_vec(),
                inline: false,
                content_id: None,
            })
            .unwrap();
        let infos = message.attachments();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].filename.as_deref(), Some("report.pdf"));
        assert_eq!(infos[0].content_type, "application/pdf");
        assert_eq!(infos[0].size, 13);
        assert_eq!(
            message.attachment_content(0).as_deref(),
            Some(&b"%PDF-1.4 test"[..])
        );
        assert!(message.remove_attachment(0).unwrap());
        assert!(!message.remove_attachment(0).unwrap());
        assert!(message.attachments().is_empty());
        assert_eq!(message.text().as_deref(), Some("Body line\r\n"));
    }

    /// A newsletter as applications send it: text and html alternatives in a mixed body with
    /// a PDF attachment, the attachment's base64 folded at 60 columns (not at mail-builder's
    /// 76), so a re-assembled body would show in its bytes.
    fn newsletter_with_attachment() -> Vec<u8> {
        let pdf: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pdf);
        let folded: Vec<&str> = encoded
            .as_bytes()
            .chunks(60)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "From: Shop <news@shop.example>\r\nTo: ann@example.net\r\nSubject: Winter\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
             Preamble.\r\n--outer\r\n\
             Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
             --inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello Ann\r\n\
             --inner\r\nContent-Type: text/html; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>Hello Ann, caf=E9</p>\r\n\
             --inner--\r\n\
             --outer\r\nContent-Type: application/pdf; name=\"winter.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"winter.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--outer--\r\nEpilogue.\r\n",
            folded.join("\r\n")
        )
        .into_bytes()
    }

    /// The bytes of `raw` from the first occurrence of `from` on.
    fn from_marker<'a>(raw: &'a [u8], from: &str) -> &'a [u8] {
        let at = raw
            .windows(from.len())
            .position(|window| window == from.as_bytes())
            .unwrap_or_else(|| panic!("{from:?} in the message"));
        &raw[at..]
    }

    #[test]
    fn setting_html_and_text_leaves_the_other_parts_byte_for_byte() {
        let original = newsletter_with_attachment();
        let mut message = Message::parse(original.clone(), envelope()).unwrap();
        let attachment = message.attachment_content(0).unwrap();
        // What the template and tracking steps do: both alternatives set, html twice, with
        // lines long enough and characters outside ASCII, so they are encoded.
        let html = format!("<p>Hello Ann, café</p>\n<p>{}</p>\n", "x".repeat(300));
        message.set_html(&html).unwrap();
        message.set_text("Hello Ann\nSee you.\n").unwrap();
        let tracked = html.replace("Hello", "Hi");
        message.set_html(&tracked).unwrap();

        let raw = message.to_bytes();
        // The head, the preamble and the alternatives' opening are the original bytes ...
        let inner = b"--inner\r\n";
        let prefix = original
            .windows(inner.len())
            .position(|w| w == inner)
            .unwrap();
        assert_eq!(raw[..prefix], original[..prefix]);
        // ... and so is everything after the alternatives: the attachment's part with its
        // 60-column base64, the closing boundary and the epilogue.
        assert_eq!(
            from_marker(&raw, "--inner--"),
            from_marker(&original, "--inner--")
        );
        // What was set reads back, through this parser and after a fresh parse.
        let reparsed = Message::parse(raw, envelope()).unwrap();
        for read in [&message, &reparsed] {
            assert_eq!(
                read.html().as_deref(),
                Some(tracked.replace('\n', "\r\n").as_str())
            );
            assert_eq!(read.text().as_deref(), Some("Hello Ann\r\nSee you.\r\n"));
            assert_eq!(read.attachment_content(0).as_ref(), Some(&attachment));
            assert_eq!(read.header("Subject").as_deref(), Some("Winter"));
        }
    }

    #[test]
    fn a_replaced_alternative_keeps_its_trailing_line_break_or_its_absence() {
        for content in [
            "no line break at the end",
            "one at the end\r\n",
            "two\r\n\r\n",
        ] {
            let mut message = Message::parse(newsletter_with_attachment(), envelope()).unwrap();
            message.set_text(content).unwrap();
            let reparsed = Message::parse(message.to_bytes(), envelope()).unwrap();
            assert_eq!(reparsed.text().as_deref(), Some(content), "{content:?}");
            assert_eq!(
                reparsed.html().as_deref(),
                Some("<p>Hello Ann, café</p>"),
                "{content:?}"
            );
        }
    }

    /// The view a message carries is the one a fresh parse of its bytes gives.
    fn assert_view_is_fresh(message: &Message, what: &str) {
        let reparsed = Message::parse(message.to_bytes(), envelope()).unwrap();
        assert_eq!(message.view(), reparsed.view(), "{what}");
        assert_eq!(
            message.view(),
            &body::BodyView::read(message),
            "{what}: the same bytes read afresh"
        );
    }

    #[test]
    fn a_view_carried_across_in_place_edits_is_what_a_fresh_parse_reads() {
        let contents = [
            "",
            "one line",
            "two\r\n\r\n",
            "café, 8-bit and a long line: ",
            "-- \nsignature line\n",
            "=3D and = signs, trailing spaces   \n\ttab\n",
            "\u{0}nul and \u{1b} escape",
        ];
        for (round, content) in contents.iter().enumerate() {
            let long = format!("{content}{}", "x".repeat(round * 70));
            let mut message = Message::parse(newsletter_with_attachment(), envelope()).unwrap();
            message.html();
            message.set_html(&format!("<p>{long}</p>")).unwrap();
            assert_view_is_fresh(&message, &format!("html {content:?}"));
            message.set_text(&long).unwrap();
            assert_view_is_fresh(&message, &format!("text {content:?}"));
            message.set_header("Subject", "Changed").unwrap();
            message.set_html(&long).unwrap();
            assert_view_is_fresh(&message, &format!("html again {content:?}"));
            message.prepend_fields("DKIM-Signature: v=1\r\n").unwrap();
            assert_view_is_fresh(&message, &format!("signed {content:?}"));
        }
    }

    #[test]
    fn content_holding_a_boundary_line_is_reassembled_not_spliced() {
        let original = newsletter_with_attachment();
        let mut message = Message::parse(original.clone(), envelope()).unwrap();
        let attachment = message.attachment_content(0).unwrap();
        // Written in place with the message's boundaries, these lines would end the part
        // (and with it the alternatives) early for whoever reads the message next.
        for content in ["a\n--inner--\nb", "a\n--OUTER\nb"] {
            message.set_text(content).unwrap();
            let reparsed = Message::parse(message.to_bytes(), envelope()).unwrap();
            assert_eq!(
                reparsed.text().as_deref(),
                Some(content.replace('\n', "\r\n").as_str())
            );
            assert_eq!(reparsed.html().as_deref(), Some("<p>Hello Ann, café</p>"));
            assert_eq!(reparsed.attachment_content(0), Some(attachment.clone()));
            assert_view_is_fresh(&message, content);
        }
    }

    #[test]
    fn a_copy_that_changes_leaves_the_original_and_its_view_as_they_were() {
        let original = Message::parse(newsletter_with_attachment(), envelope()).unwrap();
        let html = original.html();
        let view = Arc::clone(&original.view);
        // What a step's draft is: a copy, changed, then thrown away when the step fails.
        let mut copy = original.clone();
        copy.set_html("<p>changed</p>").unwrap();
        copy.set_text("changed").unwrap();
        assert_eq!(copy.html().as_deref(), Some("<p>changed</p>"));
        assert!(
            Arc::ptr_eq(&view, &original.view),
            "the original's view was replaced"
        );
        assert_eq!(original.html(), html);
        assert_eq!(original.text().as_deref(), Some("Hello Ann"));
        assert_eq!(original.to_bytes(), newsletter_with_attachment());
    }

    #[test]
    fn a_change_to_a_mime_field_makes_the_view_read_afresh() {
        let mut message = Message::parse(newsletter_with_attachment(), envelope()).unwrap();
        assert!(message.html().is_some());
        // The whole body becomes one plain text part: no html any more, no attachment.
        message.set_header("content-type", "text/plain").unwrap();
        assert_eq!(message.html(), None);
        assert!(message.attachments().is_empty());
        assert_view_is_fresh(&message, "content-type set");
        message.remove_header("Content-Type");
        assert_view_is_fresh(&message, "content-type removed");
        let mut message = Message::parse(newsletter_with_attachment(), envelope()).unwrap();
        message.attachments();
        message.append_header("X-Mailer", "test").unwrap();
        assert_eq!(message.attachments().len(), 1);
        assert_view_is_fresh(&message, "unrelated field appended");
    }

    #[test]
    fn envelope_addresses_are_checked() {
        let mut message = Message::parse(Bytes::from_static(SIMPLE), envelope()).unwrap();
        message.set_envelope_recipient("other@example.org").unwrap();
        assert_eq!(message.envelope().recipient, "other@example.org");
        assert!(
            message
                .set_envelope_recipient("a@b>\r\nRCPT TO:<c@d")
                .is_err()
        );
        assert!(message.set_envelope_recipient("no-at-sign").is_err());
    }
}
