//! Line ends in mail: RFC 5322 and RFC 5321 want CRLF, and what arrives or what a step writes
//! may hold bare LF or bare CR.
//!
//! Every message passes these scans several times (parsed on submission, its parts rewritten
//! by steps, dot-stuffed for delivery), so they jump from line end to line end with `memchr`
//! instead of looking at every byte.

/// The lines of `bytes`, each without its end, and whether it had one: CRLF, a bare CR and a
/// bare LF each end a line. A last line without an end is yielded with `false`; nothing is
/// yielded after a final line end.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(at) => {
                let line = &rest[..at];
                let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
                rest = &rest[at + if crlf { 2 } else { 1 }..];
                Some((line, true))
            }
            None => {
                let line = rest;
                rest = &[];
                Some((line, false))
            }
        }
    })
}

/// Whether every CR in `bytes` is followed by LF and every LF preceded by CR.
pub(crate) fn are_crlf_only(bytes: &[u8]) -> bool {
    let mut ends = memchr::memchr2_iter(b'\r', b'\n', bytes);
    while let Some(at) = ends.next() {
        if bytes[at] == b'\n' || bytes.get(at + 1) != Some(&b'\n') {
            return false;
        }
        // The LF of this CRLF.
        ends.next();
    }
    true
}

/// `bytes` with every bare CR and bare LF made CRLF; none when there was none to change.
pub(crate) fn to_crlf(bytes: &[u8]) -> Option<Vec<u8>> {
    if are_crlf_only(bytes) {
        return None;
    }
    let mut fixed = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (line, ended) in lines(bytes) {
        fixed.extend_from_slice(line);
        if ended {
            fixed.extend_from_slice(b"\r\n");
        }
    }
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time reading these scans replace: the reference they must agree with.
    fn to_crlf_bytewise(bytes: &[u8]) -> Vec<u8> {
        let mut fixed = Vec::new();
        let mut iter = bytes.iter().copied().peekable();
        while let Some(byte) = iter.next() {
            match byte {
                b'\r' => {
                    iter.next_if_eq(&b'\n');
                    fixed.extend_from_slice(b"\r\n");
                }
                b'\n' => fixed.extend_from_slice(b"\r\n"),
                other => fixed.push(other),
            }
        }
        fixed
    }

    #[test]
    fn lines_end_at_crlf_bare_cr_and_bare_lf() {
        let split: Vec<(&[u8], bool)> = lines(b"a\r\nb\rc\nd").collect();
        assert_eq!(
            split,
            [(&b"a"[..], true), (b"b", true), (b"c", true), (b"d", false)]
        );
        let split: Vec<(&[u8], bool)> = lines(b"\r\r\n\n").collect();
        assert_eq!(split, [(&b""[..], true), (b"", true), (b"", true)]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"x\r\n").count(), 1);
    }

    #[test]
    fn crlf_only_is_told_from_every_bare_end() {
        assert!(are_crlf_only(b""));
        assert!(are_crlf_only(b"a\r\nb\r\n\r\nc"));
        for bare in [&b"a\nb"[..], b"a\rb", b"a\r", b"\n", b"a\r\r\n", b"a\r\n\n"] {
            assert!(!are_crlf_only(bare), "{bare:?}");
        }
    }

    #[test]
    fn to_crlf_agrees_with_the_bytewise_reading_on_every_short_mix() {
        // Every string of up to six bytes over {a, CR, LF}: all the ways ends can meet.
        let alphabet = [b'a', b'\r', b'\n'];
        for length in 0..=6u32 {
            for mut code in 0..3usize.pow(length) {
                let mut input = Vec::new();
                for _ in 0..length {
                    input.push(alphabet[code % 3]);
                    code /= 3;
                }
                let expected = to_crlf_bytewise(&input);
                let got = to_crlf(&input).unwrap_or_else(|| input.clone());
                assert_eq!(got, expected, "{input:?}");
                assert_eq!(are_crlf_only(&input), expected == input, "{input:?}");
            }
        }
    }
}
