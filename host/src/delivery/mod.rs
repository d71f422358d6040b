//! Delivery: the outbound queue's scheduler, routing to MX hosts or static routes, the SMTP
//! client, and what each attempt means for the message.
//!
//! A processed message enters the queue in the transaction that records its flow's outcome.
//! The scheduler hands due messages to one worker per destination connection (at most
//! `max_connections_per_domain` per domain); a worker sends several messages over one session.
//! Each attempt is recorded (delivered, rescheduled or bounced) in one transaction as soon as
//! the remote answers, in a group commit shared with the other connections; the message stays
//! marked in flight until that commit is durable, so it is never handed out twice while
//! running. A restart repeats only messages whose remote answer had not been recorded yet.

pub mod capture;
pub mod client;
pub mod outcome;
pub mod rate;
pub mod routing;
pub mod verp;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;

use self::capture::{Capture, is_example_domain};
use self::client::{ClientConfig, Credentials, DeliveryFailure, SmtpSession, TlsPolicy};
use self::outcome::RetryPolicy;
use self::rate::{Rate, RateLimiter};
use self::routing::{Destination, RouteConfig, RouteError, Routes};
use self::verp::ReturnPath;
use crate::cluster::{Leasing, NodeCount};
use crate::dkim::Dkim;
use crate::dns::Resolver;
use crate::plugin::classifier::{AccountClassifiers, AccountVerdict, ReturnedRecipient};
use crate::schedule;
use crate::store::EventKind;
use crate::store::{
    AttemptRecord, DeliveryJob, DueMessage, Event, FilterKey, MessageStatus, Store, StoreError,
    now_millis,
};

/// The `[delivery]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Deliver at all; off keeps processed messages queued (an operator's pause).
    pub enabled: bool,
    /// The name this host gives in EHLO.
    pub hostname: String,
    /// Messages being delivered at once, over all destinations.
    pub workers: usize,
    /// Connections open at once to one destination domain, over all nodes of the platform
    /// (each node opens its share).
    pub max_connections_per_domain: usize,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
    /// How long a message may keep failing temporarily before it soft-bounces (hours); a flow
    /// may set its own.
    pub expiry_hours: u64,
    /// The wait after the first temporary failure (seconds); doubles per attempt.
    pub retry_initial_secs: u64,
    /// The longest wait between attempts (seconds).
    pub retry_max_secs: u64,
    /// Seconds to wait for a connection, then for each reply (RFC 5321 §4.5.3.2 values are
    /// minutes; this caps them all when set lower).
    pub timeout_secs: u64,
    /// Domains whose mail is only sent over TLS.
    pub require_tls_domains: Vec<String>,
    /// Static routes: a domain (or `*` for all) → `host:port` (`[::1]:25` for IPv6), or a
    /// smart host table with `address`, `username` and `password` (or `password_env`).
    pub routes: BTreeMap<String, RouteConfig>,
    /// Sending rates per recipient domain (or `*` for each other domain), e.g. `"600/min"`,
    /// over all nodes of the platform (each node sends its share).
    pub rate_limits: BTreeMap<String, Rate>,
    /// The port MX hosts are reached on: 25, except where a test or a tunnel says otherwise.
    pub mx_port: u16,
    /// Keep mail for the domains reserved for examples (RFC 2606) in `captured/` under the
    /// data folder instead of sending it, recorded as delivered to the capture (see
    /// [`capture`]). A static route covering the domain wins.
    pub capture_example_domains: bool,
    /// On a clean stop, how long the attempts under way may take to finish and be recorded
    /// (seconds) before the process ends without them. Keep it under the service manager's
    /// own stop timeout.
    pub stop_grace_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            hostname: "localhost".into(),
            workers: 64,
            max_connections_per_domain: 4,
            max_messages_per_connection: 100,
            expiry_hours: 24,
            retry_initial_secs: 60,
            retry_max_secs: 3600,
            timeout_secs: 300,
            require_tls_domains: Vec::new(),
            routes: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            mx_port: 25,
            capture_example_domains: true,
            stop_grace_secs: 25,
        }
    }
}

