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
}

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
pub(super) fn queue_or_reject(
    txn: &WriteTransaction,
    hooks: &super::webhooks::WebhookHooks,
    record: &mut MessageRecord,
    expires_at: u64,
) -> Result<(), StoreError> {
    let address = filter_key(&record.recipient);
    let filtered = txn
        .open_table(FILTERS)?
        .get((record.account_id, address.as_str()))?
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
    };
    txn.open_table(DELIVERIES)?
        .insert(id, encode(&state)?.as_slice())?;
    Ok(())
}

/// Takes a message out of the delivery queue, if it is queued.
pub(super) fn dequeue(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    if let Some(due) = txn.open_table(OUTBOX)?.remove(id)? {
        txn.open_table(OUTBOX_DUE)?.remove((due, id))?;
    }
    txn.open_table(DELIVERIES)?.remove(id)?;
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
    filters.insert((account_id, address.as_str()), encode(&entry)?.as_slice())?;
    txn.open_table(FILTER_IDS)?
        .insert(entry.id, (account_id, address.as_str()))?;
    Ok(entry)
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
        let txn = self.db.begin_read()?;
        let due = txn.open_table(OUTBOX_DUE)?;
        let mut found = Vec::new();
        for entry in due.range((0, "")..=(now, "\u{10ffff}"))? {
            let (key, domain) = entry?;
            let id = key.1;
            if busy(&id) {
                continue;
            }
            found.push((id.to_string(), domain));
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    /// Everything one delivery attempt reads, from one snapshot: the message, its delivery
    /// state, its body and its recipient's filter entry. None when it is no longer queued.
    pub fn delivery_job(&self, id: &str) -> Result<Option<DeliveryJob>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(state) = txn.open_table(DELIVERIES)?.get(id)? else {
            return Ok(None);
        };
        let state: DeliveryState = decode(&state)?;
        let Some(record) = txn.open_table(MESSAGES)?.get(id)? else {
            return Ok(None);
        };
        let record: MessageRecord = decode(&record)?;
        let body = txn
            .open_table(super::BODIES)?
            .get(id)?
            .map(|body| super::compressed::unpack(&body))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("body of message {id}")))?;
        let filtered = txn
            .open_table(FILTERS)?
            .get((record.account_id, filter_key(&record.recipient).as_str()))?
            .map(|entry| decode(&entry))
            .transpose()?;
        Ok(Some(DeliveryJob {
            record,
            state,
            body,
            filtered,
        }))
    }

    /// When the next queued message is due, if any is queued.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(OUTBOX_DUE)?;
        Ok(due.first()?.map(|(key, _)| key.0))
    }

    /// A queued message's delivery state.
    pub fn delivery_state(&self, id: &str) -> Result<Option<DeliveryState>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DELIVERIES)?;
        table.get(id)?.map(|value| decode(&value)).transpose()
    }

    /// Records an attempt and what follows from it, in one durable transaction: the message is
    /// rescheduled, or leaves the queue with its final status (and, for a hard bounce, its
    /// recipient joins the filter list).
    pub async fn record_attempt(&self, id: &str, record: AttemptRecord) -> Result<(), StoreError> {
        let id = id.to_string();
        let hooks = std::sync::Arc::clone(&self.webhooks);
        self.write(move |txn| {
            let mut outbox = txn.open_table(OUTBOX)?;
            let Some(due) = outbox.get(id.as_str())? else {
                // Not queued any more (delivered by an earlier attempt): nothing to record.
                return Ok(());
            };
            let mut due_index = txn.open_table(OUTBOX_DUE)?;
            let domain = due_index.remove((due, id.as_str()))?.unwrap_or_default();
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut message: MessageRecord = match txn.open_table(MESSAGES)?.get(id.as_str())? {
                Some(value) => decode(&value)?,
                None => {
                    // A queued message without its record: nothing left to deliver or tell.
                    outbox.remove(id.as_str())?;
                    deliveries.remove(id.as_str())?;
                    return Ok(());
                }
            };
            let mut state: DeliveryState = match deliveries.get(id.as_str())? {
                Some(value) => decode(&value)?,
                None => DeliveryState {
                    attempts: 0,
                    queued_at: due,
                    expires_at: due,
                },
            };
            state.attempts += 1;
            match &record {
                AttemptRecord::Retry { event, due_at } => {
                    append_events(txn, &hooks, &message, std::slice::from_ref(event))?;
                    outbox.insert(id.as_str(), *due_at)?;
                    due_index.insert((*due_at, id.as_str()), domain.as_str())?;
                    deliveries.insert(id.as_str(), encode(&state)?.as_slice())?;
                }
                AttemptRecord::Final {
                    status,
                    events,
                    filter,
                } => {
                    append_events(txn, &hooks, &message, events)?;
                    outbox.remove(id.as_str())?;
                    deliveries.remove(id.as_str())?;
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
            Ok(())
        })
        .await
    }

    /// The account's filter entry for an address, if it is filtered.
    pub fn filtered(
        &self,
        account_id: u64,
        address: &str,
    ) -> Result<Option<FilterEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(FILTERS)?;
        table
            .get((account_id, filter_key(address).as_str()))?
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
                ids.remove(id)?;
                txn.open_table(FILTERS)?
                    .remove((account_id, address.as_str()))?;
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
