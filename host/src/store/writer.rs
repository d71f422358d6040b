//! Group commit: one thread owns writing; writers that arrive while a commit is being made
//! durable are committed together in the next transaction.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::StoreError;

/// The most writers one transaction takes, so a burst does not make one commit huge.
const MAX_GROUP: usize = 512;

type Change = Box<dyn Fn(&WriteTransaction) -> Result<(), StoreError> + Send>;

/// Runs after every successful commit, in the writer thread.
pub(super) type AfterCommit = Box<dyn Fn() + Send>;

struct Job {
    change: Change,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// A submitted change: its commit's outcome, and where its value lands.
struct Pending<T> {
    finished: oneshot::Receiver<Result<(), StoreError>>,
    slot: Arc<Mutex<Option<T>>>,
}

/// The handle writers send their changes through.
#[derive(Clone)]
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl GroupWriter {
    pub(super) fn start(db: Arc<Database>, after_commit: AfterCommit) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sluice-store-writer".into())
            .spawn(move || run(&db, &queue, &after_commit))
            .expect("the store writer thread starts");
        Self { jobs }
    }

    fn submit<T: Send + 'static>(
        &self,
        change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Pending<T>, StoreError> {
        let slot = Arc::new(Mutex::new(None));
        let output = Arc::clone(&slot);
        let change: Change = Box::new(move |txn| {
            let value = change(txn)?;
            *output.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
            Ok(())
        });
        let (done, finished) = oneshot::channel();
        self.jobs
            .send(Job { change, done })
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending { finished, slot })
    }

    pub(super) async fn write<T: Send + 'static>(
        &self,
        change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pending = self.submit(change)?;
        pending.finished.await.map_err(|_| StoreError::Closed)??;
        take(&pending.slot)
    }

    pub(super) fn write_blocking<T: Send + 'static>(
        &self,
        change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pending = self.submit(change)?;
        pending
            .finished
            .blocking_recv()
            .map_err(|_| StoreError::Closed)??;
        take(&pending.slot)
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Result<T, StoreError> {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or(StoreError::Closed)
}

fn run(db: &Database, queue: &mpsc::Receiver<Job>, after_commit: &AfterCommit) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match commit_together(db, &group) {
            Ok(()) => {
                after_commit();
                for job in group {
                    let _ = job.done.send(Ok(()));
                }
            }
            // One writer failed (or the commit did): the shared transaction was rolled back,
            // so each writer gets a transaction of its own and its own answer.
            Err(_) => {
                for job in group {
                    let result = commit_together(db, std::slice::from_ref(&job));
                    if result.is_ok() {
                        after_commit();
                    }
                    let _ = job.done.send(result);
                }
            }
        }
    }
}

fn commit_together(db: &Database, group: &[Job]) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    for job in group {
        (job.change)(&txn)?;
    }
    txn.commit()?;
    Ok(())
}
