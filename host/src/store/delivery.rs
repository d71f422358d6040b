//! The outbound queue and the filter list: which processed messages wait for delivery and when
//! they are due, what each attempt came to, and the recipients an account no longer sends to.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::model::{Event, MessageRecord, MessageStatus};
use super::{
    MESSAGES, OUTBOX, Store, StoreError, append_events, decode, encode, next_id, now_millis,
};
use crate::store::EventKind;

/// (due at, message id) → recipient domain: the queue in the order attempts are due, with what
/// the scheduler groups connections by.
pub(super) const OUTBOX_DUE: TableDefinition<(u64, &str), &str> =
    TableDefinition::new("outbox_due");
/// Message id → its delivery state.
pub(super) const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
/// (account, address) → filter entry.
pub(super) const FILTERS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("filters");
/// Filter id → (account, address), for removal by id.
pub(super) const FILTER_IDS: TableDefinition<u64, (u64, &str)> = TableDefinition::new("filter_ids");

/// Where a queued message's delivery stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// Attempts made so far.
    pub attempts: u32,
    /// When it entered the queue (milliseconds since the Unix epoch).
    pub queued_at: u64,
    /// After this, a temporary failure ends in SOFTBOUNCE instead of another retry.
    pub expires_at: u64,
    /// The node attempting it, on a store several nodes share; its due time is the lease's
    /// end meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// The key of its recipient's filter entry (none in states kept before it was noted), so
    /// the attempt reads the entry with the message instead of after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_key: Option<FilterKey>,
}

/// The key of a filter entry: the account and the recipient address as [`filter_key`] writes
/// it.
pub type FilterKey = (u64, String);

/// A queued message handed out for an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueMessage {
    /// The message's id.
    pub id: String,
    /// Its recipient domain.
    pub domain: String,
    /// The key of its recipient's filter entry, when its delivery state notes it.
    pub filter_key: Option<FilterKey>,
    /// When it is due in the queue as handed out (a claim's lease end), if known: recording
    /// the attempt then finds its due entry without reading the queue entry first.
    pub due: Option<u64>,
}

/// A node's claim on a queued message: no other node attempts it until `until`. The holder
/// renews it while its attempt lasts; a holder that dies lets it run out, and the message is
/// due again for every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The node process that holds it (its id and instance).
    pub holder: String,
    /// When it runs out (milliseconds since the Unix epoch).
    pub until: u64,
}

/// How many times a claim is tried again after a deadlock with another node's transaction.
const CLAIM_RETRIES: u32 = 3;

/// What one delivery attempt works from.
#[derive(Clone, Debug)]
pub struct DeliveryJob {
    /// The message.
    pub record: MessageRecord,
    /// Its place in the queue.
    pub state: DeliveryState,
    /// What to send.
    pub body: Vec<u8>,
    /// The filter entry of its recipient, if it was filtered meanwhile.
    pub filtered: Option<FilterEntry>,
}

