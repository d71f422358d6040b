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

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{BODIES, Store, StoreError, decode, encode};

/// Submitted bytes of messages whose flow changed them (the body holds the changed copy).
pub(super) const SUBMITTED: TableDefinition<&str, &[u8]> = TableDefinition::new("submitted");
/// Which messages have a submitted copy kept, until when, and where its bytes are.
pub(super) const SUBMITTED_KEPT: TableDefinition<&str, &[u8]> =
    TableDefinition::new("submitted_kept");
/// (expires_at, message id) of every kept submitted copy: the purge walks this from the oldest.
pub(super) const SUBMITTED_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("submitted_expiry");
/// What the error archive of a held message says (step, reason, times).
pub(super) const ERROR_ARCHIVES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("error_archives");
/// The error archive's bytes, when they differ from the submitted copy.
pub(super) const ERROR_ARCHIVE_BODIES: TableDefinition<&str, &[u8]> =
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

/// The copy of a message a step held or failed on, as the pipeline hands it to the store.
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
/// transaction that records the end of its flow. `new_body` is the body the flow made, when it
/// differs from the submitted one; the caller writes it after this moved the old one away.
pub(super) fn keep_at_finish(
    txn: &WriteTransaction,
    id: &str,
    submitted_recipient: &str,
    body_changes: bool,
    held: Option<&HeldCopy>,
    expires_at: u64,
) -> Result<(), StoreError> {
    let mut kept = txn.open_table(SUBMITTED_KEPT)?;
    if kept.get(id)?.is_some() {
        // Already recorded (a flow that finished twice): the first copy is the submitted one.
        return Ok(());
    }
    let bodies = txn.open_table(BODIES)?;
    let submitted = bodies.get(id)?.map(|body| body.value().to_vec());
    drop(bodies);
    let Some(submitted) = submitted else {
        return Ok(());
    };
    if body_changes {
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
    if let Some(held) = held {
        let same_as_submitted = held.body == submitted;
        let entry = ErrorArchiveEntry {
            step: held.step,
            stored_at: super::now_millis(),
            expires_at,
            same_as_submitted,
        };
        txn.open_table(ERROR_ARCHIVES)?
            .insert(id, encode(&entry)?.as_slice())?;
        if !same_as_submitted {
            txn.open_table(ERROR_ARCHIVE_BODIES)?
                .insert(id, held.body.as_slice())?;
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
        let (at, id) = key.value();
        due.push((at, id.to_string()));
    }
    let mut kept = txn.open_table(SUBMITTED_KEPT)?;
    let mut submitted = txn.open_table(SUBMITTED)?;
    let mut error_archives = txn.open_table(ERROR_ARCHIVES)?;
    let mut error_bodies = txn.open_table(ERROR_ARCHIVE_BODIES)?;
    for (at, id) in &due {
        let id = id.as_str();
        expiry.remove((*at, id))?;
        kept.remove(id)?;
        submitted.remove(id)?;
        error_archives.remove(id)?;
        error_bodies.remove(id)?;
    }
    Ok(due.len())
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
        let note: KeptNote = decode(note.value())?;
        if note.expires_at <= super::now_millis() {
            return Ok(SubmittedCopy::NotKept);
        }
        let table = if note.in_body { BODIES } else { SUBMITTED };
        let body = txn
            .open_table(table)?
            .get(id)?
            .map(|body| body.value().to_vec())
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
            let entry: ErrorArchiveEntry = decode(entry.value())?;
            if entry.expires_at <= super::now_millis() {
                return Ok(None);
            }
            if !entry.same_as_submitted {
                let body = txn
                    .open_table(ERROR_ARCHIVE_BODIES)?
                    .get(id)?
                    .map(|body| body.value().to_vec())
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
