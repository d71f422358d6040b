//! Returned mail: every message the MX took in (a bounce, a feedback report, an auto-reply or
//! anything else), kept with what it was found to say, and the changes it made to the
//! messages it was about, applied in one transaction.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::delivery::{dequeue, insert_filter};
use super::model::{Event, MessageRecord, MessageStatus};
use super::{Store, StoreError, append_events, decode, encode, record_in};

/// Returned-mail id → its record.
pub(super) const RETURNED: TableDefinition<&str, &[u8]> = TableDefinition::new("returned");
/// Returned-mail id → the message as received.
pub(super) const RETURNED_BODIES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("returned_bodies");
/// Returned mail not analysed yet: what a restart resumes.
pub(super) const RETURNED_PENDING: TableDefinition<&str, ()> =
    TableDefinition::new("returned_pending");

/// Returned messages whose content is dropped in one transaction.
const PURGE_BATCH: usize = 500;

/// (Message-ID header as sent, our message id) → (): the copies that went out under one
/// Message-ID (a submission to several recipients shares it).
pub(super) const SENT_MESSAGE_IDS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("sent_message_ids");

/// Remembers the Message-ID a processed copy goes out with.
pub(super) fn index_sent(txn: &WriteTransaction, record: &MessageRecord) -> Result<(), StoreError> {
    if let Some(header_id) = &record.header_message_id {
        txn.open_table(SENT_MESSAGE_IDS)?
            .insert((header_id.as_str(), record.id.as_str()), ())?;
    }
    Ok(())
}

/// One message the MX accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnedMail {
    /// Its id.
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub received_at: u64,
    /// The envelope sender (empty for the null sender of a DSN).
    pub mail_from: String,
    /// The envelope recipients (our return-path or feedback addresses).
    pub recipients: Vec<String>,
    /// The sending MTA's address.
    pub peer: String,
    /// What the analysis found, once it ran (JSON, as the classifier reports it).
    #[serde(default)]
    pub analysis: Option<serde_json::Value>,
    /// The messages it changed.
    #[serde(default)]
    pub matched: Vec<String>,
}

/// What returned mail does to one of our messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnedEffect {
    /// Our message.
    pub message_id: String,
    /// The event to add (HARDBOUNCE, SOFTBOUNCE, COMPLAINT, AUTOREPLY, ...).
    pub event: Event,
    /// The message's new status, if it changes.
    pub status: Option<MessageStatus>,
    /// Put the message's recipient on its account's filter list with this reason.
    pub filter_reason: Option<String>,
}

impl Store {
    /// Keeps returned mail durably before the MX says 250; returns its record.
    pub async fn put_returned(
        &self,
        mail: ReturnedMail,
        content: Vec<u8>,
    ) -> Result<ReturnedMail, StoreError> {
        self.write(move |txn| {
            let id = mail.id.as_str();
            txn.open_table(RETURNED)?
                .insert(id, encode(&mail)?.as_slice())?;
            txn.open_table(RETURNED_BODIES)?
                .insert(id, content.as_slice())?;
            txn.open_table(RETURNED_PENDING)?.insert(id, ())?;
            Ok(mail.clone())
        })
        .await
    }