impl DeliveryConfig {
    /// The expiry of a message entering the queue now.
    pub fn expires_at(&self, flow_expiry_hours: Option<u64>) -> u64 {
        let hours = flow_expiry_hours.unwrap_or(self.expiry_hours);
        now_millis().saturating_add(hours.saturating_mul(3_600_000))
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            // Zero would retry back to back until expiry.
            initial: Duration::from_secs(self.retry_initial_secs.max(1)),
            max: Duration::from_secs(self.retry_max_secs.max(self.retry_initial_secs)),
        }
    }

    fn client(&self, domain: &str, routes: &Routes) -> ClientConfig {
        let mut config = ClientConfig::new(self.hostname.clone());
        let cap = Duration::from_secs(self.timeout_secs);
        for timeout in [
            &mut config.connect_timeout,
            &mut config.greeting_timeout,
            &mut config.ehlo_timeout,
            &mut config.mail_timeout,
            &mut config.rcpt_timeout,
            &mut config.data_init_timeout,
            &mut config.data_block_timeout,
            &mut config.data_end_timeout,
        ] {
            *timeout = (*timeout).min(cap);
        }
        if self.requires_tls(domain) {
            config.tls = TlsPolicy::Require;
        }
        if let Some(login) = routes.get(domain).and_then(|route| route.login.as_ref()) {
            config.tls = if login.verify_certificate {
                TlsPolicy::Verified
            } else {
                TlsPolicy::Require
            };
            config.credentials = Some(Credentials {
                username: login.username.clone(),
                password: login.password.clone(),
            });
        }
        config
    }

    fn requires_tls(&self, domain: &str) -> bool {
        self.require_tls_domains
            .iter()
            .any(|required| required.eq_ignore_ascii_case(domain))
    }
}

/// Wakes the scheduler when a message is queued.
#[derive(Clone, Debug, Default)]
pub struct QueueSignal(Arc<Notify>);

impl QueueSignal {
    /// Says a message was queued.
    pub fn queued(&self) {
        self.0.notify_one();
    }
}

/// The delivery service.
pub struct Delivery {
    config: DeliveryConfig,
    store: Store,
    resolver: Resolver,
    dkim: Arc<Dkim>,
    return_path: ReturnPath,
    /// Accounts' own bounce classifiers, for 5xx replies.
    classifiers: Arc<AccountClassifiers>,
    routes: Routes,
    /// Where mail for example domains is kept instead of sent, when the capture is on.
    capture: Option<Capture>,
    rates: RateLimiter,
    /// The platform's live nodes: this node opens its share of each destination's connections.
    nodes: NodeCount,
    /// Claims on a shared store; none on a store this node has to itself.
    leasing: Option<Leasing>,
    /// Wakes the scheduler.
    signal: QueueSignal,
    /// Messages handed to a worker and not recorded yet.
    in_flight: Mutex<HashSet<String>>,
    /// Where the next look at the due queue starts, on a store this node has to itself.
    due_scan: Mutex<DueScan>,
    /// Per destination (a recipient domain, or a static route shared by several): messages
    /// waiting for a connection, and connections open.
    domains: Mutex<HashMap<String, DomainQueue>>,
    workers: Arc<tokio::sync::Semaphore>,
    /// A clean stop began: nothing more is handed out or attempted.
    stopping: AtomicBool,
    /// Wakes the connections waiting out a sending rate when the stop begins.
    stopped: Notify,
    /// Looks at the due queue under way, which may still hand out what they claim.
    dispatching: AtomicUsize,
    /// Held by each renewal of leases and by the give-back at a stop, so neither undoes
    /// the other.
    lease_writes: tokio::sync::Mutex<()>,
}

