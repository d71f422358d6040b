//! Copies of a message kept beside the one that is delivered: the copy as it was submitted
//! (what a resend runs through the flow again) and, for a message a step held or failed on,
//! the copy as that step got it (the error archive).
//!
//! Each is kept once. The submitted copy is moved, not copied: while a message waits for its
//! flow its submitted bytes are its body; when the flow changes the body, the transaction that
//! records the new body moves the old one here, and when it does not, the body itself is the
//! submitted copy and only a note says so. An error copy equal to the submitted one is not
//! written again either. Both end with the message's retention: the archive's when the flow
//! archived the message, else [`SUBMITTED_KEPT_DAYS`]; the purge that removes archives removes
//! them, in the same transaction.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{BODIES, Store, StoreError, decode, encode};

/// Submitted bytes of messages whose flow changed them (the body holds the changed copy).
pub(super) const SUBMITTED: TableDefinition<&'static str, &'static [u8]> =
    TableDefinition::new("submitted");
/// Which messages have a submitted copy kept, until when, and where its bytes are.
pub(super) const SUBMITTED_KEPT: TableDefinition<&'static str, &'static [u8]> =
    TableDefinition::new("submitted_kept");
/// (expires_at, message id) of every kept submitted copy: the purge walks this from the oldest.
pub(super) const SUBMITTED_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("submitted_expiry");
/// What the error archive of a held message says (step, reason, times).
pub(super) const ERROR_ARCHIVES: TableDefinition<&'static str, &'static [u8]> =
    TableDefinition::new("error_archives");
/// The error archive's bytes, when they differ from the submitted copy.
pub(super) const ERROR_ARCHIVE_BODIES: TableDefinition<&'static str, &'static [u8]> =
    TableDefinition::new("error_archive_bodies");

/// How long the submitted copy of a message its flow did not archive is kept: Flowmailer's
/// shortest archive retention (P1M).
pub const SUBMITTED_KEPT_DAYS: u64 = 30;
const DAY_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// Where a kept submitted copy is and how long it stays.
#[derive(Debug, Serialize, Deserialize)]
struct KeptNote {
    /// When the retention ends (milliseconds since the Unix epoch).
    expires_at: u64,
    /// The recipient as submitted (a step may have redirected the message since).
    recipient: String,
    /// The flow left the body as submitted: the body is the copy.
    in_body: bool,
}

/// The copy of a message a step held or failed on, as the pipeline hands it to the store. Its
/// size is bounded as every message in a flow is: the submitted one by its source's limit, a
/// step's output by the runtime's `max_message_bytes`.
#[derive(Clone, Debug)]
pub struct HeldCopy {
    /// The step (counted from 1) that held the message or failed.
    pub step: usize,
    /// The message as that step got it.
    pub body: Vec<u8>,
}

/// What the error archive of a message records besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorArchiveEntry {
    /// The step (counted from 1) that held the message or failed.
    pub step: usize,
    /// When it was kept (milliseconds since the Unix epoch).
    pub stored_at: u64,
    /// When it goes, with the submitted copy.
    pub expires_at: u64,
    /// The bytes are the submitted copy's (the step was the first to run).
    #[serde(default)]
    same_as_submitted: bool,
}

/// The submitted copy of a message, as a resend needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmittedCopy {
    /// Kept: the bytes and the recipient they were submitted to.
    Kept {
        /// The message as submitted.
        body: Vec<u8>,
        /// The recipient as submitted.
        recipient: String,
    },
    /// The message has not been through its flow yet: resend it once it has.
    NotYetProcessed,
    /// Its retention ended, or the message was stored before Sluice kept submitted copies.
    NotKept,
}

