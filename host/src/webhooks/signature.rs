//! Signing webhook calls: `Sluice-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//! HMAC-SHA256 under the endpoint's secret of `"<t>.<body>"`. Binding the timestamp into the
//! MAC lets a receiver refuse a captured call replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the timestamp and signature.
pub const SIGNATURE_HEADER: &str = "Sluice-Signature";
/// The header carrying the event's stable id (the same on every attempt), to dedupe on.
pub const EVENT_ID_HEADER: &str = "Sluice-Event-Id";
/// The header naming the endpoint the call is for.
pub const WEBHOOK_ID_HEADER: &str = "Sluice-Webhook-Id";
/// The header counting attempts of this call (1 for the first).
pub const ATTEMPT_HEADER: &str = "Sluice-Attempt";
/// How old (or how far ahead) a signature timestamp a receiver should accept, in seconds.
pub const RECOMMENDED_TOLERANCE_SECS: u64 = 300;

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    /// The timestamp is outside the tolerance: possibly a replay.
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    /// No v1 signature matches the body under this secret.
    #[error("the signature does not match")]
    Mismatch,
}

fn mac(secret: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length works");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// The value of [`SIGNATURE_HEADER`] for a body sent at `timestamp` (Unix seconds).
pub fn header_value(secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Checks a [`SIGNATURE_HEADER`] value as a receiver should: the timestamp within
/// `tolerance_secs` of `now_secs`, and one `v1` signature matching in constant time. Several
/// `v1` entries are allowed, so a sender could sign with an old and a new secret at once.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?)
            }
            // Unknown schemes are skipped, so a later v2 does not break v1 receivers.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_secs.abs_diff(timestamp) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|signature| expected.clone().verify_slice(signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A new endpoint secret: `whsec_` and 32 random bytes in hex. The key is the whole string's
/// bytes, so receivers use it as given.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const BODY: &[u8] = br#"{"type":"DELIVERED"}"#;

    #[test]
    fn a_signed_body_verifies() {
        let header = header_value(SECRET, 1_700_000_000, BODY);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(SECRET, &header, BODY, 1_700_000_010, 300), Ok(()));
    }

    #[test]
    fn the_mac_covers_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"type":"DELIVERED"}' |
        //   openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            "58eaaa2d0ab33614e84cf9395ede56e85e3f7fd807a8ae3044bf234c7596284f"
        );
    }

    #[test]
    fn tampering_is_refused() {
        let header = header_value(SECRET, 1_700_000_000, BODY);
        let now = 1_700_000_000;
        assert_eq!(
            verify(SECRET, &header, br#"{"type":"HARDBOUNCE"}"#, now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
        // The same signature under another timestamp does not verify.
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(SECRET, &moved, BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let header = header_value(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(SECRET, &header, BODY, 1_700_000_301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &header, BODY, 1_699_999_699, 300),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(SECRET, header, BODY, 1, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn any_matching_v1_is_enough() {
        let good = sign(SECRET, 5, BODY);
        let header = format!("t=5,v1={},v1={good},v0=ignored", "00".repeat(32));
        assert_eq!(verify(SECRET, &header, BODY, 5, 300), Ok(()));
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
    }
}
