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
        fields.push_str(&domain_key.signer.sign(raw)?.to_header());
    }
    Ok(fields)
}
