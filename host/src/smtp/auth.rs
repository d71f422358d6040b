//! SMTP AUTH (RFC 4954): the PLAIN and LOGIN mechanisms, and the back-off that slows down
//! password guessing from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Entries kept before stale ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// Failed AUTH attempts per IP address, and when each may try again.
#[derive(Debug)]
pub struct AuthFailures {
    max_failures: u32,
    backoff: Duration,
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthFailures {
    /// Allows `max_failures` failures before an address waits `backoff`.
    pub fn new(max_failures: u32, backoff: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            backoff,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// True while the address must wait.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let mut map = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some(&(count, last)) if count >= self.max_failures => {
                if last.elapsed() < self.backoff {
                    true
                } else {
                    map.remove(&ip);
                    false
                }
            }
            _ => false,
        }
    }

    /// Counts a failure.
    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        // Forget addresses whose last failure is older than the back-off, so the map stays
        // as small as the set of addresses failing right now.
        if map.len() >= PRUNE_ABOVE {
            let backoff = self.backoff;
            map.retain(|_, (_, last)| last.elapsed() < backoff);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.backoff {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    /// Forgets the failures of an address that authenticated.
    pub fn record_success(&self, ip: IpAddr) {
        self.by_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
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

    #[test]
    fn an_address_waits_after_too_many_failures() {
        let failures = AuthFailures::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        failures.record_failure(ip);
        assert!(!failures.is_blocked(ip));
        failures.record_failure(ip);
        assert!(failures.is_blocked(ip));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!failures.is_blocked(other));
    }
}
