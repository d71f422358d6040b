//! A text part written anew (RFC 2045): its Content-Type and Content-Transfer-Encoding
//! fields, and its content in the encoding that suits it.
//!
//! Every message a template or tracking step rewrites has its html (and often text) part
//! written here, about 50 KB a message, so the content is copied in runs, not byte by byte:
//! a line of plain ASCII goes out as one slice, and only the bytes that need it are escaped.

/// The longest encoded line (RFC 2045 §6.7 (5)), a soft line break's `=` included.
const MAX_LINE: usize = 76;

/// How a text part's content is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// As it is: ASCII in lines short enough, no white space before a line end.
    SevenBit,
    /// Quoted-printable: mostly ASCII, but long lines or some bytes that need escaping.
    QuotedPrintable,
    /// Base64: so much to escape that quoted-printable would be longer.
    Base64,
}

/// Writes a part of `media_type` (`text/html`, `text/plain`) holding `content`, whose lines
/// end with CRLF: the header fields, the empty line and the encoded content.
pub(super) fn write(media_type: &str, content: &str, out: &mut Vec<u8>) {
    let content = content.as_bytes();
    let encoding = choose(content);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(media_type.as_bytes());
    out.extend_from_slice(b"; charset=\"utf-8\"\r\nContent-Transfer-Encoding: ");
    out.extend_from_slice(match encoding {
        Encoding::SevenBit => b"7bit\r\n\r\n".as_slice(),
        Encoding::QuotedPrintable => b"quoted-printable\r\n\r\n",
        Encoding::Base64 => b"base64\r\n\r\n",
    });
    match encoding {
        Encoding::SevenBit => out.extend_from_slice(content),
        Encoding::QuotedPrintable => quoted_printable(content, out),
        Encoding::Base64 => base64_lines(content, out),
    }
}

/// Whether a byte may stand for itself in quoted-printable (RFC 2045 §6.7 (2)), white space
/// included: that it must not end a line is checked where lines end.
const LITERAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 33;
    while byte <= 126 {
        table[byte] = byte != b'=' as usize;
        byte += 1;
    }
    table[b' ' as usize] = true;
    table[b'\t' as usize] = true;
    table
};

/// The encoding for `content`: 7bit when every line may go as it is (ASCII without controls,
/// short enough, no white space before its end), else the shorter of quoted-printable and
/// base64.
fn choose(content: &[u8]) -> Encoding {
    let mut escaped = 0usize;
    let mut as_it_is = true;
    for (line, _) in super::line_ends::lines(content) {
        let line_escapes = line.iter().filter(|&&byte| !LITERAL[byte as usize]).count();
        let ends_in_space = line
            .last()
            .is_some_and(|&byte| byte == b' ' || byte == b'\t');
        // `=` needs escaping in quoted-printable but is plain in 7bit.
        let equals = line.iter().filter(|&&byte| byte == b'=').count();
        as_it_is &= line.len() <= MAX_LINE && line_escapes == equals && !ends_in_space;
        escaped += line_escapes + usize::from(ends_in_space);
    }
    if as_it_is {
        return Encoding::SevenBit;
    }
    // Each escaped byte takes three; soft line breaks add about three per line's worth.
    let quoted_printable = content.len() + 2 * escaped + 3 * (content.len() / (MAX_LINE - 1));
    let base64 = content.len().div_ceil(3) * 4 * (MAX_LINE + 2) / MAX_LINE;
    if quoted_printable <= base64 {
        Encoding::QuotedPrintable
    } else {
        Encoding::Base64
    }
}

