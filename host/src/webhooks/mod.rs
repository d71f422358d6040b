//! Webhooks: each event of a message is POSTed as JSON to the endpoints its account registered
//! for that event type, signed with the endpoint's secret.
//!
//! Recording an event queues its calls in the same transaction (see `store::webhooks`), so a
//! call is never lost across a crash. The dispatcher takes due calls and sends each with its
//! own retries: a non-2xx answer or a transport error is tried again after the next wait of
//! `retry_delays` (with jitter); after the last, the call becomes a dead letter the account can
//! look at and redeliver. The calls of one message to one endpoint form a chain: the next is
//! sent only once the one before it was acknowledged or dead-lettered, so a receiver sees a
//! message's events in the order they happened. Different messages go out in parallel, at most
//! `max_concurrent_per_endpoint` calls to one endpoint at a time.
//!
//! Delivery is at least once: a call whose 2xx answer was not recorded before a crash is sent
//! again after the restart, with the same `Sluice-Event-Id`.

pub mod destination;
pub mod payload;
pub mod signature;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tokio::sync::{Notify, Semaphore};

use self::payload::EventPayload;
use self::signature::{ATTEMPT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, WEBHOOK_ID_HEADER};
use crate::cluster::Leasing;
use crate::schedule;
use crate::store::{Store, StoreError, WebhookCallKey, WebhookOutcome, now_millis};

/// The most of a failing receiver's answer kept for the dead-letter view.
const ANSWER_SNIPPET_BYTES: usize = 256;

/// The `[webhooks]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Send calls at all; off keeps them queued (an operator's pause).
    pub enabled: bool,
    /// The waits between attempts, in order ("30s", "2m", "1h"...): one attempt more than
    /// there are waits, then the call is a dead letter.
    #[serde(deserialize_with = "durations")]
    pub retry_delays: Vec<Duration>,
    /// Seconds to wait for a connection.
    pub connect_timeout_secs: u64,
    /// Seconds one call may take in all, answer included.
    pub timeout_secs: u64,
    /// Calls in flight at once, over all endpoints.
    pub workers: usize,
    /// Calls in flight at once to one endpoint.
    pub max_concurrent_per_endpoint: usize,
    /// Allow URLs that resolve to loopback, private or link-local addresses. Off, a customer
    /// cannot make the server call into its own network.
    pub allow_private_destinations: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            enabled: true,
            // 8 attempts over about 22 hours.
            retry_delays: vec![
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(60),
                minutes(180),
                minutes(360),
                minutes(720),
            ],
            connect_timeout_secs: 10,
            timeout_secs: 10,
            workers: 32,
            max_concurrent_per_endpoint: 4,
            allow_private_destinations: false,
        }
    }
}

impl WebhookConfig {
    /// Attempts a call gets before it is a dead letter.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.retry_delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The wait after the `attempts`-th failed attempt, ±20 % (`jitter_unit` in [0, 1)) so
    /// calls that failed together do not come back together; None when no attempt is left.
    pub fn backoff(&self, attempts: u32, jitter_unit: f64) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let base = *self.retry_delays.get(index)?;
        Some(base.mul_f64(0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0)))
    }
}

fn durations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| parse_duration(text).map_err(serde::de::Error::custom))
        .collect()
}

/// A duration written as a number and a unit: `500ms`, `30s`, `2m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || format!("{text:?} is not a duration such as 500ms, 30s, 2m, 1h or 1d");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let millis_per_unit = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_millis(
        number.checked_mul(millis_per_unit).ok_or_else(invalid)?,
    ))
}

/// Sends queued webhook calls.
pub struct WebhookDispatcher {
    config: WebhookConfig,
    store: Store,
    client: reqwest::Client,
    /// Per endpoint, the messages whose chain has a call in flight.
    in_flight: Mutex<HashMap<u64, HashSet<String>>>,
    workers: Arc<Semaphore>,
    /// Wakes the scheduler: the store's signal, also used when a call settles.
    signal: Arc<Notify>,
    /// Claims on a shared store; none on a store this node has to itself.
    leasing: Option<Leasing>,
    /// The calls in flight, whose leases are renewed while they last.
    in_flight_calls: Mutex<HashSet<WebhookCallKey>>,
}

