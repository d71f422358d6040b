//! Reading a server's reply (RFC 5321 §4.2.1): its lines, its code, the RFC 3463 enhanced
//! status code, and the bounds that keep a hostile server from making us allocate without end.
//!
//! The parser is our own rather than smtp-proto's `ResponseReceiver` (0.2.5, already a
//! dependency), because on the same inputs that one
//! - saturates each part of an enhanced code at 255 (`u8`): Microsoft's `451 4.7.650` reads as
//!   4.7.255, and bounce handling needs the real detail;
//! - takes what RFC 5321 forbids and broken or hostile servers send: a code that changes from
//!   one line to the next, codes outside 2xx–5xx (`650`, `099`), an enhanced class that
//!   contradicts the reply code (`550 4.1.1`), and keeps control characters in the text that
//!   ends up in logs and events;
//! - bounds only the text: each empty continuation line (`250-\r\n`) still adds two bytes, so
//!   a server streaming them until the reply timeout makes it hold 32 MB after 57 MB sent.
//!
//! A layer fixing all three would frame lines, check codes and parse enhanced codes itself,
//! which is all this parser does. smtp-proto's is faster (about 100 ns against 340 ns for a
//! typical reply, measured in release mode), a difference a network round trip per reply hides.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest reply line accepted. RFC 5321 allows 512 bytes, but real servers send longer texts;
/// the cap only keeps a hostile server from growing our buffer without end.
pub(super) const MAX_LINE: usize = 4096;
/// Most lines accepted in one reply, for the same reason.
const MAX_LINES: usize = 100;
/// Most bytes taken from the connection in one read.
const READ_CHUNK: usize = 4096;

/// A server's reply: the code, the RFC 3463 enhanced status code when the first line has one,
/// and the text (lines joined with `\n`, without codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (class, subject, detail), e.g. `(5, 1, 1)`.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of every line, joined with `\n`.
    pub text: String,
}

impl Reply {
    /// Parses a whole reply, one or more lines ending in CRLF or LF.
    pub fn parse(raw: &[u8]) -> Result<Reply, String> {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let mut parser = ReplyParser::default();
        let mut lines = raw.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let last = parser.push(line)?;
            match (last, lines.peek().is_some()) {
                (true, false) => return Ok(parser.finish()),
                (true, true) => return Err("text after the last line of the reply".into()),
                (false, _) => {}
            }
        }
        Err("the reply has no last line".into())
    }

    /// Whether the code is 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether the code is 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Whether the code is 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The lines of text.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n')
    }
}

impl fmt::Display for Reply {
    /// One line, e.g. `550 5.1.1 user unknown`, the lines of a multi-line reply joined by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((class, subject, detail)) = self.enhanced {
            write!(f, " {class}.{subject}.{detail}")?;
        }
        for line in self.lines().filter(|line| !line.is_empty()) {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// Builds a reply line by line, checking each as it comes.
#[derive(Default)]
struct ReplyParser {
    code: Option<u16>,
    enhanced: Option<(u8, u16, u16)>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes one line without its line ending; true when it was the last line of the reply.
    fn push(&mut self, line: &[u8]) -> Result<bool, String> {
        if self.lines.len() >= MAX_LINES {
            return Err(format!("more than {MAX_LINES} lines in one reply"));
        }
        if line.len() > MAX_LINE {
            return Err(format!("a reply line longer than {MAX_LINE} bytes"));
        }
        let code = match line.get(..3) {
            Some(digits @ [b'2'..=b'5', b'0'..=b'9', b'0'..=b'9']) => digits
                .iter()
                .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0')),
            _ => return Err(format!("not a reply line: {:?}", printable(line))),
        };
        if self.code.is_some_and(|first| first != code) {
            return Err(format!(
                "reply code changes within a reply: {:?}",
                printable(line)
            ));
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(format!("not a reply line: {:?}", printable(line))),
        };
        let mut text = printable(text);
        if self.code.is_none() {
            self.code = Some(code);
            if let Some((enhanced, rest)) = split_enhanced(&text, code) {
                self.enhanced = Some(enhanced);
                text = rest.to_string();
            }
        } else if let Some((enhanced, rest)) = split_enhanced(&text, code) {
            // Servers repeat the enhanced code on every line; it says nothing new.
            if Some(enhanced) == self.enhanced {
                text = rest.to_string();
            }
        }
        self.lines.push(text.trim_end().to_string());
        Ok(last)
    }

    fn finish(self) -> Reply {
        Reply {
            code: self.code.unwrap_or_default(),
            enhanced: self.enhanced,
            text: self.lines.join("\n"),
        }
    }
}

/// Splits an RFC 3463 status code (`class.subject.detail`, each 1–3 digits, the class matching
/// the reply's first digit) off the start of a reply text.
fn split_enhanced(text: &str, code: u16) -> Option<((u8, u16, u16), &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let mut parts = text[..end].split('.');
    let mut number = |max_digits: usize| -> Option<u16> {
        let part = parts.next()?;
        let valid =
            (1..=max_digits).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| part.parse().ok()).flatten()
    };
    let class = number(1)?;
    let subject = number(3)?;
    let detail = number(3)?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || class != code / 100 {
        return None;
    }
    Some(((class as u8, subject, detail), text[end..].trim_start()))
}

