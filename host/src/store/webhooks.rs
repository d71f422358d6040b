//! Webhooks in the store: the endpoints accounts registered, the outbox of event calls still to
//! make (written in the same transaction as the event itself, so no event is lost across a
//! crash), and the dead letters of calls that ran out of retries.
//!
//! Order per message: the calls of one (endpoint, message) pair form a chain ordered by the
//! event's sequence number, and only the chain's head is in the due index. The next call of a
//! chain is indexed only when its head is acknowledged or dead-lettered, so a later event of a
//! message can never overtake an earlier one that is still being retried.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::model::{Event, EventKind, MessageRecord};
use super::{EVENTS, Lease, MESSAGES, Store, StoreError, decode, encode, next_id, now_millis};

/// Endpoint id → endpoint.
pub(super) const WEBHOOK_ENDPOINTS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("webhook_endpoints");
/// (account, endpoint) → the event kinds it takes, as a [`kind_bit`] mask: what recording an
/// event reads, without decoding endpoints.
pub(super) const WEBHOOK_SUBSCRIPTIONS: TableDefinition<(u64, u64), u32> =
    TableDefinition::new("webhook_subscriptions");
/// (endpoint, message, event sequence) → [`WebhookCallState`]: every call still to make.
pub(super) const WEBHOOK_CALLS: TableDefinition<(u64, &str, u32), &[u8]> =
    TableDefinition::new("webhook_calls");
/// (endpoint, due at, message, event sequence): the head call of each chain, by endpoint and
/// due time, so a backlog at one busy endpoint is never walked to find another's due calls.
pub(super) const WEBHOOK_DUE: TableDefinition<(u64, u64, &str, u32), ()> =
    TableDefinition::new("webhook_due");
/// (endpoint, dead letter id) → [`WebhookDeadLetter`].
pub(super) const WEBHOOK_DEAD_LETTERS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("webhook_dead_letters");

/// The bit of an event kind in a subscription mask: its place in [`EventKind::ALL`].
pub fn kind_bit(kind: EventKind) -> u32 {
    EventKind::ALL
        .iter()
        .position(|known| *known == kind)
        .map_or(1 << 31, |index| 1 << index)
}

/// The subscription mask of a list of event kinds; empty means every event.
pub fn subscription_mask(event_types: &[EventKind]) -> u32 {
    if event_types.is_empty() {
        return u32::MAX;
    }
    event_types
        .iter()
        .fold(0, |mask, kind| mask | kind_bit(*kind))
}

/// A URL of an account that receives its messages' events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: u64,
    /// The account it belongs to.
    pub account_id: u64,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives; empty means all.
    #[serde(default)]
    pub event_types: Vec<EventKind>,
    /// A note for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The HMAC-SHA256 key calls are signed with (its UTF-8 bytes).
    pub secret: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// Where one queued call stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCallState {
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was queued (milliseconds since the Unix epoch).
    pub queued_at: u64,
    /// When it is due, if it heads its chain; otherwise when it was queued.
    pub due_at: u64,
    /// The HTTP status of the last attempt, if the receiver answered.
    #[serde(default)]
    pub last_status: Option<u16>,
    /// What went wrong last time (transport error, or the start of the receiver's answer).
    #[serde(default)]
    pub last_error: Option<String>,
    /// The node making the call, on a store several nodes share; `due_at` is the lease's end
    /// meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// Names one queued call: an event of a message, for an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookCallKey {
    /// The endpoint.
    pub endpoint_id: u64,
    /// The message.
    pub message_id: String,
    /// The event's sequence number among the message's events.
    pub seq: u32,
}

impl WebhookCallKey {
    /// The event's stable id, the same for every attempt: receivers dedupe on it.
    pub fn event_id(&self) -> String {
        event_id(&self.message_id, self.seq)
    }
}

/// The stable id of a message's event: its message id and sequence number.
pub fn event_id(message_id: &str, seq: u32) -> String {
    format!("{message_id}-{seq}")
}