/// A running delivery service: its scheduler, and what a clean stop drains.
pub struct RunningDelivery {
    delivery: Arc<Delivery>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl RunningDelivery {
    /// Stops handing out and attempting messages, and waits at most `grace` for the attempts
    /// under way to be recorded, so that a message sent just before a stop is not sent again
    /// after it. Messages handed out but not yet attempted are given back (on a shared
    /// store their leases end now, so another node takes them at once). Answers how many
    /// attempts were still unrecorded when it gave up.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.delivery.drain(grace).await
    }

    /// Stops the scheduler (attempts under way end with the runtime).
    pub fn abort(&self) {
        self.scheduler.abort();
    }
}

/// Where the scheduler's next look at the due queue starts on a store of its own.
///
/// Every queued message wakes the scheduler, and a look from the start walks past every
/// message already in flight: at a thousand messages a second that walk was ~5 % of the
/// server's CPU. A look starts instead at the due time of the last entry the one before
/// looked at: what was before it was handed out then, and new entries come after it (the
/// store's one writer numbers them by the time of their commit; a retry is due later). What
/// could still be behind it (a message given back without an attempt, a message queued as
/// due in the past, a retry whose time passed while its record committed) is found by a look
/// from the start: at the next look when a message was given back or the clock went back, and
/// otherwise at least every half [`schedule::IDLE_POLL`] (the scheduler sleeps at most that
/// long, so such a message waits at most about one and a half).
struct DueScan {
    /// The due time (milliseconds since the Unix epoch) the next look starts at.
    from: u64,
    /// When the last look from the start was.
    from_start_at: std::time::Instant,
    /// A message was given back without an attempt: the next look starts from the start.
    given_back: bool,
}

impl DueScan {
    fn new() -> Self {
        Self {
            from: 0,
            from_start_at: std::time::Instant::now(),
            given_back: false,
        }
    }

    /// Where the next look, at `now` (milliseconds since the Unix epoch), starts.
    fn start(&mut self, now: u64) -> u64 {
        if self.given_back
            || now < self.from
            || self.from_start_at.elapsed() >= schedule::IDLE_POLL / 2
        {
            self.given_back = false;
            self.from_start_at = std::time::Instant::now();
            self.from = 0;
        }
        self.from
    }
}

#[derive(Default)]
struct DomainQueue {
    /// Messages handed out to this destination, not attempted yet.
    pending: VecDeque<DueMessage>,
    connections: usize,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

impl Delivery {
    /// Starts the scheduler; returns when it is running, or at once when a static route
    /// cannot be used. Captured mail is written under `data_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: DeliveryConfig,
        data_dir: &std::path::Path,
        store: Store,
        resolver: Resolver,
        dkim: Arc<Dkim>,
        return_path: ReturnPath,
        classifiers: Arc<AccountClassifiers>,
        signal: QueueSignal,
        nodes: NodeCount,
        leasing: Option<Leasing>,
    ) -> Result<RunningDelivery, RouteError> {
        let delivery = Arc::new(Self {
            classifiers,
            routes: Routes::new(&config.routes)?,
            capture: config
                .capture_example_domains
                .then(|| Capture::new(data_dir)),
            rates: RateLimiter::new(&config.rate_limits, nodes.clone()),
            nodes,
            leasing,
            signal,
            workers: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
            config,
            store,
            resolver,
            dkim,
            return_path,
            in_flight: Mutex::new(HashSet::new()),
            due_scan: Mutex::new(DueScan::new()),
            domains: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            stopped: Notify::new(),
            dispatching: AtomicUsize::new(0),
            lease_writes: tokio::sync::Mutex::new(()),
        });
        Ok(RunningDelivery {
            scheduler: tokio::spawn(Arc::clone(&delivery).schedule()),
            delivery,
        })
    }

