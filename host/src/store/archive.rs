//! Archived copies of messages, kept until their retention ends.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::model::ArchiveEntry;
use super::{Store, StoreError, encode};

pub(super) const ARCHIVES: TableDefinition<&str, &[u8]> = TableDefinition::new("archives");
pub(super) const ARCHIVE_BODIES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("archive_bodies");
/// (expires_at, message id): the purge walks this from the oldest.
pub(super) const ARCHIVE_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("archive_expiry");

/// Most archives removed by one purge transaction, so a large backlog does not hold the writer.
const PURGE_BATCH: usize = 500;

/// The first bytes of an archived copy kept as the end of its message's delivered body (see
/// [`ArchivedCopy::InBody`]), before the offset. A NUL, which neither a packed body (zstd's
/// magic) nor a body stored raw (a header field's name) starts with.
const IN_BODY: &[u8] = b"\0in-body\0";

/// How an archived copy is stored.
pub(super) enum ArchivedCopy {
    /// Its own packed bytes.
    Packed(super::compressed::Packed),
    /// The message's body from this byte on: the archive step's copy, to which only the
    /// fields later steps put on top (the DKIM signatures) were added. Not stored twice: the
    /// body is written in the same transaction, never changes after it (a message's flow
    /// finishes once) and goes only with the message, whose purge removes the archive too.
    InBody { from: u64 },
}

/// Writes an archive entry and its message inside a transaction (the flow's outcome).
pub(super) fn put_archive(
    txn: &WriteTransaction,
    entry: &ArchiveEntry,
    copy: &ArchivedCopy,
) -> Result<(), StoreError> {
    let id = entry.message_id.as_str();
    let mut archives = txn.open_table(ARCHIVES)?;
    let mut expiry = txn.open_table(ARCHIVE_EXPIRY)?;
    if let Some(old) = archives.get(id)? {
        let old: ArchiveEntry = super::decode(&old)?;
        expiry.delete((old.expires_at, id))?;
    }
    archives.insert(id, encode(entry)?.as_slice())?;
    expiry.insert((entry.expires_at, id), ())?;
    let mut bodies = txn.open_table(ARCHIVE_BODIES)?;
    match copy {
        ArchivedCopy::Packed(packed) => bodies.insert(id, packed.as_slice())?,
        ArchivedCopy::InBody { from } => {
            bodies.insert(id, [IN_BODY, &from.to_le_bytes()[..]].concat().as_slice())?
        }
    }
    Ok(())
}

/// Where in the message's body an archived copy stored as [`ArchivedCopy::InBody`] starts.
pub(super) fn in_body_from(stored: &[u8]) -> Option<u64> {
    let offset = stored.strip_prefix(IN_BODY)?;
    Some(u64::from_le_bytes(offset.try_into().ok()?))
}

/// When a message's archive ends, if it has one (past or not).
pub(super) fn archive_end(txn: &WriteTransaction, id: &str) -> Result<Option<u64>, StoreError> {
    txn.open_table(ARCHIVES)?
        .get(id)?
        .map(|entry| super::decode::<ArchiveEntry>(&entry).map(|entry| entry.expires_at))
        .transpose()
}

/// Removes a message's archive, whether its retention ended or not, in the caller's
/// transaction (the message's purge).
pub(super) fn forget_archive(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    if let Some(expires_at) = archive_end(txn, id)? {
        txn.open_table(ARCHIVE_EXPIRY)?.delete((expires_at, id))?;
    }
    txn.open_table(ARCHIVES)?.delete(id)?;
    txn.open_table(ARCHIVE_BODIES)?.delete(id)?;
    Ok(())
}

impl Store {
    /// A message's archive entry while it is kept, without reading its archived message (a
    /// list of messages with their online links asks this of each).
    pub fn archive_entry(&self, message_id: &str) -> Result<Option<ArchiveEntry>, StoreError> {
        let Some(entry) = self.db.get_one(ARCHIVES, message_id)? else {
            return Ok(None);
        };
        let entry: ArchiveEntry = super::decode(&entry)?;
        // Past its retention but not purged yet: already gone for readers, as in `archive`.
        Ok((entry.expires_at > super::now_millis()).then_some(entry))
    }

