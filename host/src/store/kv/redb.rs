//! The redb backend: one embedded file, each table a redb table of the same name and types
//! (the tables the store kept before this layer, so their files open unchanged). What only
//! redb has stays here: its page cache size and compacting the file at open.

use std::path::Path;

use redb::{AccessGuard, UntypedTableHandle};

use super::{Column, Database, Entry, Key};
use crate::store::StoreError;

/// The memory redb may use to cache pages (its default is 1 GiB). Every page written goes
/// through the cache, so with the default the server's memory grew with the bodies it stored
/// until the cache was full. The store reads little more than what it just wrote (a message
/// is written, read by its flow, read by delivery); the OS's page cache serves the rest.
const CACHE_BYTES: usize = 32 << 20;

/// A store file at least this large is compacted at open when enough of it is free.
const COMPACT_FROM_BYTES: u64 = 16 << 20;

/// The share of the file (in percent) that must be free pages for a compaction at open.
const COMPACT_FREE_PERCENT: u64 = 25;

/// Every failure redb reports becomes [`StoreError::Database`].
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Database(Box::new(error.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

/// Opens (or creates) the redb file at `path`, compacting it first when it is mostly free.
pub fn open(path: &Path) -> Result<Database, StoreError> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)
            .map_err(|error| StoreError::from(redb::StorageError::Io(error)))?;
    }
    let mut db = redb::Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)?;
    // Only a saving of disk: a store that cannot be compacted now (no room for the copy,
    // an I/O error) still opens, and is tried again at the next start.
    if let Err(error) = compact_when_mostly_free(&mut db, path) {
        tracing::warn!(%error, "the store file could not be compacted; it opens as it is");
    }
    Ok(Database::Redb(db))
}

/// Gives the free pages of the store file back to the file system when they are more than
/// [`COMPACT_FREE_PERCENT`] of what the file takes on disk. redb reuses free pages for new writes but never shrinks its
/// file while it is open (compaction needs the database to itself), so the space freed when
/// archives and returned mail reach the end of their retention goes back at the next start.
/// Returns whether it compacted.
fn compact_when_mostly_free(db: &mut redb::Database, path: &Path) -> Result<bool, StoreError> {
    // What the file takes on disk, not its length: redb grows its file by doubling it, and the
    // part never written is a hole that costs nothing, so compacting it away would only make
    // the next start slower.
    let file_bytes = std::os::unix::fs::MetadataExt::blocks(
        &std::fs::metadata(path)
            .map_err(|error| StoreError::from(redb::StorageError::Io(error)))?,
    ) * 512;
    if file_bytes < COMPACT_FROM_BYTES {
        return Ok(false);
    }
    let txn = db.begin_write()?;
    let stats = txn.stats()?;
    txn.abort()?;
    let used_bytes = stats.allocated_pages() * stats.page_size() as u64;
    if used_bytes * 100 > file_bytes * (100 - COMPACT_FREE_PERCENT) {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    db.compact()?;
    let after = std::fs::metadata(path).map_or(0, |metadata| {
        std::os::unix::fs::MetadataExt::blocks(&metadata) * 512
    });
    tracing::info!(
        before_bytes = file_bytes,
        after_bytes = after,
        millis = started.elapsed().as_millis() as u64,
        "compacted the store file"
    );
    Ok(true)
}

/// The names of the tables redb lists.
pub(super) fn table_names(
    tables: impl Iterator<Item = UntypedTableHandle>,
) -> Result<Vec<String>, StoreError> {
    use redb::TableHandle as _;
    Ok(tables.map(|table| table.name().to_string()).collect())
}

/// An entry as redb lends it, owned.
pub(super) fn owned_entry<K: Key, V: Column>(
    (key, value): (AccessGuard<'_, K>, AccessGuard<'_, V>),
) -> Entry<K, V> {
    (K::to_owned(key.value()), V::to_owned(value.value()))
}

/// An entry of a redb range, owned.
pub(super) fn owned_result<K: Key, V: Column>(
    entry: Result<(AccessGuard<'_, K>, AccessGuard<'_, V>), redb::StorageError>,
) -> Result<Entry<K, V>, StoreError> {
    Ok(owned_entry(entry?))
}