    /// Our messages sent with this Message-ID header.
    pub fn messages_by_header_id(&self, header_id: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SENT_MESSAGE_IDS)?;
        table
            .range((header_id, "")..=(header_id, "\u{10ffff}"))?
            .take(1000)
            .map(|entry| Ok(entry?.0.1.to_string()))
            .collect()
    }

    /// Returned mail waiting for analysis, oldest first, at most `limit`.
    pub fn pending_returned(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RETURNED_PENDING)?;
        table
            .iter()?
            .take(limit)
            .map(|entry| Ok(entry?.0))
            .collect()
    }

    /// A returned message's record.
    pub fn returned(&self, id: &str) -> Result<Option<ReturnedMail>, StoreError> {
        self.get(RETURNED, id)
    }

    /// A returned message as received.
    pub fn returned_body(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RETURNED_BODIES)?;
        table.get(id)
    }

    /// Drops the content of returned mail received before `before` (milliseconds since the
    /// Unix epoch), keeping each record and its analysis; mail not settled yet is kept whole.
    /// Returns how many were dropped.
    pub async fn purge_returned_bodies(&self, before: u64) -> Result<usize, StoreError> {
        // Returned-mail ids start with the time they were made, in microseconds.
        let cutoff = format!("r{:014x}", before.saturating_mul(1000));
        let mut removed = 0;
        loop {
            let cutoff = cutoff.clone();
            let batch = self
                .write(move |txn| {
                    let mut bodies = txn.open_table(RETURNED_BODIES)?;
                    let pending = txn.open_table(RETURNED_PENDING)?;
                    let mut due = Vec::new();
                    for entry in bodies.range(..cutoff.as_str())?.take(PURGE_BATCH) {
                        let id = entry?.0;
                        if pending.get(id.as_str())?.is_none() {
                            due.push(id);
                        }
                    }
                    for id in &due {
                        bodies.delete(id.as_str())?;
                    }
                    Ok(due.len())
                })
                .await?;
            removed += batch;
            if batch < PURGE_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Records the analysis of returned mail and applies its effects, in one transaction, once:
    /// mail already settled is left as it is. An effect on a message that is gone or was never
    /// sent is skipped; a bounce for a message still queued takes it out of the queue, and a
    /// soft bounce never undoes a hard one. Returns the ids of the messages changed.
    pub async fn settle_returned(
        &self,
        id: &str,
        analysis: serde_json::Value,
        effects: Vec<ReturnedEffect>,
    ) -> Result<Vec<String>, StoreError> {
        let id = id.to_string();
        let hooks = std::sync::Arc::clone(&self.webhooks);
        self.write(move |txn| {
            let mut returned = txn.open_table(RETURNED)?;
            let Some(mut mail) = returned
                .get(id.as_str())?
                .map(|value| decode::<ReturnedMail>(&value))
                .transpose()?
            else {
                return Ok(Vec::new());
            };
            if txn
                .open_table(RETURNED_PENDING)?
                .remove(id.as_str())?
                .is_none()
            {
                return Ok(mail.matched);
            }
            let mut matched = Vec::new();
            for effect in &effects {
                let Some(mut message) = record_in(txn, effect.message_id.as_str())? else {
                    continue;
                };
                if !matches!(
                    message.status,
                    MessageStatus::Processed
                        | MessageStatus::Delivered
                        | MessageStatus::SoftBounce
                        | MessageStatus::HardBounce
                ) {
                    // Held, discarded, rejected or not through its flow: nothing went out.
                    continue;
                }
                let status = effect.status.filter(|status| {
                    !(message.status == MessageStatus::HardBounce
                        && *status == MessageStatus::SoftBounce)
                });
                if let Some(status) = status {
                    message.status = status;
                    message.status_reason = effect.event.detail.clone();
                    // The remote bounced it after all (a lost 250, a retry in flight): no
                    // more attempts.
                    dequeue(txn, &message.id)?;
                }
                // Writes the record with its new status too.
                append_events(
                    txn,
                    &hooks,
                    &mut message,
                    std::slice::from_ref(&effect.event),
                )?;
                if let Some(reason) = &effect.filter_reason {
                    insert_filter(
                        txn,
                        message.account_id,
                        &message.recipient,
                        reason,
                        Some(&message.id),
                        effect.event.detail.as_deref(),
                    )?;
                }
                if !matched.contains(&message.id) {
                    matched.push(message.id.clone());
                }
            }
            mail.analysis = Some(analysis.clone());
            mail.matched = matched.clone();
            returned.insert(id.as_str(), encode(&mail)?.as_slice())?;
            Ok(matched)
        })
        .await
    }
}