/// Quoted-printable of CRLF-ended `content`: each line encoded on its own, hard line breaks
/// kept as CRLF, soft breaks (`=` CRLF) so no encoded line is longer than [`MAX_LINE`].
fn quoted_printable(content: &[u8], out: &mut Vec<u8>) {
    out.reserve(content.len() + content.len() / 16);
    for (line, ended) in super::line_ends::lines(content) {
        quoted_printable_line(line, out);
        if ended {
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn quoted_printable_line(line: &[u8], out: &mut Vec<u8>) {
    // White space that ends a line is escaped, or a receiver may strip it.
    let (body, last) = match line.split_last() {
        Some((&last, body)) if last == b' ' || last == b'\t' => (body, Some(last)),
        _ => (line, None),
    };
    let mut column = 0;
    let mut rest = body;
    while !rest.is_empty() {
        // The longest run that fits on this encoded line and needs no escaping goes out as
        // one copy. A line's final run may use the last column; any other leaves it for `=`.
        let room = MAX_LINE - 1 - column;
        let fits_whole = rest.len() <= MAX_LINE - column && last.is_none();
        let take = if fits_whole {
            rest.len()
        } else {
            rest.len().min(room)
        };
        let run = rest[..take]
            .iter()
            .position(|&byte| !LITERAL[byte as usize])
            .unwrap_or(take);
        out.extend_from_slice(&rest[..run]);
        column += run;
        rest = &rest[run..];
        let Some(&byte) = rest.first() else {
            break;
        };
        if LITERAL[byte as usize] {
            // The run filled the line: break it softly and go on.
            out.extend_from_slice(b"=\r\n");
            column = 0;
            continue;
        }
        let is_final = rest.len() == 1 && last.is_none();
        let limit = if is_final { MAX_LINE } else { MAX_LINE - 1 };
        if column + 3 > limit {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        escape(byte, out);
        column += 3;
        rest = &rest[1..];
    }
    if let Some(last) = last {
        if column + 3 > MAX_LINE {
            out.extend_from_slice(b"=\r\n");
        }
        escape(last, out);
    }
}

fn escape(byte: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'=', HEX[(byte >> 4) as usize], HEX[(byte & 0x0f) as usize]]);
}

/// Base64 of `content` in lines of [`MAX_LINE`] characters, each ended with CRLF.
fn base64_lines(content: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let mut line = [0u8; MAX_LINE];
    // 57 bytes encode to one full line of 76 characters.
    for chunk in content.chunks(MAX_LINE / 4 * 3) {
        let length = base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut line)
            .expect("57 bytes fit a line of 76");
        out.extend_from_slice(&line[..length]);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    /// What a receiver reads from the part: its content, decoded by an independent parser.
    fn decoded(part: &[u8]) -> String {
        let message = MessageParser::default().parse(part).expect("a part parses");
        String::from_utf8(message.root_part().contents().to_vec()).expect("UTF-8 content")
    }

    fn written(media_type: &str, content: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write(media_type, content, &mut out);
        out
    }

    fn encoded_lines(part: &[u8]) -> Vec<&[u8]> {
        let at = memchr::memmem::find(part, b"\r\n\r\n").unwrap() + 4;
        part[at..].split(|&byte| byte == b'\n').collect()
    }

    #[test]
    fn each_kind_of_content_gets_its_encoding_and_reads_back_as_it_was() {
        let long_ascii = format!(
            "<p>{}</p>\r\n<a href=\"https://shop.example/{}\">x</a>\r\n",
            "word ".repeat(60),
            "path/".repeat(40)
        );
        let cases = [
            ("short lines\r\nof ascii\r\n", "7bit"),
            (long_ascii.as_str(), "quoted-printable"),
            (
                "caf\u{e9} cr\u{e8}me = 1 \r\nends, after a longer line of plain words, in a tab\t",
                "quoted-printable",
            ),
            (
                "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{6587}\u{7ae0}\r\n",
                "base64",
            ),
            ("", "7bit"),
        ];
        for (content, encoding) in cases {
            for media_type in ["text/plain", "text/html"] {
                let part = written(media_type, content);
                let head = String::from_utf8_lossy(&part[..part.len().min(120)]).into_owned();
                assert!(
                    head.starts_with(&format!(
                        "Content-Type: {media_type}; charset=\"utf-8\"\r\n\
                         Content-Transfer-Encoding: {encoding}\r\n\r\n"
                    )),
                    "{head}"
                );
                assert_eq!(decoded(&part), content, "{head}");
            }
        }
    }

    #[test]
    fn encoded_lines_stay_within_76_characters_whatever_falls_at_the_edge() {
        // Escapes and white space put at every column around the line's end.
        for filler in 60..80 {
            for tail in ["=", " ", "\t", "\u{e9}", "==", "= ", " =", "\u{e9}\u{e9}"] {
                let content = format!(
                    "{}{tail}\r\n{}{tail}more\r\n",
                    "a".repeat(filler),
                    "b".repeat(filler)
                );
                let part = written("text/plain", &content);
                for line in encoded_lines(&part) {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    assert!(line.len() <= MAX_LINE, "{} in {content:?}", line.len());
                    assert!(
                        !line.ends_with(b" ") && !line.ends_with(b"\t"),
                        "white space ends an encoded line of {content:?}"
                    );
                }
                assert_eq!(decoded(&part), content);
            }
        }
    }

    /// What Python's `email` package, a decoder with no code in common with this one, reads
    /// from each part; none when python3 cannot be run here.
    fn read_by_python(parts: &[Vec<u8>]) -> Option<Vec<String>> {
        use base64::Engine;
        use std::io::Write;
        const READ: &str = "import base64, email, email.policy, json, sys\n\
            parts = [base64.b64decode(p) for p in json.load(sys.stdin)]\n\
            json.dump([email.message_from_bytes(p, policy=email.policy.default).get_content() \
            for p in parts], sys.stdout)\n";
        let mut python = std::process::Command::new("python3")
            .args(["-c", READ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let encoded: Vec<String> = parts
            .iter()
            .map(|part| base64::engine::general_purpose::STANDARD.encode(part))
            .collect();
        python
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&encoded).unwrap().as_bytes())
            .unwrap();
        let output = python.wait_with_output().unwrap();
        assert!(output.status.success(), "python3 could not read the parts");
        Some(serde_json::from_slice(&output.stdout).unwrap())
    }

    #[test]
    fn pythons_email_package_reads_every_part_as_it_was_written() {
        let mut contents = vec![
            "short lines\r\nof ascii\r\n".to_string(),
            format!("<p>{}</p>\r\n", "caf\u{e9} = cr\u{e8}me\t".repeat(40)),
            "\u{65e5}\u{672c}\u{8a9e}\r\n".repeat(30),
            "ends in white space \r\nand a tab\t".into(),
        ];
        // Escapes and white space at every column around where a soft break falls.
        for filler in 70..80 {
            for tail in ["=", " ", "\u{e9}", "= x", "\t\r\n"] {
                contents.push(format!(
                    "{}{tail}{}",
                    "a".repeat(filler),
                    "b".repeat(filler)
                ));
            }
        }
        let parts: Vec<Vec<u8>> = contents
            .iter()
            .map(|content| written("text/plain", content))
            .collect();
        let Some(read) = read_by_python(&parts) else {
            assert!(
                std::env::var_os("SLUICE_REQUIRE_LANGUAGE_TOOLCHAINS").is_none(),
                "python3 is required here"
            );
            eprintln!("SKIPPED message::text_part: python3 cannot be run");
            return;
        };
        assert_eq!(read, contents);
    }

    #[test]
    fn the_choice_agrees_with_mail_builder_on_what_needs_encoding() {
        // The encoding written before this module: 7bit stays 7bit, and content mail-builder
        // encodes is encoded here too (which one may differ when their lengths are close).
        let samples = [
            "short\r\n".to_string(),
            "x".repeat(200),
            "caf\u{e9}\r\n".into(),
            "trailing \r\n".into(),
            "a = b\r\n".into(),
        ];
        for sample in samples {
            let mut theirs = Vec::new();
            mail_builder::mime::MimePart::new("text/plain", sample.as_str())
                .write_part(&mut theirs)
                .unwrap();
            let theirs_7bit = memchr::memmem::find(&theirs, b"Transfer-Encoding: 7bit").is_some();
            let ours_7bit = choose(sample.as_bytes()) == Encoding::SevenBit;
            assert_eq!(ours_7bit, theirs_7bit, "{sample:?}");
        }
    }
}