/// Reply text as a string fit for logs and events: invalid UTF-8 and control characters
/// replaced, since the server controls these bytes.
pub(super) fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Why no reply could be read; the dialogue is out of step after any of them.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Reading from the connection failed.
    Io(std::io::Error),
    /// The server closed the connection before the reply was complete.
    Closed,
    /// A line grew past [`MAX_LINE`] without ending.
    LineTooLong,
    /// The bytes are not a reply.
    Malformed(String),
}

/// Reads replies off a connection, keeping what arrives after one reply for the next:
/// pipelined replies often come in one packet.
#[derive(Default)]
pub(super) struct ReplyReader {
    /// Bytes read but not yet consumed as reply lines.
    buffer: Vec<u8>,
}

impl ReplyReader {
    /// Reads one whole reply. It waits as long as the server sends nothing, so the caller
    /// bounds it with a timeout; memory is bounded by [`MAX_LINE`] and the line count.
    pub(super) async fn read(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
    ) -> Result<Reply, ReadError> {
        let mut parser = ReplyParser::default();
        loop {
            let line = self.read_line(stream).await?;
            if parser.push(&line).map_err(ReadError::Malformed)? {
                return Ok(parser.finish());
            }
        }
    }

    /// Whether the server sent bytes that no reply has consumed yet.
    pub(super) fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Forgets the bytes not yet consumed, once the connection they came from is gone.
    pub(super) fn clear(&mut self) {
        self.buffer.clear();
    }

    /// One line without its CRLF (or bare LF).
    async fn read_line(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
    ) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            // Room for the CR of a line at the limit whose LF has not arrived yet: whether a
            // line is too long must not depend on where the network split it.
            if self.buffer.len() > MAX_LINE + 1 {
                return Err(ReadError::LineTooLong);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let read = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
            if read == 0 {
                return Err(ReadError::Closed);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::io::{AsyncWriteExt, ReadBuf};

    use super::*;

    /// Hands out its bytes one at a time, as a network that splits every segment would.
    struct Trickle(VecDeque<u8>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(byte) = self.0.pop_front() {
                buf.put_slice(&[byte]);
            }
            Poll::Ready(Ok(()))
        }
    }

    fn trickle(bytes: &[u8]) -> Trickle {
        Trickle(bytes.iter().copied().collect())
    }

    #[test]
    fn single_line_reply_with_enhanced_code() {
        let reply = Reply::parse(b"550 5.1.1 user unknown\r\n").unwrap();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.enhanced, Some((5, 1, 1)));
        assert_eq!(reply.text, "user unknown");
        assert_eq!(reply.to_string(), "550 5.1.1 user unknown");
        assert!(reply.is_permanent());
    }

    #[test]
    fn multi_line_reply_joins_lines_and_drops_repeated_codes() {
        let reply =
            Reply::parse(b"452-4.2.2 mailbox full\r\n452-4.2.2 try later\r\n452 4.2.2 bye\r\n")
                .unwrap();
        assert_eq!(reply.code, 452);
        assert_eq!(reply.enhanced, Some((4, 2, 2)));
        assert_eq!(reply.text, "mailbox full\ntry later\nbye");
        assert_eq!(reply.to_string(), "452 4.2.2 mailbox full try later bye");
        assert!(reply.is_transient());
    }

