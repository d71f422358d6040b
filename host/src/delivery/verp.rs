//! The per-message return path (VERP): the envelope sender of every outgoing message is
//! `b+<message id>.<mac>@<return-path domain>`, so a bounce that arrives later maps back to its
//! message through the address it was sent to, and a forged address maps to nothing. The header
//! From is not touched.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The local-part prefix of return-path addresses.
const PREFIX: &str = "b+";
/// Bytes of the MAC kept: 80 bits, far beyond guessing through a mailbox.
const MAC_BYTES: usize = 10;

/// Makes and reads VERP return-path addresses with the host's key.
#[derive(Clone)]
pub struct ReturnPath {
    key: [u8; 32],
}

impl std::fmt::Debug for ReturnPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnPath").finish_non_exhaustive()
    }
}

impl ReturnPath {
    /// A return-path maker with this key.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, message_id: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(message_id.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..MAC_BYTES])
    }

    /// The envelope sender for a message, on `domain`.
    pub fn address(&self, message_id: &str, domain: &str) -> String {
        format!("{PREFIX}{message_id}.{}@{domain}", self.mac(message_id))
    }

    /// The message id an address was made for, if it is one of ours and genuine.
    pub fn message_id(&self, address: &str) -> Option<String> {
        let (local, _domain) = address.trim_matches(['<', '>']).rsplit_once('@')?;
        // Local parts are case-insensitive on many relays; ids and MACs are lower-case here.
        let local = local.to_ascii_lowercase();
        let rest = local.strip_prefix(PREFIX)?;
        let (id, mac) = rest.rsplit_once('.')?;
        let expected = self.mac(id);
        let genuine = mac.len() == expected.len()
            && mac
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        genuine.then(|| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_back_only_when_genuine() {
        let verp = ReturnPath::new([3; 32]);
        let address = verp.address("0190abc-def", "bounce.example.com");
        assert!(address.starts_with("b+0190abc-def."), "{address}");
        assert!(address.ends_with("@bounce.example.com"));
        assert_eq!(verp.message_id(&address).as_deref(), Some("0190abc-def"));
        assert_eq!(
            verp.message_id(&format!("<{}>", address.to_uppercase()))
                .as_deref(),
            Some("0190abc-def")
        );
        let forged = address.replacen("0190abc-def", "0190abc-deg", 1);
        assert_eq!(verp.message_id(&forged), None);
        assert_eq!(ReturnPath::new([4; 32]).message_id(&address), None);
        assert_eq!(verp.message_id("someone@example.com"), None);
        assert_eq!(verp.message_id("b+nodot@example.com"), None);
    }
}
