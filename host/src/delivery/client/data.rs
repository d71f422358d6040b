//! The message as the DATA command carries it.

/// Normalises line endings to CRLF, doubles a dot at the start of a line (RFC 5321 §4.5.2) and
/// makes sure the message ends with CRLF; the terminating `.` line is not included.
///
/// Bare CR and LF become CRLF because a lone one lets a message smuggle its own end-of-data
/// past servers that read lines differently, and RFC 5321 §2.3.8 forbids sending them anyway.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 2);
    for (line, _) in crate::message::line_ends::lines(message) {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        // A last line without an end gets one: DATA's end must start a line of its own.
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
