//! The PostgreSQL backend: each table of the store is a table `kv_<name> (k bytea primary key,
//! v bytea not null)` holding keys and values in [`columns`](super::columns)' encoding. Keys
//! encode order-preservingly, so `ORDER BY k` is the order the store walks its tables in.
//!
//! The storage layer is synchronous (the store's reads are plain functions called from async
//! tasks and from blocking threads alike), the driver is async: each statement is sent and
//! answered on the calling thread, which drives its session's connection while it waits (see
//! `kv/sessions.rs`).
//!
//! Schema changes are versioned SQL migrations (`migrations/`, applied by refinery at open
//! under an advisory lock, so nodes starting together do not race); a database whose schema
//! is newer than this build knows is refused.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::columns::Malformed;
use super::postgres_tls::configure;
use super::sessions::{PooledSession, SessionPool};
use super::{Column, Database, Entry, Key};
use crate::store::StoreError;

refinery::embed_migrations!("src/store/kv/migrations");

/// The key of the session advisory lock migrations run under (any fixed number; this one is
/// "sluice" in ASCII).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365;

/// The table refinery records applied migrations in.
const MIGRATION_TABLE: &str = "refinery_schema_history";

/// The rows a range fetches first; each further fetch from the same end doubles, up to
/// [`LAST_BATCH`]. A caller that wants one entry costs one small query, one that walks a
/// table costs few round trips.
const FIRST_BATCH: i64 = 16;

/// The most rows one fetch of a range takes.
const LAST_BATCH: i64 = 1024;

/// What the pool of connections may hold and how long a request waits for one.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// The most connections the node holds open to PostgreSQL.
    pub max_connections: usize,
    /// How long a store operation waits for a connection (or for PostgreSQL to accept one)
    /// before it fails, instead of hanging while PostgreSQL is gone.
    pub wait: Duration,
    /// The longest a statement may run, and a session may sit idle in a transaction, before
    /// PostgreSQL ends it: a node that stalls mid-transaction holds no row locks for longer.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            wait: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
        }
    }
}

/// How long a connection may stay silent before TCP keepalives probe it, so a connection to a
/// PostgreSQL that vanished (a host down, a partition) fails instead of hanging.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// A failure of the PostgreSQL backend.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The connection string could not be read.
    #[error("the connection string: {0}")]
    Url(tokio_postgres::Error),
    /// A statement failed.
    #[error("{}", described(.0))]
    Query(#[from] tokio_postgres::Error),
    /// No connection could be had in time: PostgreSQL is gone, refuses, or every connection of
    /// the pool stayed busy.
    #[error("no connection to PostgreSQL within {0:?}: {1}")]
    Unavailable(Duration, String),
    /// A stored key or value is not in the encoding its table's types have.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// Applying the schema's migrations failed.
    #[error("migrating the schema: {0}")]
    Migration(#[from] refinery::Error),
    /// The database was migrated by a newer Sluice; this one would misread it.
    #[error(
        "the database's schema is at version {found}, newer than the version {known} this \
         Sluice knows: run a Sluice at least as new as the one that migrated it"
    )]
    NewerSchema {
        /// The schema version the database has.
        found: i32,
        /// The newest version this build's migrations reach.
        known: i32,
    },
    /// The migrations do not create every table the store uses.
    #[error("the schema lacks tables the store uses (a migration is missing): {0}")]
    MissingTables(String),
    /// The connection ended (PostgreSQL closed it, or the network failed).
    #[error("the connection to PostgreSQL ended: {0}")]
    Ended(String),
    /// A transaction's statement failed earlier, so its commit would roll it back.
    #[error("the transaction failed before its commit and was rolled back")]
    Aborted,
    /// The connection string's TLS settings cannot be followed (see `kv/postgres_tls.rs`).
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    /// The backend's runtime is gone (the store is shutting down).
    #[error("the PostgreSQL backend has stopped")]
    Stopped,
}

/// A driver error with what PostgreSQL said, if it said anything: the driver's own text
/// names only the kind ("db error") and keeps the server's message in its source.
fn described(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "{} {}: {} (SQLSTATE {})",
            error,
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

impl PostgresError {
    /// Whether PostgreSQL refused the transaction only because a concurrent one conflicted
    /// with it (a serialization failure or a deadlock): the same changes, run again in a new
    /// transaction, may well succeed.
    pub fn is_transient_conflict(&self) -> bool {
        match self {
            Self::Query(error) => matches!(
                error.code(),
                Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }
}

impl From<PostgresError> for StoreError {
    fn from(error: PostgresError) -> Self {
        StoreError::Postgres(Box::new(error))
    }
}

/// An open PostgreSQL database: the pool of sessions with it.
pub struct Postgres {
    pool: Arc<SessionPool>,
}

/// Opens the database at `url` (a `postgres://` URL or `key=value` pairs) and brings its
/// schema up to date.
pub fn open(url: &str, settings: PoolSettings) -> Result<Database, StoreError> {
    let (mut config, tls) = configure(url)?;
    let millis = settings.statement_timeout.as_millis().max(1);
    // Read committed is also what a statement sent outside a transaction runs at (a
    // transaction that only writes commits as one statement: see `Transaction::commit`),
    // whatever the server's default is.
    let limits = format!(
        "-c statement_timeout={millis} -c idle_in_transaction_session_timeout={millis} \
         -c default_transaction_isolation=read\\ committed"
    );
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {limits}"),
        _ => limits,
    };
    config
        .options(&options)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE);
    let pool = SessionPool::new(config, tls, settings.max_connections, settings.wait);
    let mut session = pool.get()?;
    let mut client = session.take_client();
    let migrated = session.drive(migrate(&mut client));
    session.put_client_back(client);
    migrated?;
    Ok(Database::Postgres(Postgres { pool }))
}

/// The newest schema version this build's migrations reach.
fn known_version() -> i32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(refinery::Migration::version)
        .max()
        .unwrap_or(0)
}

