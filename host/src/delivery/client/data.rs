//! The message as the DATA command carries it.

/// Normalises line endings to CRLF, doubles a dot at the start of a line (RFC 5321 §4.5.2) and
/// makes sure the message ends with CRLF; the terminating `.` line is not included.
///
/// Bare CR and LF become CRLF because a lone one lets a message smuggle its own end-of-data
/// past servers that read lines differently, and RFC 5321 §2.3.8 forbids sending them anyway.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 2);
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && byte == b'.' {
                    out.push(b'.');
                }
                out.push(byte);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b"");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n");
        assert_eq!(
            dot_stuff(b".start\r\nmid.dle\r\n.\r\n"),
            b"..start\r\nmid.dle\r\n..\r\n"
        );
        assert_eq!(dot_stuff(b"a\n.b\n"), b"a\r\n..b\r\n");
        assert_eq!(dot_stuff(b"a\r.b"), b"a\r\n..b\r\n");
        // A smuggled end of data behind a bare LF is stuffed like any other line.
        assert_eq!(
            dot_stuff(b"x\n.\r\nMAIL FROM:<e@vil>\r\n"),
            b"x\r\n..\r\nMAIL FROM:<e@vil>\r\n"
        );
    }
}
