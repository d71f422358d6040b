//! Message retention: a finished message, and everything kept because of it, goes once its
//! retention has passed.
//!
//! Retention counts from submission, as the API's lists and statistics select messages by
//! submission time: after a purge, "the last N days" of messages is whole. The index below
//! holds every message by submission time, so the purge reads only what is due, however many
//! messages the store keeps. A message that is due but may not go yet is moved further along
//! the index instead of being looked at again at every purge:
//!
//! - still in its flow or in the delivery queue (a scheduled message, a retry): looked at
//!   again after [`recheck`];
//! - webhook calls about it still to make: the same, so receivers get every event (the calls
//!   read the message and its event when they are made);
//! - archived by its flow for longer than the message retention: kept until the archive ends,
//!   since the archive step's retention is what the customer chose for the archived copy and
//!   its online view.
//!
//! Held messages are finished (a person may resend their kept copy, which makes a new
//! message): they go like any other. What a purge removes is listed in [`forget_message`];
//! the file does not shrink while the server runs (redb reuses the freed pages for new
//! writes) but at the next start (`compact_when_mostly_free`).

use std::time::Duration;

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::model::{MessageRecord, MessageStatus};
use super::{ACCOUNT_MESSAGES, BODIES, EVENTS, MESSAGES, OUTBOX, SPOOL, Store, StoreError, decode};

/// (retention start, message id): every message, by when its retention started (its
/// submission, or a later time it was moved to when it could not go yet). Written in the
/// transaction that spools a message; filled from the records when a store made before it is
/// opened.
pub(super) const MESSAGE_RETENTION: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("message_retention");

/// Messages looked at by one purge transaction: the writer every account's submissions wait
/// behind is held for one batch at a time (tens of milliseconds; see BENCHMARKS.md), never for
/// the whole purge.
pub(super) const PURGE_BATCH: usize = 200;

/// The longest wait before a due message that could not go is looked at again.
const RECHECK_AT_MOST: Duration = Duration::from_secs(3600);

/// How long a due message that could not go waits before it is looked at again: an hour, or
/// the retention itself when that is shorter.
fn recheck(retention: Duration) -> u64 {
    retention.min(RECHECK_AT_MOST).as_millis().max(1) as u64
}

/// Fills the retention index from the message records, for a store made before it existed
/// (in the transaction that creates the index table, so it is never seen half-built).
pub(super) fn index_stored_messages(txn: &WriteTransaction) -> Result<(), StoreError> {
    /// The one field of a record the index needs.
    #[derive(serde::Deserialize)]
    struct SubmittedAt {
        submitted_at: u64,
    }
    let records = txn.open_table(MESSAGES)?;
    let mut index = txn.open_table(MESSAGE_RETENTION)?;
    for entry in records.iter()? {
        let (id, record) = entry?;
        let record: SubmittedAt = decode(&record)?;
        index.insert((record.submitted_at, id.as_str()), ())?;
    }
    if !records.is_empty()? {
        tracing::info!(
            messages = records.len()?,
            "indexed the stored messages for their retention"
        );
    }
    Ok(())
}

/// What became of the due messages one purge looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Messages removed with everything kept for them.
    pub messages: usize,
    /// Messages due but kept for now (queued, webhook calls to make, archived for longer).
    pub postponed: usize,
}

/// Whether a due message may go now, or else the retention start it is moved to.
fn may_go(
    txn: &WriteTransaction,
    id: &str,
    record: Option<&MessageRecord>,
    now: u64,
    retention: u64,
    recheck: u64,
) -> Result<Option<u64>, StoreError> {
    let later = now.saturating_sub(retention) + recheck;
    let unfinished = record.is_some_and(|record| {
        matches!(
            record.status,
            MessageStatus::Submitted | MessageStatus::Processed
        )
    });
    if unfinished
        || txn.open_table(SPOOL)?.get(id)?.is_some()
        || txn.open_table(OUTBOX)?.get(id)?.is_some()
    {
        return Ok(Some(later));
    }
    if let Some(record) = record
        && super::webhooks::calls_pending(txn, record.account_id, id)?
    {
        return Ok(Some(later));
    }
    if let Some(archive_end) = super::archive::archive_end(txn, id)?
        && archive_end > now
    {
        // Due again when the archive ends.
        return Ok(Some(archive_end.saturating_sub(retention).max(later)));
    }
    Ok(None)
}