    /// See [`RunningDelivery::drain`].
    async fn drain(&self, grace: Duration) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        // Connections waiting out a sending rate stop waiting.
        self.stopped.notify_waiters();
        let until_empty = async {
            loop {
                self.give_back_pending().await;
                // A look at the queue under way may still hand out what it claims: the
                // drain ends only after it, and after what it handed out was given back.
                if lock(&self.in_flight).is_empty() && self.dispatching.load(Ordering::SeqCst) == 0
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(grace, until_empty).await;
        lock(&self.in_flight).len()
    }

    /// Gives back the messages handed out and not attempted: a connection that sees the
    /// stop leaves its destination's pending messages in its queue. On a shared store their
    /// leases are renewed to end now, which lets any node claim them.
    async fn give_back_pending(&self) {
        // The order every other holder of both takes them in: in flight, then domains.
        let given_back: Vec<String> = {
            let mut in_flight = lock(&self.in_flight);
            let mut domains = lock(&self.domains);
            let mut given_back = Vec::new();
            for queue in domains.values_mut() {
                for due in queue.pending.drain(..) {
                    in_flight.remove(&due.id);
                    given_back.push(due.id);
                }
            }
            domains.retain(|_, queue| queue.connections > 0);
            given_back
        };
        let Some(leasing) = self.leasing.as_ref().filter(|_| !given_back.is_empty()) else {
            return;
        };
        // After any renewal under way, which may have taken these ids before they left the
        // in-flight set: its lease would otherwise outlast the give-back.
        let _renewals = self.lease_writes.lock().await;
        let released = self
            .store
            .renew_delivery_leases(given_back, leasing.holder.clone(), now_millis())
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "giving back delivery leases failed: they run out");
        }
    }

    /// The connections a message to `domain` may share: its static route's (one relay takes
    /// every domain routed to it), else its domain's. A domain that requires TLS keeps its
    /// own, so it never rides a session that could not set TLS up.
    fn destination_key(&self, domain: &str) -> String {
        match self.routes.get(domain) {
            Some(route) if !self.config.requires_tls(domain) => format!("route {}", route.name),
            _ => domain.to_string(),
        }
    }

    /// Connections this node may open to one destination: its share of the platform's.
    fn connections_per_destination(&self) -> usize {
        self.nodes
            .share_of(self.config.max_connections_per_domain.max(1))
    }

    async fn schedule(self: Arc<Self>) {
        if !self.config.enabled {
            return;
        }
        let renewing = self
            .leasing
            .clone()
            .map(|leasing| tokio::spawn(Arc::clone(&self).renew_leases(leasing)));
        schedule::run("delivery", &self.signal.0, || self.dispatch_due()).await;
        if let Some(renewing) = renewing {
            renewing.abort();
        }
    }

    /// Keeps this node's leases on the messages it has in flight from running out while their
    /// attempts (or their wait for a connection) last.
    async fn renew_leases(self: Arc<Self>, leasing: Leasing) {
        let every = leasing.duration / 3;
        loop {
            tokio::time::sleep(every).await;
            let renewing = self.lease_writes.lock().await;
            let ids: Vec<String> = lock(&self.in_flight).iter().cloned().collect();
            if ids.is_empty() {
                continue;
            }
            let until = leasing.until(now_millis());
            let renewed = self
                .store
                .renew_delivery_leases(ids, leasing.holder.clone(), until)
                .await;
            drop(renewing);
            match renewed {
                Ok(lost) if !lost.is_empty() => {
                    // Recorded meanwhile, or (when renewing failed for longer than a lease)
                    // taken over by another node, whose attempt is then the one on record.
                    tracing::debug!(messages = lost.len(), "leases not renewed: no longer held");
                }
                Ok(_) => {}
                Err(StoreError::Closed) => return,
                Err(error) => tracing::warn!(%error, "renewing delivery leases failed"),
            }
        }
    }

    /// Hands every due message to its domain's queue and starts connections as allowed;
    /// returns how long to sleep before the next look.
    fn dispatch_due(self: &Arc<Self>) -> Result<Duration, StoreError> {
        // Counted before the stop is looked at: a drain that began after this look saw the
        // stop sees the count until what the look hands out is in flight.
        self.dispatching.fetch_add(1, Ordering::SeqCst);
        let dispatched = self.dispatch_due_unless_stopping();
        self.dispatching.fetch_sub(1, Ordering::SeqCst);
        dispatched
    }

    fn dispatch_due_unless_stopping(self: &Arc<Self>) -> Result<Duration, StoreError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(schedule::IDLE_POLL);
        }
        let now = now_millis();
        let due = match &self.leasing {
            // A node claims only what its workers have room for, so the nodes of a platform
            // share a backlog instead of one node leasing all of it; a worker that finishes
            // wakes the scheduler to claim more.
            Some(leasing) => {
                let workers = self.config.workers.max(1);
                let in_flight = lock(&self.in_flight).len();
                let room = workers.saturating_sub(in_flight).min(1000);
                // In batches of a quarter of the workers at least while some are busy: a
                // claim per finished attempt would cost a transaction per message.
                if room == 0 || (in_flight > 0 && room < (workers / 4).max(1)) {
                    // Nothing is claimed until a worker finishes, which wakes the scheduler:
                    // when the next message is due does not matter until then (and asking
                    // would cost the database a look at the queue per finished attempt).
                    return Ok(schedule::IDLE_POLL);
                } else {
                    self.store.claim_due_deliveries(
                        now,
                        room,
                        &leasing.holder,
                        leasing.until(now),
                    )?
                }
            }
            None => {
                let from = lock(&self.due_scan).start(now);
                let in_flight = lock(&self.in_flight);
                let look = self
                    .store
                    .due_deliveries_from(from, now, 1000, |id| in_flight.contains(id))?;
                if let Some(at) = look.last_looked_at {
                    let mut scan = lock(&self.due_scan);
                    scan.from = scan.from.max(at);
                }
                look.due
                    .into_iter()
                    .map(|(id, domain)| DueMessage {
                        id,
                        domain,
                        filter_key: None,
                        due: None,
                    })
                    .collect()
            }
        };
        for due in due {
            if !lock(&self.in_flight).insert(due.id.clone()) {
                continue;
            }
            let key = self.destination_key(&due.domain);
            let start_worker = {
                let mut domains = lock(&self.domains);
                let queue = domains.entry(key.clone()).or_default();
                queue.pending.push_back(due);
                let start = queue.connections < self.connections_per_destination();
                if start {
                    queue.connections += 1;
                }
                start
            };
            if start_worker {
                tokio::spawn(Arc::clone(self).connection(key));
            }
        }
        Ok(schedule::until(self.store.next_due()?, now))
    }

    /// One connection's life: take this destination's pending messages one by one and send
    /// them over one session, reconnecting when the session breaks.
    async fn connection(self: Arc<Self>, key: String) {
        let mut slot = WorkerSlot {
            delivery: Arc::clone(&self),
            key: key.clone(),
            holding: None,
            released: false,
        };
        let mut session: Option<(SmtpSession, String)> = None;
        let mut sent = 0;
        loop {
            let next = {
                let mut domains = lock(&self.domains);
                let queue = domains.entry(key.clone()).or_default();
                match queue.pending.pop_front() {
                    // A stop began: what is pending stays for the drain to give back.
                    Some(next) if self.stopping.load(Ordering::SeqCst) => {
                        queue.pending.push_front(next);
                        queue.connections -= 1;
                        slot.released = true;
                        None
                    }
                    Some(next) => Some(next),
                    None => {
                        queue.connections -= 1;
                        slot.released = true;
                        if queue.connections == 0 && queue.pending.is_empty() {
                            domains.remove(&key);
                        }
                        None
                    }
                }
            };
            let Some(DueMessage {
                id,
                domain,
                filter_key,
                due,
            }) = next
            else {
                break;
            };
            slot.holding = Some(id.clone());
            let wait = self
                .rates
                .reserve(&domain, tokio::time::Instant::now().into_std());
            if !wait.is_zero() {
                let stopped = self.stopped.notified();
                if !self.stopping.load(Ordering::SeqCst) {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stopped => {}
                    }
                }
            }
            let Ok(_permit) = Arc::clone(&self.workers).acquire_owned().await else {
                break;
            };
            if self.stopping.load(Ordering::SeqCst) {
                // Not attempted: back to the queue, which the loop then leaves to the drain.
                lock(&self.domains)
                    .entry(key.clone())
                    .or_default()
                    .pending
                    .push_front(DueMessage {
                        id,
                        domain,
                        filter_key,
                        due,
                    });
                slot.holding = None;
                continue;
            }
            if sent >= self.config.max_messages_per_connection {
                if let Some((old, _)) = session.take() {
                    let _ = old.quit().await;
                }
                sent = 0;
            }
            sent += 1;
            let outcome = match self
                .attempt(&id, &domain, filter_key.as_ref(), &mut session)
                .await
            {
                Ok(outcome) => outcome,
                // The message could not even be prepared (a store error): it is retried like
                // a connection failure, and expires like one, instead of coming back every tick.
                Err(error) => match self.store.delivery_state(&id) {
                    Ok(Some(state)) => Some(outcome::failed(
                        &DeliveryFailure::Connection(format!(
                            "the message could not be prepared: {error}"
                        )),
                        None,
                        state.attempts,
                        state.expires_at,
                        &self.config.retry(),
                        jitter(),
                        None,
                    )),
                    _ => {
                        tracing::warn!(message = %id, %error, "a delivery attempt could not be made");
                        None
                    }
                },
            };
            slot.holding = None;
            match outcome {
                // Recorded in the background: the next message goes out while this commit is
                // shared with other connections'. The message stays in flight until the record
                // is durable, so the scheduler cannot hand it out again meanwhile.
                Some(outcome) => {
                    tokio::spawn(Arc::clone(&self).record(id, outcome, due));
                }
                None => {
                    lock(&self.in_flight).remove(&id);
                    self.given_back();
                }
            }
        }
        if let Some((session, _)) = session {
            let _ = session.quit().await;
        }
    }

    /// Notes that a message left the in-flight set with its place in the due queue unchanged,
    /// so the next look at the queue starts from its start (see [`DueScan`]).
    fn given_back(&self) {
        lock(&self.due_scan).given_back = true;
    }

    /// Records an attempt, retrying until the store takes it: releasing the message before its
    /// outcome is durable would let the scheduler send it again.
    async fn record(self: Arc<Self>, id: String, outcome: AttemptRecord, due: Option<u64>) {
        let mut wait = Duration::from_millis(100);
        let holder = self.leasing.as_ref().map(|leasing| leasing.holder.clone());
        loop {
            match self
                .store
                .record_attempt_due(&id, outcome.clone(), holder.clone(), due)
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    if holder.is_some() {
                        tracing::warn!(message = %id, "an attempt was not recorded: this node's lease on the message had run out and another node took it");
                    }
                    break;
                }
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::error!(message = %id, %error, "recording a delivery attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        lock(&self.in_flight).remove(&id);
        if self.leasing.is_some() {
            // Room for one more claim.
            self.signal.queued();
        }
    }

    /// One attempt for one message; returns what to record (nothing when the message is gone
    /// from the queue).
    async fn attempt(
        &self,
        id: &str,
        domain: &str,
        filter_key: Option<&FilterKey>,
        session: &mut Option<(SmtpSession, String)>,
    ) -> Result<Option<AttemptRecord>, StoreError> {
        let Some(job) = self.store.delivery_job(id, filter_key)? else {
            return Ok(None);
        };
        if let Some(leasing) = &self.leasing
            && job
                .state
                .lease
                .as_ref()
                .is_none_or(|lease| lease.holder != leasing.holder)
        {
            // The lease ran out while the message waited here (renewing failed for a whole
            // lease) and another node holds it now: that node sends it.
            return Ok(None);
        }
        let DeliveryJob {
            record,
            state,
            body,
            filtered,
        } = job;
        // Added to the filter list while it waited for a retry: not sent after all.
        if let Some(entry) = filtered {
            let reason = format!("the recipient is on the filter list ({})", entry.reason);
            let outcome = AttemptRecord::Final {
                status: MessageStatus::Rejected,
                events: vec![Event {
                    kind: EventKind::Reject,
                    at: now_millis(),
                    detail: Some(reason),
                }],
                filter: None,
            };
            return Ok(Some(outcome));
        }
        let return_domain = self
            .dkim
            .return_path_domain_for(record.account_id, &body)
            .map_err(|error| StoreError::NotFound(error.to_string()))?;
        let mail_from = self.return_path.address(id, &return_domain);
        if let Some(capture) = self.capture_for(domain) {
            let outcome = match capture.keep(id, &mail_from, &record.recipient, &body).await {
                Ok(delivered) => delivered,
                Err(error) => outcome::failed(
                    &DeliveryFailure::Connection(format!(
                        "the capture could not keep the message: {error}"
                    )),
                    None,
                    state.attempts,
                    state.expires_at,
                    &self.config.retry(),
                    jitter(),
                    None,
                ),
            };
            return Ok(Some(outcome));
        }

        if session.as_ref().is_some_and(|(open, _)| !open.is_usable()) {
            *session = None;
        }
        if session.is_none() {
            match self.connect(domain).await {
                Ok(Connected::Session(opened, mx)) => *session = Some((*opened, mx)),
                Ok(Connected::Never(reason)) => {
                    return Ok(Some(outcome::undeliverable_domain(&reason)));
                }
                Err(failure) => {
                    let outcome = outcome::failed(
                        &failure,
                        None,
                        state.attempts,
                        state.expires_at,
                        &self.config.retry(),
                        jitter(),
                        None,
                    );
                    return Ok(Some(outcome));
                }
            }
        }
        let Some((open, _)) = session.as_mut() else {
            return Ok(None);
        };
        let result = open.send(&mail_from, &record.recipient, &body).await;
        let custom = match &result {
            Err(failure) if failure.is_permanent() => {
                self.account_verdict(record.account_id, &record.recipient, failure)
                    .await
            }
            _ => None,
        };
        let Some((open, mx)) = session.as_mut() else {
            return Ok(None);
        };
        let outcome = match &result {
            Ok(reply) => outcome::delivered(reply, mx, open.tls_info()),
            Err(failure) => {
                let outcome = outcome::failed(
                    failure,
                    Some(mx),
                    state.attempts,
                    state.expires_at,
                    &self.config.retry(),
                    jitter(),
                    custom.as_ref(),
                );
                if open.is_usable() {
                    let _ = open.reset().await;
                }
                outcome
            }
        };
        Ok(Some(outcome))
    }

    /// The capture, when it takes mail for `domain`: an example domain no static route
    /// covers.
    fn capture_for(&self, domain: &str) -> Option<&Capture> {
        self.capture
            .as_ref()
            .filter(|_| is_example_domain(domain) && self.routes.get(domain).is_none())
    }

    /// The verdict of the account's own classifier on a 5xx reply, if it has one.
    async fn account_verdict(
        &self,
        account_id: u64,
        recipient: &str,
        failure: &DeliveryFailure,
    ) -> Option<AccountVerdict> {
        let reply = failure.reply()?;
        let built_in = outcome::judge(reply, failure.stage());
        let asked = ReturnedRecipient {
            kind: crate::bounce::Kind::Bounce,
            recipient: Some(recipient.to_string()),
            status: reply
                .enhanced
                .map(|(class, subject, detail)| format!("{class}.{subject}.{detail}")),
            reply_code: Some(reply.code),
            diagnostic: Some(reply.text.clone()),
            reason: built_in.reason.as_str().to_string(),
            hard: built_in.class == crate::bounce::Class::Hard,
        };
        self.classifiers.verdict(account_id, asked).await
    }

    /// Opens a session to the domain's best reachable host.
    async fn connect(&self, domain: &str) -> Result<Connected, DeliveryFailure> {
        let destination =
            routing::destination(&self.routes, &self.resolver, domain, self.config.mx_port)
                .await
                .map_err(|error| {
                    DeliveryFailure::Connection(format!("DNS for {domain}: {error}"))
                })?;
        let hops = match destination {
            Destination::Hops(hops) => hops,
            Destination::NullMx => {
                return Ok(Connected::Never(format!(
                    "{domain} accepts no mail (null MX, RFC 7505)"
                )));
            }
            Destination::NoSuchDomain => {
                return Ok(Connected::Never(format!(
                    "the domain {domain} does not exist"
                )));
            }
        };
        let config = self.config.client(domain, &self.routes);
        let mut last = DeliveryFailure::Connection(format!("no address for any host of {domain}"));
        for hop in hops {
            let addresses = match routing::addresses(&self.resolver, &hop).await {
                Ok(addresses) => addresses,
                Err(error) => {
                    last = DeliveryFailure::Connection(format!("{}: {error}", hop.host));
                    continue;
                }
            };
            for address in addresses {
                match SmtpSession::connect(address, &hop.host, &config).await {
                    Ok(session) => {
                        return Ok(Connected::Session(
                            Box::new(session),
                            format!("{} [{address}]", hop.host),
                        ));
                    }
                    Err(failure) => last = failure,
                }
            }
        }
        // A host refusing the session itself (a 5xx greeting or EHLO) says nothing about this
        // recipient, often only about our address for now: try again later, never bounce.
        if last.is_permanent() {
            return Err(DeliveryFailure::Connection(format!(
                "every host of {domain} refused the session; last: {}",
                last.snippet()
            )));
        }
        Err(last)
    }
}

