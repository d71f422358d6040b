//! Reads over many records (statistics, searches, the queue's counts), for the dashboard's
//! pages and the API's statistics alike: one small pool of blocking workers of which one
//! account holds one slot at a time, so a tenant asking again and again for a heavy read waits
//! for its own earlier reads and leaves the other tenants theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::fairness::FairShare;
use crate::store::{Store, StoreError};

/// Record-scanning reads running at once, over all accounts and both the API and dashboard.
const SCANS_AT_ONCE: usize = 2;

/// Why a scan gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The store failed while reading.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pool was closed: the server is shutting down.
    #[error("the server is shutting down")]
    Closed,
    /// The read panicked or was cancelled.
    #[error("the read did not finish: {0}")]
    Aborted(String),
}

/// The shared pool of scans.
#[derive(Debug)]
pub struct Scans {
    store: Store,
    share: Arc<FairShare>,
    /// Scans waiting for a slot now.
    waiting: AtomicUsize,
}

/// Counts a scan as waiting while it is alive.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Scans {
    /// A pool reading `store`.
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            share: FairShare::new(SCANS_AT_ONCE, 1),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Runs `read` on a blocking worker in a slot of account `account_key` (`u64::MAX` for
    /// the operator's reads over every account), once the account's earlier scans are done and a slot of
    /// the pool is free.
    pub async fn run<T: Send + 'static>(
        &self,
        account_key: u64,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ScanError> {
        let slot = {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.waiting);
            self.share
                .acquire(account_key)
                .await
                .map_err(|_| ScanError::Closed)?
        };
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            // The slot is given back when the read ends, even if the caller stopped waiting.
            let _slot = slot;
            read(&store)
        });
        match read.await {
            Ok(result) => Ok(result?),
            Err(error) => Err(ScanError::Aborted(error.to_string())),
        }
    }

    /// Scans waiting for a slot now (their account's or the pool's).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Slots of the pool free now.
    pub fn free(&self) -> usize {
        self.share.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc;

    /// A scan of `account` that records when it starts and ends, and ends when told.
    fn held_scan(
        scans: &Arc<Scans>,
        account: u64,
        name: &'static str,
        log: &Arc<Mutex<Vec<String>>>,
    ) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, released) = mpsc::channel::<()>();
        let (scans, log) = (Arc::clone(scans), Arc::clone(log));
        let task = tokio::spawn(async move {
            scans
                .run(account, move |_| {
                    log.lock().unwrap().push(format!("{name} started"));
                    released.recv().ok();
                    log.lock().unwrap().push(format!("{name} ended"));
                    Ok(())
                })
                .await
                .unwrap();
        });
        (release, task)
    }

    async fn until(what: impl Fn() -> bool) {
        while !what() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_account_s_scans_queue_behind_its_own_and_not_another_s() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let scans = Scans::new(store);
        let log = Arc::new(Mutex::new(Vec::new()));
        let started = |name: &str| {
            let log = Arc::clone(&log);
            let name = format!("{name} started");
            move || log.lock().unwrap().contains(&name)
        };

        let (release_first, first) = held_scan(&scans, 1, "first", &log);
        until(started("first")).await;
        let (release_second, second) = held_scan(&scans, 1, "second", &log);
        until(|| scans.waiting() == 1).await;
        // Account 1 holds one slot and waits for it; the other slot is still free...
        assert_eq!(scans.free(), SCANS_AT_ONCE - 1);
        // ...and account 2 takes it while account 1's second scan waits.
        let (release_other, other) = held_scan(&scans, 2, "other", &log);
        until(started("other")).await;
        assert_eq!(scans.waiting(), 1);
        assert_eq!(scans.free(), 0);
        release_other.send(()).unwrap();
        other.await.unwrap();
        assert!(!started("second")(), "{:?}", log.lock().unwrap());

        release_first.send(()).unwrap();
        first.await.unwrap();
        until(started("second")).await;
        release_second.send(()).unwrap();
        second.await.unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "first started",
                "other started",
                "other ended",
                "first ended",
                "second started",
                "second ended"
            ]
        );
        assert_eq!((scans.waiting(), scans.free()), (0, SCANS_AT_ONCE));
    }
}