/// Applies the migrations the database lacks, holding the migration lock so that nodes
/// starting together apply each once; refuses a schema newer than this build knows.
async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), PostgresError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let migrated = migrate_locked(client).await;
    // A broken connection has lost its lock with its session; nothing to release then.
    let released = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    migrated?;
    released?;
    Ok(())
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<(), PostgresError> {
    let history: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&MIGRATION_TABLE])
        .await?
        .get(0);
    if history.is_some() {
        let found: Option<i32> = client
            .query_one(&format!("SELECT max(version) FROM {MIGRATION_TABLE}"), &[])
            .await?
            .get(0);
        let known = known_version();
        if let Some(found) = found.filter(|&found| found > known) {
            return Err(PostgresError::NewerSchema { found, known });
        }
    }
    let report = migrations::runner().run_async(client).await?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "applied a schema migration"
        );
    }
    let present = table_names_of(client).await?;
    let missing: Vec<&str> = crate::store::TABLES
        .iter()
        .map(|table| table.name())
        .filter(|name| !present.iter().any(|present| present == name))
        .collect();
    if !missing.is_empty() {
        return Err(PostgresError::MissingTables(missing.join(", ")));
    }
    Ok(())
}

/// The store's tables the database has (their names without the `kv_` prefix).
async fn table_names_of(client: &tokio_postgres::Client) -> Result<Vec<String>, PostgresError> {
    let rows = client
        .query(
            "SELECT substr(tablename, 4) FROM pg_tables \
             WHERE schemaname = current_schema() AND starts_with(tablename, 'kv_') \
             ORDER BY tablename",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// What a transaction is for, and so how it begins.
#[derive(Clone, Copy)]
enum Purpose {
    /// One snapshot for the whole transaction, taken when it begins.
    Read,
    /// Changes that commit only if they are as if no other transaction ran beside them.
    Write,
    /// Changes by many nodes at once to rows of their own, which lock what they rest on.
    RowLockingWrite,
    /// Taking work from a queue: rows locked as they are taken and skipped by other takers,
    /// so nodes taking at once get different rows instead of serialization failures.
    Claim,
}

impl Postgres {
    /// Begins a transaction on a connection of the pool. Its `BEGIN` is sent with its first
    /// statement (or with its writes at commit), in one round trip (see [`Connection::query`]).
    fn begin(&self, purpose: Purpose) -> Result<Transaction, StoreError> {
        let begin = match purpose {
            Purpose::Read => READ_BEGIN,
            Purpose::Write => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            Purpose::RowLockingWrite => ROW_LOCKING_BEGIN,
            // A claim lost with a crash of PostgreSQL only makes its work claimable again,
            // so its commit does not wait for the disk.
            Purpose::Claim => {
                "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit TO OFF"
            }
        };
        Ok(Transaction {
            conn: Arc::new(Connection {
                session: self.pool.get()?,
                failed: AtomicBool::new(false),
                // PostgreSQL takes a transaction's snapshot at its first statement, not at
                // BEGIN, so sending BEGIN with the first statement changes nothing it sees.
                unsent: std::sync::Mutex::new(Unsent {
                    begin: Some(begin),
                    writes: Vec::new(),
                }),
            }),
            finished: false,
        })
    }

    /// A connection for one statement outside any transaction (PostgreSQL runs it with a
    /// snapshot of its own): no BEGIN before it, nothing to end after it. Only for reads: an
    /// unsent write would wait for a commit that never comes.
    pub(super) fn single_statement(&self) -> Result<Transaction, StoreError> {
        Ok(Transaction {
            conn: Arc::new(Connection {
                session: self.pool.get()?,
                failed: AtomicBool::new(false),
                unsent: std::sync::Mutex::new(Unsent::default()),
            }),
            // Nothing to roll back when it is dropped.
            finished: true,
        })
    }

    /// The most connections the pool holds open.
    pub(super) fn max_connections(&self) -> usize {
        self.pool.max()
    }

    /// A read transaction.
    pub(super) fn begin_read(&self) -> Result<Transaction, StoreError> {
        self.begin(Purpose::Read)
    }

    /// A write transaction.
    pub(super) fn begin_write(&self) -> Result<Transaction, StoreError> {
        self.begin(Purpose::Write)
    }

    /// A write transaction at `READ COMMITTED` whose changes lock the rows they rest on.
    pub(super) fn begin_row_locking_write(&self) -> Result<Transaction, StoreError> {
        self.begin(Purpose::RowLockingWrite)
    }

    /// A transaction that takes work with [`Table::take_first`].
    pub(super) fn begin_claim(&self) -> Result<Transaction, StoreError> {
        self.begin(Purpose::Claim)
    }
}

/// A connection in a transaction, shared by the transaction and the tables opened in it.
struct Connection {
    session: PooledSession,
    /// Whether a statement failed: PostgreSQL then rolls back whatever comes, COMMIT included.
    failed: AtomicBool,
    /// What goes out ahead of the next statement.
    unsent: std::sync::Mutex<Unsent>,
}

/// What a transaction has not sent yet: the `BEGIN` goes out with the next statement, a
/// table's writes with the next statement reading that table; the rest with the commit.
#[derive(Default)]
struct Unsent {
    /// The `BEGIN`, until anything is sent.
    begin: Option<&'static str>,
    /// Blind writes by table: for each key written, the last value put under it (none: it
    /// was deleted last), in key order (so two transactions writing the same keys lock them
    /// in the same order).
    writes: Vec<(&'static str, TableWrites)>,
}

/// The blind writes of one table: what each key gets (none: it is deleted).
type TableWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// How a row-locking write transaction begins.
const ROW_LOCKING_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// How a read transaction begins: one snapshot for all its statements.
const READ_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// A future one of a transaction's statements is sent and answered by.
type Sent<'c, T> = Pin<Box<dyn Future<Output = Result<T, PostgresError>> + Send + 'c>>;

impl Connection {
    /// Runs a statement's work to its end on this thread.
    fn run<T, Work>(self: &Arc<Self>, work: impl FnOnce(Arc<Self>) -> Work) -> Result<T, StoreError>
    where
        T: Send,
        Work: Future<Output = Result<T, PostgresError>> + Send,
    {
        let outcome = self.session.drive(work(Arc::clone(self)));
        if outcome.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        Ok(outcome?)
    }

    /// Runs one statement that reads the tables `reads`, prepared once per connection, and
    /// returns its rows; the `BEGIN` and the waiting writes to those tables go first (the
    /// statement sees them), the other tables' writes keep waiting.
    fn query<P: ToSql + Sync + Send + 'static>(
        self: &Arc<Self>,
        sql: String,
        params: Vec<P>,
        reads: &[&'static str],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.refuse_after_failure()?;
        let unsent = self.take_unsent_for(reads);
        self.run(move |conn| async move {
            let statement = conn.prepare(&sql).await?;
            let query: Sent<'_, _> = Box::pin(async {
                let params: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|param| param as &(dyn ToSql + Sync))
                    .collect();
                Ok(conn.session.client().query(&statement, &params).await?)
            });
            conn.after_unsent(unsent, query).await
        })
    }

    /// A statement prepared on this connection (once per connection).
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, PostgresError> {
        self.session.prepare(sql).await
    }

    /// Sends what was unsent, then `last`, without waiting for answers in between (the
    /// statements are pipelined: written one behind the other, answered in one round trip),
    /// and returns `last`'s answer; a failure of what went before it is the cause of its
    /// own, so that one is returned first. Statements are prepared before anything is sent:
    /// preparing is a round trip of its own the first time, and would let a later statement
    /// overtake an earlier one.
    async fn after_unsent<'c, T>(
        &'c self,
        unsent: Unsent,
        last: Sent<'c, T>,
    ) -> Result<T, PostgresError> {
        let writes = match writes_statement(unsent.writes) {
            Some((sql, arrays)) => Some((self.prepare(&sql).await?, arrays)),
            None => None,
        };
        let mut before: Vec<Sent<'_, ()>> = Vec::with_capacity(2);
        if let Some(begin) = unsent.begin {
            before.push(Box::pin(async move {
                Ok(self.session.client().batch_execute(begin).await?)
            }));
        }
        if let Some((statement, arrays)) = &writes {
            before.push(Box::pin(async move {
                let params: Vec<&(dyn ToSql + Sync)> = arrays
                    .iter()
                    .map(|array| array as &(dyn ToSql + Sync))
                    .collect();
                self.session.client().execute(statement, &params).await?;
                Ok(())
            }));
        }
        let (before, last) = in_order(before, last).await;
        before.into_iter().try_for_each(|outcome| outcome)?;
        last
    }

    /// Refuses a statement after one failed: PostgreSQL would refuse it too, and when the
    /// failure kept `BEGIN` from going out, it would run outside the transaction (with the
    /// transaction's unsent writes) and commit on its own.
    fn refuse_after_failure(&self) -> Result<(), PostgresError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(PostgresError::Aborted);
        }
        Ok(())
    }

    /// Takes everything unsent, to be sent now.
    fn take_unsent(&self) -> Unsent {
        std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes what must go before a statement reading the tables `reads`: the `BEGIN` and
    /// those tables' waiting writes. Writes to other tables wait for a statement that reads
    /// them or for the commit: a transaction's writes to one table then go out as one
    /// statement however many times other tables are read in between, and their row locks
    /// are held for less time.
    fn take_unsent_for(&self, reads: &[&'static str]) -> Unsent {
        let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        let (writes, waiting) = std::mem::take(&mut unsent.writes)
            .into_iter()
            .partition(|(table, _)| reads.contains(table));
        unsent.writes = waiting;
        Unsent {
            begin: unsent.begin.take(),
            writes,
        }
    }

    /// Whether the transaction has begun on the server (one that sent nothing has not, and
    /// has nothing to end).
    fn has_begun(&self) -> bool {
        self.unsent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .begin
            .is_none()
    }

    /// Puts a value under a key in a table (none: deletes the key's entry) when the next
    /// statement reading that table or the commit goes out.
    fn write_blind(&self, table: &'static str, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        let rows = match unsent.writes.iter().position(|(name, _)| *name == table) {
            Some(index) => &mut unsent.writes[index].1,
            None => {
                unsent.writes.push((table, BTreeMap::new()));
                &mut unsent.writes.last_mut().expect("just pushed").1
            }
        };
        rows.insert(key, value);
    }
}