/// Removes a message and everything kept because of it, in the caller's transaction: its
/// record, body and events, its entries in the per-account list and in the index of sent
/// Message-IDs (returned mail finds nothing then), its archive, its kept submitted and error
/// copies, its open and click counts, and anything left of it in the queues. The account's
/// filter list (which may name the message that put an address there), returned mail that
/// matched it and the dead letters of webhook calls about it stay: they are the account's
/// records, not the message's, and hold no content of it.
pub(super) fn forget_message(
    txn: &WriteTransaction,
    id: &str,
    record: Option<&MessageRecord>,
) -> Result<(), StoreError> {
    txn.open_table(MESSAGES)?.delete(id)?;
    txn.open_table(BODIES)?.delete(id)?;
    txn.open_table(EVENTS)?
        .remove_range((id, 0)..=(id, u32::MAX))?;
    if let Some(record) = record {
        txn.open_table(ACCOUNT_MESSAGES)?
            .delete((record.account_id, id))?;
        if let Some(header_id) = &record.header_message_id {
            txn.open_table(super::returned::SENT_MESSAGE_IDS)?
                .delete((header_id.as_str(), id))?;
        }
    }
    super::archive::forget_archive(txn, id)?;
    super::kept::forget_copies(txn, id)?;
    super::engagement::forget_counts(txn, id)?;
    txn.open_table(SPOOL)?.delete(id)?;
    super::delivery::dequeue(txn, id)?;
    Ok(())
}

