//! The PostgreSQL backend's connections: a pool of sessions, each driven by the thread that
//! waits for its answer.
//!
//! The storage layer is synchronous and the driver (tokio-postgres) is async. A session keeps
//! its connection's future and a current-thread runtime of its own; a statement is sent and
//! answered inside that runtime's `block_on`, which polls the statement and the connection
//! together on the calling thread. The thread writes to the socket and sleeps in its own
//! `epoll` until PostgreSQL answers: no other thread is woken on the way there or back. (A
//! shared runtime running every connection as a task, with callers waiting on a channel, cost
//! two more thread wake-ups per round trip; they were the largest share of a node's CPU.)
//!
//! `block_on` may not run inside another runtime's context: a worker of a multi-thread
//! runtime lends its thread with `block_in_place` first; a current-thread runtime cannot lend
//! its only thread, so there the work goes to a scoped thread (tests only); a plain thread
//! just runs it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_postgres::{Client, Statement};

use super::postgres::PostgresError;
use super::postgres_tls::PostgresTls;

/// The most statements a session keeps prepared.
const STATEMENTS_KEPT: usize = 256;

/// How long a session may sit unused in the pool before it is checked for a connection that
/// ended meanwhile (PostgreSQL restarted, the network dropped it) before it is handed out.
/// Below this, checking would cost more than it finds: a busy pool's sessions come back
/// within microseconds.
const CHECKED_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A connection's own future, which reads and writes its socket when polled.
type Driven = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Runs `work` where it may block its thread: inside `block_in_place` on a worker of a
/// multi-thread runtime, on a scoped thread of its own under a current-thread runtime (whose
/// one thread cannot be lent), as it is anywhere else.
pub(super) fn blocking<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    match Handle::try_current() {
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        Ok(_) => std::thread::scope(|scope| match scope.spawn(work).join() {
            Ok(outcome) => outcome,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => work(),
    }
}

/// One connection to PostgreSQL, with the runtime its socket is registered with.
pub(super) struct Session {
    client: Option<Client>,
    driver: Mutex<Driver>,
    statements: Mutex<HashMap<String, Statement>>,
}

/// What polls a session's connection: its future and the runtime that owns its socket.
struct Driver {
    runtime: Option<tokio::runtime::Runtime>,
    connection: Option<Driven>,
    /// Why the connection ended, once it has: it is not polled again.
    ended: Option<String>,
}

impl Session {
    /// Connects with `config`, waiting at most `wait` for PostgreSQL to accept.
    fn connect(
        config: &tokio_postgres::Config,
        tls: &PostgresTls,
        wait: Duration,
    ) -> Result<Self, PostgresError> {
        let unavailable = |reason: String| PostgresError::Unavailable(wait, reason);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| unavailable(error.to_string()))?;
        let connecting = config.connect(tls.clone());
        let connected =
            blocking(|| runtime.block_on(async { tokio::time::timeout(wait, connecting).await }));
        let (client, connection) = match connected {
            Ok(Ok(connected)) => connected,
            failed => {
                // Not waiting for a name lookup still running on the runtime's blocking pool.
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Err(error)) => PostgresError::Query(error),
                    _ => unavailable("PostgreSQL did not accept in time".into()),
                });
            }
        };
        Ok(Self {
            client: Some(client),
            driver: Mutex::new(Driver {
                runtime: Some(runtime),
                connection: Some(Box::pin(connection)),
                ended: None,
            }),
            statements: Mutex::new(HashMap::new()),
        })
    }

    /// The session's client, which sends statements to the connection.
    pub(super) fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("kept until the session is dropped")
    }

    /// Lends the client out mutably (as refinery's migrations need it) until
    /// [`Session::put_client_back`]; no statement can be sent meanwhile.
    pub(super) fn take_client(&mut self) -> Client {
        self.client
            .take()
            .expect("kept until the session is dropped")
    }

    /// Takes back the client lent by [`Session::take_client`].
    pub(super) fn put_client_back(&mut self, client: Client) {
        self.client = Some(client);
    }

    fn driver(&self) -> MutexGuard<'_, Driver> {
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` (statements sent through [`Session::client`]) to its end on this thread,
    /// polling the connection beside it. Fails when the connection has ended.
    pub(super) fn drive<T: Send>(
        &self,
        work: impl Future<Output = Result<T, PostgresError>> + Send,
    ) -> Result<T, PostgresError> {
        let mut driver = self.driver();
        if let Some(ended) = &driver.ended {
            return Err(PostgresError::Ended(ended.clone()));
        }
        let Driver {
            runtime,
            connection,
            ended,
        } = &mut *driver;
        let (Some(runtime), Some(connection)) = (runtime.as_ref(), connection.as_mut()) else {
            return Err(PostgresError::Stopped);
        };
        let (outcome, end) = blocking(|| {
            runtime.block_on(async {
                let mut work = std::pin::pin!(work);
                // The work first: what it sends is queued for the connection, which then
                // writes it out in the same turn. After work that failed, the connection is
                // polled once more, so an end that came with the failure (a server process
                // terminated) is seen before the session goes back to the pool.
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(outcome) = work.as_mut().poll(cx) {
                        let end = match outcome {
                            Ok(_) => None,
                            Err(_) => match connection.as_mut().poll(cx) {
                                Poll::Ready(end) => Some(end),
                                Poll::Pending => None,
                            },
                        };
                        return Poll::Ready((Some(outcome), end));
                    }
                    connection.as_mut().poll(cx).map(|end| (None, Some(end)))
                })
                .await
            })
        });
        if let Some(end) = end {
            let reason = match end {
                Ok(()) => "the connection was closed".to_string(),
                Err(error) => error.to_string(),
            };
            *ended = Some(reason.clone());
            if outcome.is_none() {
                return Err(PostgresError::Ended(reason));
            }
        }
        outcome.expect("the work finished when the connection did not end")
    }

    /// Whether the connection is known to have ended.
    fn has_ended(&self) -> bool {
        self.driver().ended.is_some() || self.client.as_ref().is_none_or(Client::is_closed)
    }

    /// Lets the connection read what arrived while nobody polled it (an end of file when
    /// PostgreSQL closed it), without waiting; false when it has ended.
    fn check(&self) -> bool {
        // An empty statement list is answered at once; the round trip also shows the
        // connection still carries answers.
        self.drive(async { Ok(self.client().batch_execute("").await?) })
            .is_ok()
            && !self.has_ended()
    }

    /// A statement prepared on this session, from its cache when it was prepared before. The
    /// cache is emptied when it holds [`STATEMENTS_KEPT`]: the statements writing a
    /// transaction's changes differ by the set of tables written, so their number is bounded
    /// only by the combinations of tables a group of changes can write.
    pub(super) async fn prepare(&self, sql: &str) -> Result<Statement, PostgresError> {
        {
            let mut statements = self.statements.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(statement) = statements.get(sql) {
                return Ok(statement.clone());
            }
            if statements.len() >= STATEMENTS_KEPT {
                statements.clear();
            }
        }
        let statement = self.client().prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The socket is deregistered from the runtime's driver when the connection goes, so
        // the runtime goes last, without waiting for anything (a runtime may not wait where
        // it is dropped, which can be an async worker).
        let driver = self.driver.get_mut().unwrap_or_else(|e| e.into_inner());
        driver.connection = None;
        self.client = None;
        if let Some(runtime) = driver.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The node's sessions with one database: at most `max` open, idle ones kept for reuse.
pub(super) struct SessionPool {
    config: tokio_postgres::Config,
    tls: PostgresTls,
    max: usize,
    wait: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
    /// A session's connection was found ended: the idle ones are checked at the next request.
    suspect: AtomicBool,
}

/// The pool's sessions that are not in use, and how many are open in all.
struct PoolState {
    idle: Vec<(Session, Instant)>,
    open: usize,
}

impl SessionPool {
    /// A pool connecting with `config` and `tls`, holding at most `max` sessions; a request
    /// waits at most `wait` for one.
    pub(super) fn new(
        config: tokio_postgres::Config,
        tls: PostgresTls,
        max: usize,
        wait: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            tls,
            max: max.max(1),
            wait,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            suspect: AtomicBool::new(false),
        })
    }

    /// The most sessions the pool holds open.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session for the caller's use, given back when the returned guard is dropped: an idle
    /// one, a new one while fewer than the most are open, else the first one given back
    /// within the pool's wait.
    pub(super) fn get(self: &Arc<Self>) -> Result<PooledSession, PostgresError> {
        // The common case, an idle session used a moment ago, takes no blocking section.
        if let Some(session) = self.take_idle()? {
            return Ok(self.lend(session));
        }
        blocking(|| {
            let deadline = Instant::now() + self.wait;
            loop {
                if let Some(session) = self.take_idle()? {
                    return Ok(self.lend(session));
                }
                let mut state = self.state();
                if state.idle.is_empty() && state.open < self.max {
                    state.open += 1;
                    drop(state);
                    return match Session::connect(&self.config, &self.tls, self.wait) {
                        Ok(session) => Ok(self.lend(session)),
                        Err(error) => {
                            self.forget_one();
                            Err(error)
                        }
                    };
                }
                if !state.idle.is_empty() {
                    continue;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(PostgresError::Unavailable(
                        self.wait,
                        format!("all {} connections stayed busy", self.max),
                    ));
                }
                drop(
                    self.freed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
        })
    }

    /// An idle session that is still connected, if there is one; the ended ones met on the
    /// way are closed.
    fn take_idle(&self) -> Result<Option<Session>, PostgresError> {
        if self.suspect.swap(false, Ordering::SeqCst) {
            self.check_every_idle();
        }
        loop {
            let Some((session, since)) = self.state().idle.pop() else {
                return Ok(None);
            };
            let usable = if since.elapsed() < CHECKED_AFTER_IDLE {
                !session.has_ended()
            } else {
                session.check()
            };
            if usable {
                return Ok(Some(session));
            }
            drop(session);
            self.forget_one();
        }
    }

    /// Checks every idle session and closes those whose connection ended: a connection found
    /// ended by its user usually ended with others (PostgreSQL restarted, the network
    /// failed), which would otherwise fail one statement each before being noticed.
    fn check_every_idle(&self) {
        let idle = std::mem::take(&mut self.state().idle);
        for (session, since) in idle {
            if session.check() {
                self.state().idle.push((session, since));
            } else {
                drop(session);
                self.forget_one();
            }
        }
    }

    /// Counts one session less as open, so another may be connected in its place.
    fn forget_one(&self) {
        self.state().open -= 1;
        self.freed.notify_one();
    }

    fn lend(self: &Arc<Self>, session: Session) -> PooledSession {
        PooledSession {
            session: Some(session),
            pool: Arc::clone(self),
            unsettled: AtomicBool::new(false),
        }
    }

    /// Takes back a session: kept for the next request unless its connection ended or it is
    /// `unsettled` (in a state the next user must not inherit).
    fn give_back(&self, session: Session, unsettled: bool) {
        let ended = session.has_ended();
        if ended {
            self.suspect.store(true, Ordering::SeqCst);
        }
        if unsettled || ended {
            drop(session);
            self.forget_one();
            return;
        }
        self.state().idle.push((session, Instant::now()));
        self.freed.notify_one();
    }
}

/// A session lent by the pool, given back when dropped.
pub(super) struct PooledSession {
    session: Option<Session>,
    pool: Arc<SessionPool>,
    unsettled: AtomicBool,
}

impl PooledSession {
    /// Has the session closed instead of given back (its transaction's state is unknown).
    pub(super) fn discard(&self) {
        self.unsettled.store(true, Ordering::SeqCst);
    }
}

impl std::ops::Deref for PooledSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session.as_ref().expect("kept until dropped")
    }
}

impl std::ops::DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("kept until dropped")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool
                .give_back(session, self.unsettled.load(Ordering::SeqCst));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::TestPlace;
    use tokio_postgres::error::SqlState;

    /// A pool over `place`'s database.
    fn pool_of(place: &TestPlace, max: usize, wait: Duration) -> Arc<SessionPool> {
        let url = place.database().expect("a PostgreSQL place").url();
        let (config, tls) =
            super::super::postgres_tls::configure(url).expect("a connection string");
        SessionPool::new(config, tls, max, wait)
    }

    /// The server process serving a session.
    fn backend_of(session: &Session) -> Result<i32, PostgresError> {
        session.drive(async {
            let row = session
                .client()
                .query_one("SELECT pg_backend_pid()", &[])
                .await?;
            Ok(row.get(0))
        })
    }

    #[test]
    fn a_session_is_lent_again_and_one_whose_connection_ended_is_not() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let pool = pool_of(&place, 2, Duration::from_secs(10));
        let first = backend_of(&pool.get().unwrap()).unwrap();
        assert_eq!(
            backend_of(&pool.get().unwrap()).unwrap(),
            first,
            "an idle session is lent again"
        );

        // Ended by the server while idle in the pool, and lent again at once: the first
        // statement finds the end (no check is made so soon), and the session is not lent
        // again after it.
        let database = place.database().unwrap();
        database
            .execute(&format!("SELECT pg_terminate_backend({first})"))
            .unwrap();
        let session = pool.get().unwrap();
        // The termination's own message may answer the statement, or the end come first.
        let error = backend_of(&session).unwrap_err();
        assert!(
            matches!(&error, PostgresError::Ended(_))
                || matches!(&error, PostgresError::Query(error)
                    if error.code() == Some(&SqlState::ADMIN_SHUTDOWN)),
            "{error}"
        );
        drop(session);
        let second = backend_of(&pool.get().unwrap()).unwrap();
        assert_ne!(second, first);

        // Ended while idle for longer than a check is skipped: never lent.
        database
            .execute(&format!("SELECT pg_terminate_backend({second})"))
            .unwrap();
        std::thread::sleep(CHECKED_AFTER_IDLE + Duration::from_millis(100));
        let third = backend_of(&pool.get().unwrap()).unwrap();
        assert_ne!(third, second);
        assert_eq!(pool.state().open, 1, "the ended sessions are not counted");
    }

    /// A server that ended every connection (a restart) costs one failed statement, not one
    /// per idle session: the first session found ended has the others checked.
    #[test]
    fn one_session_found_ended_has_the_idle_ones_checked() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let pool = pool_of(&place, 3, Duration::from_secs(10));
        let sessions: Vec<PooledSession> = (0..3).map(|_| pool.get().unwrap()).collect();
        let backends: Vec<i32> = sessions
            .iter()
            .map(|session| backend_of(session).unwrap())
            .collect();
        drop(sessions);
        let database = place.database().unwrap();
        for backend in &backends {
            database
                .execute(&format!("SELECT pg_terminate_backend({backend})"))
                .unwrap();
        }
        assert!(backend_of(&pool.get().unwrap()).is_err());
        let fresh = backend_of(&pool.get().unwrap()).unwrap();
        assert!(!backends.contains(&fresh));
        assert_eq!(pool.state().open, 1, "the ended sessions are closed");
    }

    #[test]
    fn a_request_for_a_busy_pool_waits_for_a_session_given_back_and_gives_up_after_the_wait() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let wait = Duration::from_millis(400);
        let pool = pool_of(&place, 1, wait);
        let held = pool.get().unwrap();
        let backend = backend_of(&held).unwrap();

        let started = Instant::now();
        let Err(error) = pool.get() else {
            panic!("a second session was lent from a pool of one");
        };
        assert!(
            started.elapsed() >= wait,
            "gave up after {:?}",
            started.elapsed()
        );
        assert!(matches!(error, PostgresError::Unavailable(..)), "{error}");

        let waiting = std::thread::spawn({
            let pool = Arc::clone(&pool);
            move || pool.get().and_then(|session| backend_of(&session))
        });
        std::thread::sleep(wait / 4);
        drop(held);
        assert_eq!(waiting.join().unwrap().unwrap(), backend);
    }

    #[tokio::test]
    async fn statements_run_from_a_current_thread_runtime() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let pool = pool_of(&place, 1, Duration::from_secs(10));
        assert!(backend_of(&pool.get().unwrap()).unwrap() > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_run_from_the_workers_of_a_multi_thread_runtime() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let pool = pool_of(&place, 2, Duration::from_secs(10));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.get().and_then(|session| backend_of(&session)) })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap() > 0);
        }
    }
}