/// Keeps a message's submitted copy (and its error copy, if a step held it) in the
/// transaction that records the end of its flow, which removed its spool entry. `new_body` is the body the flow made, when it
/// differs from the submitted one; the caller writes it after this moved the old one away.
pub(super) fn keep_at_finish(
    txn: &WriteTransaction,
    id: &str,
    submitted_recipient: &str,
    body_changes: bool,
    held: Option<(usize, &super::compressed::Packed)>,
    expires_at: u64,
) -> Result<(), StoreError> {
    // The submitted body, as stored (compressed: moved as it is, never packed twice), is read
    // only when it is copied or compared; otherwise it stays where it is and the note says so.
    // The caller removed the message's spool entry in this transaction, and a message is
    // spooled once, at its submission: its flow finishes once, so no note is here yet.
    let submitted = if body_changes || held.is_some() {
        let Some(submitted) = txn.open_table(BODIES)?.get(id)? else {
            return Ok(());
        };
        Some(submitted)
    } else {
        None
    };
    let mut kept = txn.open_table(SUBMITTED_KEPT)?;
    if body_changes && let Some(submitted) = &submitted {
        txn.open_table(SUBMITTED)?
            .insert(id, submitted.as_slice())?;
    }
    let note = KeptNote {
        expires_at,
        recipient: submitted_recipient.to_string(),
        in_body: !body_changes,
    };
    kept.insert(id, encode(&note)?.as_slice())?;
    txn.open_table(SUBMITTED_EXPIRY)?
        .insert((expires_at, id), ())?;
    if let Some((step, held_body)) = held {
        // Packing is deterministic: equal packed bytes are equal bodies (a body stored raw by
        // an older version never equals a packed one; its copy is then kept twice, no worse).
        let same_as_submitted = submitted
            .as_ref()
            .is_some_and(|submitted| held_body.as_slice() == submitted.as_slice());
        let entry = ErrorArchiveEntry {
            step,
            stored_at: super::now_millis(),
            expires_at,
            same_as_submitted,
        };
        txn.open_table(ERROR_ARCHIVES)?
            .insert(id, encode(&entry)?.as_slice())?;
        if !same_as_submitted {
            txn.open_table(ERROR_ARCHIVE_BODIES)?
                .insert(id, held_body.as_slice())?;
        }
    }
    Ok(())
}

/// When a message's kept copies end: with its archive when the flow archived it, else
/// [`SUBMITTED_KEPT_DAYS`] from now.
pub(super) fn retention_end(archive_expires_at: Option<u64>, now: u64) -> u64 {
    archive_expires_at.unwrap_or(now + SUBMITTED_KEPT_DAYS * DAY_MILLIS)
}

/// Removes the kept copies whose retention ended before `now`, at most `limit` of them, in the
/// caller's transaction; returns how many messages lost theirs.
pub(super) fn purge_due(
    txn: &WriteTransaction,
    now: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let mut expiry = txn.open_table(SUBMITTED_EXPIRY)?;
    let mut due = Vec::new();
    for entry in expiry.range((0, "")..(now, ""))?.take(limit) {
        let (key, _) = entry?;
        let (at, id) = key;
        due.push((at, id.to_string()));
    }
    let mut kept = txn.open_table(SUBMITTED_KEPT)?;
    let mut submitted = txn.open_table(SUBMITTED)?;
    let mut error_archives = txn.open_table(ERROR_ARCHIVES)?;
    let mut error_bodies = txn.open_table(ERROR_ARCHIVE_BODIES)?;
    for (at, id) in &due {
        let id = id.as_str();
        expiry.delete((*at, id))?;
        kept.delete(id)?;
        submitted.delete(id)?;
        error_archives.delete(id)?;
        error_bodies.delete(id)?;
    }
    Ok(due.len())
}

/// Removes a message's kept copies (submitted and error), whether their retention ended or
/// not, in the caller's transaction (the message's purge).
pub(super) fn forget_copies(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    let note: Option<KeptNote> = txn
        .open_table(SUBMITTED_KEPT)?
        .remove(id)?
        .map(|note| decode(&note))
        .transpose()?;
    if let Some(note) = note {
        txn.open_table(SUBMITTED_EXPIRY)?
            .delete((note.expires_at, id))?;
    }
    txn.open_table(SUBMITTED)?.delete(id)?;
    txn.open_table(ERROR_ARCHIVES)?.delete(id)?;
    txn.open_table(ERROR_ARCHIVE_BODIES)?.delete(id)?;
    Ok(())
}

