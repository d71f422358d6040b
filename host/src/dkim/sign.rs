//! Signing a message with one or more domain keys (RFC 6376, relaxed/relaxed, rsa-sha256 or
//! ed25519-sha256).

use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

/// The header fields signed. Fields in this list that the message lacks are signed as absent,
/// so nobody can add them on the way without breaking the signature.
pub const SIGNED_HEADERS: [&str; 15] = [
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A private key ready to sign for its domain and selector.
pub struct DomainKey {
    domain: String,
    selector: String,
    signer: DkimSigner<DkimKey, Done>,
}

impl std::fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl DomainKey {
    /// A signer for `domain` with the key published under `selector`.
    pub fn new(domain: &str, selector: &str, key: DkimKey) -> Self {
        let signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Self {
            domain: domain.to_string(),
            selector: selector.to_string(),
            signer,
        }
    }

    /// The `d=` domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The `s=` selector.
    pub fn selector(&self) -> &str {
        &self.selector
    }
}

/// Signs `raw` once per key and returns the DKIM-Signature fields (CRLF-terminated) to put in
/// front of it. Every signature covers the message as given, not the other signatures.
pub fn sign(raw: &[u8], keys: &[&DomainKey]) -> Result<String, mail_auth::Error> {
    let mut fields = String::new();
    for domain_key in keys {
        let signature = domain_key.signer.sign(raw)?;
        let header = signature.to_header();
        // Only relaxed header canonicalization lets the emitted whitespace differ from what
        // mail-auth wrote; DomainKey::new asks for nothing else.
        debug_assert!(signature.ch == Canonicalization::Relaxed);
        fields.push_str(&without_fold_after_b(&header));
    }
    Ok(fields)
}

/// The DKIM-Signature field with nothing between the end of its `b=` value (its last tag) and
/// the closing `;`.
///
/// mail-auth folds the field every 76 columns, also right after the last character of the
/// `b=` value, which leaves the closing `;` alone on a continuation line. RFC 6376 has a
/// verifier delete the `b=` value with the whitespace around it before hashing the field, but
/// dkimpy (used by many Python mail systems) keeps that trailing fold, hashes `b= ;` where
/// the signer hashed `b=;`, and rejects the signature. The signer hashed the field with an
/// empty `b=` in relaxed canonicalization, where the fold is no part of anything hashed:
/// dropping it gives a field that hashes the same for every verifier.
fn without_fold_after_b(header: &str) -> String {
    let field = header.strip_suffix("\r\n").unwrap_or(header);
    let field = field.strip_suffix(';').unwrap_or(field).trim_end();
    debug_assert!(
        field.rfind("b=") > field.rfind(';'),
        "b= is the last tag: {field}"
    );
    format!("{field};\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::{KeyAlgorithm, generate, signing_key};

    #[test]
    fn the_b_value_runs_to_the_end_of_the_field() {
        for algorithm in [KeyAlgorithm::Rsa2048, KeyAlgorithm::Ed25519] {
            let generated = generate(algorithm).unwrap();
            let key = DomainKey::new(
                "shop.example",
                "sl1",
                signing_key(algorithm, &generated.private_der).unwrap(),
            );
            // Headers of many lengths move mail-auth's folds to every column.
            for length in 0..80 {
                let raw = format!(
                    "From: a@shop.example\r\nSubject: {}\r\n\r\nHello\r\n",
                    "x".repeat(length)
                );
                let field = sign(raw.as_bytes(), &[&key]).unwrap();
                assert!(field.ends_with(";\r\n"), "{field}");
                let b_tag = &field[field.rfind("b=").unwrap()..];
                let value = b_tag.trim_start_matches("b=").trim_end_matches(";\r\n");
                assert!(
                    !value.ends_with(|c: char| c.is_whitespace()) && !value.contains(';'),
                    "{algorithm:?}: {field}"
                );
            }
        }
    }

    #[test]
    fn a_fold_before_the_closing_semicolon_is_dropped() {
        assert_eq!(
            without_fold_after_b("DKIM-Signature: v=1; bh=x=; b=abc\r\n\tdef\r\n\t;\r\n"),
            "DKIM-Signature: v=1; bh=x=; b=abc\r\n\tdef;\r\n"
        );
        assert_eq!(
            without_fold_after_b("DKIM-Signature: v=1; b=abc;\r\n"),
            "DKIM-Signature: v=1; b=abc;\r\n"
        );
    }
}
