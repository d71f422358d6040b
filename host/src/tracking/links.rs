//! Tracking links: `/c/TOKEN` and `/o/TOKEN`, where the token carries the message id (and for
//! a click the link's number and its URL) and an HMAC over them. The redirect target comes out
//! of the verified token, so no one can make the server redirect anywhere a message did not
//! link to.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Makes and checks tracking links with the host's key.
#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
    base_url: String,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Where a verified click goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickTarget {
    /// The message the link was in.
    pub message_id: String,
    /// The link's number in the message.
    pub index: u32,
    /// The URL the message linked to.
    pub url: String,
}

impl LinkSigner {
    /// A signer whose links start with `base_url` (e.g. `https://t.example.com`).
    pub fn new(key: [u8; 32], base_url: &str) -> Self {
        Self {
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    fn token(&self, payload: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn open_token(&self, token: &str) -> Option<String> {
        let (payload, tag) = token.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).ok()?;
        Some(payload)
    }

    /// The click-tracking URL for link `index` of a message.
    pub fn click_url(&self, message_id: &str, index: u32, url: &str) -> String {
        let token = self.token(&format!("c\n{message_id}\n{index}\n{url}"));
        format!("{}/c/{token}", self.base_url)
    }

    /// The open-tracking pixel URL of a message.
    pub fn open_url(&self, message_id: &str) -> String {
        let token = self.token(&format!("o\n{message_id}"));
        format!("{}/o/{token}", self.base_url)
    }

    /// The target of a click token, if the token is genuine.
    pub fn verify_click(&self, token: &str) -> Option<ClickTarget> {
        let payload = self.open_token(token)?;
        let mut parts = payload.splitn(4, '\n');
        if parts.next()? != "c" {
            return None;
        }
        Some(ClickTarget {
            message_id: parts.next()?.to_string(),
            index: parts.next()?.parse().ok()?,
            url: parts.next()?.to_string(),
        })
    }

    /// The 'view online' URL of a message: its archived html, for whoever holds the link.
    pub fn online_url(&self, message_id: &str) -> String {
        let token = self.token(&format!("v\n{message_id}"));
        format!("{}/v/{token}", self.base_url)
    }

    /// The message of a 'view online' token, if the token is genuine.
    pub fn verify_online(&self, token: &str) -> Option<String> {
        let payload = self.open_token(token)?;
        let (kind, message_id) = payload.split_once('\n')?;
        (kind == "v").then(|| message_id.to_string())
    }

    /// The message of an open token, if the token is genuine.
    pub fn verify_open(&self, token: &str) -> Option<String> {
        let payload = self.open_token(token)?;
        let (kind, message_id) = payload.split_once('\n')?;
        (kind == "o").then(|| message_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new([7; 32], "http://t.example/")
    }

    #[test]
    fn click_links_round_trip_and_resist_tampering() {
        let signer = signer();
        let url = signer.click_url("m1", 2, "https://shop.example/a?b=c&d=e");
        let token = url.strip_prefix("http://t.example/c/").unwrap();
        assert_eq!(
            signer.verify_click(token),
            Some(ClickTarget {
                message_id: "m1".into(),
                index: 2,
                url: "https://shop.example/a?b=c&d=e".into()
            })
        );
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("c\nm1\n2\nhttps://evil.example/");
        assert_eq!(
            signer.verify_click(&format!("{forged_payload}.{tag}")),
            None
        );
        assert_eq!(signer.verify_click(&format!("{payload}.AAAA")), None);
        assert_eq!(
            LinkSigner::new([8; 32], "http://t.example").verify_click(token),
            None
        );
        // An open token is not a click token.
        let open = signer.open_url("m1");
        let open_token = open.strip_prefix("http://t.example/o/").unwrap();
        assert_eq!(signer.verify_click(open_token), None);
        assert_eq!(signer.verify_open(open_token).as_deref(), Some("m1"));
        // Nor is it an online-view token, and the other way round.
        assert_eq!(signer.verify_online(open_token), None);
        let online = signer.online_url("m1");
        let online_token = online.strip_prefix("http://t.example/v/").unwrap();
        assert_eq!(signer.verify_online(online_token).as_deref(), Some("m1"));
        assert_eq!(signer.verify_open(online_token), None);
    }
}