impl Store {
    /// A message's submitted copy, while its retention lasts.
    pub fn submitted_copy(&self, id: &str) -> Result<SubmittedCopy, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(note) = txn.open_table(SUBMITTED_KEPT)?.get(id)? else {
            // Still in the spool: its body is the submitted copy, but the flow has not said
            // what it makes of it yet.
            let spooled = txn.open_table(super::SPOOL)?.get(id)?.is_some();
            return Ok(if spooled {
                SubmittedCopy::NotYetProcessed
            } else {
                SubmittedCopy::NotKept
            });
        };
        let note: KeptNote = decode(&note)?;
        if note.expires_at <= super::now_millis() {
            return Ok(SubmittedCopy::NotKept);
        }
        let table = if note.in_body { BODIES } else { SUBMITTED };
        let body = txn
            .open_table(table)?
            .get(id)?
            .map(|body| super::compressed::unpack(&body))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("submitted copy of {id}")))?;
        Ok(SubmittedCopy::Kept {
            body,
            recipient: note.recipient,
        })
    }

    /// The copy of a message as the step that held it or failed got it, while kept.
    pub fn error_archive(
        &self,
        id: &str,
    ) -> Result<Option<(ErrorArchiveEntry, Vec<u8>)>, StoreError> {
        let entry = {
            let txn = self.db.begin_read()?;
            let Some(entry) = txn.open_table(ERROR_ARCHIVES)?.get(id)? else {
                return Ok(None);
            };
            let entry: ErrorArchiveEntry = decode(&entry)?;
            if entry.expires_at <= super::now_millis() {
                return Ok(None);
            }
            if !entry.same_as_submitted {
                let body = txn
                    .open_table(ERROR_ARCHIVE_BODIES)?
                    .get(id)?
                    .map(|body| super::compressed::unpack(&body))
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound(format!("error archive of {id}")))?;
                return Ok(Some((entry, body)));
            }
            entry
        };
        match self.submitted_copy(id)? {
            SubmittedCopy::Kept { body, .. } => Ok(Some((entry, body))),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};
    use crate::store::tests::record;
    use crate::store::{MessageRecord, MessageStatus, NewMessage};

    /// A message of about `size` bytes whose body says `word`.
    fn body_of(word: &str, size: usize) -> Vec<u8> {
        let mut body =
            format!("Subject: x\r\nMessage-ID: <{word}@example.com>\r\n\r\n").into_bytes();
        while body.len() < size {
            body.extend_from_slice(format!("{word} {word} {word}\r\n").as_bytes());
        }
        body
    }

    /// Spools a message and records the end of its flow: `processed` is the body the flow
    /// made (none: left as submitted), `held` what a holding step got.
    async fn through_flow(
        store: &Store,
        submitted: Vec<u8>,
        processed: Option<Vec<u8>>,
        held: Option<HeldCopy>,
    ) -> MessageRecord {
        let mut message = record(1, "kept");
        store
            .spool(vec![NewMessage {
                record: message.clone(),
                body: submitted,
            }])
            .await
            .unwrap();
        message.status = if held.is_some() {
            MessageStatus::Held
        } else {
            MessageStatus::Discarded
        };
        store
            .finish_flow(message.clone(), processed, Vec::new(), None, held, 0)
            .await
            .unwrap();
        message
    }

    /// The bytes a table's values take, summed.
    fn stored_bytes(store: &Store, table: TableDefinition<&'static str, &'static [u8]>) -> usize {
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(table).unwrap();
        table
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().1.len())
            .sum()
    }

    fn entries(store: &Store, table: TableDefinition<&'static str, &'static [u8]>) -> u64 {
        let txn = store.db.begin_read().unwrap();
        txn.open_table(table).unwrap().len().unwrap()
    }

    on_both_backends!(
        the_submitted_copy_is_kept_once_beside_the_body_and_purged_when_retention_ends
    );
    async fn the_submitted_copy_is_kept_once_beside_the_body_and_purged_when_retention_ends(
        place: TestPlace,
    ) {
        let store = place.open();
        let submitted = body_of("submitted", 20_000);
        let processed = body_of("processed", 30_000);

        // Changed by its flow: the body is the processed copy, the submitted one moved aside.
        let changed = through_flow(&store, submitted.clone(), Some(processed.clone()), None).await;
        assert_eq!(store.body(&changed.id).unwrap().unwrap(), processed);
        assert_eq!(
            store.submitted_copy(&changed.id).unwrap(),
            SubmittedCopy::Kept {
                body: submitted.clone(),
                recipient: changed.recipient.clone()
            }
        );
        assert_eq!(
            stored_bytes(&store, BODIES) + stored_bytes(&store, SUBMITTED),
            super::super::compressed::pack(&processed).unwrap().len()
                + super::super::compressed::pack(&submitted).unwrap().len(),
            "each copy once, compressed"
        );

        // Left as submitted: the body is the copy, nothing is written twice.
        let unchanged = through_flow(&store, submitted.clone(), None, None).await;
        assert_eq!(
            store.submitted_copy(&unchanged.id).unwrap(),
            SubmittedCopy::Kept {
                body: submitted.clone(),
                recipient: unchanged.recipient.clone()
            }
        );
        assert_eq!(entries(&store, SUBMITTED), 1);

        // Held at the first step: the error copy is the submitted copy, not written again;
        // held later, it is the copy the step got.
        let first_step = HeldCopy {
            step: 1,
            body: submitted.clone(),
        };
        let held_first = through_flow(&store, submitted.clone(), None, Some(first_step)).await;
        let (entry, copy) = store.error_archive(&held_first.id).unwrap().unwrap();
        assert_eq!((entry.step, copy), (1, submitted.clone()));
        assert_eq!(entries(&store, ERROR_ARCHIVE_BODIES), 0);
        let later_step = HeldCopy {
            step: 3,
            body: processed.clone(),
        };
        let held_later = through_flow(&store, submitted.clone(), None, Some(later_step)).await;
        let (entry, copy) = store.error_archive(&held_later.id).unwrap().unwrap();
        assert_eq!((entry.step, copy), (3, processed.clone()));
        assert_eq!(store.error_archive(&changed.id).unwrap(), None);

        // Retention ends: every kept copy goes; the bodies stay (they are the messages').
        let after = super::super::now_millis() + (SUBMITTED_KEPT_DAYS + 1) * DAY_MILLIS;
        store.purge_archives(after).await.unwrap();
        for message in [&changed, &unchanged, &held_first, &held_later] {
            assert_eq!(
                store.submitted_copy(&message.id).unwrap(),
                SubmittedCopy::NotKept
            );
            assert_eq!(store.error_archive(&message.id).unwrap(), None);
            assert!(store.body(&message.id).unwrap().is_some());
        }
        for table in [
            SUBMITTED,
            SUBMITTED_KEPT,
            ERROR_ARCHIVES,
            ERROR_ARCHIVE_BODIES,
        ] {
            assert_eq!(entries(&store, table), 0, "{}", table.name());
        }
        let txn = store.db.begin_read().unwrap();
        assert!(
            txn.open_table(SUBMITTED_EXPIRY)
                .unwrap()
                .is_empty()
                .unwrap()
        );
    }

    on_both_backends!(a_message_still_in_the_spool_or_from_before_is_told_apart);
    async fn a_message_still_in_the_spool_or_from_before_is_told_apart(place: TestPlace) {
        let store = place.open();
        let message = record(1, "waiting");
        store
            .spool(vec![NewMessage {
                record: message.clone(),
                body: body_of("waiting", 100),
            }])
            .await
            .unwrap();
        assert_eq!(
            store.submitted_copy(&message.id).unwrap(),
            SubmittedCopy::NotYetProcessed
        );
        // Through its flow before copies were kept: no note, not in the spool.
        store
            .write({
                let id = message.id.clone();
                move |txn| {
                    txn.open_table(super::super::SPOOL)?.delete(id.as_str())?;
                    Ok(())
                }
            })
            .await
            .unwrap();
        assert_eq!(
            store.submitted_copy(&message.id).unwrap(),
            SubmittedCopy::NotKept
        );
    }

    /// What keeping the submitted copy costs on disk: the data file's growth per message of
    /// ~20 KB whose flow makes a ~30 KB copy, against the content kept (both copies). Prints
    /// the figures; `cargo test --lib -- store::kept::tests::disk --nocapture --ignored`.
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn disk_per_message_against_the_content_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        let (submitted, processed) = (body_of("submitted", 20_000), body_of("processed", 30_000));
        const MESSAGES: u64 = 1_000;
        for _ in 0..MESSAGES {
            through_flow(&store, submitted.clone(), Some(processed.clone()), None).await;
        }
        let grown = std::fs::metadata(&path).unwrap().len() - empty;
        let content = (submitted.len() + processed.len()) as u64;
        println!(
            "{MESSAGES} messages: {} bytes on disk per message for {content} bytes of content \
             (submitted {} + processed {}): {:.2}×",
            grown / MESSAGES,
            submitted.len(),
            processed.len(),
            grown as f64 / (content * MESSAGES) as f64
        );
    }
}
