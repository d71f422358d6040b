//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP, HMAC-SHA1, 30-second steps,
//! six digits): what authenticator apps compute, so a dashboard user may log in with one.

use ring::hmac;

/// Seconds per step.
pub const STEP_SECS: u64 = 30;

/// The six-digit code of `secret` for time step `step`.
pub fn code_at(secret: &[u8], step: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let digest = tag.as_ref();
    // RFC 4226 5.3: dynamic truncation.
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", value % 1_000_000)
}

/// The step `typed` is the code of, within one step either side of `now_secs` (clocks
/// drift) and after `last_used` (a code is never taken twice).
pub fn matching_step(secret: &[u8], typed: &str, now_secs: u64, last_used: u64) -> Option<u64> {
    let now = now_secs / STEP_SECS;
    (now.saturating_sub(1)..=now + 1)
        .filter(|step| *step > last_used)
        .find(|step| {
            let expected = code_at(secret, *step);
            expected.len() == typed.len()
                && expected
                    .bytes()
                    .zip(typed.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows, last six digits of the eight given.
    #[test]
    fn the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(secret, time / STEP_SECS), eight[2..], "at {time}");
        }
    }

    #[test]
    fn a_code_is_taken_near_its_time_and_only_once() {
        let secret = b"12345678901234567890";
        let now = 1_234_567_890;
        let code = code_at(secret, now / STEP_SECS);
        assert_eq!(matching_step(secret, &code, now, 0), Some(now / STEP_SECS));
        assert_eq!(
            matching_step(secret, &code, now + 30, 0),
            Some(now / STEP_SECS)
        );
        assert_eq!(matching_step(secret, &code, now + 90, 0), None, "too late");
        assert_eq!(
            matching_step(secret, &code, now, now / STEP_SECS),
            None,
            "used"
        );
    }

    #[test]
    fn base32_as_rfc_4648_spells_it() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