    /// A message's archive entry and archived message, while it is kept.
    pub fn archive(&self, message_id: &str) -> Result<Option<(ArchiveEntry, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(entry) = txn.open_table(ARCHIVES)?.get(message_id)? else {
            return Ok(None);
        };
        let entry: ArchiveEntry = super::decode(&entry)?;
        if entry.expires_at <= super::now_millis() {
            // Past its retention but not purged yet: already gone for readers.
            return Ok(None);
        }
        let missing = || StoreError::NotFound(format!("archived body of {message_id}"));
        let stored = txn
            .open_table(ARCHIVE_BODIES)?
            .get(message_id)?
            .ok_or_else(missing)?;
        let body = match in_body_from(&stored) {
            None => super::compressed::unpack(&stored)?,
            Some(from) => {
                let stored = txn
                    .open_table(super::BODIES)?
                    .get(message_id)?
                    .ok_or_else(missing)?;
                let mut body = super::compressed::unpack(&stored)?;
                let from = usize::try_from(from)
                    .ok()
                    .filter(|from| *from <= body.len())
                    .ok_or_else(missing)?;
                body.drain(..from);
                body
            }
        };
        Ok(Some((entry, body)))
    }

    /// Removes every archive whose retention ended before `now` (milliseconds), and in the
    /// same transactions the kept submitted and error copies whose retention ended (those of
    /// an archived message end with its archive); returns how many archives were removed.
    pub async fn purge_archives(&self, now: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let batch = self
                .write(move |txn| {
                    let mut expiry = txn.open_table(ARCHIVE_EXPIRY)?;
                    let mut due = Vec::new();
                    for entry in expiry.range((0, "")..(now, ""))?.take(PURGE_BATCH) {
                        let (key, _) = entry?;
                        let (at, id) = key;
                        due.push((at, id.to_string()));
                    }
                    let mut archives = txn.open_table(ARCHIVES)?;
                    let mut bodies = txn.open_table(ARCHIVE_BODIES)?;
                    for (at, id) in &due {
                        expiry.delete((*at, id.as_str()))?;
                        archives.delete(id.as_str())?;
                        bodies.delete(id.as_str())?;
                    }
                    let copies = super::kept::purge_due(txn, now, PURGE_BATCH)?;
                    Ok((due.len(), copies))
                })
                .await?;
            let (batch, copies) = batch;
            removed += batch;
            if batch < PURGE_BATCH && copies < PURGE_BATCH {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[tokio::test]
    async fn the_file_shrinks_at_the_next_open_once_expired_archives_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).unwrap();
        // 40 MiB of archives that compression cannot shrink, all expiring at 1,000, and one
        // kept for later.
        for batch in 0..8 {
            store
                .write(move |txn| {
                    for n in 0..80 {
                        let mut body = vec![0u8; 64 << 10];
                        getrandom::fill(&mut body).unwrap();
                        let entry = ArchiveEntry {
                            message_id: format!("m{batch}-{n}"),
                            account_id: 1,
                            stored_at: 0,
                            expires_at: 1_000,
                        };
                        put_archive(
                            txn,
                            &entry,
                            &ArchivedCopy::Packed(super::super::compressed::Packed::of(&body)?),
                        )?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
        }
        let kept = ArchiveEntry {
            message_id: "kept".into(),
            account_id: 1,
            stored_at: 0,
            expires_at: u64::MAX,
        };
        let kept_body = b"From: a@example.com\r\n\r\nstill here\r\n".to_vec();
        let (entry, body) = (
            kept.clone(),
            ArchivedCopy::Packed(super::super::compressed::Packed::of(&kept_body).unwrap()),
        );
        store
            .write(move |txn| put_archive(txn, &entry, &body))
            .await
            .unwrap();
        // Past their retention, not purged yet: gone for readers already.
        assert_eq!(store.archive_entry("m0-0").unwrap(), None);
        assert_eq!(store.purge_archives(2_000).await.unwrap(), 640);
        drop(store);
        let purged = file_bytes(&path);
        assert!(purged > 40 << 20, "{purged} bytes before the open");

        let store = super::super::tests::reopen(&path).await;
        let compacted = file_bytes(&path);
        assert!(
            compacted < purged / 8,
            "{compacted} bytes after the open, {purged} before"
        );
        assert_eq!(store.archive_entry("kept").unwrap(), Some(kept.clone()));
        assert_eq!(store.archive("kept").unwrap(), Some((kept, kept_body)));
        assert_eq!(store.archive("m0-0").unwrap(), None);
    }
}