/// The domain of a recipient address, lower case.
pub(super) fn recipient_domain(recipient: &str) -> String {
    recipient
        .rsplit_once('@')
        .map_or(recipient, |(_, domain)| domain)
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

/// A recipient an account does not send to any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterEntry {
    /// Its id (for removal).
    pub id: u64,
    /// The account.
    pub account_id: u64,
    /// The recipient address, lower case.
    pub address: String,
    /// hard-bounce, complaint, manual.
    pub reason: String,
    /// The message whose event put it here, if any.
    #[serde(default)]
    pub message_id: Option<String>,
    /// That event's detail (the remote's reply).
    #[serde(default)]
    pub detail: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// What one delivery attempt came to, recorded in one transaction.
#[derive(Clone, Debug)]
pub enum AttemptRecord {
    /// Try again at `due_at`; the event says what happened this time.
    Retry {
        /// The ATTEMPT event.
        event: Event,
        /// When to try next.
        due_at: u64,
    },
    /// The message's delivery is over: delivered, bounced or rejected.
    Final {
        /// The new status.
        status: MessageStatus,
        /// Its events (ATTEMPT, DELIVERED, SOFTBOUNCE, HARDBOUNCE...).
        events: Vec<Event>,
        /// A filter-list entry to add (a hard bounce): reason and detail.
        filter: Option<(String, String)>,
    },
}

/// Normalizes an address for the filter list.
pub fn filter_key(address: &str) -> String {
    address.trim().trim_matches(['<', '>']).to_ascii_lowercase()
}

/// Queues a processed message inside the flow's outcome transaction, unless its recipient is on
/// the account's filter list: then it gets REJECT and is not sent. Returns the status to keep.
/// `filter_entry` is the recipient's entry as [`recipient_filter_key`] names it, read in
/// `txn`.
pub(super) fn queue_or_reject(
    txn: &WriteTransaction,
    hooks: &super::webhooks::WebhookHooks,
    record: &mut MessageRecord,
    filter_entry: Option<Vec<u8>>,
    expires_at: u64,
) -> Result<(), StoreError> {
    let filtered = filter_entry
        .map(|entry| decode::<FilterEntry>(&entry))
        .transpose()?;
    if let Some(entry) = filtered {
        record.status = MessageStatus::Rejected;
        record.status_reason = Some(format!(
            "the recipient is on the filter list ({})",
            entry.reason
        ));
        append_events(
            txn,
            hooks,
            record,
            &[Event {
                kind: EventKind::Reject,
                at: now_millis(),
                detail: record.status_reason.clone(),
            }],
        )?;
        return Ok(());
    }
    let now = now_millis();
    let id = record.id.as_str();
    txn.open_table(OUTBOX)?.insert(id, now)?;
    txn.open_table(OUTBOX_DUE)?
        .insert((now, id), recipient_domain(&record.recipient).as_str())?;
    let state = DeliveryState {
        attempts: 0,
        queued_at: now,
        expires_at,
        lease: None,
        filter_key: Some(recipient_filter_key(record)),
    };
    txn.open_table(DELIVERIES)?
        .insert(id, encode(&state)?.as_slice())?;
    Ok(())
}

/// The key of a message's recipient's filter entry.
pub(super) fn recipient_filter_key(record: &MessageRecord) -> FilterKey {
    (record.account_id, filter_key(&record.recipient))
}

/// Takes a message out of the delivery queue, if it is queued.
pub(super) fn dequeue(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    if let Some(due) = txn.open_table(OUTBOX)?.remove(id)? {
        txn.open_table(OUTBOX_DUE)?.delete((due, id))?;
    }
    txn.open_table(DELIVERIES)?.delete(id)?;
    Ok(())
}

pub(super) fn insert_filter(
    txn: &WriteTransaction,
    account_id: u64,
    address: &str,
    reason: &str,
    message_id: Option<&str>,
    detail: Option<&str>,
) -> Result<FilterEntry, StoreError> {
    let address = filter_key(address);
    let mut filters = txn.open_table(FILTERS)?;
    if let Some(existing) = filters.get((account_id, address.as_str()))? {
        return decode(&existing);
    }
    let entry = FilterEntry {
        id: next_id(txn, "filter")?,
        account_id,
        address: address.clone(),
        reason: reason.to_string(),
        message_id: message_id.map(str::to_string),
        detail: detail.map(str::to_string),
        created_at: now_millis(),
    };
    // Nodes recording hard bounces to one address at once put one entry: the others find
    // it (a row-locking write sees the other's once it commits).
    if !filters.insert_if_absent((account_id, address.as_str()), encode(&entry)?.as_slice())? {
        let existing = filters
            .get((account_id, address.as_str()))?
            .ok_or_else(|| StoreError::Conflict(format!("filter entry for {address}")))?;
        return decode(&existing);
    }
    txn.open_table(FILTER_IDS)?
        .insert(entry.id, (account_id, address.as_str()))?;
    Ok(entry)
}

/// How many times [`lock_attempt_rows`] looks again for a due entry that moved while it
/// waited.
const DUE_ENTRY_LOOKS: u32 = 4;

/// The rows recording a delivery attempt rests on, locked.
struct AttemptRows {
    /// When the message is due (its due entry's key).
    due: u64,
    /// Its recipient domain (its due entry's value).
    domain: String,
    /// Its delivery state, encoded.
    state: Option<Vec<u8>>,
    /// Its record, encoded.
    message: Option<Vec<u8>>,
}

/// Locks a queued message's due entry, the lock every change to its delivery state takes
/// first (a claim takes it with `SKIP LOCKED`, so a node recording or renewing is never
/// claimed from), and after it, in the same statement, its delivery state and its record
/// (the lock every change to a message's events takes). None when it is not queued. The due
/// entry's key holds the due time, which a claim or renewal committed while this waited may
/// have changed: the queue entry then tells the new one.
fn lock_attempt_rows(
    txn: &WriteTransaction,
    id: &str,
    due_hint: Option<u64>,
) -> Result<Option<AttemptRows>, StoreError> {
    let lock = |due: u64| {
        txn.lock_together(((OUTBOX_DUE, (due, id)), (DELIVERIES, id), (MESSAGES, id)))
            .map(|(domain, state, message)| {
                domain.map(|domain| AttemptRows {
                    due,
                    domain,
                    state,
                    message,
                })
            })
    };
    // A due time that moved since (a renewal) locks nothing: then the queue entry tells.
    if let Some(due) = due_hint
        && let Some(rows) = lock(due)?
    {
        return Ok(Some(rows));
    }
    let outbox = txn.open_table(OUTBOX)?;
    for _ in 0..DUE_ENTRY_LOOKS {
        let Some(due) = outbox.get(id)? else {
            return Ok(None);
        };
        if let Some(rows) = lock(due)? {
            return Ok(Some(rows));
        }
    }
    Err(StoreError::Conflict(format!(
        "message {id} kept moving in the delivery queue"
    )))
}

/// What one look at the due queue found.
#[derive(Debug)]
pub struct DueLook {
    /// The messages handed out, with their recipient domains.
    pub due: Vec<(String, String)>,
    /// The due time of the last entry looked at (handed out or passed over), if any.
    pub last_looked_at: Option<u64>,
}

impl Store {
    /// Queued messages due at or before `now`, oldest first, at most `limit`, with their
    /// recipient domains.
    /// Messages for which `busy` says yes (in flight) are passed over without counting, so
    /// a backlog waiting on one slow destination does not hide the rest of the queue.
    pub fn due_deliveries(
        &self,
        now: u64,
        limit: usize,
        busy: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.due_deliveries_from(0, now, limit, busy)?.due)
    }

    /// [`Store::due_deliveries`] of the messages due at `from` or later, and the due time of
    /// the last entry looked at (handed out or passed over), if any: where a scheduler that
    /// keeps track of what it handed out can start its next look.
    pub fn due_deliveries_from(
        &self,
        from: u64,
        now: u64,
        limit: usize,
        busy: impl Fn(&str) -> bool,
    ) -> Result<DueLook, StoreError> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(OUTBOX_DUE)?;
        let mut found = Vec::new();
        let mut last_looked_at = None;
        for entry in due.range((from, "")..=(now, "\u{10ffff}"))? {
            let (key, domain) = entry?;
            let (at, id) = key;
            last_looked_at = Some(at);
            if busy(&id) {
                continue;
            }
            found.push((id.to_string(), domain));
            if found.len() == limit {
                break;
            }
        }
        Ok(DueLook {
            due: found,
            last_looked_at,
        })
    }

    /// Everything one delivery attempt reads, from one snapshot: the message, its delivery
    /// state, its body and its recipient's filter entry (as it is now: an address filtered
    /// while the message waited is not sent to). None when it is no longer queued. With the
    /// key of the recipient's filter entry (from [`DueMessage::filter_key`]) one read, else
    /// two (the key is the message's).
    pub fn delivery_job(
        &self,
        id: &str,
        known_filter_key: Option<&FilterKey>,
    ) -> Result<Option<DeliveryJob>, StoreError> {
        let (state, record, body, filter_entry) = match known_filter_key {
            Some((account_id, address)) => self.db.get_together((
                (DELIVERIES, id),
                (MESSAGES, id),
                (super::BODIES, id),
                (FILTERS, (*account_id, address.as_str())),
            ))?,
            None => {
                let (state, record, body) = self.db.get_together((
                    (DELIVERIES, id),
                    (MESSAGES, id),
                    (super::BODIES, id),
                ))?;
                (state, record, body, None)
            }
        };
        let (Some(state), Some(record)) = (state, record) else {
            return Ok(None);
        };
        let state: DeliveryState = decode(&state)?;
        let record: MessageRecord = decode(&record)?;
        let body = body
            .map(|body| super::compressed::unpack(&body))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("body of message {id}")))?;
        let recipient_key = recipient_filter_key(&record);
        let filter_entry = if known_filter_key == Some(&recipient_key) {
            filter_entry
        } else {
            self.db
                .get_one(FILTERS, (recipient_key.0, recipient_key.1.as_str()))?
        };
        let filtered = filter_entry.map(|entry| decode(&entry)).transpose()?;
        Ok(Some(DeliveryJob {
            record,
            state,
            body,
            filtered,
        }))
    }

    /// When the next queued message is due, if any is queued.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.db.first_one(OUTBOX_DUE)?.map(|(key, _)| key.0))
    }

    /// A queued message's delivery state.
    pub fn delivery_state(&self, id: &str) -> Result<Option<DeliveryState>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DELIVERIES)?;
        table.get(id)?.map(|value| decode(&value)).transpose()
    }

    /// Records an attempt and what follows from it, in one durable transaction: the message is
    /// rescheduled, or leaves the queue with its final status (and, for a hard bounce, its
    /// recipient joins the filter list). With a `holder`, only while that holder's lease is
    /// the message's (see [`Store::claim_due_deliveries`]). Returns whether it was recorded.
    pub async fn record_attempt(
        &self,
        id: &str,
        record: AttemptRecord,
        holder: Option<String>,
    ) -> Result<bool, StoreError> {
        self.record_attempt_due(id, record, holder, None).await
    }

    /// [`Store::record_attempt`] for a message handed out as due at `due_hint` (see
    /// [`DueMessage::due`]): its rows are locked by one statement while that is still when
    /// it is due.
    pub async fn record_attempt_due(
        &self,
        id: &str,
        record: AttemptRecord,
        holder: Option<String>,
        due_hint: Option<u64>,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        let hooks = std::sync::Arc::clone(&self.webhooks);
        self.write_row_locking(move |txn| {
            let Some(AttemptRows {
                due,
                domain,
                state,
                message,
            }) = lock_attempt_rows(txn, &id, due_hint)?
            else {
                // Not queued any more (delivered by an earlier attempt): nothing to record.
                return Ok(false);
            };
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut state: DeliveryState = match state {
                Some(value) => decode(&value)?,
                None => DeliveryState {
                    attempts: 0,
                    queued_at: due,
                    expires_at: due,
                    lease: None,
                    filter_key: None,
                },
            };
            if let Some(holder) = &holder
                && state
                    .lease
                    .as_ref()
                    .is_none_or(|lease| &lease.holder != holder)
            {
                // The lease ran out and another node took the message (or recorded it): that
                // node's attempt, not this one, is the one on record.
                return Ok(false);
            }
            let mut due_index = txn.open_table(OUTBOX_DUE)?;
            due_index.delete((due, id.as_str()))?;
            let mut message: MessageRecord = match message {
                Some(message) => decode(&message)?,
                None => {
                    // A queued message without its record: nothing left to deliver or tell.
                    outbox.delete(id.as_str())?;
                    deliveries.delete(id.as_str())?;
                    return Ok(false);
                }
            };
            state.lease = None;
            state.attempts += 1;
            match &record {
                AttemptRecord::Retry { event, due_at } => {
                    append_events(txn, &hooks, &mut message, std::slice::from_ref(event))?;
                    outbox.insert(id.as_str(), *due_at)?;
                    due_index.insert((*due_at, id.as_str()), domain.as_str())?;
                    deliveries.insert(id.as_str(), encode(&state)?.as_slice())?;
                }
                AttemptRecord::Final {
                    status,
                    events,
                    filter,
                } => {
                    append_events(txn, &hooks, &mut message, events)?;
                    outbox.delete(id.as_str())?;
                    deliveries.delete(id.as_str())?;
                    message.status = *status;
                    message.status_reason = events.last().and_then(|event| event.detail.clone());
                    txn.open_table(MESSAGES)?
                        .insert(id.as_str(), encode(&message)?.as_slice())?;
                    if let Some((reason, detail)) = filter {
                        insert_filter(
                            txn,
                            message.account_id,
                            &message.recipient,
                            reason,
                            Some(&id),
                            Some(detail),
                        )?;
                    }
                }
            }
            Ok(true)
        })
        .await
    }

    /// Claims up to `limit` due messages for `holder` until `until`, oldest first, with their
    /// recipient domains: each moves in the queue to `until`, so no node sees it due while the
    /// lease lasts. Nodes claiming at once take different messages: on PostgreSQL the due
    /// entries are taken with `FOR UPDATE SKIP LOCKED` in a transaction of its own (not the
    /// group commit, whose other writers a conflict would hold up). Messages this holder
    /// claimed before and still holds come back too when their lease ran out.
    pub fn claim_due_deliveries(
        &self,
        now: u64,
        limit: usize,
        holder: &str,
        until: u64,
    ) -> Result<Vec<DueMessage>, StoreError> {
        let mut tries = 0;
        loop {
            match self.try_claim_due(now, limit, holder, until) {
                Err(error) if error.is_transient_conflict() && tries < CLAIM_RETRIES => {
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn try_claim_due(
        &self,
        now: u64,
        limit: usize,
        holder: &str,
        until: u64,
    ) -> Result<Vec<DueMessage>, StoreError> {
        let txn = self.db.begin_claim()?;
        let mut claimed = Vec::new();
        {
            let mut due_index = txn.open_table(OUTBOX_DUE)?;
            let taken = due_index.take_first((0, "")..=(now, "\u{10ffff}"), limit)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            // Everything that changes a queued message's delivery state also changes its due
            // entry, which this transaction holds: these rows are safe to change here.
            let ids: Vec<&str> = taken.iter().map(|((_, id), _)| id.as_str()).collect();
            let states = deliveries.get_each(&ids)?;
            for (((due, id), domain), value) in taken.iter().zip(states) {
                let Some(value) = value else {
                    continue;
                };
                let mut state: DeliveryState = decode(&value)?;
                state.lease = Some(Lease {
                    holder: holder.to_string(),
                    until,
                });
                due_index.delete((*due, id.as_str()))?;
                due_index.insert((until, id.as_str()), domain.as_str())?;
                outbox.insert(id.as_str(), until)?;
                deliveries.insert(id.as_str(), encode(&state)?.as_slice())?;
                claimed.push(DueMessage {
                    id: id.clone(),
                    domain: domain.clone(),
                    filter_key: state.filter_key,
                    due: Some(until),
                });
            }
        }
        txn.commit()?;
        Ok(claimed)
    }

    /// Extends `holder`'s leases on `ids` to `until`; returns the ids whose lease it no longer
    /// holds (ran out and taken by another node, or recorded).
    pub async fn renew_delivery_leases(
        &self,
        ids: Vec<String>,
        holder: String,
        until: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.write_row_locking(move |txn| {
            let mut lost = Vec::new();
            for id in &ids {
                let mut outbox = txn.open_table(OUTBOX)?;
                let mut due_index = txn.open_table(OUTBOX_DUE)?;
                let Some(due) = outbox.get(id.as_str())? else {
                    lost.push(id.clone());
                    continue;
                };
                // Not waiting for an entry another transaction holds: that one is recording
                // the attempt (which ends the lease) or moving the entry, and waiting for it
                // while holding the entries locked before could deadlock with it. An entry
                // passed by is renewed next time, well before its lease runs out.
                let Some(domain) = due_index.lock_unless_held((due, id.as_str()))? else {
                    continue;
                };
                let mut deliveries = txn.open_table(DELIVERIES)?;
                let state = deliveries
                    .get(id.as_str())?
                    .map(|value| decode::<DeliveryState>(&value))
                    .transpose()?;
                let Some(mut state) = state else {
                    lost.push(id.clone());
                    continue;
                };
                match &mut state.lease {
                    Some(lease) if lease.holder == holder => lease.until = until,
                    _ => {
                        lost.push(id.clone());
                        continue;
                    }
                }
                due_index.delete((due, id.as_str()))?;
                due_index.insert((until, id.as_str()), domain.as_str())?;
                outbox.insert(id.as_str(), until)?;
                deliveries.insert(id.as_str(), encode(&state)?.as_slice())?;
            }
            Ok(lost)
        })
        .await
    }

    /// The account's filter entry for an address, if it is filtered.
    pub fn filtered(
        &self,
        account_id: u64,
        address: &str,
    ) -> Result<Option<FilterEntry>, StoreError> {
        self.db
            .get_one(FILTERS, (account_id, filter_key(address).as_str()))?
            .map(|value| decode(&value))
            .transpose()
    }

    /// Adds an address to the account's filter list (or returns the entry it already has).
    pub async fn add_filter(
        &self,
        account_id: u64,
        address: &str,
        reason: &str,
        message_id: Option<String>,
        detail: Option<String>,
    ) -> Result<FilterEntry, StoreError> {
        let (address, reason) = (address.to_string(), reason.to_string());
        self.write(move |txn| {
            insert_filter(
                txn,
                account_id,
                &address,
                &reason,
                message_id.as_deref(),
                detail.as_deref(),
            )
        })
        .await
    }

    /// The account's filter list, addresses containing `search` when given, in address order.
    pub fn filters_of(
        &self,
        account_id: u64,
        search: Option<&str>,
    ) -> Result<Vec<FilterEntry>, StoreError> {
        let needle = search.map(filter_key);
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FILTERS)?;
        let mut found = Vec::new();
        for entry in table.range((account_id, "")..(account_id + 1, ""))? {
            let (key, value) = entry?;
            if needle
                .as_deref()
                .is_none_or(|needle| key.1.contains(needle))
            {
                found.push(decode(&value)?);
            }
        }
        Ok(found)
    }

    /// Removes an entry from the account's filter list: later mail to it is sent again.
    pub async fn remove_filter(&self, account_id: u64, id: u64) -> Result<(), StoreError> {
        let found = self
            .write(move |txn| {
                let mut ids = txn.open_table(FILTER_IDS)?;
                let Some((owner, address)) = ids.get(id)?.map(|value| {
                    let (owner, address) = value;
                    (owner, address.to_string())
                }) else {
                    return Ok(false);
                };
                if owner != account_id {
                    return Ok(false);
                }
                ids.delete(id)?;
                txn.open_table(FILTERS)?
                    .delete((account_id, address.as_str()))?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("filter {id}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};
    use crate::store::tests::record;
    use crate::store::{MessageStatus, NewMessage};

    const MINUTE: u64 = 60_000;

    /// Spools `count` messages and finishes their flows, so they wait in the delivery queue;
    /// returns their ids, oldest first.
    async fn queued(store: &Store, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let (id, status) = spooled_and_processed(store, None).await;
            assert_eq!(status, Some(MessageStatus::Processed));
            ids.push(id);
        }
        ids
    }

    /// Spools a message to ann and finishes its flow as processed, for `redirected_to` when
    /// a step redirected the copy; returns its id and the status its flow's outcome recorded.
    async fn spooled_and_processed(
        store: &Store,
        redirected_to: Option<&str>,
    ) -> (String, Option<MessageStatus>) {
        let mut message = record(1, "m");
        store
            .spool(vec![NewMessage {
                record: message.clone(),
                body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            }])
            .await
            .unwrap();
        message.status = MessageStatus::Processed;
        if let Some(recipient) = redirected_to {
            message.recipient = recipient.into();
        }
        let id = message.id.clone();
        let status = store
            .finish_flow(message, None, Vec::new(), None, None, u64::MAX)
            .await
            .unwrap();
        (id, status)
    }

    fn ids_of(claimed: Vec<DueMessage>) -> Vec<String> {
        claimed.into_iter().map(|due| due.id).collect()
    }

    fn delivered() -> AttemptRecord {
        AttemptRecord::Final {
            status: MessageStatus::Delivered,
            events: Vec::new(),
            filter: None,
        }
    }

    on_both_backends!(an_attempt_is_recorded_whether_its_due_time_is_as_handed_out_or_moved);
    async fn an_attempt_is_recorded_whether_its_due_time_is_as_handed_out_or_moved(
        place: TestPlace,
    ) {
        let store = place.open();
        let ids = queued(&store, 2).await;
        let now = now_millis() + 1;
        let claimed = store
            .claim_due_deliveries(now, 10, "a", now + MINUTE)
            .unwrap();
        assert_eq!(
            claimed.iter().map(|due| due.due).collect::<Vec<_>>(),
            [Some(now + MINUTE), Some(now + MINUTE)]
        );
        // The second's lease renewed: it is due later than when it was handed out.
        let lost = store
            .renew_delivery_leases(vec![ids[1].clone()], "a".into(), now + 2 * MINUTE)
            .await
            .unwrap();
        assert!(lost.is_empty());
        for (id, hint) in ids.iter().zip([claimed[0].due, claimed[1].due]) {
            assert!(
                store
                    .record_attempt_due(id, delivered(), Some("a".into()), hint)
                    .await
                    .unwrap(),
                "{id} was not recorded"
            );
            assert!(
                store.delivery_state(id).unwrap().is_none(),
                "{id} still queued"
            );
        }
        assert_eq!(store.next_due().unwrap(), None);
    }

    on_both_backends!(a_finished_flow_is_rejected_for_its_recipient_as_the_flow_left_it);
    async fn a_finished_flow_is_rejected_for_its_recipient_as_the_flow_left_it(place: TestPlace) {
        let store = place.open();
        store
            .add_filter(1, "bob@example.net", "hard bounce", None, None)
            .await
            .unwrap();
        // Spooled to ann (not filtered), each redirected by a step before it finishes.
        let mut statuses = Vec::new();
        for redirected_to in ["Bob@Example.net", "carol@example.net"] {
            statuses.push(spooled_and_processed(&store, Some(redirected_to)).await.1);
        }
        assert_eq!(
            statuses,
            [
                Some(MessageStatus::Rejected),
                Some(MessageStatus::Processed)
            ]
        );
        let now = now_millis() + 1;
        let claimed = store
            .claim_due_deliveries(now, 10, "a", now + MINUTE)
            .unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|due| &due.filter_key)
                .collect::<Vec<_>>(),
            [&Some((1, "carol@example.net".to_string()))],
            "only the copy for carol is queued"
        );
    }

    on_both_backends!(
        a_claimed_message_carries_its_filter_key_and_its_job_reads_the_entry_as_it_is_now
    );
    async fn a_claimed_message_carries_its_filter_key_and_its_job_reads_the_entry_as_it_is_now(
        place: TestPlace,
    ) {
        let store = place.open();
        let ids = queued(&store, 1).await;
        let now = now_millis() + 1;
        let claimed = store
            .claim_due_deliveries(now, 10, "a", now + MINUTE)
            .unwrap();
        let expected_key = (1, "ann@example.net".to_string());
        assert_eq!(
            claimed,
            [DueMessage {
                id: ids[0].clone(),
                domain: "example.net".into(),
                filter_key: Some(expected_key.clone()),
                due: Some(now + MINUTE),
            }]
        );
        let job = store.delivery_job(&ids[0], Some(&expected_key)).unwrap();
        let job = job.expect("a queued message has a job");
        assert_eq!(job.record.id, ids[0]);
        assert_eq!(job.body, b"Subject: x\r\n\r\nbody\r\n");
        assert!(job.filtered.is_none());

        // Filtered while it waited: every way of asking finds the entry, also with a key that
        // is not the recipient's (then the message's own is read).
        let entry = store
            .add_filter(1, "Ann@Example.net", "hard bounce", None, None)
            .await
            .unwrap();
        let other_key = (1, "bob@example.net".to_string());
        for known in [Some(&expected_key), None, Some(&other_key)] {
            let job = store.delivery_job(&ids[0], known).unwrap().unwrap();
            assert_eq!(
                job.filtered.map(|entry| entry.reason),
                Some("hard bounce".to_string()),
                "asked with {known:?}"
            );
        }
        // Another address's entry is never taken for the recipient's.
        store
            .add_filter(1, "bob@example.net", "complaint", None, None)
            .await
            .unwrap();
        store.remove_filter(1, entry.id).await.unwrap();
        for known in [Some(&expected_key), None, Some(&other_key)] {
            let job = store.delivery_job(&ids[0], known).unwrap().unwrap();
            assert!(job.filtered.is_none(), "asked with {known:?}");
        }
    }

    on_both_backends!(a_leased_message_is_due_for_no_other_node_until_its_lease_runs_out);
    async fn a_leased_message_is_due_for_no_other_node_until_its_lease_runs_out(place: TestPlace) {
        let store = place.open();
        let ids = queued(&store, 2).await;
        let now = now_millis() + 1;

        let first = store
            .claim_due_deliveries(now, 10, "a", now + MINUTE)
            .unwrap();
        assert_eq!(ids_of(first), ids);
        assert!(
            store
                .claim_due_deliveries(now, 10, "b", now + MINUTE)
                .unwrap()
                .is_empty(),
            "a leased message was claimed again"
        );
        assert_eq!(store.next_due().unwrap(), Some(now + MINUTE));
        let state = store.delivery_state(&ids[0]).unwrap().unwrap();
        assert_eq!(state.lease.map(|lease| lease.holder), Some("a".into()));
        // A node without the lease records nothing.
        assert!(
            !store
                .record_attempt(&ids[0], delivered(), Some("b".into()))
                .await
                .unwrap()
        );
        assert_eq!(
            store.message(&ids[0]).unwrap().unwrap().status,
            MessageStatus::Processed
        );

        // "a" stopped renewing (it died): once the lease ran out, "b" takes the messages over,
        // and what "a" reports afterwards is not recorded.
        let later = now + MINUTE + 1;
        let taken = store
            .claim_due_deliveries(later, 10, "b", later + MINUTE)
            .unwrap();
        assert_eq!(ids_of(taken), ids);
        assert!(
            !store
                .record_attempt(&ids[0], delivered(), Some("a".into()))
                .await
                .unwrap()
        );
        assert!(
            store
                .record_attempt(&ids[0], delivered(), Some("b".into()))
                .await
                .unwrap()
        );
        assert_eq!(
            store.message(&ids[0]).unwrap().unwrap().status,
            MessageStatus::Delivered
        );
        assert!(store.delivery_state(&ids[0]).unwrap().is_none());

        // A retry gives the lease up: the message is due again at its retry time, for anyone.
        let retry_at = later + 2 * MINUTE;
        let retry = AttemptRecord::Retry {
            event: Event {
                kind: EventKind::Attempt,
                at: later,
                detail: Some("451 try later".into()),
            },
            due_at: retry_at,
        };
        assert!(
            store
                .record_attempt(&ids[1], retry, Some("b".into()))
                .await
                .unwrap()
        );
        let state = store.delivery_state(&ids[1]).unwrap().unwrap();
        assert_eq!((state.attempts, state.lease), (1, None));
        assert!(
            store
                .claim_due_deliveries(retry_at - 1, 10, "c", retry_at + MINUTE)
                .unwrap()
                .is_empty()
        );
        let again = store
            .claim_due_deliveries(retry_at, 10, "c", retry_at + MINUTE)
            .unwrap();
        assert_eq!(ids_of(again), vec![ids[1].clone()]);
    }

    on_both_backends!(a_holder_keeps_its_leases_by_renewing_them_and_learns_which_it_lost);
    async fn a_holder_keeps_its_leases_by_renewing_them_and_learns_which_it_lost(place: TestPlace) {
        let store = place.open();
        let ids = queued(&store, 3).await;
        let now = now_millis() + 1;
        store
            .claim_due_deliveries(now, 2, "a", now + MINUTE)
            .unwrap();
        let lost = store
            .renew_delivery_leases(ids[..2].to_vec(), "a".into(), now + 3 * MINUTE)
            .await
            .unwrap();
        assert!(lost.is_empty());
        // Past the first lease's end, only the message "a" never claimed is due.
        let later = now + 2 * MINUTE;
        let taken = store
            .claim_due_deliveries(later, 10, "b", later + MINUTE)
            .unwrap();
        assert_eq!(ids_of(taken), vec![ids[2].clone()]);
        // "b" renewing what "a" holds, or a message gone from the queue, is told it lost them.
        store
            .record_attempt(&ids[0], delivered(), Some("a".into()))
            .await
            .unwrap();
        let lost = store
            .renew_delivery_leases(ids[..2].to_vec(), "b".into(), later + 3 * MINUTE)
            .await
            .unwrap();
        assert_eq!(lost, ids[..2].to_vec());
        let state = store.delivery_state(&ids[1]).unwrap().unwrap();
        assert_eq!(
            state.lease,
            Some(Lease {
                holder: "a".into(),
                until: now + 3 * MINUTE
            })
        );
    }

    on_both_backends!(a_flow_outcome_is_recorded_once_however_often_its_message_ran);
    async fn a_flow_outcome_is_recorded_once_however_often_its_message_ran(place: TestPlace) {
        let store = place.open();
        let ids = queued(&store, 1).await;
        let mut again = store.message(&ids[0]).unwrap().unwrap();
        again.status = MessageStatus::Processed;
        let processed = Event {
            kind: EventKind::Processed,
            at: now_millis(),
            detail: None,
        };
        let status = store
            .finish_flow(again, None, vec![processed], None, None, u64::MAX)
            .await
            .unwrap();
        assert_eq!(status, None, "a second outcome was recorded");
        let due = store
            .claim_due_deliveries(now_millis() + 1, 10, "a", now_millis() + MINUTE)
            .unwrap();
        assert_eq!(ids_of(due), ids, "the message was queued twice");
        let events = store.events(&ids[0]).unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|event| event.kind == EventKind::Processed)
                .count(),
            0,
            "the second outcome's event was recorded"
        );
    }

    /// Renewing many leases does not wait for an entry another transaction holds (it would
    /// hold the entries it locked before meanwhile, and two such transactions could deadlock):
    /// it renews the others, and the held one is neither renewed nor reported lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renewing_leases_passes_by_an_entry_another_transaction_holds() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let store = place.open();
        let ids = queued(&store, 3).await;
        let now = now_millis() + 1;
        store
            .claim_due_deliveries(now, 3, "a", now + MINUTE)
            .unwrap();

        let holding = store.db.begin_row_locking_write().unwrap();
        let held_due = holding
            .open_table(OUTBOX)
            .unwrap()
            .get(ids[1].as_str())
            .unwrap();
        let held_due = held_due.expect("claimed messages are queued");
        assert!(
            holding
                .open_table(OUTBOX_DUE)
                .unwrap()
                .lock((held_due, ids[1].as_str()))
                .unwrap()
                .is_some()
        );
        let renewed = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            store.renew_delivery_leases(ids.clone(), "a".into(), now + 3 * MINUTE),
        )
        .await
        .expect("renewing waited for the held entry");
        assert!(
            renewed.unwrap().is_empty(),
            "a held entry was reported lost"
        );
        drop(holding);

        let until = |id: &str| {
            store
                .delivery_state(id)
                .unwrap()
                .and_then(|state| state.lease)
                .map(|lease| lease.until)
        };
        assert_eq!(until(&ids[0]), Some(now + 3 * MINUTE));
        assert_eq!(
            until(&ids[1]),
            Some(now + MINUTE),
            "the held entry was renewed"
        );
        assert_eq!(until(&ids[2]), Some(now + 3 * MINUTE));
    }

    /// Two nodes claiming from one queue at the same moment each take messages the other did
    /// not: the taking passes over rows the other's claim holds instead of waiting for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_claiming_at_once_take_different_messages_and_together_all() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let (one, other) = (place.open(), place.open());
        let mut ids = queued(&one, 60).await;
        let now = now_millis() + 1;

        // A claim in progress holds the rows it took; another claim beside it gets the next.
        let holding = one.db.begin_claim().unwrap();
        let held = holding
            .open_table(OUTBOX_DUE)
            .unwrap()
            .take_first((0, "")..=(now, "\u{10ffff}"), 5)
            .unwrap();
        let beside = ids_of(
            other
                .claim_due_deliveries(now, 5, "b", now + MINUTE)
                .unwrap(),
        );
        let held: Vec<String> = held.into_iter().map(|((_, id), _)| id).collect();
        assert_eq!(held, ids[..5].to_vec());
        assert_eq!(beside, ids[5..10].to_vec());
        // Ended with an answer awaited, not dropped: claims made before a dropped transaction's
        // rollback went through would find its rows still held, and stop.
        holding.commit().unwrap();

        let claim_all = |store: Store, holder: &'static str| {
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let taken = store
                        .claim_due_deliveries(now, 3, holder, now + MINUTE)
                        .unwrap();
                    if taken.is_empty() {
                        return mine;
                    }
                    mine.extend(ids_of(taken));
                }
            })
        };
        let (a, b) = (claim_all(one.clone(), "a"), claim_all(other.clone(), "b"));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let mut all: Vec<String> = beside.into_iter().chain(a).chain(b).collect();
        all.sort();
        ids.sort();
        assert_eq!(all, ids, "a message was claimed twice, or never");
    }

    /// Two nodes on one database, each with many writers at once taking messages through the
    /// whole path (spooled, flow finished, an open recorded, claimed, delivered): every change
    /// lands, none comes back to its writer as a conflict with the other node's, and each
    /// message ends delivered with each event once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_busy_nodes_record_every_message_without_a_conflict_reaching_a_writer() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        const WRITERS: usize = 12;
        const MESSAGES: usize = 15;
        let nodes = [place.open(), place.open()];
        let mut work = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            for (node, store) in nodes.iter().enumerate() {
                let store = store.clone();
                let holder = format!("node-{node}");
                work.spawn(async move {
                    let mut ids = Vec::new();
                    for n in 0..MESSAGES {
                        let mut message = record(1, &format!("{holder} {writer} {n}"));
                        store
                            .spool(vec![NewMessage {
                                record: message.clone(),
                                body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
                            }])
                            .await?;
                        message.status = MessageStatus::Processed;
                        let processed = Event {
                            kind: EventKind::Processed,
                            at: now_millis(),
                            detail: None,
                        };
                        let finished = store
                            .finish_flow(
                                message.clone(),
                                None,
                                vec![processed],
                                None,
                                None,
                                u64::MAX,
                            )
                            .await?;
                        assert_eq!(finished, Some(MessageStatus::Processed));
                        let opened = Event {
                            kind: EventKind::Opened,
                            at: now_millis(),
                            detail: None,
                        };
                        store.append_event(&message.id, opened).await?;
                        let now = now_millis() + 1;
                        let claimed = tokio::task::block_in_place(|| {
                            store.claim_due_deliveries(now, 4, &holder, now + MINUTE)
                        })?;
                        for DueMessage { id, .. } in claimed {
                            let recorded = store
                                .record_attempt(&id, delivered(), Some(holder.clone()))
                                .await?;
                            assert!(recorded, "{holder} lost a lease it had just taken");
                        }
                        ids.push(message.id);
                    }
                    Ok::<_, StoreError>(ids)
                });
            }
        }
        let mut ids = Vec::new();
        while let Some(outcome) = work.join_next().await {
            ids.extend(outcome.unwrap().expect("no change failed"));
        }
        // What the writers' own claims left behind (claimed by the other node's last rounds).
        loop {
            let now = now_millis() + 1;
            let claimed = nodes[0]
                .claim_due_deliveries(now, 100, "sweeper", now + MINUTE)
                .unwrap();
            if claimed.is_empty() {
                break;
            }
            for DueMessage { id, .. } in claimed {
                assert!(
                    nodes[0]
                        .record_attempt(&id, delivered(), Some("sweeper".into()))
                        .await
                        .unwrap()
                );
            }
        }
        assert_eq!(ids.len(), 2 * WRITERS * MESSAGES);
        for id in &ids {
            let message = nodes[1].message(id).unwrap().unwrap();
            assert_eq!(message.status, MessageStatus::Delivered, "{id}");
            let kinds: Vec<EventKind> = nodes[1]
                .events(id)
                .unwrap()
                .into_iter()
                .map(|event| event.kind)
                .collect();
            for kind in [
                EventKind::Submitted,
                EventKind::Processed,
                EventKind::Opened,
            ] {
                assert_eq!(
                    kinds.iter().filter(|&&k| k == kind).count(),
                    1,
                    "{id}: {kinds:?}"
                );
            }
        }
        eprintln!(
            "conflicts retried: {} and {}",
            nodes[0].conflicts_retried(),
            nodes[1].conflicts_retried()
        );
    }
}
