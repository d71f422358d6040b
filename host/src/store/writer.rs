//! Group commit: one thread owns writing; writers that arrive while a commit is being made
//! durable are committed together in the next transaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::kv::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::StoreError;

/// The most writers one transaction takes, so a burst does not make one commit huge.
const MAX_GROUP: usize = 512;

/// How many times a group of writers is run again when a concurrent transaction conflicted
/// with it (PostgreSQL's serialization failures and deadlocks, between nodes sharing a
/// database) before each of its writers is tried alone.
const GROUP_CONFLICT_RETRIES: u32 = 3;

/// How many times a writer alone is run again after conflicts before it is told of one.
const CONFLICT_RETRIES: u32 = 8;

/// How a writer's transactions see and hold what they read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isolation {
    /// As if no other transaction ran beside them ([`Database::begin_write`]).
    Serializable,
    /// Each change locks the rows it rests on ([`Database::begin_row_locking_write`]).
    RowLocking,
}

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
    conflicts: Arc<AtomicU64>,
}

impl GroupWriter {
    pub(super) fn start(
        db: Arc<Database>,
        isolation: Isolation,
        after_commit: AfterCommit,
    ) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let conflicts = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db,
            isolation,
            after_commit,
            conflicts: Arc::clone(&conflicts),
        };
        std::thread::Builder::new()
            .name("sluice-store-writer".into())
            .spawn(move || writer.run(&queue))
            .expect("the store writer thread starts");
        Self { jobs, conflicts }
    }

    /// How many times a group was run again after a conflict with a concurrent transaction.
    pub(super) fn conflicts_retried(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
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

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    isolation: Isolation,
    after_commit: AfterCommit,
    conflicts: Arc<AtomicU64>,
}

impl Writer {
    fn run(&self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let mut outcomes = Vec::with_capacity(group.len());
            self.settle(&group, &mut outcomes);
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.done.send(outcome);
            }
        }
    }

    /// Commits `jobs` and pushes one outcome per job, in order. A change that refuses (its
    /// closure returns an error) costs its writers no more than a change that succeeds: the
    /// changes before it are committed together, the ones after it form the next group. Each
    /// change runs at most twice (once more when one after it refused), and a group with `r`
    /// refusals takes `r + 1` commits, not one per writer: a tenant sending refused changes
    /// cannot make every other writer's change wait for a commit of its own. A conflict with
    /// a concurrent transaction (another node's) is no refusal: the whole group runs again,
    /// and after repeated conflicts each writer alone.
    fn settle(&self, jobs: &[Job], outcomes: &mut Vec<Result<(), StoreError>>) {
        if jobs.is_empty() {
            return;
        }
        let mut stopped = self.commit_together(jobs);
        let retries = if jobs.len() > 1 {
            GROUP_CONFLICT_RETRIES
        } else {
            CONFLICT_RETRIES
        };
        for retry in 0..retries {
            match &stopped {
                Err(Stopped::Refused(_, error) | Stopped::Failed(error))
                    if error.is_transient_conflict() =>
                {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, writers = jobs.len(), "a concurrent transaction conflicted; running the group again");
                    std::thread::sleep(conflict_backoff(retry));
                    stopped = self.commit_together(jobs);
                }
                _ => break,
            }
        }
        // The database itself failed, or concurrent transactions kept conflicting with the
        // group: each writer gets a transaction and an answer of its own (rare; it is what
        // lets the writers that can still be served be served, and a small transaction is
        // less likely to meet another node's than a large one).
        let each_alone = jobs.len() > 1
            && match &stopped {
                Ok(()) => false,
                Err(Stopped::Failed(_)) => true,
                Err(Stopped::Refused(_, error)) => error.is_transient_conflict(),
            };
        if each_alone {
            for job in jobs {
                self.settle(std::slice::from_ref(job), outcomes);
            }
            return;
        }
        match stopped {
            Ok(()) => {
                (self.after_commit)();
                outcomes.extend(jobs.iter().map(|_| Ok(())));
            }
            Err(Stopped::Refused(index, refusal)) => {
                // Its partial changes are gone with the rolled-back transaction; the changes
                // before it ran in that transaction too, so they run again in a fresh one.
                self.settle(&jobs[..index], outcomes);
                outcomes.push(Err(refusal));
                self.settle(&jobs[index + 1..], outcomes);
            }
            Err(Stopped::Failed(error)) => outcomes.push(Err(error)),
        }
    }
}