impl std::fmt::Debug for WebhookDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDispatcher").finish_non_exhaustive()
    }
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct StartError(#[from] reqwest::Error);

impl WebhookDispatcher {
    /// Starts the dispatcher; it resumes whatever the store has queued.
    pub fn start(
        config: WebhookConfig,
        store: Store,
        leasing: Option<Leasing>,
    ) -> Result<tokio::task::JoinHandle<()>, StartError> {
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("Sluice-Webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .pool_idle_timeout(Duration::from_secs(30));
        if !config.allow_private_destinations {
            client = client.dns_resolver(Arc::new(destination::PublicOnly));
        }
        let dispatcher = Arc::new(Self {
            client: client.build()?,
            workers: Arc::new(Semaphore::new(config.workers.max(1))),
            signal: store.webhook_signal(),
            config,
            store,
            in_flight: Mutex::new(HashMap::new()),
            leasing,
            in_flight_calls: Mutex::new(HashSet::new()),
        });
        Ok(tokio::spawn(dispatcher.schedule()))
    }

    async fn schedule(self: Arc<Self>) {
        if !self.config.enabled {
            return;
        }
        let renewing = self
            .leasing
            .clone()
            .map(|leasing| tokio::spawn(Arc::clone(&self).renew_leases(leasing)));
        schedule::run("webhooks", &self.signal, || self.dispatch_due()).await;
        if let Some(renewing) = renewing {
            renewing.abort();
        }
    }

    /// Keeps this node's leases on the calls it has in flight from running out while they last.
    async fn renew_leases(self: Arc<Self>, leasing: Leasing) {
        loop {
            tokio::time::sleep(leasing.duration / 3).await;
            let keys: Vec<WebhookCallKey> = lock(&self.in_flight_calls).iter().cloned().collect();
            if keys.is_empty() {
                continue;
            }
            let until = leasing.until(now_millis());
            match self
                .store
                .renew_webhook_leases(keys, leasing.holder.clone(), until)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Closed) => return,
                Err(error) => tracing::warn!(%error, "renewing webhook call leases failed"),
            }
        }
    }

    /// Starts a task for every due call whose chain and endpoint are free; returns how long to
    /// sleep before the next look.
    fn dispatch_due(self: &Arc<Self>) -> Result<Duration, StoreError> {
        let now = now_millis();
        let per_endpoint = self.config.max_concurrent_per_endpoint.max(1);
        let due = {
            let in_flight = lock(&self.in_flight);
            // Room left per endpoint, and whether this node still works on a chain.
            let free = |endpoint| {
                let busy = in_flight.get(&endpoint).map_or(0, HashSet::len);
                per_endpoint.saturating_sub(busy)
            };
            let busy = |endpoint, message: &str| {
                in_flight
                    .get(&endpoint)
                    .is_some_and(|chains| chains.contains(message))
            };
            match &self.leasing {
                Some(leasing) => self.store.claim_due_webhook_calls(
                    now,
                    free,
                    busy,
                    &leasing.holder,
                    leasing.until(now),
                )?,
                None => self.store.due_webhook_calls(now, free, busy)?,
            }
        };
        for key in due {
            {
                let mut in_flight = lock(&self.in_flight);
                let chains = in_flight.entry(key.endpoint_id).or_default();
                if chains.len() >= per_endpoint || !chains.insert(key.message_id.clone()) {
                    continue;
                }
            }
            tokio::spawn(Arc::clone(self).call(key));
        }
        Ok(schedule::until(self.store.next_webhook_due()?, now))
    }

    /// One call: send it, record what came of it, free its chain.
    async fn call(self: Arc<Self>, key: WebhookCallKey) {
        lock(&self.in_flight_calls).insert(key.clone());
        let _chain = ChainSlot {
            dispatcher: &self,
            key: &key,
        };
        let Ok(_permit) = Arc::clone(&self.workers).acquire_owned().await else {
            return;
        };
        let Some(outcome) = self.attempt(&key).await else {
            return;
        };
        // Until the outcome is durable the chain stays busy, so the call cannot go out twice.
        let mut wait = Duration::from_millis(100);
        let holder = self.leasing.as_ref().map(|leasing| leasing.holder.clone());
        loop {
            match self
                .store
                .record_webhook_attempt(&key, outcome.clone(), holder.clone())
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    if holder.is_some() {
                        tracing::warn!(event = %key.event_id(), "a webhook call was not recorded: this node's lease on it had run out and another node took it");
                    }
                    break;
                }
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::error!(event = %key.event_id(), %error, "recording a webhook call failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Sends a call once; None when it is no longer queued.
    async fn attempt(&self, key: &WebhookCallKey) -> Option<WebhookOutcome> {
        let job = match self.store.webhook_job(key) {
            Ok(Some(job)) => job,
            Ok(None) => return None,
            Err(error) => {
                // The message or its event cannot be read: retrying cannot help, so the
                // account sees it among the dead letters instead of it blocking the chain.
                tracing::warn!(event = %key.event_id(), %error, "a webhook call could not be prepared");
                return Some(WebhookOutcome::Dead {
                    status: None,
                    error: format!("the event could not be read: {error}"),
                });
            }
        };
        if let Some(leasing) = &self.leasing
            && job
                .state
                .lease
                .as_ref()
                .is_none_or(|lease| lease.holder != leasing.holder)
        {
            // Another node holds the call now (this node's lease ran out): it makes it.
            return None;
        }
        let attempt = job.state.attempts + 1;
        let failure = match self.send(key, &job, attempt).await {
            Ok(()) => return Some(WebhookOutcome::Delivered),
            Err(failure) => failure,
        };
        tracing::debug!(event = %key.event_id(), endpoint = key.endpoint_id, error = %failure.error, "webhook call failed");
        Some(match self.config.backoff(attempt, jitter()) {
            Some(wait) if !failure.permanent => WebhookOutcome::Retry {
                due_at: now_millis().saturating_add(wait.as_millis() as u64),
                status: failure.status,
                error: failure.error,
            },
            _ => WebhookOutcome::Dead {
                status: failure.status,
                error: failure.error,
            },
        })
    }

    async fn send(
        &self,
        key: &WebhookCallKey,
        job: &crate::store::WebhookJob,
        attempt: u32,
    ) -> Result<(), CallFailure> {
        let url = reqwest::Url::parse(&job.endpoint.url).map_err(|error| CallFailure {
            status: None,
            error: format!("the URL is not valid: {error}"),
            permanent: true,
        })?;
        if !self.config.allow_private_destinations {
            destination::check_literal(&url).map_err(|error| CallFailure {
                status: None,
                error,
                permanent: true,
            })?;
        }
        let body =
            serde_json::to_vec(&EventPayload::new(key, job)).map_err(|error| CallFailure {
                status: None,
                error: error.to_string(),
                permanent: true,
            })?;
        let timestamp = now_millis() / 1000;
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, key.event_id())
            .header(WEBHOOK_ID_HEADER, job.endpoint.id.to_string())
            .header(ATTEMPT_HEADER, attempt.to_string())
            .header(
                SIGNATURE_HEADER,
                signature::header_value(&job.endpoint.secret, timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|error| CallFailure {
                status: None,
                error: describe(&error),
                permanent: false,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = answer_snippet(response).await;
        Err(CallFailure {
            status: Some(status.as_u16()),
            error: if answer.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {answer}")
            },
            permanent: false,
        })
    }

    fn release(&self, key: &WebhookCallKey) {
        lock(&self.in_flight_calls).remove(key);
        let mut in_flight = lock(&self.in_flight);
        if let Some(chains) = in_flight.get_mut(&key.endpoint_id) {
            chains.remove(&key.message_id);
            if chains.is_empty() {
                in_flight.remove(&key.endpoint_id);
            }
        }
        drop(in_flight);
        // The chain's next call (or another chain of this endpoint) may be waiting for it.
        self.signal.notify_one();
    }
}

/// Frees a call's chain however the call's task ends (a panic included), so the chain is not
/// stuck as in flight.
struct ChainSlot<'a> {
    dispatcher: &'a WebhookDispatcher,
    key: &'a WebhookCallKey,
}

impl Drop for ChainSlot<'_> {
    fn drop(&mut self) {
        self.dispatcher.release(self.key);
    }
}

/// Why a call failed.
struct CallFailure {
    status: Option<u16>,
    error: String,
    /// Retrying cannot help (a URL the guard refuses, an invalid URL).
    permanent: bool,
}

/// The start of a failing receiver's answer, as text.
async fn answer_snippet(mut response: reqwest::Response) -> String {
    let mut answer = Vec::new();
    while answer.len() < ANSWER_SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
            _ => break,
        }
    }
    answer.truncate(ANSWER_SNIPPET_BYTES);
    String::from_utf8_lossy(&answer).trim().to_string()
}

