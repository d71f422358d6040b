//! The loop every due-time queue runs (delivery, webhook calls): hand out what is due, then
//! sleep until the next item is due, a wake-up arrives, or a second passes, whichever is first.

use std::fmt::Display;
use std::time::Duration;

use tokio::sync::Notify;

/// The longest sleep: what is queued without a wake-up is still seen within it.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs a scheduler for ever: `dispatch` hands out what is due and says how long to sleep;
/// an error is logged (naming `queue`) and retried after [`IDLE_POLL`].
pub async fn run<E: Display>(
    queue: &str,
    wake: &Notify,
    mut dispatch: impl FnMut() -> Result<Duration, E>,
) {
    loop {
        let wait = dispatch().unwrap_or_else(|error| {
            tracing::error!(%error, queue, "cannot read the queue");
            IDLE_POLL
        });
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long to sleep when the next item is due at `next_due` (milliseconds since the Unix
/// epoch) and it is `now`.
pub fn until(next_due: Option<u64>, now: u64) -> Duration {
    match next_due {
        Some(at) if at > now => Duration::from_millis(at - now).min(IDLE_POLL),
        _ => IDLE_POLL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_next_item_but_never_longer_than_the_idle_poll() {
        assert_eq!(until(Some(1_250), 1_000), Duration::from_millis(250));
        assert_eq!(until(Some(90_000), 1_000), IDLE_POLL);
        assert_eq!(until(Some(500), 1_000), IDLE_POLL);
        assert_eq!(until(None, 1_000), IDLE_POLL);
    }
}
