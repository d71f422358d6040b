//! Counting login attempts per client address and per e-mail address, so passwords and codes
//! cannot be guessed at speed, and a flood of distinct keys cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is being counted; each kind has its own budget per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Attempt {
    /// A password tried from one client address.
    PasswordFromAddress,
    /// A password tried for one e-mail address.
    PasswordForEmail,
    /// A code mailed to one user.
    CodeMailed,
    /// A code typed in from one client address.
    CodeFromAddress,
    /// A reset link asked for, per e-mail address or client address.
    Reset,
    /// An invitation mailed by an account (the platform's mail must not become its spam).
    Invitation,
}

impl Attempt {
    /// How many are allowed per window, and the window.
    fn budget(self) -> (u32, Duration) {
        let ten_minutes = Duration::from_secs(600);
        match self {
            Attempt::PasswordFromAddress => (30, ten_minutes),
            Attempt::PasswordForEmail => (10, ten_minutes),
            Attempt::CodeMailed => (5, ten_minutes),
            Attempt::CodeFromAddress => (30, ten_minutes),
            Attempt::Reset => (5, Duration::from_secs(3600)),
            Attempt::Invitation => (20, Duration::from_secs(3600)),
        }
    }
}

/// Keys tracked at most; beyond it, expired windows are dropped, then new keys are refused.
const MAX_KEYS: usize = 100_000;

/// Fixed-window counters by (kind, key).
#[derive(Debug, Default)]
pub(super) struct LoginThrottle {
    windows: Mutex<HashMap<(Attempt, String), (Instant, u32)>>,
}

impl LoginThrottle {
    /// Counts one attempt; false when its budget for the window is spent.
    pub(super) fn allow(&self, attempt: Attempt, key: &str) -> bool {
        self.allow_at(attempt, key, Instant::now())
    }

    fn allow_at(&self, attempt: Attempt, key: &str, now: Instant) -> bool {
        let (limit, window) = attempt.budget();
        let mut windows = self.windows.lock().expect("throttle lock");
        if windows.len() >= MAX_KEYS {
            windows
                .retain(|(kind, _), (started, _)| now.duration_since(*started) < kind.budget().1);
        }
        let entry_key = (attempt, key.to_ascii_lowercase());
        if windows.len() >= MAX_KEYS && !windows.contains_key(&entry_key) {
            return false;
        }
        let (started, count) = windows.entry(entry_key).or_insert((now, 0));
        if now.duration_since(*started) >= window {
            *started = now;
            *count = 0;
        }
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_spent_then_renewed_by_the_next_window() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..5 {
            assert!(throttle.allow_at(Attempt::CodeMailed, "u1", start));
        }
        assert!(!throttle.allow_at(Attempt::CodeMailed, "u1", start));
        assert!(
            throttle.allow_at(Attempt::CodeMailed, "u2", start),
            "keys are apart"
        );
        let later = start + Duration::from_secs(601);
        assert!(throttle.allow_at(Attempt::CodeMailed, "u1", later));
    }

    #[test]
    fn keys_differing_only_in_case_share_a_budget() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..10 {
            assert!(throttle.allow_at(Attempt::PasswordForEmail, "A@example.com", now));
        }
        assert!(!throttle.allow_at(Attempt::PasswordForEmail, "a@EXAMPLE.com", now));
    }
}
