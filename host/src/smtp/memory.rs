//! The memory of unfinished messages: one budget of bytes for every DATA in progress on the
//! submission server and the MX together, so many slow or stalled transfers cannot add up
//! to more than the operator allowed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes that unfinished messages may hold at once.
#[derive(Debug)]
pub struct DataBudget {
    limit: usize,
    used: AtomicUsize,
}

impl DataBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// An empty reservation, to grow as bytes arrive.
    pub(crate) fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Takes as many bytes as are left up to `most`, and at least `least`; how many.
    fn take(&self, least: usize, most: usize) -> Option<usize> {
        let mut taken = 0;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                taken = self.limit.saturating_sub(used).min(most);
                (taken >= least).then_some(used + taken)
            })
            .ok()
            .map(|_| taken)
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes of the budget held by one message; given back when dropped, whichever way the
/// transfer ends (accepted, refused, the connection gone).
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<DataBudget>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `bytes` in all, growing the reservation; false (and unchanged) when the budget
    /// has not that much left.
    pub(crate) fn grow_to(&mut self, bytes: usize) -> bool {
        self.grow_between(bytes, bytes)
    }

    /// Holds as much as the budget has left up to `most` bytes in all, and at least `least`;
    /// false (and unchanged) when not even `least` is left.
    pub(crate) fn grow_between(&mut self, least: usize, most: usize) -> bool {
        if least <= self.bytes {
            return true;
        }
        let most = most.max(least);
        match self.budget.take(least - self.bytes, most - self.bytes) {
            Some(taken) => {
                self.bytes += taken;
                true
            }
            None => false,
        }
    }

    /// Gives everything back now.
    pub(crate) fn release(&mut self) {
        self.budget.give_back(self.bytes);
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back_when_dropped() {
        let budget = DataBudget::new(100);
        let mut first = budget.reservation();
        assert!(first.grow_to(60));
        let mut second = budget.reservation();
        assert!(!second.grow_to(50));
        assert_eq!(second.bytes(), 0);
        assert!(second.grow_between(30, 70));
        assert_eq!(second.bytes(), 40, "what was left");
        assert_eq!(budget.used(), 100);
        drop(first);
        assert_eq!(budget.used(), 40);
        second.release();
        assert_eq!(budget.used(), 0);
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
