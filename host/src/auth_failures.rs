//! Failed logins counted per client address, for every way in that checks a secret (SMTP
//! AUTH, the API's token endpoint): after a few failures an address waits before it may try
//! again, and while it waits its attempts cost no password hashing, so guessing is slow and a
//! flood of wrong secrets cannot keep the hashing queue full for everyone else.
//!
//! IPv6 clients are counted by their /64, the block one subscriber usually holds: counting
//! single addresses would let one client rotate through billions of them.
//!
//! An address has one secret checked at a time ([`AuthFailures::turn`]): were its checks to
//! run side by side, a client sending many guesses at once would have them all hashed before
//! the first failure was counted, and would hold every hashing slot while it did.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    turns: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

/// An address's turn to have one secret checked; the next check from the address waits
/// until it is dropped.
#[derive(Debug)]
pub struct Turn {
    ip: IpAddr,
    permit: Option<OwnedSemaphorePermit>,
    turns: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        // The map's own handle is the last one once nobody holds or awaits this address's
        // turn (waiters clone it under this lock): then the entry goes, so the map holds only
        // the addresses checking right now.
        if turns
            .get(&self.ip)
            .is_some_and(|turn| Arc::strong_count(turn) == 1)
        {
            turns.remove(&self.ip);
        }
    }
}

impl AuthFailures {
    /// Allows `max_failures` failures before an address waits `backoff`.
    pub fn new(max_failures: u32, backoff: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            backoff,
            by_ip: Mutex::new(HashMap::new()),
            turns: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Waits for the address's turn to have a secret checked. Check [`Self::is_blocked`]
    /// again once it is given: the checks before it may have failed.
    pub async fn turn(&self, ip: IpAddr) -> Turn {
        let ip = counted_as(ip);
        let semaphore = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                turns
                    .entry(ip)
                    .or_insert_with(|| Arc::new(Semaphore::new(1))),
            )
        };
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
        drop(semaphore);
        Turn {
            ip,
            permit,
            turns: Arc::clone(&self.turns),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn guesses_sent_at_once_are_checked_one_after_another_and_stop_at_the_limit() {
        let failures = Arc::new(AuthFailures::new(3, Duration::from_secs(60)));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let checked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let guesses: Vec<_> = (0..40)
            .map(|_| {
                let failures = Arc::clone(&failures);
                let checked = Arc::clone(&checked);
                tokio::spawn(async move {
                    if failures.is_blocked(ip) {
                        return;
                    }
                    let _turn = failures.turn(ip).await;
                    if failures.is_blocked(ip) {
                        return;
                    }
                    checked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // The password hash: long enough for every other guess to be waiting.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    failures.record_failure(ip);
                })
            })
            .collect();
        for guess in guesses {
            guess.await.unwrap();
        }
        assert_eq!(checked.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(
            failures.turns.lock().unwrap().is_empty(),
            "turns left behind"
        );
    }

    #[tokio::test]
    async fn another_address_does_not_wait_for_a_turn_held_elsewhere() {
        let failures = AuthFailures::new(3, Duration::from_secs(60));
        let _held = failures.turn("192.0.2.1".parse().unwrap()).await;
        let other = tokio::time::timeout(
            Duration::from_secs(5),
            failures.turn("192.0.2.2".parse().unwrap()),
        )
        .await;
        assert!(other.is_ok());
        // Two addresses in one IPv6 /64 share a turn.
        let _v6 = failures.turn("2001:db8::1".parse().unwrap()).await;
        let same_64 = tokio::time::timeout(
            Duration::from_millis(50),
            failures.turn("2001:db8::2".parse().unwrap()),
        )
        .await;
        assert!(same_64.is_err());
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
