//! The CPU time one call spends: what its budget is counted in.
//!
//! A call's wall time says as much about the host as about the step: on a busy machine a call
//! waits for the executor (other calls run at every epoch tick) and for the operating system
//! (other processes, a hypervisor's steal). Counting the call's own CPU time keeps the budget
//! about the step, so one account's load cannot push another's steps past their limit; the
//! wall-clock deadline still bounds the whole call, waits included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The CPU time a call has used: each poll of the call is measured on the thread that runs it,
/// and waits for host work done on its behalf elsewhere are charged to it.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    budget: Duration,
    /// Nanoseconds of the polls that ended, plus what was charged.
    spent: AtomicU64,
    /// The polling thread's CPU clock, in nanoseconds, when the poll in progress began; zero
    /// between polls.
    poll_began: AtomicU64,
}

impl CpuMeter {
    /// A meter for a call allowed `budget` of CPU time.
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            budget,
            spent: AtomicU64::new(0),
            poll_began: AtomicU64::new(0),
        }
    }

    /// The CPU time the call may use.
    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }

    /// Runs one poll of the call and adds the CPU time it took. Not nested: one meter is
    /// polled by the one future that runs its call.
    pub(crate) fn poll<T>(&self, poll: impl FnOnce() -> T) -> T {
        debug_assert_eq!(
            self.poll_began.load(Ordering::Relaxed),
            0,
            "a call's meter is polled from inside its own poll"
        );
        let began = thread_cpu_nanos();
        // Zero means "between polls"; a thread's clock reads above zero once it has run.
        self.poll_began.store(began.max(1), Ordering::Relaxed);
        let result = poll();
        let took = thread_cpu_nanos().saturating_sub(began);
        self.poll_began.store(0, Ordering::Relaxed);
        self.spent.fetch_add(took, Ordering::Relaxed);
        result
    }

    /// CPU time used so far, the poll in progress included: call it from inside the call,
    /// which runs on the polling thread.
    pub(crate) fn used(&self) -> Duration {
        let mut nanos = self.spent.load(Ordering::Relaxed);
        let began = self.poll_began.load(Ordering::Relaxed);
        if began != 0 {
            nanos = nanos.saturating_add(thread_cpu_nanos().saturating_sub(began));
        }
        Duration::from_nanos(nanos)
    }

    /// True once the call has used its budget.
    pub(crate) fn exhausted(&self) -> bool {
        self.used() >= self.budget
    }

    /// Counts host work done for the call on another thread.
    pub(crate) fn charge(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.spent.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The CPU time the calling thread spends from a start: for host work done for a call on
/// another thread, charged to it with [`CpuMeter::charge`].
pub(crate) struct ThreadClock(u64);

impl ThreadClock {
    /// Starts counting on the calling thread.
    pub(crate) fn start() -> Self {
        Self(thread_cpu_nanos())
    }

    /// The CPU time the calling thread (the one that started it) has spent since.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(thread_cpu_nanos().saturating_sub(self.0))
    }
}

/// The calling thread's CPU clock: time it ran, not time it waited to run.
fn thread_cpu_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(for_at_least: Duration) {
        let started = thread_cpu_nanos();
        while thread_cpu_nanos() - started < for_at_least.as_nanos() as u64 {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn a_poll_counts_the_time_the_thread_ran_not_the_time_it_slept() {
        let meter = CpuMeter::new(Duration::from_millis(50));
        meter.poll(|| std::thread::sleep(Duration::from_millis(60)));
        assert!(!meter.exhausted(), "{:?}", meter.used());
        meter.poll(|| spin(Duration::from_millis(20)));
        let used = meter.used();
        assert!(used >= Duration::from_millis(20), "{used:?}");
        assert!(!meter.exhausted(), "{used:?}");
        // Inside a poll, the time of the poll so far counts.
        let inside = meter.poll(|| {
            spin(Duration::from_millis(40));
            meter.exhausted()
        });
        assert!(inside, "{:?}", meter.used());
    }

    #[test]
    fn charged_work_counts_against_the_budget() {
        let meter = CpuMeter::new(Duration::from_millis(10));
        meter.charge(Duration::from_millis(4));
        assert_eq!(meter.used(), Duration::from_millis(4));
        assert!(!meter.exhausted());
        meter.charge(Duration::from_millis(6));
        assert!(meter.exhausted());
    }
}