/// Everything one call is made from, read from one snapshot.
#[derive(Clone, Debug)]
pub struct WebhookJob {
    /// Where to send it.
    pub endpoint: WebhookEndpoint,
    /// The message the event belongs to.
    pub message: MessageRecord,
    /// The event.
    pub event: Event,
    /// Attempts so far.
    pub state: WebhookCallState,
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx: the call is done and the chain moves on.
    Delivered,
    /// Try again at `due_at`.
    Retry {
        /// When.
        due_at: u64,
        /// The receiver's status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// Out of retries: the call becomes a dead letter and the chain moves on.
    Dead {
        /// The receiver's status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// A call that exhausted its retries, kept for the account to look at and redeliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeadLetter {
    /// Its id.
    pub id: u64,
    /// The endpoint.
    pub endpoint_id: u64,
    /// The message.
    pub message_id: String,
    /// The event's sequence number.
    pub seq: u32,
    /// The event's type.
    pub event_type: String,
    /// When the event happened (milliseconds since the Unix epoch).
    pub event_at: u64,
    /// Attempts made.
    pub attempts: u32,
    /// When the call was first queued.
    pub queued_at: u64,
    /// When it was given up.
    pub dead_at: u64,
    /// The receiver's last status, if it answered.
    #[serde(default)]
    pub last_status: Option<u16>,
    /// The last error.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What the event log needs to know about webhooks while it records events, shared by the
/// store's handles: which accounts may have endpoints (so accounts without any pay one set
/// lookup per event, not a read of the store), and the dispatcher's wake-up.
#[derive(Debug, Default)]
pub(super) struct WebhookHooks {
    /// Accounts that have or had an endpoint since the store was opened: a superset, so a
    /// missing entry means "no endpoint" (on a shared store: none as of the last look at
    /// [`SUBSCRIPTION_CHANGE_COUNTER`]).
    accounts: RwLock<HashSet<u64>>,
    /// Other nodes share the store and add endpoints this node does not hear of: the
    /// accounts are looked up again when the subscription change counter moves
    /// ([`Store::refresh_webhook_accounts`]).
    shared: bool,
    /// The subscription change counter as of the last look (shared stores).
    change_seen: AtomicU64,
    /// Wakes the dispatcher.
    signal: Arc<Notify>,
}

/// The counter (in `counters`) every change to an account's subscriptions moves, in the
/// transaction making it: nodes sharing the store poll it to learn of accounts that now have
/// endpoints.
const SUBSCRIPTION_CHANGE_COUNTER: &str = "webhook-subscription-change";

thread_local! {
    /// Whether the transaction this writer thread is making queued a call. Per thread, not
    /// per store: a store's writer threads commit side by side, and one's commit must not
    /// wake the dispatcher for a call another has not committed yet (it would look, find
    /// nothing, and not be woken again). Changes run on the writer thread that commits them.
    static QUEUED_IN_THIS_TRANSACTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The accounts that have an endpoint, and the subscription change counter, as `txn` sees
/// them.
fn accounts_with_endpoints(
    txn: &super::kv::ReadTransaction,
) -> Result<(HashSet<u64>, u64), StoreError> {
    let change = txn
        .open_table(super::COUNTERS)?
        .get(SUBSCRIPTION_CHANGE_COUNTER)?
        .unwrap_or(0);
    let mut accounts = HashSet::new();
    for entry in txn.open_table(WEBHOOK_SUBSCRIPTIONS)?.iter()? {
        let (key, _) = entry?;
        accounts.insert(key.0);
    }
    Ok((accounts, change))
}

impl WebhookHooks {
    /// Loads the accounts that have endpoints.
    pub(super) fn load(txn: &super::kv::ReadTransaction, shared: bool) -> Result<Self, StoreError> {
        let (accounts, change) = accounts_with_endpoints(txn)?;
        Ok(Self {
            accounts: RwLock::new(accounts),
            shared,
            change_seen: AtomicU64::new(change),
            signal: Arc::default(),
        })
    }

    fn may_have_endpoints(&self, account_id: u64) -> bool {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&account_id)
    }

    fn add_account(&self, account_id: u64) {
        self.accounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account_id);
    }

    /// Called by a writer thread after each of its commits: wakes the dispatcher when that
    /// commit queued a call. Waking before the commit could let it look too early and miss
    /// the call.
    pub(super) fn committed(&self) {
        if QUEUED_IN_THIS_TRANSACTION.take() {
            self.signal.notify_one();
        }
    }

    /// Notes that the transaction being made queued a call or made one due.
    fn queued(&self) {
        QUEUED_IN_THIS_TRANSACTION.set(true);
    }
}

/// Queues the calls for events just appended to a message (`first_seq` is the first one's
/// sequence number), for every endpoint of its account that takes their kinds.
pub(super) fn queue_calls(
    txn: &WriteTransaction,
    hooks: &WebhookHooks,
    message: &MessageRecord,
    first_seq: u32,
    events: &[Event],
) -> Result<(), StoreError> {
    if events.is_empty() || !hooks.may_have_endpoints(message.account_id) {
        return Ok(());
    }
    let account = message.account_id;
    let subscriptions: Vec<(u64, u32)> = txn
        .open_table(WEBHOOK_SUBSCRIPTIONS)?
        .range((account, 0)..=(account, u64::MAX))?
        .map(|entry| entry.map(|(key, mask)| (key.1, mask)))
        .collect::<Result<_, _>>()?;
    let now = now_millis();
    for (endpoint_id, mask) in subscriptions {
        for (seq, event) in (first_seq..).zip(events) {
            if mask & kind_bit(event.kind) != 0 {
                queue_call(txn, hooks, endpoint_id, &message.id, seq, now)?;
            }
        }
    }
    Ok(())
}

/// Whether any webhook call about a message is still to be made (waiting, due or being
/// retried), looked up per endpoint of its account: a handful of point reads.
pub(super) fn calls_pending(
    txn: &WriteTransaction,
    account_id: u64,
    message_id: &str,
) -> Result<bool, StoreError> {
    let endpoints: Vec<u64> = txn
        .open_table(WEBHOOK_SUBSCRIPTIONS)?
        .range((account_id, 0)..=(account_id, u64::MAX))?
        .map(|entry| entry.map(|(key, _)| key.1))
        .collect::<Result<_, _>>()?;
    let calls = txn.open_table(WEBHOOK_CALLS)?;
    for endpoint_id in endpoints {
        if calls
            .range((endpoint_id, message_id, 0)..=(endpoint_id, message_id, u32::MAX))?
            .next()
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Queues one call; it is due at once when it is the only call of its chain, otherwise it
/// waits for the calls before it.
fn queue_call(
    txn: &WriteTransaction,
    hooks: &WebhookHooks,
    endpoint_id: u64,
    message_id: &str,
    seq: u32,
    now: u64,
) -> Result<(), StoreError> {
    let mut calls = txn.open_table(WEBHOOK_CALLS)?;
    let chain_waiting = calls
        .range((endpoint_id, message_id, 0)..=(endpoint_id, message_id, u32::MAX))?
        .next()
        .is_some();
    let state = WebhookCallState {
        attempts: 0,
        queued_at: now,
        due_at: now,
        last_status: None,
        last_error: None,
        lease: None,
    };
    calls.insert((endpoint_id, message_id, seq), encode(&state)?.as_slice())?;
    if !chain_waiting {
        txn.open_table(WEBHOOK_DUE)?
            .insert((endpoint_id, now, message_id, seq), ())?;
        hooks.queued();
    }
    Ok(())
}

/// How many times [`lock_call`] looks again for a due entry that moved while it waited.
const DUE_ENTRY_LOOKS: u32 = 4;

/// Locks a queued call's due entry, the lock every change to its state takes first (a claim
/// takes it with `SKIP LOCKED`), and returns the call's state; none when it is not queued.
/// The entry's key holds the due time, which a claim or renewal committed while this waited
/// may have changed: the call's state then tells the new one.
fn lock_call(
    txn: &WriteTransaction,
    key: &WebhookCallKey,
) -> Result<Option<WebhookCallState>, StoreError> {
    let calls = txn.open_table(WEBHOOK_CALLS)?;
    let mut due = txn.open_table(WEBHOOK_DUE)?;
    let call = (key.endpoint_id, key.message_id.as_str(), key.seq);
    for _ in 0..DUE_ENTRY_LOOKS {
        let Some(value) = calls.get(call)? else {
            return Ok(None);
        };
        let state: WebhookCallState = decode(&value)?;
        let entry = (key.endpoint_id, state.due_at, call.1, key.seq);
        if due.lock(entry)?.is_some() {
            // Read again under the lock: the state read before it may be older.
            return calls.get(call)?.map(|value| decode(&value)).transpose();
        }
    }
    Err(StoreError::Conflict(format!(
        "webhook call {} kept moving in its queue",
        key.event_id()
    )))
}

/// Makes the first remaining call of a chain due now, after its head was settled.
fn advance_chain(
    txn: &WriteTransaction,
    hooks: &WebhookHooks,
    endpoint_id: u64,
    message_id: &str,
) -> Result<(), StoreError> {
    let mut calls = txn.open_table(WEBHOOK_CALLS)?;
    let next = calls
        .range((endpoint_id, message_id, 0)..=(endpoint_id, message_id, u32::MAX))?
        .next()
        .transpose()?
        .map(|(key, value)| (key.2, value));
    let Some((seq, state)) = next else {
        return Ok(());
    };
    let mut state: WebhookCallState = decode(&state)?;
    let now = now_millis();
    state.due_at = now;
    calls.insert((endpoint_id, message_id, seq), encode(&state)?.as_slice())?;
    txn.open_table(WEBHOOK_DUE)?
        .insert((endpoint_id, now, message_id, seq), ())?;
    hooks.queued();
    Ok(())
}

/// Removes everything of an endpoint: its subscription, queued calls and dead letters.
fn remove_endpoint(txn: &WriteTransaction, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
    let id = endpoint.id;
    txn.open_table(WEBHOOK_ENDPOINTS)?.delete(id)?;
    txn.open_table(WEBHOOK_SUBSCRIPTIONS)?
        .delete((endpoint.account_id, id))?;
    txn.open_table(WEBHOOK_CALLS)?
        .remove_range((id, "", 0)..(id + 1, "", 0))?;
    txn.open_table(WEBHOOK_DUE)?
        .remove_range((id, 0, "", 0)..(id + 1, 0, "", 0))?;
    txn.open_table(WEBHOOK_DEAD_LETTERS)?
        .remove_range((id, 0)..=(id, u64::MAX))?;
    Ok(())
}

impl Store {
    /// Registers an endpoint; its id is assigned here. Events this node records after this
    /// returns reach it; other nodes sharing the store send it theirs from their next
    /// [`Store::refresh_webhook_accounts`] on, if the account had no endpoint before.
    pub async fn create_webhook(
        &self,
        endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, StoreError> {
        self.check_room(endpoint.account_id, super::Kept::Webhooks)?;
        let hooks = Arc::clone(&self.webhooks);
        self.write(move |txn| {
            let mut endpoint = endpoint.clone();
            endpoint.id = next_id(txn, "webhook")?;
            txn.open_table(WEBHOOK_ENDPOINTS)?
                .insert(endpoint.id, encode(&endpoint)?.as_slice())?;
            txn.open_table(WEBHOOK_SUBSCRIPTIONS)?.insert(
                (endpoint.account_id, endpoint.id),
                subscription_mask(&endpoint.event_types),
            )?;
            next_id(txn, SUBSCRIPTION_CHANGE_COUNTER)?;
            // In the writer thread, before the commit: every later transaction of this node
            // sees it (other nodes at their next look).
            hooks.add_account(endpoint.account_id);
            Ok(endpoint)
        })
        .await
    }

    /// On a store other nodes share, looks whether endpoints were added since the last look
    /// (one read when none were) and, if so, learns which accounts have endpoints now: from
    /// then on this node queues calls for their events. Answers whether it looked again.
    /// Accounts are never forgotten here, only at the next start.
    pub fn refresh_webhook_accounts(&self) -> Result<bool, StoreError> {
        let hooks = &self.webhooks;
        if !hooks.shared {
            return Ok(false);
        }
        let seen = hooks.change_seen.load(Ordering::SeqCst);
        let txn = self.db.begin_read()?;
        let change = txn
            .open_table(super::COUNTERS)?
            .get(SUBSCRIPTION_CHANGE_COUNTER)?
            .unwrap_or(0);
        if change == seen {
            return Ok(false);
        }
        let (found, change) = accounts_with_endpoints(&txn)?;
        hooks
            .accounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
        hooks.change_seen.store(change, Ordering::SeqCst);
        Ok(true)
    }

    /// An endpoint by id.
    pub fn webhook(&self, id: u64) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.get(WEBHOOK_ENDPOINTS, id)
    }

    /// The endpoints of an account, oldest first.
    pub fn webhooks_of(&self, account_id: u64) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.all_of(WEBHOOK_ENDPOINTS, |endpoint: &WebhookEndpoint| {
            endpoint.account_id == account_id
        })
    }

    /// Changes an account's endpoint as it stands when the change is written (so two changes
    /// at once each keep what the other did: a rule written beside a secret rotation does not
    /// bring the old secret back); calls already queued go to its new URL. Answers the
    /// endpoint as changed.
    pub async fn update_webhook(
        &self,
        account_id: u64,
        id: u64,
        change: impl Fn(&mut WebhookEndpoint) + Send + Sync + 'static,
    ) -> Result<WebhookEndpoint, StoreError> {
        let hooks = Arc::clone(&self.webhooks);
        self.write(move |txn| {
            let mut endpoints = txn.open_table(WEBHOOK_ENDPOINTS)?;
            let current = endpoints
                .get(id)?
                .map(|old| decode::<WebhookEndpoint>(&old))
                .transpose()?
                .filter(|old| old.account_id == account_id);
            let Some(mut endpoint) = current else {
                return Err(StoreError::NotFound(format!("webhook {id}")));
            };
            change(&mut endpoint);
            endpoint.id = id;
            endpoint.account_id = account_id;
            endpoints.insert(endpoint.id, encode(&endpoint)?.as_slice())?;
            txn.open_table(WEBHOOK_SUBSCRIPTIONS)?.insert(
                (endpoint.account_id, endpoint.id),
                subscription_mask(&endpoint.event_types),
            )?;
            next_id(txn, SUBSCRIPTION_CHANGE_COUNTER)?;
            hooks.add_account(endpoint.account_id);
            Ok(endpoint)
        })
        .await
    }

    /// Deletes an account's endpoint with its queued calls and dead letters.
    pub async fn delete_webhook(&self, account_id: u64, id: u64) -> Result<(), StoreError> {
        let found = self
            .write(move |txn| {
                let endpoint = txn
                    .open_table(WEBHOOK_ENDPOINTS)?
                    .get(id)?
                    .map(|value| decode::<WebhookEndpoint>(&value))
                    .transpose()?;
                match endpoint {
                    Some(endpoint) if endpoint.account_id == account_id => {
                        remove_endpoint(txn, &endpoint)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("webhook {id}")))
        }
    }

    /// Wakes the webhook dispatcher; it is notified after every commit that queued a call.
    pub fn webhook_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.webhooks.signal)
    }

    /// Chain heads due at or before `now`, soonest first per endpoint: at most `free(endpoint)`
    /// of each endpoint, passing over chains `busy` says are in flight.
    pub fn due_webhook_calls(
        &self,
        now: u64,
        free: impl Fn(u64) -> usize,
        busy: impl Fn(u64, &str) -> bool,
    ) -> Result<Vec<WebhookCallKey>, StoreError> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(WEBHOOK_DUE)?;
        let mut found = Vec::new();
        for endpoint in txn.open_table(WEBHOOK_ENDPOINTS)?.iter()? {
            let endpoint_id = endpoint?.0;
            let slots = free(endpoint_id);
            if slots == 0 {
                continue;
            }
            let mut taken = 0;
            let heads =
                due.range((endpoint_id, 0, "", 0)..(endpoint_id, now.saturating_add(1), "", 0))?;
            for entry in heads {
                let (key, _) = entry?;
                let (_, _, message_id, seq) = key;
                // Only chains in flight are passed over, and there are fewer than the slots.
                if busy(endpoint_id, &message_id) {
                    continue;
                }
                found.push(WebhookCallKey {
                    endpoint_id,
                    message_id: message_id.to_string(),
                    seq,
                });
                taken += 1;
                if taken == slots {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// When the next chain head is due, if any call is queued.
    pub fn next_webhook_due(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(WEBHOOK_DUE)?;
        let mut next: Option<u64> = None;
        for endpoint in txn.open_table(WEBHOOK_ENDPOINTS)?.iter()? {
            let endpoint_id = endpoint?.0;
            let first = due
                .range((endpoint_id, 0, "", 0)..(endpoint_id + 1, 0, "", 0))?
                .next()
                .transpose()?
                .map(|(key, _)| key.1);
            next = match (next, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(next)
    }

    /// Everything one call reads, from one snapshot; None when it is no longer queued.
    pub fn webhook_job(&self, key: &WebhookCallKey) -> Result<Option<WebhookJob>, StoreError> {
        let txn = self.db.begin_read()?;
        let message_id = key.message_id.as_str();
        let Some(state) =
            txn.open_table(WEBHOOK_CALLS)?
                .get((key.endpoint_id, message_id, key.seq))?
        else {
            return Ok(None);
        };
        let state: WebhookCallState = decode(&state)?;
        let Some(endpoint) = txn.open_table(WEBHOOK_ENDPOINTS)?.get(key.endpoint_id)? else {
            return Ok(None);
        };
        let endpoint = decode(&endpoint)?;
        let message = txn
            .open_table(MESSAGES)?
            .get(message_id)?
            .map(|value| decode(&value))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("message {message_id}")))?;
        let event = txn
            .open_table(EVENTS)?
            .get((message_id, key.seq))?
            .map(|value| decode(&value))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("event {}", key.event_id())))?;
        Ok(Some(WebhookJob {
            endpoint,
            message,
            event,
            state,
        }))
    }

    /// Records what an attempt came to, in one transaction: the call is rescheduled, or it is
    /// settled (acknowledged or dead-lettered) and the next call of its chain becomes due.
    /// With a `holder`, only while that holder's lease is the call's (see
    /// [`Store::claim_due_webhook_calls`]). Returns whether it was recorded.
    pub async fn record_webhook_attempt(
        &self,
        key: &WebhookCallKey,
        outcome: WebhookOutcome,
        holder: Option<String>,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        let hooks = Arc::clone(&self.webhooks);
        self.write_row_locking(move |txn| {
            let (endpoint_id, message_id, seq) =
                (key.endpoint_id, key.message_id.as_str(), key.seq);
            // The message's lock first: settling the head of its chain and queueing a call
            // behind it (as an event is appended) must not miss each other.
            txn.open_table(MESSAGES)?.lock(message_id)?;
            let Some(mut state) = lock_call(txn, &key)? else {
                // Gone meanwhile (its endpoint was deleted): nothing to record.
                return Ok(false);
            };
            let mut calls = txn.open_table(WEBHOOK_CALLS)?;
            if let Some(holder) = &holder
                && state
                    .lease
                    .as_ref()
                    .is_none_or(|lease| &lease.holder != holder)
            {
                // The lease ran out and another node took the call: its attempt is the one
                // on record.
                return Ok(false);
            }
            state.lease = None;
            let mut due = txn.open_table(WEBHOOK_DUE)?;
            due.delete((endpoint_id, state.due_at, message_id, seq))?;
            state.attempts += 1;
            match &outcome {
                WebhookOutcome::Delivered => {
                    calls.delete((endpoint_id, message_id, seq))?;
                }
                WebhookOutcome::Retry {
                    due_at,
                    status,
                    error,
                } => {
                    state.due_at = *due_at;
                    state.last_status = *status;
                    state.last_error = Some(error.clone());
                    calls.insert((endpoint_id, message_id, seq), encode(&state)?.as_slice())?;
                    due.insert((endpoint_id, *due_at, message_id, seq), ())?;
                    return Ok(true);
                }
                WebhookOutcome::Dead { status, error } => {
                    calls.delete((endpoint_id, message_id, seq))?;
                    let event: Option<Event> = txn
                        .open_table(EVENTS)?
                        .get((message_id, seq))?
                        .map(|value| decode(&value))
                        .transpose()?;
                    let letter = WebhookDeadLetter {
                        id: next_id(txn, "webhook_dead_letter")?,
                        endpoint_id,
                        message_id: message_id.to_string(),
                        seq,
                        event_type: event
                            .as_ref()
                            .map(|e| e.kind.as_str().to_string())
                            .unwrap_or_default(),
                        event_at: event.as_ref().map_or(0, |e| e.at),
                        attempts: state.attempts,
                        queued_at: state.queued_at,
                        dead_at: now_millis(),
                        last_status: *status,
                        last_error: Some(error.clone()),
                    };
                    txn.open_table(WEBHOOK_DEAD_LETTERS)?
                        .insert((endpoint_id, letter.id), encode(&letter)?.as_slice())?;
                }
            }
            drop((calls, due));
            advance_chain(txn, &hooks, endpoint_id, message_id)?;
            Ok(true)
        })
        .await
    }

    /// Claims chain heads due at or before `now` for `holder` until `until`, soonest first per
    /// endpoint, at most `free(endpoint)` of each: each moves in the queue to `until`, so no
    /// node sees it due while the lease lasts, and the next call of its chain waits for it as
    /// before, whichever node makes it. A head whose chain `busy(endpoint, message)` says
    /// this node still works on (its previous call settled, its slot not yet freed) is left
    /// unclaimed: claimed, it would sit leased and unsent until the lease ran out. On
    /// PostgreSQL the heads are taken with `FOR UPDATE SKIP LOCKED`, in a transaction of its
    /// own, as deliveries are.
    pub fn claim_due_webhook_calls(
        &self,
        now: u64,
        free: impl Fn(u64) -> usize,
        busy: impl Fn(u64, &str) -> bool,
        holder: &str,
        until: u64,
    ) -> Result<Vec<WebhookCallKey>, StoreError> {
        let txn = self.db.begin_claim()?;
        let mut claimed = Vec::new();
        {
            let endpoints: Vec<u64> = txn
                .open_table(WEBHOOK_ENDPOINTS)?
                .iter()?
                .map(|entry| entry.map(|(id, _)| id))
                .collect::<Result<_, _>>()?;
            let mut due = txn.open_table(WEBHOOK_DUE)?;
            let mut calls = txn.open_table(WEBHOOK_CALLS)?;
            for endpoint_id in endpoints {
                let slots = free(endpoint_id);
                if slots == 0 {
                    continue;
                }
                let heads = due.take_first(
                    (endpoint_id, 0, "", 0)..(endpoint_id, now.saturating_add(1), "", 0),
                    slots,
                )?;
                for ((_, at, message_id, seq), ()) in heads {
                    if busy(endpoint_id, &message_id) {
                        continue;
                    }
                    let Some(value) = calls.get((endpoint_id, message_id.as_str(), seq))? else {
                        continue;
                    };
                    let mut state: WebhookCallState = decode(&value)?;
                    state.due_at = until;
                    state.lease = Some(Lease {
                        holder: holder.to_string(),
                        until,
                    });
                    due.delete((endpoint_id, at, message_id.as_str(), seq))?;
                    due.insert((endpoint_id, until, message_id.as_str(), seq), ())?;
                    calls.insert(
                        (endpoint_id, message_id.as_str(), seq),
                        encode(&state)?.as_slice(),
                    )?;
                    claimed.push(WebhookCallKey {
                        endpoint_id,
                        message_id,
                        seq,
                    });
                }
            }
        }
        txn.commit()?;
        Ok(claimed)
    }

    /// Extends `holder`'s leases on the calls `keys` name to `until`.
    pub async fn renew_webhook_leases(
        &self,
        keys: Vec<WebhookCallKey>,
        holder: String,
        until: u64,
    ) -> Result<(), StoreError> {
        self.write_row_locking(move |txn| {
            for key in &keys {
                let call = (key.endpoint_id, key.message_id.as_str(), key.seq);
                let mut calls = txn.open_table(WEBHOOK_CALLS)?;
                let mut due = txn.open_table(WEBHOOK_DUE)?;
                let Some(value) = calls.get(call)? else {
                    continue;
                };
                let seen: WebhookCallState = decode(&value)?;
                // Not waiting for a due entry another transaction holds (it is recording the
                // call, which ends the lease, or moving the entry): waiting while holding the
                // entries locked before could deadlock with it. A call passed by is renewed
                // next time, well before its lease runs out.
                let entry = (key.endpoint_id, seen.due_at, call.1, key.seq);
                if due.lock_unless_held(entry)?.is_none() {
                    continue;
                }
                // Read again under the lock: the state read before it may be older.
                let Some(value) = calls.get(call)? else {
                    continue;
                };
                let mut state: WebhookCallState = decode(&value)?;
                match &mut state.lease {
                    Some(lease) if lease.holder == holder => lease.until = until,
                    _ => continue,
                }
                due.delete((key.endpoint_id, state.due_at, call.1, key.seq))?;
                due.insert((key.endpoint_id, until, call.1, key.seq), ())?;
                state.due_at = until;
                calls.insert(call, encode(&state)?.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    /// The calls queued for an endpoint (waiting or being retried).
    pub fn webhook_calls_queued(&self, endpoint_id: u64) -> Result<usize, StoreError> {
        let txn = self.db.begin_read()?;
        let calls = txn.open_table(WEBHOOK_CALLS)?;
        let mut count = 0;
        for entry in calls.range((endpoint_id, "", 0)..(endpoint_id + 1, "", 0))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// An endpoint's dead letters, oldest first.
    pub fn webhook_dead_letters(
        &self,
        endpoint_id: u64,
    ) -> Result<Vec<WebhookDeadLetter>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WEBHOOK_DEAD_LETTERS)?;
        table
            .range((endpoint_id, 0)..=(endpoint_id, u64::MAX))?
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// Queues a dead letter's call again with fresh retries; the dead letter is removed.
    /// Later events of its message may already have been sent: receivers order by the
    /// event's sequence or time, not by arrival, once they redeliver.
    pub async fn redeliver_webhook_dead_letter(
        &self,
        endpoint_id: u64,
        dead_letter_id: u64,
    ) -> Result<(), StoreError> {
        let hooks = Arc::clone(&self.webhooks);
        let found = self
            .write_row_locking(move |txn| {
                let letter = txn
                    .open_table(WEBHOOK_DEAD_LETTERS)?
                    .remove((endpoint_id, dead_letter_id))?
                    .map(|value| decode::<WebhookDeadLetter>(&value))
                    .transpose()?;
                let Some(letter) = letter else {
                    return Ok(false);
                };
                // Queued under the message's lock, as calls for its new events are: the chain
                // has one head at a time.
                txn.open_table(MESSAGES)?.lock(letter.message_id.as_str())?;
                queue_call(
                    txn,
                    &hooks,
                    endpoint_id,
                    &letter.message_id,
                    letter.seq,
                    now_millis(),
                )?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "dead letter {dead_letter_id}"
            )))
        }
    }

    /// Discards a dead letter.
    pub async fn discard_webhook_dead_letter(
        &self,
        endpoint_id: u64,
        dead_letter_id: u64,
    ) -> Result<(), StoreError> {
        let found = self
            .write(move |txn| {
                Ok(txn
                    .open_table(WEBHOOK_DEAD_LETTERS)?
                    .remove((endpoint_id, dead_letter_id))?
                    .is_some())
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "dead letter {dead_letter_id}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};

    /// An endpoint of `account_id` taking every event.
    fn endpoint_for(account_id: u64, secret: &str) -> WebhookEndpoint {
        WebhookEndpoint {
            id: 0,
            account_id,
            url: "https://hooks.example/in".into(),
            event_types: Vec::new(),
            description: None,
            secret: secret.into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    /// Spools one small message of `account_id` and returns its record.
    async fn spool_one(store: &Store, account_id: u64) -> MessageRecord {
        let message = crate::store::tests::record(account_id, "hooked");
        store
            .spool(vec![crate::store::NewMessage {
                record: message.clone(),
                body: b"Subject: x\r\n\r\nx\r\n".to_vec(),
            }])
            .await
            .unwrap();
        message
    }

    on_both_backends!(a_change_to_an_endpoint_keeps_what_another_change_wrote_meanwhile);
    async fn a_change_to_an_endpoint_keeps_what_another_change_wrote_meanwhile(place: TestPlace) {
        let store = place.open();
        let account = store.create_account("tenant").await.unwrap();
        let endpoint = store
            .create_webhook(endpoint_for(account.id, "first"))
            .await
            .unwrap();
        // A secret rotated, then a rule written by a caller that read the endpoint before.
        store
            .update_webhook(account.id, endpoint.id, |endpoint| {
                endpoint.secret = "rotated".into();
            })
            .await
            .unwrap();
        let changed = store
            .update_webhook(account.id, endpoint.id, |endpoint| {
                endpoint.event_types = vec![EventKind::Delivered];
            })
            .await
            .unwrap();
        assert_eq!(changed.secret, "rotated");
        assert_eq!(changed.event_types, [EventKind::Delivered]);
        let another_account = store
            .update_webhook(account.id + 1, endpoint.id, |endpoint| {
                endpoint.url = "https://elsewhere.example/".into();
            })
            .await;
        assert!(matches!(another_account, Err(StoreError::NotFound(_))));
    }

    on_both_backends!(a_chain_head_leased_by_one_node_is_called_by_no_other_and_the_next_waits);
    async fn a_chain_head_leased_by_one_node_is_called_by_no_other_and_the_next_waits(
        place: TestPlace,
    ) {
        const MINUTE: u64 = 60_000;
        let store = place.open();
        let account = store.create_account("tenant").await.unwrap();
        store
            .create_webhook(endpoint_for(account.id, "s"))
            .await
            .unwrap();
        let message = spool_one(&store, account.id).await;
        for kind in [EventKind::Processed, EventKind::Delivered] {
            let event = Event {
                kind,
                at: now_millis(),
                detail: None,
            };
            store.append_event(&message.id, event).await.unwrap();
        }
        let all = |_| 10;
        let idle = |_, _: &str| false;

        let now = now_millis() + 1;
        let head = store
            .claim_due_webhook_calls(now, all, idle, "a", now + MINUTE)
            .unwrap();
        assert_eq!(head.len(), 1, "only the chain's head is due: {head:?}");
        assert!(
            store
                .claim_due_webhook_calls(now, all, idle, "b", now + MINUTE)
                .unwrap()
                .is_empty(),
            "a leased call was claimed again, or the call after it"
        );
        // "a" died: once its lease ran out, "b" makes the call, and "a"'s record is refused.
        let later = now + MINUTE + 1;
        let taken = store
            .claim_due_webhook_calls(later, all, idle, "b", later + MINUTE)
            .unwrap();
        assert_eq!(taken, head);
        let delivered = || WebhookOutcome::Delivered;
        assert!(
            !store
                .record_webhook_attempt(&head[0], delivered(), Some("a".into()))
                .await
                .unwrap()
        );
        assert!(
            store
                .record_webhook_attempt(&head[0], delivered(), Some("b".into()))
                .await
                .unwrap()
        );
        // While the node that settled the head still holds the chain's slot, the next call is
        // not claimed by it: claimed and skipped, it would wait out a lease unsent.
        let busy = |_, _: &str| true;
        assert!(
            store
                .claim_due_webhook_calls(now_millis() + 1, all, busy, "b", later + MINUTE)
                .unwrap()
                .is_empty()
        );
        let next = store
            .claim_due_webhook_calls(now_millis() + 1, all, idle, "a", later + MINUTE)
            .unwrap();
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!(next[0].message_id, message.id);
        assert!(next[0].seq > head[0].seq);
    }

    /// Two nodes on one database: an account's first endpoint, added through one node, takes
    /// the events the other records from that node's next look on, and only those.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_endpoint_added_through_another_node_takes_events_from_the_next_look() {
        const MINUTE: u64 = 60_000;
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let this_node = place.open();
        let other_node = place.open();
        let account = this_node.create_account("tenant").await.unwrap();
        assert!(!this_node.refresh_webhook_accounts().unwrap());
        other_node
            .create_webhook(endpoint_for(account.id, "s"))
            .await
            .unwrap();
        let message = spool_one(&this_node, account.id).await;
        let append = |kind| {
            let event = Event {
                kind,
                at: now_millis(),
                detail: None,
            };
            this_node.append_event(&message.id, event)
        };
        append(EventKind::Processed).await.unwrap();
        assert!(this_node.refresh_webhook_accounts().unwrap());
        // Nothing changed since: one read, and the accounts stay as they are.
        assert!(!this_node.refresh_webhook_accounts().unwrap());
        append(EventKind::Delivered).await.unwrap();

        let all = |_| 10;
        let idle = |_, _: &str| false;
        let now = now_millis() + 1;
        let claimed = this_node
            .claim_due_webhook_calls(now, all, idle, "a", now + MINUTE)
            .unwrap();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert!(
            this_node
                .record_webhook_attempt(&claimed[0], WebhookOutcome::Delivered, Some("a".into()))
                .await
                .unwrap()
        );
        let now = now_millis() + 1;
        let after = this_node
            .claim_due_webhook_calls(now, all, idle, "a", now + MINUTE)
            .unwrap();
        assert!(
            after.is_empty(),
            "the event recorded before the look was queued too: {after:?}"
        );
    }

    #[test]
    fn masks_select_event_kinds() {
        let all = subscription_mask(&[]);
        let some = subscription_mask(&[EventKind::Delivered, EventKind::HardBounce]);
        assert!(EventKind::ALL.iter().all(|kind| all & kind_bit(*kind) != 0));
        assert_ne!(some & kind_bit(EventKind::Delivered), 0);
        assert_ne!(some & kind_bit(EventKind::HardBounce), 0);
        assert_eq!(some & kind_bit(EventKind::Submitted), 0);
        // Every kind has a bit of its own.
        let bits: u32 = EventKind::ALL.iter().map(|kind| kind_bit(*kind)).sum();
        assert_eq!(bits.count_ones() as usize, EventKind::ALL.len());
    }
}
