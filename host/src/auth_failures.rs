//! Failed logins counted per client address, for every way in that checks a secret (SMTP
//! AUTH, the API's token endpoint): after a few failures an address waits before it may try
//! again, and while it waits its attempts cost no password hashing, so guessing is slow and a
//! flood of wrong secrets cannot keep the hashing queue full for everyone else.
//!
//! IPv6 clients are counted by their /64, the block one subscriber usually holds: counting
//! single addresses would let one client rotate through billions of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before stale ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// Entries kept at most: past it (that many addresses failing within one back-off), a new
/// address is not counted, so memory stays bounded; the hashing queue still bounds its cost.
const MAX_COUNTED: usize = 200_000;

/// Failed logins per client address, and when each may try again.
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

    /// How long an address waits once it failed too often.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// True while the address must wait.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let ip = counted_as(ip);
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
        let ip = counted_as(ip);
        let mut map = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        // Forget addresses whose last failure is older than the back-off, so the map stays
        // as small as the set of addresses failing right now.
        if map.len() >= PRUNE_ABOVE && !map.contains_key(&ip) {
            let backoff = self.backoff;
            map.retain(|_, (_, last)| last.elapsed() < backoff);
            if map.len() >= MAX_COUNTED {
                return;
            }
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
            .remove(&counted_as(ip));
    }
}

/// The key an address is counted under: itself for IPv4, its /64 for IPv6.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let failures = AuthFailures::new(2, Duration::from_secs(60));
        failures.record_failure("2001:db8:1:2::1".parse().unwrap());
        failures.record_failure("2001:db8:1:2:ffff::9".parse().unwrap());
        assert!(failures.is_blocked("2001:db8:1:2::77".parse().unwrap()));
        assert!(!failures.is_blocked("2001:db8:1:3::1".parse().unwrap()));
    }
}