/// A worker's connection slot for its domain, given back however the worker ends (a panic
/// included): otherwise the domain would keep a slot nobody uses, and the messages waiting
/// for it would stay marked in flight.
struct WorkerSlot {
    delivery: Arc<Delivery>,
    key: String,
    /// The message being attempted.
    holding: Option<String>,
    /// The slot was given back on the way out.
    released: bool,
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let mut in_flight = lock(&self.delivery.in_flight);
        if let Some(id) = self.holding.take() {
            in_flight.remove(&id);
            self.delivery.given_back();
        }
        let mut domains = lock(&self.delivery.domains);
        if let Some(queue) = domains.get_mut(&self.key) {
            queue.connections = queue.connections.saturating_sub(1);
            if queue.connections == 0 {
                // No worker is left to take them: the scheduler hands them out again.
                for due in queue.pending.drain(..) {
                    in_flight.remove(&due.id);
                    self.delivery.given_back();
                }
                domains.remove(&self.key);
            }
        }
    }
}

enum Connected {
    Session(Box<SmtpSession>, String),
    Never(String),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A uniform number in [0, 1) for retry jitter.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_at_the_due_queue_starts_where_the_last_ended_until_something_may_be_behind_it() {
        let mut scan = DueScan::new();
        assert_eq!(scan.start(1_000), 0);
        scan.from = 900;
        assert_eq!(scan.start(1_000), 900);
        // The clock went back: entries may now be due before where the last look ended.
        assert_eq!(scan.start(800), 0);
        scan.from = 900;
        scan.given_back = true;
        assert_eq!(scan.start(1_000), 0);
        assert!(!scan.given_back);
        scan.from = 900;
        scan.from_start_at -= schedule::IDLE_POLL;
        assert_eq!(scan.start(1_000), 0);
        scan.from = 900;
        assert_eq!(scan.start(1_000), 900);
    }
}