/// A transport error with its causes: reqwest's own message alone rarely says what broke.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    fn the_default_schedule_takes_eight_attempts_over_about_a_day() {
        let config = WebhookConfig::default();
        assert_eq!(config.max_attempts(), 8);
        let total: Duration = (1..config.max_attempts())
            .map(|attempt| config.backoff(attempt, 0.5).unwrap())
            .sum();
        assert!(
            total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(24 * 3600),
            "{total:?}"
        );
        assert_eq!(config.backoff(config.max_attempts(), 0.5), None);
        assert_eq!(config.backoff(0, 0.5), None);
    }

    #[test]
    fn backoff_follows_the_schedule_within_the_jitter() {
        let config = WebhookConfig::default();
        assert_eq!(config.backoff(1, 0.5), Some(Duration::from_secs(30)));
        assert_eq!(config.backoff(1, 0.0), Some(Duration::from_secs(24)));
        assert_eq!(config.backoff(2, 1.0), Some(Duration::from_secs(144)));
        let waits: Vec<Duration> = (1..8).map(|a| config.backoff(a, 0.5).unwrap()).collect();
        assert!(waits.windows(2).all(|pair| pair[0] < pair[1]), "{waits:?}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "30", "s", "1.5h", "-1s", "1w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_section_reads_from_toml() {
        let config: WebhookConfig =
            toml::from_str("retry_delays = [\"50ms\", \"1s\"]\nworkers = 2\n").unwrap();
        assert_eq!(config.max_attempts(), 3);
        assert_eq!(config.retry_delays[0], Duration::from_millis(50));
        assert_eq!(config.workers, 2);
        assert!(toml::from_str::<WebhookConfig>("retry_delays = [\"soon\"]").is_err());
    }
}