/// The pause before running a group again after its `retry`-th conflict: random, up to a
/// ceiling that doubles from 1 ms to 64 ms, so two nodes' writers that collided do not collide
/// again in step.
fn conflict_backoff(retry: u32) -> std::time::Duration {
    let ceiling_micros = 1_000u64 << retry.min(6);
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    std::time::Duration::from_micros(u64::from_le_bytes(random) % ceiling_micros)
}

/// Where a shared transaction stopped.
enum Stopped {
    /// The change at this index (of the jobs tried) refused; the transaction was rolled back.
    Refused(usize, StoreError),
    /// Beginning or committing failed: no change of the group was made.
    Failed(StoreError),
}

impl Writer {
    fn commit_together(&self, jobs: &[Job]) -> Result<(), Stopped> {
        let txn = match self.isolation {
            Isolation::Serializable => self.db.begin_write(),
            Isolation::RowLocking => self.db.begin_row_locking_write(),
        }
        .map_err(Stopped::Failed)?;
        for (index, job) in jobs.iter().enumerate() {
            if let Err(refusal) = (job.change)(&txn) {
                return Err(Stopped::Refused(index, refusal));
            }
        }
        txn.commit().map_err(Stopped::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};
    use crate::store::kv::{ReadableTable, TableDefinition};
    use std::sync::atomic::AtomicUsize;

    const NUMBERS: TableDefinition<u64, u64> = TableDefinition::new("numbers");

    /// A change that writes `key`, then refuses when `refuse` says so (leaving a partial write
    /// behind in its transaction).
    fn change(key: u64, refuse: bool) -> Job {
        let (done, _finished) = oneshot::channel();
        Job {
            change: Box::new(move |txn| {
                txn.open_table(NUMBERS)?.insert(key, key)?;
                if refuse {
                    return Err(StoreError::Conflict(format!("number {key}")));
                }
                Ok(())
            }),
            done,
        }
    }

    on_both_backends!(sync a_refused_change_costs_one_commit_and_leaves_no_trace_nor_the_others_alone);
    fn a_refused_change_costs_one_commit_and_leaves_no_trace_nor_the_others_alone(
        place: TestPlace,
    ) {
        let db = Arc::new(place.open_database(&[NUMBERS.name()]));
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&commits);
        let writer = Writer {
            db: Arc::clone(&db),
            isolation: Isolation::Serializable,
            after_commit: Box::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
            conflicts: Arc::new(AtomicU64::new(0)),
        };
        let refused = [1, 4, 7];
        let jobs: Vec<Job> = (0..10)
            .map(|key| change(key, refused.contains(&key)))
            .collect();

        let mut outcomes = Vec::new();
        writer.settle(&jobs, &mut outcomes);

        let failed: Vec<u64> = (0..10)
            .filter(|&key| outcomes[key as usize].is_err())
            .collect();
        assert_eq!(failed, refused);
        // Three refusals: the changes between them share four commits, not one each.
        assert_eq!(commits.load(Ordering::SeqCst), refused.len() + 1);
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(NUMBERS).unwrap();
        assert_eq!(table.len().unwrap(), 7);
        for key in refused {
            assert!(table.get(key).unwrap().is_none(), "{key} left a trace");
        }
    }

    /// Two nodes on one PostgreSQL database: a group that read a row another node changed
    /// before it wrote that row fails to serialize, and runs again on the new value.
    #[test]
    fn a_group_a_concurrent_transaction_conflicted_with_runs_again_and_sees_its_change() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let this_node = Arc::new(place.open_database(&[NUMBERS.name()]));
        let other_node = Arc::new(place.open_database(&[]));
        let txn = this_node.begin_write().unwrap();
        txn.open_table(NUMBERS).unwrap().insert(1, 0).unwrap();
        txn.commit().unwrap();

        let writer = GroupWriter::start(
            Arc::clone(&this_node),
            Isolation::Serializable,
            Box::new(|| {}),
        );
        let interfered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = writer
            .write_blocking(move |txn| {
                let mut numbers = txn.open_table(NUMBERS)?;
                let read = numbers.get(1)?.unwrap_or_default();
                if !interfered.swap(true, Ordering::SeqCst) {
                    // The other node commits its change to the row after this transaction
                    // read it, once.
                    let other = other_node.begin_write()?;
                    other.open_table(NUMBERS)?.insert(1, 10)?;
                    other.commit()?;
                }
                numbers.insert(1, read + 1)?;
                Ok(read + 1)
            })
            .unwrap();

        assert_eq!(written, 11, "the second run read the other node's change");
        assert_eq!(writer.conflicts_retried(), 1);
        let txn = this_node.begin_read().unwrap();
        assert_eq!(txn.open_table(NUMBERS).unwrap().get(1).unwrap(), Some(11));
    }
}