/// The one statement that makes a transaction's waiting writes, with its parameters: per
/// table an `INSERT .. ON CONFLICT DO UPDATE` of the puts and a `DELETE` of the deleted keys,
/// each a data-modifying `WITH` query of one statement when there are several (PostgreSQL
/// parses, plans and runs one statement instead of one per table and kind: the cost of a
/// statement is mostly its own, not its rows'). None when nothing waits.
///
/// Tables are written in name order and keys in key order. PostgreSQL runs the `WITH`
/// queries in an order it does not promise (today the last written first), but the same
/// for every such statement, so two transactions' write statements still lock the rows
/// they share in one order; a transaction that sent one table's writes earlier (it read
/// that table) may lock in another, and a deadlock that follows is retried as a conflict.
/// A table's puts and deletes are of different keys (the last write of each key is kept),
/// so no row is changed twice by the statement, which PostgreSQL refuses.
fn writes_statement(
    mut tables: Vec<(&'static str, TableWrites)>,
) -> Option<(String, Vec<Vec<Vec<u8>>>)> {
    tables.sort_unstable_by_key(|(table, _)| *table);
    let mut parts = Vec::new();
    let mut arrays: Vec<Vec<Vec<u8>>> = Vec::new();
    for (table, rows) in tables {
        let (mut put_keys, mut values, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in rows {
            match value {
                Some(value) => {
                    put_keys.push(key);
                    values.push(value);
                }
                None => deleted.push(key),
            }
        }
        if !put_keys.is_empty() {
            parts.push(format!(
                "INSERT INTO kv_{table} (k, v) SELECT * FROM unnest(${}::bytea[], ${}::bytea[]) \
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                arrays.len() + 1,
                arrays.len() + 2
            ));
            arrays.push(put_keys);
            arrays.push(values);
        }
        if !deleted.is_empty() {
            parts.push(format!(
                "DELETE FROM kv_{table} WHERE k = ANY(${}::bytea[])",
                arrays.len() + 1
            ));
            arrays.push(deleted);
        }
    }
    let sql = match parts.len() {
        0 => return None,
        1 => parts.pop().expect("one part"),
        _ => {
            let queries: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(index, part)| format!("w{index} AS ({part})"))
                .collect();
            format!("WITH {} SELECT", queries.join(", "))
        }
    };
    Some((sql, arrays))
}

/// Polls `before`, then `last`, each in that order every time: a statement is sent when its
/// future is first polled, so they are sent in that order. Waits for every one to finish. One
/// that fails at its first poll was never sent: the ones after it are then not sent either
/// (a COMMIT behind a write that never went out would commit the transaction without it).
async fn in_order<'c, T>(
    mut before: Vec<Sent<'c, ()>>,
    mut last: Sent<'c, T>,
) -> (Vec<Result<(), PostgresError>>, Result<T, PostgresError>) {
    let mut before_done: Vec<Option<Result<(), PostgresError>>> =
        before.iter().map(|_| None).collect();
    let mut last_done = None;
    let mut first_poll = true;
    std::future::poll_fn(|cx| {
        let sending = std::mem::replace(&mut first_poll, false);
        for index in 0..before.len() {
            if before_done[index].is_none()
                && let Poll::Ready(outcome) = before[index].as_mut().poll(cx)
            {
                before_done[index] = Some(outcome);
            }
            if sending && matches!(before_done[index], Some(Err(_))) {
                for unsent in &mut before_done[index + 1..] {
                    *unsent = Some(Err(PostgresError::Aborted));
                }
                last_done = Some(Err(PostgresError::Aborted));
                return Poll::Ready(());
            }
        }
        if last_done.is_none()
            && let Poll::Ready(outcome) = last.as_mut().poll(cx)
        {
            last_done = Some(outcome);
        }
        if last_done.is_some() && before_done.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (
        before_done.into_iter().flatten().collect(),
        last_done.expect("finished"),
    )
}

/// A transaction; rolled back when dropped uncommitted.
pub struct Transaction {
    conn: Arc<Connection>,
    finished: bool,
}

impl Transaction {
    /// Opens a table (every table exists: the migrations made them).
    pub(super) fn table<K: Key, V: Column>(&self, name: &'static str) -> Table<K, V> {
        Table {
            conn: Arc::clone(&self.conn),
            name,
            types: PhantomData,
        }
    }

    /// The names of the store's tables the database has.
    pub(super) fn table_names(&self) -> Result<Vec<String>, StoreError> {
        self.conn.refuse_after_failure()?;
        let unsent = self.conn.take_unsent_for(&[]);
        self.conn.run(|conn| async move {
            let names: Sent<'_, _> = Box::pin(table_names_of(conn.session.client()));
            conn.after_unsent(unsent, names).await
        })
    }

    /// The value under one key in each of several tables (none where a key is missing),
    /// read by one statement.
    pub(super) fn values_at(
        &self,
        keys: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let sql = keys
            .iter()
            .enumerate()
            .map(|(index, (table, _))| {
                format!("SELECT {index}, v FROM kv_{table} WHERE k = ${}", index + 1)
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        self.values_by(sql, keys)
    }

    /// As [`Transaction::values_at`], the rows of the first `locked` keys locked `FOR UPDATE`
    /// in their order, and none but the first read or locked when the first is not there.
    /// PostgreSQL refuses a locking clause beside `UNION`, so each row is read by a `WITH`
    /// query of its own; a locked row that another transaction changed while this one waited
    /// for it is read as that one left it, the others as committed when the statement began.
    pub(super) fn locked_values_at(
        &self,
        keys: Vec<(&'static str, Vec<u8>)>,
        locked: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let locks = keys
            .iter()
            .enumerate()
            .map(|(index, (table, _))| {
                let locking = if index < locked { " FOR UPDATE" } else { "" };
                // Nothing after a first row that is not there: locking the others then would
                // hold them while the caller looks for the first again, out of its order.
                let after_first = if index > 0 {
                    " AND EXISTS (SELECT FROM l0)"
                } else {
                    ""
                };
                format!(
                    "l{index} AS (SELECT v FROM kv_{table} WHERE k = ${}{after_first}{locking})",
                    index + 1
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let reads = (0..keys.len())
            .map(|index| format!("SELECT {index}, v FROM l{index}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        self.values_by(format!("WITH {locks} {reads}"), keys)
    }

    /// The values found by `sql`, whose rows are `(index of the key, value)`, in the order of
    /// `keys` (the statement's parameters).
    fn values_by(
        &self,
        sql: String,
        keys: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut values = vec![None; keys.len()];
        let tables: Vec<&'static str> = keys.iter().map(|(table, _)| *table).collect();
        let rows = self
            .conn
            .query(sql, keys.into_iter().map(|(_, key)| key).collect(), &tables)?;
        for row in rows {
            let index: i32 = row.get(0);
            if let Some(value) = usize::try_from(index)
                .ok()
                .and_then(|index| values.get_mut(index))
            {
                *value = Some(row.get(1));
            }
        }
        Ok(values)
    }

    /// Commits the transaction: its unsent writes and the COMMIT go out together.
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        if self.conn.failed.load(Ordering::SeqCst) {
            self.finished = true;
            // COMMIT would answer with a silent ROLLBACK.
            let rolled_back = self.conn.run(|conn| async move {
                Ok(conn.session.client().batch_execute("ROLLBACK").await?)
            });
            if rolled_back.is_err() {
                // Its transaction's state unknown: closed rather than lent again.
                self.conn.session.discard();
            }
            rolled_back?;
            return Err(PostgresError::Aborted.into());
        }
        let unsent = self.conn.take_unsent();
        if unsent.begin.is_some() && unsent.writes.is_empty() {
            // Nothing was sent: there is nothing to commit.
            self.finished = true;
            return Ok(());
        }
        if unsent.begin == Some(ROW_LOCKING_BEGIN) {
            // A row-locking transaction that only wrote: its writes are one statement, and
            // PostgreSQL runs a statement sent outside a transaction as a transaction of its
            // own at the session's level (read committed, set at connect), committed when it
            // ends. BEGIN and COMMIT around it would be two more statements for nothing.
            self.finished = true;
            return self.conn.run(|conn| async move {
                let Some((sql, arrays)) = writes_statement(unsent.writes) else {
                    return Ok(());
                };
                let statement = conn.prepare(&sql).await?;
                let params: Vec<&(dyn ToSql + Sync)> = arrays
                    .iter()
                    .map(|array| array as &(dyn ToSql + Sync))
                    .collect();
                conn.session.client().execute(&statement, &params).await?;
                Ok(())
            });
        }
        let committed = self.conn.run(|conn| async move {
            // A write that failed is returned before the COMMIT's answer, which rolled the
            // transaction back without an error.
            let commit: Sent<'_, _> =
                Box::pin(async { Ok(conn.session.client().batch_execute("COMMIT").await?) });
            conn.after_unsent(unsent, commit).await
        });
        // When the commit failed before COMMIT went out (a statement could not be prepared),
        // the transaction is still open on the server: dropping this rolls it back before
        // the connection goes back to the pool.
        self.finished = committed.is_ok();
        committed
    }

    /// Deletes a table's rows (tests that give a store the layout of before a table existed
    /// apply to redb files only; this keeps the call answerable).
    #[cfg(test)]
    pub(super) fn clear_table(&self, name: &'static str) -> Result<bool, StoreError> {
        let rows = self.conn.query(
            format!("DELETE FROM kv_{name} RETURNING 1"),
            Vec::<Vec<u8>>::new(),
            &[name],
        )?;
        Ok(!rows.is_empty())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished && self.conn.has_begun() {
            // The connection goes back to the pool after the rollback; one whose rollback
            // failed is closed instead, its transaction's state unknown.
            let rolled_back = self.conn.run(|conn| async move {
                Ok(conn.session.client().batch_execute("ROLLBACK").await?)
            });
            if let Err(error) = rolled_back {
                tracing::debug!(%error, "rolling back a transaction failed");
                self.conn.session.discard();
            }
        }
    }
}

/// A table as a transaction sees it.
pub struct Table<K: Key, V: Column> {
    conn: Arc<Connection>,
    name: &'static str,
    types: PhantomData<fn() -> (K, V)>,
}

/// The encoding of a key.
fn key_bytes<K: Key>(key: &K::SelfType<'_>) -> Vec<u8> {
    super::columns::encode_key::<K>(key)
}

/// A value found by [`Transaction::values_at`], read back from its encoding.
pub(super) fn decode_found<V: Column>(
    bytes: Option<Vec<u8>>,
) -> Result<Option<V::Owned>, StoreError> {
    bytes
        .map(|bytes| Ok(decode_value::<V>(&bytes).map_err(PostgresError::from)?))
        .transpose()
}

/// A value read back from its encoding; the whole of `bytes` must be the value.
fn decode_value<V: Column>(mut bytes: &[u8]) -> Result<V::Owned, Malformed> {
    let value = V::decode(&mut bytes)?;
    if bytes.is_empty() {
        Ok(value)
    } else {
        Err(Malformed("value (bytes after its end)"))
    }
}

/// An entry read back from a row `(k, v)`.
fn decode_entry<K: Key, V: Column>(
    (key, value): (Vec<u8>, Vec<u8>),
) -> Result<Entry<K, V>, StoreError> {
    Ok((
        super::columns::decode_key::<K>(&key).map_err(PostgresError::from)?,
        decode_value::<V>(&value).map_err(PostgresError::from)?,
    ))
}

/// The `WHERE` conditions of a range of keys, numbering its parameters from `$1`.
fn range_conditions(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> (String, Vec<Vec<u8>>) {
    let mut conditions = vec!["true".to_string()];
    let mut params = Vec::new();
    for (bound, included, excluded) in [(lower, ">=", ">"), (upper, "<=", "<")] {
        let (operator, key) = match bound {
            Bound::Included(key) => (included, key),
            Bound::Excluded(key) => (excluded, key),
            Bound::Unbounded => continue,
        };
        params.push(key.clone());
        conditions.push(format!("k {operator} ${}", params.len()));
    }
    (conditions.join(" AND "), params)
}

/// The encoded bounds of a range of keys.
fn encoded_bounds<'k, K: Key, KR>(
    range: &impl std::ops::RangeBounds<KR>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>)
where
    KR: std::borrow::Borrow<K::SelfType<'k>> + 'k,
{
    let encode = |bound: Bound<&KR>| {
        bound.map(|key| key_bytes::<K>(std::borrow::Borrow::<K::SelfType<'k>>::borrow(key)))
    };
    (encode(range.start_bound()), encode(range.end_bound()))
}

impl<K: Key, V: Column> Table<K, V> {
    /// The value under an encoded key.
    pub(super) fn get(&self, key: &K::SelfType<'_>) -> Result<Option<V::Owned>, StoreError> {
        self.value_at(key, "")
    }

    /// The value under each key, in their order, read by one statement.
    pub(super) fn get_each<'k, Q: std::borrow::Borrow<K::SelfType<'k>>>(
        &self,
        keys: &[Q],
    ) -> Result<Vec<Option<V::Owned>>, StoreError> {
        let encoded: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| key_bytes::<K>(key.borrow()))
            .collect();
        if encoded.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn.query(
            format!(
                "SELECT k, v FROM kv_{} WHERE k = ANY($1::bytea[])",
                self.name
            ),
            vec![encoded.clone()],
            &[self.name],
        )?;
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> = rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        encoded
            .iter()
            .map(|key| decode_found::<V>(found.get(key).cloned()))
            .collect()
    }

    /// The value under a key, its row locked until the transaction ends.
    pub(super) fn lock(&self, key: &K::SelfType<'_>) -> Result<Option<V::Owned>, StoreError> {
        self.value_at(key, " FOR UPDATE")
    }

    /// The value under a key, its row locked until the transaction ends; none when another
    /// transaction holds the row.
    pub(super) fn lock_unless_held(
        &self,
        key: &K::SelfType<'_>,
    ) -> Result<Option<V::Owned>, StoreError> {
        self.value_at(key, " FOR UPDATE SKIP LOCKED")
    }

    /// The value under a key, read with `locking` (a locking clause, or nothing).
    fn value_at(
        &self,
        key: &K::SelfType<'_>,
        locking: &str,
    ) -> Result<Option<V::Owned>, StoreError> {
        let rows = self.conn.query(
            format!("SELECT v FROM kv_{} WHERE k = $1{locking}", self.name),
            vec![key_bytes::<K>(key)],
            &[self.name],
        )?;
        rows.first()
            .map(|row| Ok(decode_value::<V>(row.get(0)).map_err(PostgresError::from)?))
            .transpose()
    }

    /// Puts a value under a key, replacing the value there, when the transaction's next
    /// statement reading this table or its commit goes out.
    pub(super) fn insert(
        &self,
        key: &K::SelfType<'_>,
        value: &V::SelfType<'_>,
    ) -> Result<(), StoreError> {
        let mut encoded = Vec::new();
        V::encode(value, &mut encoded);
        self.conn
            .write_blind(self.name, key_bytes::<K>(key), Some(encoded));
        Ok(())
    }

    /// Puts a value under a key unless an entry is there; returns whether it did.
    pub(super) fn insert_if_absent(
        &self,
        key: &K::SelfType<'_>,
        value: &V::SelfType<'_>,
    ) -> Result<bool, StoreError> {
        let mut encoded = Vec::new();
        V::encode(value, &mut encoded);
        let rows = self.conn.query(
            format!(
                "INSERT INTO kv_{} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING RETURNING 1",
                self.name
            ),
            vec![key_bytes::<K>(key), encoded],
            &[self.name],
        )?;
        Ok(!rows.is_empty())
    }

    /// Removes the entry under a key; returns its value.
    pub(super) fn remove(&self, key: &K::SelfType<'_>) -> Result<Option<V::Owned>, StoreError> {
        let rows = self.conn.query(
            format!("DELETE FROM kv_{} WHERE k = $1 RETURNING v", self.name),
            vec![key_bytes::<K>(key)],
            &[self.name],
        )?;
        rows.first()
            .map(|row| Ok(decode_value::<V>(row.get(0)).map_err(PostgresError::from)?))
            .transpose()
    }

    /// Removes the entry under a key, if any, when the transaction's next statement reading
    /// this table or its commit goes out.
    pub(super) fn delete(&self, key: &K::SelfType<'_>) {
        self.conn.write_blind(self.name, key_bytes::<K>(key), None);
    }

    /// Removes every entry whose key is in the range.
    pub(super) fn remove_range<'k, KR>(
        &self,
        range: impl std::ops::RangeBounds<KR> + 'k,
    ) -> Result<(), StoreError>
    where
        KR: std::borrow::Borrow<K::SelfType<'k>> + 'k,
    {
        let (lower, upper) = encoded_bounds::<K, KR>(&range);
        let (conditions, params) = range_conditions(&lower, &upper);
        self.conn.query(
            format!("DELETE FROM kv_{} WHERE {conditions}", self.name),
            params,
            &[self.name],
        )?;
        Ok(())
    }

    /// The first `limit` entries in the range that no other transaction holds, locked for
    /// this one until it ends.
    pub(super) fn take_first<'k, KR>(
        &self,
        range: impl std::ops::RangeBounds<KR> + 'k,
        limit: usize,
    ) -> Result<Vec<Entry<K, V>>, StoreError>
    where
        KR: std::borrow::Borrow<K::SelfType<'k>> + 'k,
    {
        let (lower, upper) = encoded_bounds::<K, KR>(&range);
        let (conditions, params) = range_conditions(&lower, &upper);
        let limit = limit.min(LAST_BATCH as usize);
        let rows = self.conn.query(
            format!(
                "SELECT k, v FROM kv_{} WHERE {conditions} ORDER BY k LIMIT {limit} \
                 FOR UPDATE SKIP LOCKED",
                self.name
            ),
            params,
            &[self.name],
        )?;
        rows.into_iter()
            .map(|row| decode_entry::<K, V>((row.get(0), row.get(1))))
            .collect()
    }

    /// The entries whose keys are in the range, fetched as they are walked.
    pub(super) fn range<'k, KR>(&self, range: impl std::ops::RangeBounds<KR> + 'k) -> Range<K, V>
    where
        KR: std::borrow::Borrow<K::SelfType<'k>> + 'k,
    {
        let (lower, upper) = encoded_bounds::<K, KR>(&range);
        self.between(lower, upper)
    }

    /// The entries between encoded bounds.
    fn between(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Range<K, V> {
        Range {
            conn: Arc::clone(&self.conn),
            name: self.name,
            lower,
            upper,
            front: VecDeque::new(),
            back: VecDeque::new(),
            front_batch: FIRST_BATCH,
            back_batch: FIRST_BATCH,
            all_fetched: false,
            types: PhantomData,
        }
    }

    /// Every entry, fetched as they are walked.
    pub(super) fn iter(&self) -> Range<K, V> {
        self.between(Bound::Unbounded, Bound::Unbounded)
    }

    /// The entry with the smallest key.
    pub(super) fn first(&self) -> Result<Option<Entry<K, V>>, StoreError> {
        self.iter().next().transpose()
    }

    /// The entry with the largest key.
    pub(super) fn last(&self) -> Result<Option<Entry<K, V>>, StoreError> {
        self.iter().next_back().transpose()
    }

    /// How many entries the table has.
    pub(super) fn len(&self) -> Result<u64, StoreError> {
        let rows = self.conn.query(
            format!("SELECT count(*) FROM kv_{}", self.name),
            Vec::<Vec<u8>>::new(),
            &[self.name],
        )?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(count as u64)
    }
}

/// Which end of a range a fetch takes rows from.
#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

/// Entries of a table in key order, fetched in growing batches from whichever end is walked.
/// The two ends narrow the keys still unfetched, so a walk from both ends fetches each row
/// once, and a caller that stops early has not fetched the rest of the table.
pub struct Range<K: Key, V: Column> {
    conn: Arc<Connection>,
    name: &'static str,
    /// The keys not fetched yet lie between these bounds.
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// Fetched from the front, smallest key first.
    front: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Fetched from the back, largest key first.
    back: VecDeque<(Vec<u8>, Vec<u8>)>,
    front_batch: i64,
    back_batch: i64,
    /// Whether every row between the bounds has been fetched.
    all_fetched: bool,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: Column> Range<K, V> {
    /// Fetches the next batch from `end` of the unfetched keys.
    fn fetch(&mut self, end: End) -> Result<(), StoreError> {
        let (conditions, params) = range_conditions(&self.lower, &self.upper);
        let (order, batch) = match end {
            End::Front => ("", &mut self.front_batch),
            End::Back => (" DESC", &mut self.back_batch),
        };
        let limit = *batch;
        *batch = (limit * 2).min(LAST_BATCH);
        let rows = self.conn.query(
            format!(
                "SELECT k, v FROM kv_{} WHERE {conditions} ORDER BY k{order} LIMIT {limit}",
                self.name
            ),
            params,
            &[self.name],
        )?;
        let fetched = rows.len() as i64;
        let rows = rows.into_iter().map(|row| (row.get(0), row.get(1)));
        match end {
            End::Front => self.front.extend(rows),
            End::Back => self.back.extend(rows),
        }
        if fetched < limit {
            self.all_fetched = true;
        } else {
            match end {
                End::Front => {
                    let last = self.front.back().map(|(key, _)| key.clone());
                    self.lower = last.map_or(Bound::Unbounded, Bound::Excluded);
                }
                End::Back => {
                    let last = self.back.back().map(|(key, _)| key.clone());
                    self.upper = last.map_or(Bound::Unbounded, Bound::Excluded);
                }
            }
        }
        Ok(())
    }

    /// The next row from `end`, fetching when that end's rows are used up.
    fn take(&mut self, end: End) -> Option<Result<Entry<K, V>, StoreError>> {
        loop {
            let taken = match end {
                End::Front => self.front.pop_front(),
                End::Back => self.back.pop_front(),
            };
            if let Some(row) = taken {
                return Some(decode_entry::<K, V>(row));
            }
            if self.all_fetched {
                // What the other end fetched is all that is left.
                return match end {
                    End::Front => self.back.pop_back(),
                    End::Back => self.front.pop_back(),
                }
                .map(decode_entry::<K, V>);
            }
            if let Err(error) = self.fetch(end) {
                self.all_fetched = true;
                self.front.clear();
                self.back.clear();
                return Some(Err(error));
            }
        }
    }
}

impl<K: Key, V: Column> Iterator for Range<K, V> {
    type Item = Result<Entry<K, V>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.take(End::Front)
    }
}

impl<K: Key, V: Column> DoubleEndedIterator for Range<K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.take(End::Back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, pool};

    /// The tables the migrations create, read from their SQL.
    fn migrated_tables() -> Vec<String> {
        let mut tables = Vec::new();
        for migration in migrations::runner().get_migrations() {
            let sql: String = migration
                .sql()
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .map(|line| format!("{line}\n"))
                .collect();
            for statement in sql.split(';') {
                let words: Vec<&str> = statement.split_whitespace().collect();
                if let ["CREATE", "TABLE", name, ..] = words.as_slice()
                    && let Some(name) = name.strip_prefix("kv_")
                {
                    tables.push(name.to_string());
                }
            }
        }
        tables.sort();
        tables
    }

    #[test]
    fn the_migrations_create_exactly_the_stores_tables() {
        let mut known: Vec<String> = crate::store::TABLES
            .iter()
            .map(|table| table.name().to_string())
            .collect();
        known.sort();
        assert_eq!(
            migrated_tables(),
            known,
            "a table of store::TABLES needs a migration creating it (and only those)"
        );
        for name in &known {
            assert!(
                name.bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_'),
                "{name} is not a plain SQL name"
            );
        }
    }

    #[test]
    fn opening_migrates_once_and_refuses_a_schema_newer_than_it_knows() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let database = place.database().unwrap();
        drop(open(database.url(), pool()).unwrap());
        // A second open finds the schema current and opens as it is.
        drop(open(database.url(), pool()).unwrap());
        database
            .execute(&format!(
                "INSERT INTO {MIGRATION_TABLE} (version, name, applied_on, checksum) \
                 VALUES (999, 'from_the_future', '2099-01-01T00:00:00Z', '0')"
            ))
            .unwrap();
        let Err(error) = open(database.url(), pool()) else {
            panic!("a schema at version 999 was opened");
        };
        let message = error.to_string();
        assert!(
            message.contains("version 999") && message.contains("newer"),
            "{message}"
        );
    }

    #[test]
    fn nodes_starting_together_migrate_the_schema_once() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let url = place.database().unwrap().url().to_string();
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || open(&url, pool()).map(drop))
            })
            .collect();
        for node in nodes {
            node.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_server_that_is_not_there_fails_the_open_instead_of_hanging() {
        let settings = PoolSettings {
            max_connections: 1,
            wait: Duration::from_millis(500),
            ..PoolSettings::default()
        };
        let Err(error) = open("host=/nonexistent/socket/folder dbname=sluice", settings) else {
            panic!("opened a database that does not exist");
        };
        assert!(error.to_string().starts_with("PostgreSQL: "), "{error}");
    }

    /// A statement that runs past `statement_timeout` is cancelled by PostgreSQL (so a node
    /// stalled inside a transaction cannot hold its locks for ever), and the transaction it
    /// ran in fails at its commit.
    #[test]
    fn a_statement_running_past_the_timeout_is_cancelled() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let settings = PoolSettings {
            statement_timeout: Duration::from_millis(200),
            ..pool()
        };
        let Database::Postgres(db) = open(place.database().unwrap().url(), settings).unwrap()
        else {
            unreachable!("a PostgreSQL URL opens PostgreSQL");
        };
        let txn = db.begin_write().unwrap();
        let Err(StoreError::Postgres(error)) =
            txn.conn
                .query("SELECT pg_sleep(30)".into(), Vec::<Vec<u8>>::new(), &[])
        else {
            panic!("a statement ran past the timeout");
        };
        let PostgresError::Query(error) = *error else {
            panic!("not a failed statement: {error}");
        };
        assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error:?}");
        assert!(matches!(
            txn.commit().unwrap_err(),
            StoreError::Postgres(error) if matches!(*error, PostgresError::Aborted)
        ));
    }
}
