//! Group commit: writer threads own writing; writers that arrive while a commit is being made
//! durable are committed together in the next transaction. redb has one writer thread (it
//! takes one write transaction at a time); on PostgreSQL the row-locking writer has several,
//! so one commit's round trips do not hold up the next group's.

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

/// Runs after every successful commit, in the writer thread that made it.
pub(super) type AfterCommit = Arc<dyn Fn() + Send + Sync>;

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
    /// Starts `threads` writer threads (at least one) taking groups from one queue. Each
    /// commits its groups in transactions of its own, so with more than one, two groups'
    /// transactions run at once: only for isolations under which that is safe and a
    /// database that takes concurrent write transactions.
    pub(super) fn start(
        db: Arc<Database>,
        isolation: Isolation,
        threads: usize,
        after_commit: AfterCommit,
    ) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let conflicts = Arc::new(AtomicU64::new(0));
        for _ in 0..threads.max(1) {
            let writer = Writer {
                db: Arc::clone(&db),
                isolation,
                after_commit: Arc::clone(&after_commit),
                conflicts: Arc::clone(&conflicts),
            };
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("sluice-store-writer".into())
                .spawn(move || writer.run(&queue))
                .expect("the store writer thread starts");
        }
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

/// Waits for a job and takes it with every job queued behind it (up to [`MAX_GROUP`]); none
/// once every handle is gone. The writer thread holding the queue's lock is the one waiting;
/// the others are committing, or wait for the lock after it.
fn next_group(queue: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
    let mut group = vec![queue.recv().ok()?];
    while group.len() < MAX_GROUP {
        match queue.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    Some(group)
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
    fn run(&self, queue: &Mutex<mpsc::Receiver<Job>>) {
        while let Some(group) = next_group(queue) {
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
            match (job.change)(&txn) {
                Ok(()) => {}
                // A failure of the database may be an earlier change's write going out with
                // this change's statement: each writer is then run alone, and learns of its
                // own failure only.
                Err(error) if error.is_database_failure() => return Err(Stopped::Failed(error)),
                Err(refusal) => return Err(Stopped::Refused(index, refusal)),
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
            after_commit: Arc::new(move || {
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

    /// On PostgreSQL a change's writes go out with a later statement that reads their table,
    /// which may be the next change's, or with the group's commit: a write the database
    /// refuses fails the change that made it, not the one whose statement carried it.
    #[test]
    fn a_write_refused_when_sent_fails_its_own_change_only() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        const NOT_MIGRATED: TableDefinition<u64, u64> = TableDefinition::new("not_migrated");
        let db = Arc::new(place.open_database(&[NUMBERS.name()]));
        let writer = Writer {
            db: Arc::clone(&db),
            isolation: Isolation::RowLocking,
            after_commit: Arc::new(|| {}),
            conflicts: Arc::new(AtomicU64::new(0)),
        };
        let job = |change: Change| Job {
            change,
            done: oneshot::channel().0,
        };
        let jobs = vec![
            job(Box::new(|txn| {
                txn.open_table(NUMBERS)?.insert(1, 1)?;
                txn.open_table(NOT_MIGRATED)?.insert(1, 1)
            })),
            job(Box::new(|txn| {
                let mut numbers = txn.open_table(NUMBERS)?;
                let seen = numbers.get(2)?;
                numbers.insert(2, seen.unwrap_or_default() + 2)
            })),
            job(Box::new(|txn| txn.open_table(NUMBERS)?.insert(3, 3))),
        ];

        let mut outcomes = Vec::new();
        writer.settle(&jobs, &mut outcomes);

        let failed: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
        assert_eq!(failed, [true, false, false]);
        let txn = db.begin_read().unwrap();
        let numbers = txn.open_table(NUMBERS).unwrap();
        assert_eq!(
            numbers.get(1).unwrap(),
            None,
            "the failed change left a write"
        );
        assert_eq!(numbers.get(2).unwrap(), Some(2));
        assert_eq!(numbers.get(3).unwrap(), Some(3));
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
            1,
            Arc::new(|| {}),
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
