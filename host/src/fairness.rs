//! Workers shared between accounts: a bounded pool of slots of which one account may hold
//! only its share, so one account's slow or failing work (steps that run to their deadline,
//! simulations, bounce classifiers) leaves the other accounts' work room to run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A pool of `total` slots in which one account holds at most `per_account` at a time.
#[derive(Debug)]
pub struct FairShare {
    total: Arc<Semaphore>,
    per_account: usize,
    accounts: Mutex<HashMap<u64, Arc<Semaphore>>>,
    released: Arc<Notify>,
}

/// A slot held for one account; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    _account: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
    released: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.released.notify_waiters();
    }
}

/// Why a slot was not given at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// The account holds its whole share.
    AccountFull,
    /// Every slot of the pool is held.
    PoolFull,
    /// The pool was closed.
    Closed,
}

impl FairShare {
    /// A pool of `total` slots (at least one), of which an account holds at most
    /// `per_account` (at least one, at most `total`).
    pub fn new(total: usize, per_account: usize) -> Arc<Self> {
        let total = total.max(1);
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            per_account: per_account.clamp(1, total),
            accounts: Mutex::new(HashMap::new()),
            released: Arc::new(Notify::new()),
        })
    }

    /// The slots one account may hold at once.
    pub fn per_account(&self) -> usize {
        self.per_account
    }

    fn account(&self, account_id: u64) -> Arc<Semaphore> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            accounts
                .entry(account_id)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_account))),
        )
    }

    /// Waits for a slot for the account: first one of its share, then one of the pool, so an
    /// account that holds its share waits without taking pool slots from others.
    pub async fn acquire(&self, account_id: u64) -> Result<Slot, NoSlot> {
        let account = self
            .account(account_id)
            .acquire_owned()
            .await
            .map_err(|_| NoSlot::Closed)?;
        let total = Arc::clone(&self.total)
            .acquire_owned()
            .await
            .map_err(|_| NoSlot::Closed)?;
        Ok(self.slot(account, total))
    }

    /// A slot for the account if one is free now.
    pub fn try_acquire(&self, account_id: u64) -> Result<Slot, NoSlot> {
        let account =
            self.account(account_id)
                .try_acquire_owned()
                .map_err(|error| match error {
                    TryAcquireError::NoPermits => NoSlot::AccountFull,
                    TryAcquireError::Closed => NoSlot::Closed,
                })?;
        let total = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|error| match error {
                TryAcquireError::NoPermits => NoSlot::PoolFull,
                TryAcquireError::Closed => NoSlot::Closed,
            })?;
        Ok(self.slot(account, total))
    }

    fn slot(&self, account: OwnedSemaphorePermit, total: OwnedSemaphorePermit) -> Slot {
        Slot {
            _account: account,
            _total: total,
            released: Arc::clone(&self.released),
        }
    }

    /// Waits until some slot is given back. Call it after creating the future with
    /// [`FairShare::released`] and before a `try_acquire`, so no release is missed.
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    /// Slots of the pool free now.
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_account_holds_only_its_share_and_others_still_get_slots() {
        let share = FairShare::new(4, 2);
        let first = share.try_acquire(1).unwrap();
        let second = share.try_acquire(1).unwrap();
        assert_eq!(share.try_acquire(1).unwrap_err(), NoSlot::AccountFull);
        let other = share.try_acquire(2).unwrap();
        let other_again = share.try_acquire(2).unwrap();
        assert_eq!(share.try_acquire(3).unwrap_err(), NoSlot::PoolFull);
        drop(first);
        assert!(share.try_acquire(3).is_ok());
        drop((second, other, other_again));
        assert_eq!(share.available(), 4);
    }

    #[tokio::test]
    async fn a_waiting_account_takes_no_pool_slot() {
        let share = FairShare::new(3, 1);
        let held = share.acquire(1).await.unwrap();
        let waiting = {
            let share = Arc::clone(&share);
            tokio::spawn(async move { share.acquire(1).await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert_eq!(share.available(), 2);
        assert!(share.try_acquire(2).is_ok());
        drop(held);
        waiting.await.unwrap().unwrap();
    }

    #[test]
    fn the_share_is_at_least_one_and_at_most_the_pool() {
        assert_eq!(FairShare::new(4, 0).per_account(), 1);
        assert_eq!(FairShare::new(2, 9).per_account(), 2);
    }
}