impl Store {
    /// Removes the finished messages whose retention (from submission) ended by `now`, in
    /// transactions of at most `PURGE_BATCH` (200) messages each, and moves the due ones that must
    /// stay for now further along (see the module's notes).
    pub async fn purge_messages(
        &self,
        now: u64,
        retention: Duration,
    ) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        loop {
            let (batch, more) = self.purge_batch(now, retention).await?;
            purged.messages += batch.messages;
            purged.postponed += batch.postponed;
            if !more {
                return Ok(purged);
            }
        }
    }

    /// One transaction of [`Store::purge_messages`]: looks at up to [`PURGE_BATCH`] due
    /// messages; says whether more may be due.
    async fn purge_batch(
        &self,
        now: u64,
        retention: Duration,
    ) -> Result<(Purged, bool), StoreError> {
        let retention_millis = retention.as_millis() as u64;
        let recheck = recheck(retention);
        let cutoff = now.saturating_sub(retention_millis);
        self.write(move |txn| {
            let index = txn.open_table(MESSAGE_RETENTION)?;
            let due: Vec<(u64, String)> = index
                .range((0, "")..(cutoff, ""))?
                .take(PURGE_BATCH)
                .map(|entry| entry.map(|(key, _)| (key.0, key.1)))
                .collect::<Result<_, _>>()?;
            drop(index);
            let mut batch = Purged::default();
            for (start, id) in &due {
                let id = id.as_str();
                let record: Option<MessageRecord> = super::record_in(txn, id)?;
                let mut index = txn.open_table(MESSAGE_RETENTION)?;
                index.delete((*start, id))?;
                match may_go(txn, id, record.as_ref(), now, retention_millis, recheck)? {
                    Some(later) => {
                        index.insert((later, id), ())?;
                        batch.postponed += 1;
                    }
                    None => {
                        drop(index);
                        forget_message(txn, id, record.as_ref())?;
                        batch.messages += 1;
                    }
                }
            }
            Ok((batch, due.len() == PURGE_BATCH))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TABLES;
    use crate::store::backends::{TestPlace, on_both_backends};
    use crate::store::model::{ArchiveEntry, Event, EventKind};
    use crate::store::tests::record;
    use crate::store::{
        AttemptRecord, HeldCopy, NewMessage, WebhookCallKey, WebhookEndpoint, WebhookOutcome,
        now_millis,
    };

    const DAY: u64 = 86_400_000;
    const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);

    fn body(word: &str) -> Vec<u8> {
        format!("Subject: {word}\r\nMessage-ID: <{word}@example.com>\r\n\r\n{word}\r\n")
            .repeat(20)
            .into_bytes()
    }

    async fn spool(store: &Store, record: &MessageRecord) {
        store
            .spool(vec![NewMessage {
                record: record.clone(),
                body: body(&record.id),
            }])
            .await
            .unwrap();
    }

    /// A message through its flow with everything a message can leave behind: a changed body
    /// (so a submitted copy of its own), an archive ending at `archive_end`, a Message-ID
    /// returned mail would find it by, delivery, an open and a click.
    async fn delivered(store: &Store, account: u64, archive_end: u64) -> MessageRecord {
        let mut message = record(account, "delivered");
        message.header_message_id = Some(format!("<{}@example.com>", message.id));
        spool(store, &message).await;
        message.status = MessageStatus::Processed;
        let archive = ArchiveEntry {
            message_id: message.id.clone(),
            account_id: account,
            stored_at: now_millis(),
            expires_at: archive_end,
        };
        let processed = body("processed");
        store
            .finish_flow(
                message.clone(),
                Some(processed.clone()),
                vec![Event {
                    kind: EventKind::Processed,
                    at: now_millis(),
                    detail: None,
                }],
                Some((archive, processed)),
                None,
                now_millis() + DAY,
            )
            .await
            .unwrap();
        let delivered = Event {
            kind: EventKind::Delivered,
            at: now_millis(),
            detail: None,
        };
        store
            .record_attempt(
                &message.id,
                AttemptRecord::Final {
                    status: MessageStatus::Delivered,
                    events: vec![delivered.clone()],
                    filter: None,
                },
                None,
            )
            .await
            .unwrap();
        for counter in ["open", "click:0"] {
            store
                .record_engagement(&message.id, counter, delivered.clone())
                .await
                .unwrap();
        }
        store.message(&message.id).unwrap().unwrap()
    }

    /// A message a later step held: an error copy of its own beside the submitted one.
    async fn held(store: &Store, account: u64) -> MessageRecord {
        let mut message = record(account, "held");
        spool(store, &message).await;
        message.status = MessageStatus::Held;
        let copy = HeldCopy {
            step: 2,
            body: body("as the step got it"),
        };
        store
            .finish_flow(message.clone(), None, Vec::new(), None, Some(copy), 0)
            .await
            .unwrap();
        message
    }

    /// The keys naming message `id` in every table of the store, as "table: key". Every table
    /// is walked: the store's one list of them ([`crate::store::TABLES`]) is what opening a
    /// store creates, and a table the database has beyond it fails this look, so a table
    /// added anywhere is checked for what a purge leaves behind.
    fn rows_left_of(store: &Store, id: &str) -> Vec<String> {
        let txn = store.db.begin_read().unwrap();
        for name in txn.table_names().unwrap() {
            assert!(
                TABLES.iter().any(|table| table.name() == name),
                "table {name} is not in the store's list of tables: add it, and to forget_message if it is keyed by message",
            );
        }
        TABLES
            .iter()
            .flat_map(|table| {
                table
                    .rendered_keys(&txn)
                    .unwrap()
                    .into_iter()
                    .filter(|key| key.contains(id))
                    .map(move |key| format!("{}: {key}", table.name()))
            })
            .collect()
    }

    /// Registers a webhook endpoint for every event of `account`.
    async fn endpoint(store: &Store, account: u64) {
        store
            .create_webhook(WebhookEndpoint {
                id: 0,
                account_id: account,
                url: "https://hooks.example.com/".into(),
                event_types: Vec::new(),
                description: None,
                secret: "secret".into(),
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
    }

    /// Acknowledges every queued webhook call, head of each chain first.
    async fn acknowledge_calls(store: &Store) {
        loop {
            let keys: Vec<WebhookCallKey> = {
                let txn = store.db.begin_read().unwrap();
                let due = txn.open_table(super::super::webhooks::WEBHOOK_DUE).unwrap();
                due.iter()
                    .unwrap()
                    .map(|entry| {
                        let (key, _) = entry.unwrap();
                        let (endpoint_id, _, message_id, seq) = key;
                        WebhookCallKey {
                            endpoint_id,
                            message_id,
                            seq,
                        }
                    })
                    .collect()
            };
            if keys.is_empty() {
                return;
            }
            for key in keys {
                store
                    .record_webhook_attempt(&key, WebhookOutcome::Delivered, None)
                    .await
                    .unwrap();
            }
        }
    }

    on_both_backends!(a_purged_message_leaves_no_row_in_any_table_and_other_messages_stay_whole);
    async fn a_purged_message_leaves_no_row_in_any_table_and_other_messages_stay_whole(
        place: TestPlace,
    ) {
        let store = place.open();
        endpoint(&store, 1).await;
        let now = now_millis();
        let gone_with_archive = delivered(&store, 1, now + DAY).await;
        let gone_held = held(&store, 1).await;
        acknowledge_calls(&store).await;
        for message in [&gone_with_archive, &gone_held] {
            assert!(!rows_left_of(&store, &message.id).is_empty());
        }
        // Submitted later: not due.
        let mut later = record(1, "later");
        later.submitted_at = now + 20 * DAY;
        spool(&store, &later).await;
        later.status = MessageStatus::Discarded;
        store
            .finish_flow(later.clone(), None, Vec::new(), None, None, 0)
            .await
            .unwrap();

        let purged = store
            .purge_messages(now + 40 * DAY, THIRTY_DAYS)
            .await
            .unwrap();

        assert_eq!(
            purged,
            Purged {
                messages: 2,
                postponed: 0
            }
        );
        for message in [&gone_with_archive, &gone_held] {
            assert_eq!(rows_left_of(&store, &message.id), Vec::<String>::new());
            assert_eq!(store.message(&message.id).unwrap(), None);
        }
        assert_eq!(store.message_ids_of(1).unwrap(), vec![later.id.clone()]);
        assert_eq!(store.events(&later.id).unwrap().len(), 1);
        assert!(store.body(&later.id).unwrap().is_some());
        let left_later = rows_left_of(&store, &later.id);
        assert!(
            left_later
                .iter()
                .any(|row| row.starts_with("message_retention"))
        );
    }

    on_both_backends!(a_message_still_queued_or_with_calls_to_make_stays_until_done_and_is_not_read_again_meanwhile);
    async fn a_message_still_queued_or_with_calls_to_make_stays_until_done_and_is_not_read_again_meanwhile(
        place: TestPlace,
    ) {
        let store = place.open();
        endpoint(&store, 1).await;
        let now = now_millis();
        // In its flow still, and through it but waiting for delivery.
        let spooled = record(1, "spooled");
        spool(&store, &spooled).await;
        let mut queued = record(1, "queued");
        spool(&store, &queued).await;
        queued.status = MessageStatus::Processed;
        store
            .finish_flow(queued.clone(), None, Vec::new(), None, None, now + DAY)
            .await
            .unwrap();
        // Finished, but webhook calls about it are still to make.
        let mut calling = record(1, "calling");
        spool(&store, &calling).await;
        calling.status = MessageStatus::Discarded;
        store
            .finish_flow(calling.clone(), None, Vec::new(), None, None, 0)
            .await
            .unwrap();

        let after = now + 40 * DAY;
        let purged = store.purge_messages(after, THIRTY_DAYS).await.unwrap();
        assert_eq!(
            purged,
            Purged {
                messages: 0,
                postponed: 3
            }
        );
        for message in [&spooled, &queued, &calling] {
            assert!(store.message(&message.id).unwrap().is_some());
        }
        assert_eq!(store.spooled().unwrap(), vec![spooled.id.clone()]);
        assert_eq!(store.outbox().unwrap(), vec![queued.id.clone()]);
        // Moved along the index: the next purge within the hour reads none of them.
        let again = store
            .purge_messages(after + 1000, THIRTY_DAYS)
            .await
            .unwrap();
        assert_eq!(again, Purged::default());

        // Done: delivered, calls made. An hour on, the finished ones go; the spooled one stays.
        store
            .record_attempt(
                &queued.id,
                AttemptRecord::Final {
                    status: MessageStatus::Delivered,
                    events: Vec::new(),
                    filter: None,
                },
                None,
            )
            .await
            .unwrap();
        acknowledge_calls(&store).await;
        let later = store
            .purge_messages(after + 3_600_001, THIRTY_DAYS)
            .await
            .unwrap();
        assert_eq!(
            later,
            Purged {
                messages: 2,
                postponed: 1
            }
        );
        assert_eq!(store.message_ids_of(1).unwrap(), vec![spooled.id.clone()]);
        assert_eq!(rows_left_of(&store, &queued.id), Vec::<String>::new());
        assert_eq!(rows_left_of(&store, &calling.id), Vec::<String>::new());
    }

    on_both_backends!(
        an_archive_kept_longer_than_the_message_retention_keeps_its_message_until_it_ends
    );
    async fn an_archive_kept_longer_than_the_message_retention_keeps_its_message_until_it_ends(
        place: TestPlace,
    ) {
        let store = place.open();
        let now = now_millis();
        let archived = delivered(&store, 1, now + 90 * DAY).await;
        let purged = store
            .purge_messages(now + 40 * DAY, THIRTY_DAYS)
            .await
            .unwrap();
        assert_eq!(purged.postponed, 1);
        assert!(store.archive(&archived.id).unwrap().is_some());
        // Not read again before the archive ends; gone, archive and all, once it has.
        let purged = store
            .purge_messages(now + 89 * DAY, THIRTY_DAYS)
            .await
            .unwrap();
        assert_eq!(purged, Purged::default());
        let purged = store
            .purge_messages(now + 90 * DAY + 1, THIRTY_DAYS)
            .await
            .unwrap();
        assert_eq!(purged.messages, 1);
        assert_eq!(rows_left_of(&store, &archived.id), Vec::<String>::new());
    }

    on_both_backends!(one_transaction_looks_at_no_more_than_a_batch);
    async fn one_transaction_looks_at_no_more_than_a_batch(place: TestPlace) {
        let store = place.open();
        let count = PURGE_BATCH * 2 + 7;
        let messages: Vec<NewMessage> = (0..count)
            .map(|n| {
                let mut record = record(1 + (n % 2) as u64, "bulk");
                record.status = MessageStatus::Submitted;
                NewMessage {
                    body: body(&record.id),
                    record,
                }
            })
            .collect();
        store.spool(messages.clone()).await.unwrap();
        for message in &messages {
            let mut finished = message.record.clone();
            finished.status = MessageStatus::Discarded;
            store
                .finish_flow(finished, None, Vec::new(), None, None, 0)
                .await
                .unwrap();
        }
        let after = now_millis() + 40 * DAY;
        let (first, more) = store.purge_batch(after, THIRTY_DAYS).await.unwrap();
        assert_eq!((first.messages, more), (PURGE_BATCH, true));
        let (second, more) = store.purge_batch(after, THIRTY_DAYS).await.unwrap();
        assert_eq!((second.messages, more), (PURGE_BATCH, true));
        let (last, more) = store.purge_batch(after, THIRTY_DAYS).await.unwrap();
        assert_eq!((last.messages, more), (7, false));
        assert!(store.message_ids_of(1).unwrap().is_empty());
        assert!(store.message_ids_of(2).unwrap().is_empty());
    }

    #[tokio::test]
    async fn messages_of_a_store_made_before_the_retention_index_are_found_for_purge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (old, recent) = (record(1, "old"), record(1, "recent"));
        {
            let store = Store::open(&path).unwrap();
            let mut newer = recent.clone();
            newer.submitted_at += 20 * DAY;
            for message in [&old, &newer] {
                spool(&store, message).await;
                let mut finished = message.clone();
                finished.status = MessageStatus::Rejected;
                store
                    .finish_flow(finished, None, Vec::new(), None, None, 0)
                    .await
                    .unwrap();
            }
            // As a version before the index left it.
            store
                .write(|txn| {
                    txn.delete_table(MESSAGE_RETENTION)?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        let store = loop {
            // The writer thread of the handle above lets go of the file shortly.
            match Store::open(&path) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let purged = store
            .purge_messages(old.submitted_at + 31 * DAY, THIRTY_DAYS)
            .await
            .unwrap();
        assert_eq!(purged.messages, 1);
        assert_eq!(store.message_ids_of(1).unwrap(), vec![recent.id.clone()]);
        assert_eq!(rows_left_of(&store, &old.id), Vec::<String>::new());
    }

    /// How long one purge transaction holds the writer: 5,000 finished messages of ~20 KB
    /// whose flow changed them (body, submitted copy, events), purged in batches, each timed.
    /// Prints the figures; `cargo test --lib -- store::retention::tests::writer_time
    /// --nocapture --ignored` (add `--release` for production figures).
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn writer_time_per_purge_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        const MESSAGES: usize = 5_000;
        let page =
            |word: &str| format!("{word} winter coats and boots, free returns\r\n").repeat(400);
        for chunk in 0..MESSAGES / 100 {
            let batch: Vec<NewMessage> = (0..100)
                .map(|n| {
                    let record = record(1, &format!("m{chunk}-{n}"));
                    NewMessage {
                        body: page("submitted").into_bytes(),
                        record,
                    }
                })
                .collect();
            store.spool(batch.clone()).await.unwrap();
            for message in batch {
                let mut finished = message.record;
                finished.status = MessageStatus::Discarded;
                store
                    .finish_flow(
                        finished,
                        Some(page("processed").into_bytes()),
                        vec![Event {
                            kind: EventKind::Processed,
                            at: now_millis(),
                            detail: None,
                        }],
                        None,
                        None,
                        0,
                    )
                    .await
                    .unwrap();
            }
        }
        let after = now_millis() + 40 * DAY;
        let mut times = Vec::new();
        loop {
            let started = std::time::Instant::now();
            let (batch, more) = store.purge_batch(after, THIRTY_DAYS).await.unwrap();
            times.push((batch.messages, started.elapsed()));
            if !more {
                break;
            }
        }
        times.sort_by_key(|(_, took)| *took);
        let median = times[times.len() / 2].1;
        let longest = times.last().unwrap().1;
        println!(
            "{MESSAGES} messages in {} transactions of at most {PURGE_BATCH}: median {:.1} ms, \
             longest {:.1} ms per transaction",
            times.len(),
            median.as_secs_f64() * 1000.0,
            longest.as_secs_f64() * 1000.0
        );
        assert_eq!(
            times.iter().map(|(count, _)| count).sum::<usize>(),
            MESSAGES
        );
    }
}
