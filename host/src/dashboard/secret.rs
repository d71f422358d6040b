//! The dashboard's random secrets and their digests: session, challenge and reset tokens are
//! 256 random bits in hex; login codes are six uniform digits. Only digests are stored.

use sha2::{Digest, Sha256};

/// A new random token: 32 bytes in hex.
pub(super) fn token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

/// A new six-digit login code, every value equally likely.
pub(super) fn login_code() -> String {
    // 2^32 is not a multiple of 10^6: draw again above the largest multiple.
    const LIMIT: u32 = u32::MAX - (u32::MAX % 1_000_000);
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let value = u32::from_le_bytes(bytes);
        if value < LIMIT {
            return format!("{:06}", value % 1_000_000);
        }
    }
}

/// SHA-256 of the parts, each ended by a NUL so `("ab","c")` and `("a","bc")` differ.
pub(super) fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// A new recovery code: ten lower-case hex digits in two groups (40 random bits; each code
/// works once).
pub(super) fn recovery_code() -> String {
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let hex = hex::encode(bytes);
    format!("{}-{}", &hex[..5], &hex[5..])
}

/// The stored digest of a recovery code as typed (case and the dash do not matter).
pub(super) fn recovery_digest(typed: &str) -> String {
    let normalised: String = typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    digest(&["recovery", &normalised])
}

/// Compares two strings without stopping at the first difference.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..200).map(|_| login_code()).collect();
        assert!(
            codes
                .iter()
                .all(|code| code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(
            codes.len() > 190,
            "200 codes gave only {} distinct",
            codes.len()
        );
    }

    #[test]
    fn digests_keep_parts_apart() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(digest(&["x"]), digest(&["x"]));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
