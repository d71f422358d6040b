//! SMTP AUTH (RFC 4954): the PLAIN and LOGIN mechanisms, and the back-off that slows down
//! password guessing from one address.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::store::Source;

/// Decodes a PLAIN response (`authzid NUL authcid NUL password`, base64).
pub(super) fn decode_plain(response: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(response.trim()).ok()?;
    let mut parts = bytes.split(|&byte| byte == 0);
    let _authzid = parts.next()?;
    let username = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    if parts.next().is_some() || username.is_empty() {
        return None;
    }
    Some((username, password))
}

/// Decodes one base64 line of a LOGIN exchange.
pub(super) fn decode_line(line: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(line.trim()).ok()?).ok()
}

/// Why a login must fail whatever the password, for the log only: the client gets the same
/// 535 as for a wrong password. `None` when the password decides.
pub(super) fn login_refusal(
    known_user: bool,
    source: Option<&Source>,
    ip: IpAddr,
) -> Option<&'static str> {
    match source {
        _ if !known_user => Some("unknown user"),
        None => Some("the credential's source no longer exists"),
        Some(source) if !source.admits(ip) => Some("address outside the source's allowlist"),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_responses_decode() {
        let response = STANDARD.encode(b"\0demo\0secret");
        assert_eq!(
            decode_plain(&response),
            Some(("demo".to_string(), "secret".to_string()))
        );
        assert_eq!(decode_plain("not base64!"), None);
        assert_eq!(decode_plain(&STANDARD.encode(b"\0\0secret")), None);
    }
}