    #[test]
    fn bare_lf_and_bare_code_lines_are_tolerated() {
        let reply = Reply::parse(b"250-mx.example\n250-PIPELINING\n250\n").unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.text, "mx.example\nPIPELINING\n");
        assert_eq!(reply.to_string(), "250 mx.example PIPELINING");
    }

    #[test]
    fn enhanced_code_must_be_well_formed_and_match_the_class() {
        type Case = (&'static [u8], Option<(u8, u16, u16)>, &'static str);
        let cases: &[Case] = &[
            (b"250 2.0.0 ok", Some((2, 0, 0)), "ok"),
            (b"550 5.7.123 blocked", Some((5, 7, 123)), "blocked"),
            (b"250 2.0.0", Some((2, 0, 0)), ""),
            (b"550 4.1.1 class differs", None, "4.1.1 class differs"),
            (b"550 5.1 too short", None, "5.1 too short"),
            (b"550 5.1.1.1 too long", None, "5.1.1.1 too long"),
            (
                b"550 5.1.1234 detail too long",
                None,
                "5.1.1234 detail too long",
            ),
            (b"550 5.a.1 not digits", None, "5.a.1 not digits"),
            (b"220 mx.example ESMTP", None, "mx.example ESMTP"),
        ];
        for (raw, enhanced, text) in cases {
            let reply = Reply::parse(raw).unwrap();
            assert_eq!(
                reply.enhanced,
                *enhanced,
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(reply.text, *text);
        }
    }

    #[test]
    fn malformed_replies_are_refused() {
        for raw in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"650 nope\r\n",
            b"250x no separator\r\n",
            b"250-first\r\n251 different code\r\n",
            b"250-never ends\r\n",
            b"250 one\r\n250 two\r\n",
        ] {
            assert!(
                Reply::parse(raw).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE));
        assert!(Reply::parse(long.as_bytes()).is_err());
        let many = "250-x\r\n".repeat(MAX_LINES) + "250 x\r\n";
        assert!(Reply::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn control_characters_do_not_reach_the_text() {
        let reply = Reply::parse(b"550 bad\x1b[31m\xff text\r\n").unwrap();
        assert!(!reply.text.chars().any(char::is_control));
    }

    #[tokio::test]
    async fn a_reply_split_across_reads_reads_as_one() {
        let raw =
            b"250-mx.example says hi\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 2.0.0 SMTPUTF8\r\n";
        let mut reader = ReplyReader::default();
        let reply = reader.read(&mut trickle(raw)).await.unwrap();
        assert_eq!(reply, Reply::parse(raw).unwrap());
        assert_eq!(
            reply.text,
            "mx.example says hi\nPIPELINING\nSIZE 1000\n2.0.0 SMTPUTF8"
        );
        assert!(!reader.has_buffered());
    }

    #[tokio::test]
    async fn pipelined_replies_in_one_read_are_kept_apart() {
        let mut stream = &b"250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r\n"[..];
        let mut reader = ReplyReader::default();
        let first = reader.read(&mut stream).await.unwrap();
        assert_eq!((first.code, first.text.as_str()), (250, "ok"));
        assert!(reader.has_buffered());
        let second = reader.read(&mut stream).await.unwrap();
        assert_eq!((second.code, second.text.as_str()), (550, "no\nsuch user"));
        let third = reader.read(&mut stream).await.unwrap();
        assert_eq!((third.code, third.text.as_str()), (354, "go"));
        assert!(!reader.has_buffered());
        assert!(matches!(
            reader.read(&mut stream).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_reply_without_its_line_end_is_not_taken() {
        for raw in [&b"250 ok"[..], b"250-ok\r\n250 and then", b"250 ok\r"] {
            let closed = ReplyReader::default().read(&mut trickle(raw)).await;
            assert!(matches!(closed, Err(ReadError::Closed)), "{closed:?}");
        }

        // A server that goes quiet mid-line keeps the read waiting, not spinning: the session's
        // timeout ends it.
        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(b"250 ok").await.unwrap();
        let mut reader = ReplyReader::default();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), reader.read(&mut client)).await;
        assert!(waiting.is_err());
        drop(server);
    }

    #[tokio::test]
    async fn an_endless_line_is_cut_off() {
        let mut endless = b"250 ".to_vec();
        endless.resize(1 << 20, b'x');
        let mut stream = &endless[..];
        let mut reader = ReplyReader::default();
        let failure = reader.read(&mut stream).await;
        assert!(
            matches!(failure, Err(ReadError::LineTooLong)),
            "{failure:?}"
        );
        let taken = endless.len() - stream.len();
        assert!(taken <= MAX_LINE + 1 + READ_CHUNK, "{taken} bytes read");
        assert!(reader.buffer.len() <= MAX_LINE + 1 + READ_CHUNK);

        // A bare CR does not end a line either.
        let endless = "250 x\r".repeat(1 << 16);
        let failure = reader.read(&mut endless.as_bytes()).await;
        assert!(
            matches!(failure, Err(ReadError::LineTooLong)),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn an_endless_reply_is_cut_off() {
        // Empty continuation lines carry no text, so a cap on text alone would not stop them.
        for line in [
            "250-\r\n",
            "250-\n",
            &format!("250-{}\r\n", "x".repeat(MAX_LINE - 4)),
        ] {
            let endless = line.repeat(MAX_LINES * 10);
            let mut stream = endless.as_bytes();
            let mut reader = ReplyReader::default();
            let failure = reader.read(&mut stream).await;
            assert!(
                matches!(&failure, Err(ReadError::Malformed(why)) if why.contains("lines")),
                "{failure:?}"
            );
            let taken = endless.len() - stream.len();
            assert!(
                taken <= (MAX_LINES + 1) * line.len() + READ_CHUNK,
                "{taken} bytes read"
            );
        }

        // The largest reply allowed is read whole, however the network splits it.
        let largest = format!("250-{}\r\n", "x".repeat(MAX_LINE - 4)).repeat(MAX_LINES - 1)
            + format!("250 {}\r\n", "y".repeat(MAX_LINE - 4)).as_str();
        let bulk = ReplyReader::default().read(&mut largest.as_bytes()).await;
        let trickled = ReplyReader::default()
            .read(&mut trickle(largest.as_bytes()))
            .await;
        for reply in [bulk, trickled] {
            let reply = match reply {
                Ok(reply) => reply,
                Err(err) => panic!("{err:?}"),
            };
            assert_eq!(reply.lines().count(), MAX_LINES);
        }
    }

    #[test]
    fn wrong_codes_in_continuation_lines_are_refused() {
        for raw in [
            &b"250-first\r\n550 second\r\n"[..],
            b"250-first\r\n25 short\r\n",
            b"250-first\r\n2500 long\r\n",
            b"250-first\r\nno code\r\n",
            b"250-first\r\n\r\n250 last\r\n",
            b"250-first\r\n250_last\r\n",
            "250-first\r\n2\u{FF15}0 wide digit\r\n".as_bytes(),
            b"550-5.1.1 first\r\n450 4.1.1 second\r\n",
        ] {
            let parsed = Reply::parse(raw);
            assert!(
                parsed.is_err(),
                "{}: {parsed:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn non_ascii_text_is_kept_and_invalid_bytes_replaced() {
        let text = "Zugriff verweigert – Grüße, 你好";
        let reply = Reply::parse(format!("550 5.7.1 {text}\r\n").as_bytes()).unwrap();
        assert_eq!(reply.enhanced, Some((5, 7, 1)));
        assert_eq!(reply.text, text);

        let reply = Reply::parse(b"550 caf\xc3 \xff\xfe\r\n").unwrap();
        assert_eq!(reply.text, "caf\u{FFFD} \u{FFFD}\u{FFFD}");

        // Unicode line breaks and other controls become spaces, so a reply stays one log line.
        let reply = Reply::parse("550 a\u{85}b\u{2028}c\u{0}d\r\n".as_bytes()).unwrap();
        assert!(
            !reply.text.chars().any(char::is_control),
            "{:?}",
            reply.text
        );

        // Digits are ASCII digits only, in the code and in the enhanced code.
        assert!(Reply::parse("\u{FF12}50 ok\r\n".as_bytes()).is_err());
        let reply = Reply::parse("550 \u{FF15}.1.1 wide\r\n".as_bytes()).unwrap();
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.text, "\u{FF15}.1.1 wide");
    }

    #[test]
    fn three_digit_enhanced_details_are_kept_whole() {
        // Microsoft's rate limiting and reputation codes; a u8 per part would lose them.
        let reply = Reply::parse(b"451 4.7.650 The mail server has been rate limited\r\n").unwrap();
        assert_eq!(reply.enhanced, Some((4, 7, 650)));
        let reply = Reply::parse(b"550 5.7.708 Service unavailable\r\n").unwrap();
        assert_eq!(reply.enhanced, Some((5, 7, 708)));
        assert_eq!(reply.to_string(), "550 5.7.708 Service unavailable");
    }
}
