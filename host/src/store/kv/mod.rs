//! The storage layer the store is written over: ordered tables of typed keys and values, read
//! in read transactions and changed in write transactions, with the subset of redb's table API
//! the store uses (get, insert, remove, ranges walked from either end, first, last, len).
//!
//! The store's logic is written once, over this layer; a backend implements it. Backends are a
//! closed set, so every type here is an `enum` over them (no `dyn`: the methods are generic
//! over key and value types). Reads hand back owned keys and values, never guards borrowing
//! the backend's pages, so a backend that fetches rows over a connection can answer the same
//! calls. Two backends: redb ([`redb`], embedded, the default), where a table here is the redb
//! table of the same name and types (so store files made before this layer open unchanged),
//! and PostgreSQL ([`postgres`]), where a table is a table of byte keys and values in
//! [`columns`]' encoding. See docs/DESIGN.md ("The store").

pub mod columns;
pub mod postgres;
mod postgres_tls;
pub mod redb;
mod sessions;

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use ::redb::{ReadableTable as _, ReadableTableMetadata as _};

pub use columns::{Column, Key};

use super::StoreError;

/// A table: its name and the types of its keys and values.
pub struct TableDefinition<K: Key, V: Column> {
    name: &'static str,
    copied: bool,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: Column> TableDefinition<K, V> {
    /// A table named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            copied: false,
            types: PhantomData,
        }
    }

    /// A table named `name` whose contents the store keeps copies of outside transactions: a
    /// write transaction that opens it is noted ([`take_copied_table_opened`]), so the
    /// copies can be let go when it commits.
    pub const fn copied(name: &'static str) -> Self {
        Self {
            name,
            copied: true,
            types: PhantomData,
        }
    }

    /// The table's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The redb table this table is kept in.
    const fn in_redb(self) -> ::redb::TableDefinition<'static, K, V> {
        ::redb::TableDefinition::new(self.name)
    }
}

impl<K: Key, V: Column> Clone for TableDefinition<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Key, V: Column> Copy for TableDefinition<K, V> {}

/// A table whatever its types: what the store's list of every table holds, so opening a store
/// can create them all and a check can walk them all.
pub trait AnyTable: Sync {
    /// The table's name.
    fn name(&self) -> &'static str;

    /// Creates the table when it does not exist yet.
    fn create(&self, txn: &WriteTransaction) -> Result<(), StoreError>;

    /// Every key of the table, rendered with `Debug` (for checks that nothing of a record is
    /// left anywhere).
    fn rendered_keys(&self, txn: &ReadTransaction) -> Result<Vec<String>, StoreError>;
}

impl<K: Key, V: Column> AnyTable for TableDefinition<K, V> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn create(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        // PostgreSQL's tables are made by the schema's migrations, not on demand.
        txn.open_table(*self).map(drop)
    }

    fn rendered_keys(&self, txn: &ReadTransaction) -> Result<Vec<String>, StoreError> {
        txn.open_table(*self)?
            .iter()?
            .map(|entry| entry.map(|(key, _)| format!("{key:?}")))
            .collect()
    }
}

/// An open database.
pub enum Database {
    /// An embedded redb file.
    Redb(::redb::Database),
    /// A PostgreSQL database, shared by any number of nodes.
    Postgres(postgres::Postgres),
}

impl Database {
    /// A transaction that sees the database as it is at its first read (redb: now), for as
    /// long as it is kept. PostgreSQL's snapshot comes with the first statement, which the
    /// `BEGIN` is sent with to save a round trip; nothing here begins a read and then waits
    /// for a change it must not see before reading.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        match self {
            Self::Redb(db) => Ok(ReadTransaction::Redb(db.begin_read()?)),
            Self::Postgres(db) => Ok(ReadTransaction::Postgres(db.begin_read()?)),
        }
    }

    /// The value under `key` in `table`, read on its own: what a read transaction with one
    /// `get` answers, without the transaction (on PostgreSQL one statement, which sees one
    /// snapshot by itself, instead of BEGIN, the statement and ROLLBACK).
    pub fn get_one<'k, K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<V::Owned>, StoreError> {
        match self {
            Self::Redb(_) => self.begin_read()?.open_table(table)?.get(key),
            Self::Postgres(db) => db
                .single_statement()?
                .table::<K, V>(table.name)
                .get(key.borrow()),
        }
    }

    /// The entry of `table` with the smallest key (on PostgreSQL one statement, outside any
    /// transaction).
    pub fn first_one<K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Option<Entry<K, V>>, StoreError> {
        match self {
            Self::Redb(_) => self.begin_read()?.open_table(table)?.first(),
            Self::Postgres(db) => db.single_statement()?.table::<K, V>(table.name).first(),
        }
    }

    /// The values under one key in each of several tables, read together from one snapshot:
    /// `reads` is a `(table, key)` pair or a tuple of them, and the answer has its shape (on
    /// PostgreSQL one statement, outside any transaction).
    pub fn get_together<R: Reads>(&self, reads: R) -> Result<R::Found, StoreError> {
        match self {
            Self::Redb(_) => reads.read_in(&self.begin_read()?),
            Self::Postgres(db) => {
                let mut keys = Vec::new();
                reads.encoded_keys(&mut keys);
                let mut found = db.single_statement()?.values_at(keys)?.into_iter();
                R::decode(&mut found)
            }
        }
    }

    /// A transaction whose changes are made durable together by [`WriteTransaction::commit`].
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        match self {
            Self::Redb(db) => Ok(WriteTransaction::Redb(Box::new(db.begin_write()?))),
            Self::Postgres(db) => Ok(WriteTransaction::Postgres(db.begin_write()?)),
        }
    }

    /// A write transaction for changes many nodes make at once, each to rows of its own (a
    /// message's way through spool, flow and delivery). On PostgreSQL it runs at `READ
    /// COMMITTED`: each statement sees what is committed when it runs, and two nodes' changes
    /// conflict only where both change the same row, never because one read near what the
    /// other wrote (`SERIALIZABLE`'s page-wide read locks make busy nodes abort each other's
    /// transactions over unrelated rows). So a change in it first takes the rows its decision
    /// rests on with [`Table::lock`], and every change to those rows does the same. On redb
    /// an ordinary write transaction (one process owns the file).
    pub fn begin_row_locking_write(&self) -> Result<WriteTransaction, StoreError> {
        match self {
            Self::Redb(db) => Ok(WriteTransaction::Redb(Box::new(db.begin_write()?))),
            Self::Postgres(db) => Ok(WriteTransaction::Postgres(db.begin_row_locking_write()?)),
        }
    }

    /// A transaction that takes work from a queue beside other nodes: the entries it takes
    /// with [`Table::take_first`] are its own until it ends, and a node taking at the same
    /// time passes over them instead of conflicting. On PostgreSQL it runs at `READ
    /// COMMITTED`, so it must change only rows it took (or rows nobody else writes); on redb
    /// it is an ordinary write transaction (one process owns the file).
    pub fn begin_claim(&self) -> Result<WriteTransaction, StoreError> {
        match self {
            Self::Redb(db) => Ok(WriteTransaction::Redb(Box::new(db.begin_write()?))),
            Self::Postgres(db) => Ok(WriteTransaction::Postgres(db.begin_claim()?)),
        }
    }

    /// How many row-locking write transactions the store runs at once: one on redb (it
    /// takes one write transaction at a time); on PostgreSQL a quarter of the pool's
    /// connections, from one to four, so reads and the other writers keep connections.
    pub fn concurrent_writers(&self) -> usize {
        match self {
            Self::Redb(_) => 1,
            Self::Postgres(db) => (db.max_connections() / 4).clamp(1, 4),
        }
    }

    /// Whether other processes may use the database at the same time (PostgreSQL), so that
    /// work must be claimed before it is done.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// Keys read together by [`Database::get_together`]: a `(table, key)` pair, or a tuple of two
/// or three of them.
pub trait Reads {
    /// What was found, in the shape of the reads (`None` where a key is missing).
    type Found;

    /// Reads each key in `txn` (redb).
    fn read_in(self, txn: &ReadTransaction) -> Result<Self::Found, StoreError>;

    /// Reads each key in the write transaction `txn` (redb).
    fn read_in_write(self, txn: &WriteTransaction) -> Result<Self::Found, StoreError>;

    /// Appends each `(table, encoded key)` to `keys`, in order (PostgreSQL).
    fn encoded_keys(&self, keys: &mut Vec<(&'static str, Vec<u8>)>);

    /// Decodes the values found for the keys [`Reads::encoded_keys`] gave, in the same order.
    fn decode(found: &mut impl Iterator<Item = Option<Vec<u8>>>)
    -> Result<Self::Found, StoreError>;
}

impl<'k, K: Key, V: Column, Q: Borrow<K::SelfType<'k>>> Reads for (TableDefinition<K, V>, Q) {
    type Found = Option<V::Owned>;

    fn read_in(self, txn: &ReadTransaction) -> Result<Self::Found, StoreError> {
        txn.open_table(self.0)?.get(self.1)
    }

    fn read_in_write(self, txn: &WriteTransaction) -> Result<Self::Found, StoreError> {
        txn.open_table(self.0)?.get(self.1)
    }

    fn encoded_keys(&self, keys: &mut Vec<(&'static str, Vec<u8>)>) {
        keys.push((self.0.name, columns::encode_key::<K>(self.1.borrow())));
    }

    fn decode(
        found: &mut impl Iterator<Item = Option<Vec<u8>>>,
    ) -> Result<Self::Found, StoreError> {
        postgres::decode_found::<V>(found.next().flatten())
    }
}

/// No reads at all.
impl Reads for () {
    type Found = ();

    fn read_in(self, _: &ReadTransaction) -> Result<(), StoreError> {
        Ok(())
    }

    fn read_in_write(self, _: &WriteTransaction) -> Result<(), StoreError> {
        Ok(())
    }

    fn encoded_keys(&self, _: &mut Vec<(&'static str, Vec<u8>)>) {}

    fn decode(_: &mut impl Iterator<Item = Option<Vec<u8>>>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Implements [`Reads`] for a tuple of reads, each answered in turn.
macro_rules! reads_tuple {
    ($($read:ident),+) => {
        impl<$($read: Reads),+> Reads for ($($read,)+) {
            type Found = ($($read::Found,)+);

            #[allow(non_snake_case)]
            fn read_in(self, txn: &ReadTransaction) -> Result<Self::Found, StoreError> {
                let ($($read,)+) = self;
                Ok(($($read.read_in(txn)?,)+))
            }

            #[allow(non_snake_case)]
            fn read_in_write(self, txn: &WriteTransaction) -> Result<Self::Found, StoreError> {
                let ($($read,)+) = self;
                Ok(($($read.read_in_write(txn)?,)+))
            }

            #[allow(non_snake_case)]
            fn encoded_keys(&self, keys: &mut Vec<(&'static str, Vec<u8>)>) {
                let ($($read,)+) = self;
                $($read.encoded_keys(keys);)+
            }

            fn decode(
                found: &mut impl Iterator<Item = Option<Vec<u8>>>,
            ) -> Result<Self::Found, StoreError> {
                Ok(($($read::decode(found)?,)+))
            }
        }
    };
}

reads_tuple!(A, B);
reads_tuple!(A, B, C);
reads_tuple!(A, B, C, D);

/// A read-only view of the database at one moment.
pub enum ReadTransaction {
    /// A redb read transaction.
    Redb(::redb::ReadTransaction),
    /// A PostgreSQL transaction at `REPEATABLE READ`, read only.
    Postgres(postgres::Transaction),
}

impl ReadTransaction {
    /// Opens a table for reading; it must exist (opening the store creates every table).
    pub fn open_table<K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, StoreError> {
        match self {
            Self::Redb(txn) => Ok(ReadOnlyTable::Redb(txn.open_table(table.in_redb())?)),
            Self::Postgres(txn) => Ok(ReadOnlyTable::Postgres(txn.table(table.name))),
        }
    }

    /// The names of the tables the database has.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Redb(txn) => redb::table_names(txn.list_tables()?),
            Self::Postgres(txn) => txn.table_names(),
        }
    }
}

thread_local! {
    /// Whether a write transaction on this thread opened a [`TableDefinition::copied`] table
    /// since the last [`take_copied_table_opened`]. Per thread: a write transaction's changes
    /// run on the thread that made it.
    static COPIED_TABLE_OPENED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a write transaction on this thread opened a [`TableDefinition::copied`] table
/// (to change it, or to read what a change rests on) since the last call.
pub fn take_copied_table_opened() -> bool {
    COPIED_TABLE_OPENED.take()
}

/// Changes made together: all of them are made durable by [`WriteTransaction::commit`], or none.
pub enum WriteTransaction {
    /// A redb write transaction.
    Redb(Box<::redb::WriteTransaction>),
    /// A PostgreSQL transaction (`SERIALIZABLE`, or `READ COMMITTED` for claims and
    /// row-locking writes).
    Postgres(postgres::Transaction),
}

impl WriteTransaction {
    /// Opens a table for reading and writing, creating it when it does not exist.
    pub fn open_table<K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Table<'_, K, V>, StoreError> {
        if table.copied {
            COPIED_TABLE_OPENED.set(true);
        }
        match self {
            Self::Redb(txn) => Ok(Table::Redb(txn.open_table(table.in_redb())?)),
            Self::Postgres(txn) => Ok(Table::Postgres(txn.table(table.name))),
        }
    }

    /// The names of the tables the database has.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Redb(txn) => redb::table_names(txn.list_tables()?),
            Self::Postgres(txn) => txn.table_names(),
        }
    }

    /// The values under one key in each of several tables, as this transaction sees them:
    /// `reads` as for [`Database::get_together`] (on PostgreSQL one statement).
    pub fn get_together<R: Reads>(&self, reads: R) -> Result<R::Found, StoreError> {
        match self {
            Self::Redb(_) => reads.read_in_write(self),
            Self::Postgres(txn) => {
                let mut keys = Vec::new();
                reads.encoded_keys(&mut keys);
                let mut found = txn.values_at(keys)?.into_iter();
                R::decode(&mut found)
            }
        }
    }

    /// The values under one key in each of several tables, each row locked until the
    /// transaction ends (see [`Table::lock`]): `reads` as for [`Database::get_together`]. On
    /// PostgreSQL one statement, which locks the rows in the order of `reads` and reads each
    /// as it is once locked, even where it waited for another transaction to let go of it.
    /// When the first key has no value, the others are neither locked nor (on PostgreSQL)
    /// read: what is found for them then means nothing.
    pub fn lock_together<R: Reads>(&self, reads: R) -> Result<R::Found, StoreError> {
        Ok(self.lock_and_read(reads, ())?.0)
    }

    /// As [`WriteTransaction::lock_together`] for `locked`, and in the same statement reads
    /// `read` without locking it (on PostgreSQL as committed when the statement began); the
    /// first key of `locked` rules for `read` too.
    pub fn lock_and_read<L: Reads, R: Reads>(
        &self,
        locked: L,
        read: R,
    ) -> Result<(L::Found, R::Found), StoreError> {
        match self {
            Self::Redb(_) => Ok((locked.read_in_write(self)?, read.read_in_write(self)?)),
            Self::Postgres(txn) => {
                let mut keys = Vec::new();
                locked.encoded_keys(&mut keys);
                let locked_count = keys.len();
                read.encoded_keys(&mut keys);
                let mut found = txn.locked_values_at(keys, locked_count)?.into_iter();
                Ok((L::decode(&mut found)?, R::decode(&mut found)?))
            }
        }
    }

    /// Deletes a table, for tests that give a store the layout of a version before the table.
    #[cfg(test)]
    pub fn delete_table<K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Redb(txn) => Ok(txn.delete_table(table.in_redb())?),
            Self::Postgres(txn) => txn.clear_table(table.name),
        }
    }

    /// Makes every change of the transaction durable.
    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Redb(txn) => Ok(txn.commit()?),
            Self::Postgres(txn) => txn.commit(),
        }
    }
}

/// A table as a write transaction sees it.
pub enum Table<'txn, K: Key, V: Column> {
    /// A redb table.
    Redb(::redb::Table<'txn, K, V>),
    /// A PostgreSQL table.
    Postgres(postgres::Table<K, V>),
}

/// A table as a read transaction sees it.
pub enum ReadOnlyTable<K: Key, V: Column> {
    /// A redb table.
    Redb(::redb::ReadOnlyTable<K, V>),
    /// A PostgreSQL table.
    Postgres(postgres::Table<K, V>),
}

/// An entry of a table: its key and value, owned.
pub type Entry<K, V> = (<K as Column>::Owned, <V as Column>::Owned);

/// The reads both kinds of table answer.
pub trait ReadableTable<K: Key, V: Column> {
    /// The value under `key`.
    fn get<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<Option<V::Owned>, StoreError>;

    /// The value under each of `keys`, in their order (on PostgreSQL one statement).
    fn get_each<'k, Q: Borrow<K::SelfType<'k>>>(
        &self,
        keys: &[Q],
    ) -> Result<Vec<Option<V::Owned>>, StoreError>;

    /// The entries whose keys are in `range`, in key order; walk it from the end with `rev`
    /// or `next_back`.
    fn range<'k, KR>(
        &self,
        range: impl RangeBounds<KR> + 'k,
    ) -> Result<Range<'_, K, V>, StoreError>
    where
        KR: Borrow<K::SelfType<'k>> + 'k;

    /// Every entry, in key order.
    fn iter(&self) -> Result<Range<'_, K, V>, StoreError>;

    /// The entry with the smallest key.
    fn first(&self) -> Result<Option<Entry<K, V>>, StoreError>;

    /// The entry with the largest key.
    fn last(&self) -> Result<Option<Entry<K, V>>, StoreError>;

    /// How many entries the table has.
    fn len(&self) -> Result<u64, StoreError>;

    /// Whether the table has no entry.
    fn is_empty(&self) -> Result<bool, StoreError>;
}

/// Implements [`ReadableTable`] for a table enum by delegating to the backend's own table.
macro_rules! readable {
    ($table:ident $(<$txn:lifetime>)?) => {
        impl<$($txn,)? K: Key, V: Column> ReadableTable<K, V> for $table<$($txn,)? K, V> {
            fn get<'k>(
                &self,
                key: impl Borrow<K::SelfType<'k>>,
            ) -> Result<Option<V::Owned>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.get(key)?.map(|value| V::to_owned(value.value()))),
                    Self::Postgres(table) => table.get(key.borrow()),
                }
            }

            fn get_each<'k, Q: Borrow<K::SelfType<'k>>>(
                &self,
                keys: &[Q],
            ) -> Result<Vec<Option<V::Owned>>, StoreError> {
                match self {
                    Self::Redb(table) => keys
                        .iter()
                        .map(|key| Ok(table.get(key.borrow())?.map(|value| V::to_owned(value.value()))))
                        .collect(),
                    Self::Postgres(table) => table.get_each(keys),
                }
            }

            fn range<'k, KR>(
                &self,
                range: impl RangeBounds<KR> + 'k,
            ) -> Result<Range<'_, K, V>, StoreError>
            where
                KR: Borrow<K::SelfType<'k>> + 'k,
            {
                match self {
                    Self::Redb(table) => Ok(Range::Redb(table.range(range)?)),
                    Self::Postgres(table) => Ok(Range::Postgres(table.range(range))),
                }
            }

            fn iter(&self) -> Result<Range<'_, K, V>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(Range::Redb(table.iter()?)),
                    Self::Postgres(table) => Ok(Range::Postgres(table.iter())),
                }
            }

            fn first(&self) -> Result<Option<Entry<K, V>>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.first()?.map(redb::owned_entry::<K, V>)),
                    Self::Postgres(table) => table.first(),
                }
            }

            fn last(&self) -> Result<Option<Entry<K, V>>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.last()?.map(redb::owned_entry::<K, V>)),
                    Self::Postgres(table) => table.last(),
                }
            }

            fn len(&self) -> Result<u64, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.len()?),
                    Self::Postgres(table) => table.len(),
                }
            }

            fn is_empty(&self) -> Result<bool, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.is_empty()?),
                    Self::Postgres(table) => Ok(table.first()?.is_none()),
                }
            }
        }
    };
}
readable!(Table<'txn>);
readable!(ReadOnlyTable);

impl<K: Key, V: Column> Table<'_, K, V> {
    /// Puts `value` under `key`, replacing the value there (on PostgreSQL sent with the
    /// transaction's next statement that reads the table, or with its commit: no round trip
    /// of its own, and one statement for all the table's puts and deletes waiting then).
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Redb(table) => table.insert(key, value).map(drop).map_err(Into::into),
            Self::Postgres(table) => table.insert(key.borrow(), value.borrow()),
        }
    }

    /// Puts `value` under `key` unless an entry is there (or, on PostgreSQL, another running
    /// transaction has sent a put there: this waits for its end); returns whether it did.
    pub fn insert_if_absent<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Redb(table) => {
                if table.get(key.borrow())?.is_some() {
                    return Ok(false);
                }
                table.insert(key, value)?;
                Ok(true)
            }
            Self::Postgres(table) => table.insert_if_absent(key.borrow(), value.borrow()),
        }
    }

    /// Removes the entry under `key`; returns its value.
    pub fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<V::Owned>, StoreError> {
        match self {
            Self::Redb(table) => Ok(table.remove(key)?.map(|value| V::to_owned(value.value()))),
            Self::Postgres(table) => table.remove(key.borrow()),
        }
    }

    /// Removes the entry under `key`, if any (on PostgreSQL sent with the transaction's next
    /// statement reading the table, or its commit, as puts are): [`Table::remove`] without
    /// the old value.
    pub fn delete<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<(), StoreError> {
        match self {
            Self::Redb(table) => table.remove(key).map(drop).map_err(Into::into),
            Self::Postgres(table) => {
                table.delete(key.borrow());
                Ok(())
            }
        }
    }

    /// The value under `key`, with the row held by this transaction until it ends: another
    /// transaction locking or changing it waits (PostgreSQL's `FOR UPDATE`). A missing key
    /// locks nothing. In a redb write transaction, which has the file to itself, a `get`.
    pub fn lock<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<V::Owned>, StoreError> {
        match self {
            Self::Redb(table) => Ok(table.get(key)?.map(|value| V::to_owned(value.value()))),
            Self::Postgres(table) => table.lock(key.borrow()),
        }
    }

    /// As [`Table::lock`], but without waiting: an entry another transaction holds (or
    /// is writing) is answered as missing (PostgreSQL's `FOR UPDATE SKIP LOCKED`). For
    /// changes that may pass an entry by, such as renewing many leases at once: waiting for
    /// one entry while holding others is how two such changes deadlock.
    pub fn lock_unless_held<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<V::Owned>, StoreError> {
        match self {
            Self::Redb(table) => Ok(table.get(key)?.map(|value| V::to_owned(value.value()))),
            Self::Postgres(table) => table.lock_unless_held(key.borrow()),
        }
    }

    /// Takes the first `limit` entries in `range` for this transaction, passing over entries
    /// a concurrent [`Database::begin_claim`] transaction took (PostgreSQL's `FOR UPDATE SKIP
    /// LOCKED`); in a redb write transaction, which has the file to itself, simply the first
    /// `limit` entries.
    pub fn take_first<'k, KR>(
        &mut self,
        range: impl RangeBounds<KR> + 'k,
        limit: usize,
    ) -> Result<Vec<Entry<K, V>>, StoreError>
    where
        KR: Borrow<K::SelfType<'k>> + 'k,
    {
        match self {
            Self::Redb(table) => table
                .range(range)?
                .take(limit)
                .map(redb::owned_result::<K, V>)
                .collect(),
            Self::Postgres(table) => table.take_first(range, limit),
        }
    }

    /// Removes every entry whose key is in `range`.
    pub fn remove_range<'k, KR>(
        &mut self,
        range: impl RangeBounds<KR> + 'k,
    ) -> Result<(), StoreError>
    where
        KR: Borrow<K::SelfType<'k>> + 'k,
    {
        match self {
            Self::Redb(table) => Ok(table.retain_in(range, |_, _| false)?),
            Self::Postgres(table) => table.remove_range(range),
        }
    }
}

/// Entries of a table in key order, walked from the front (`next`) or the back (`next_back`).
pub enum Range<'table, K: Key, V: Column> {
    /// A redb range.
    Redb(::redb::Range<'table, K, V>),
    /// A PostgreSQL range, fetched in batches as it is walked.
    Postgres(postgres::Range<K, V>),
}

impl<K: Key, V: Column> Iterator for Range<'_, K, V> {
    type Item = Result<Entry<K, V>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Redb(range) => range.next().map(redb::owned_result::<K, V>),
            Self::Postgres(range) => range.next(),
        }
    }
}

impl<K: Key, V: Column> DoubleEndedIterator for Range<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Self::Redb(range) => range.next_back().map(redb::owned_result::<K, V>),
            Self::Postgres(range) => range.next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};

    const PAIRS: TableDefinition<(u64, &str), u64> = TableDefinition::new("layer_pairs");

    /// The keys the tests write: enough that a walk takes several batches of the growing
    /// sizes PostgreSQL fetches in.
    fn keys() -> Vec<(u64, String)> {
        (0..1500u64)
            .map(|n| (n / 100, format!("k{:04}", (n * 7919) % 10_000)))
            .collect()
    }

    fn filled(place: &TestPlace) -> Database {
        let db = place.open_database(&[PAIRS.name()]);
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(PAIRS).unwrap();
            for (n, (group, name)) in keys().iter().enumerate() {
                table.insert((*group, name.as_str()), n as u64).unwrap();
            }
        }
        txn.commit().unwrap();
        db
    }

    on_both_backends!(sync ranges_walk_in_key_order_from_either_end_and_meet_once);
    fn ranges_walk_in_key_order_from_either_end_and_meet_once(place: TestPlace) {
        let db = filled(&place);
        let mut sorted: Vec<(u64, String)> = keys();
        sorted.sort();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(PAIRS).unwrap();
        let walked: Vec<(u64, String)> = table
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().0)
            .collect();
        assert_eq!(walked, sorted);
        let backwards: Vec<(u64, String)> = table
            .iter()
            .unwrap()
            .rev()
            .map(|entry| entry.unwrap().0)
            .collect();
        assert_eq!(backwards, sorted.iter().rev().cloned().collect::<Vec<_>>());

        // From both ends at once, unevenly: every key once, the ends meeting in between.
        let mut range = table.iter().unwrap();
        let (mut front, mut back) = (Vec::new(), Vec::new());
        loop {
            let Some(entry) = range.next() else { break };
            front.push(entry.unwrap().0);
            for _ in 0..3 {
                if let Some(entry) = range.next_back() {
                    back.push(entry.unwrap().0);
                }
            }
        }
        back.reverse();
        front.extend(back);
        assert_eq!(front, sorted);

        // Bounds included and excluded, within and between groups.
        let within: Vec<(u64, String)> = table
            .range((3, "k5")..(4, ""))
            .unwrap()
            .map(|entry| entry.unwrap().0)
            .collect();
        let expected: Vec<(u64, String)> = sorted
            .iter()
            .filter(|(group, name)| *group == 3 && name.as_str() >= "k5")
            .cloned()
            .collect();
        assert_eq!(within, expected);
        let (low, high) = (&sorted[10], &sorted[700]);
        let between = table
            .range((low.0, low.1.as_str())..=(high.0, high.1.as_str()))
            .unwrap()
            .count();
        assert_eq!(between, 691);
        assert_eq!(
            table.first().unwrap().map(|entry| entry.0),
            sorted.first().cloned()
        );
        assert_eq!(
            table.last().unwrap().map(|entry| entry.0),
            sorted.last().cloned()
        );
        assert_eq!(table.len().unwrap(), 1500);
    }

    on_both_backends!(sync a_read_on_its_own_sees_what_is_committed_and_nothing_else);
    fn a_read_on_its_own_sees_what_is_committed_and_nothing_else(place: TestPlace) {
        let db = filled(&place);
        assert_eq!(db.get_one(PAIRS, (0, "k0000")).unwrap(), Some(0));
        assert_eq!(db.get_one(PAIRS, (0, "missing")).unwrap(), None);
        let txn = db.begin_write().unwrap();
        txn.open_table(PAIRS)
            .unwrap()
            .insert((0, "k0000"), 5)
            .unwrap();
        assert_eq!(
            db.get_one(PAIRS, (0, "k0000")).unwrap(),
            Some(0),
            "uncommitted"
        );
        txn.commit().unwrap();
        assert_eq!(db.get_one(PAIRS, (0, "k0000")).unwrap(), Some(5));
        // The connection it used is free again: the pool's few connections serve many reads.
        for _ in 0..50 {
            assert_eq!(db.get_one(PAIRS, (0, "k0000")).unwrap(), Some(5));
        }
    }

    on_both_backends!(sync a_transaction_sees_its_puts_in_the_order_it_made_them);
    /// On PostgreSQL puts are sent later than they are made (with the next statement that
    /// reads their table, or the commit); what any statement of the transaction answers, and
    /// what it commits, is as if each had been sent at once.
    fn a_transaction_sees_its_puts_in_the_order_it_made_them(place: TestPlace) {
        const OTHER: TableDefinition<u64, &str> = TableDefinition::new("layer_other");
        let db = place.open_database(&[PAIRS.name(), OTHER.name()]);
        let txn = db.begin_row_locking_write().unwrap();
        {
            let mut pairs = txn.open_table(PAIRS).unwrap();
            let mut other = txn.open_table(OTHER).unwrap();
            pairs.insert((1, "a"), 1).unwrap();
            other.insert(1, "first").unwrap();
            pairs.insert((1, "a"), 2).unwrap();
            // Reading one table sends its writes while the other's keep waiting.
            assert_eq!(other.get(1).unwrap().as_deref(), Some("first"));
            assert_eq!(pairs.remove((1, "a")).unwrap(), Some(2));
            pairs.insert((1, "a"), 3).unwrap();
            pairs.insert((0, "z"), 4).unwrap();
            other.insert(1, "second").unwrap();
            assert_eq!(
                pairs
                    .range((0, "")..(2, ""))
                    .unwrap()
                    .map(|entry| entry.unwrap())
                    .collect::<Vec<_>>(),
                vec![((0, "z".to_string()), 4), ((1, "a".to_string()), 3)]
            );
            // The commit then writes two tables, one with a put and a delete: on PostgreSQL
            // one statement.
            pairs.insert((1, "a"), 5).unwrap();
            pairs.delete((0, "z")).unwrap();
            other.insert(2, "only put").unwrap();
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let pairs = txn.open_table(PAIRS).unwrap();
        assert_eq!(pairs.get((1, "a")).unwrap(), Some(5));
        assert_eq!(pairs.get((0, "z")).unwrap(), None);
        let other = txn.open_table(OTHER).unwrap();
        assert_eq!(other.get(1).unwrap().as_deref(), Some("second"));
        assert_eq!(other.get(2).unwrap().as_deref(), Some("only put"));

        // A transaction that only reads, or does nothing, commits as well.
        let txn = db.begin_write().unwrap();
        assert_eq!(txn.open_table(OTHER).unwrap().len().unwrap(), 2);
        txn.commit().unwrap();
        db.begin_write().unwrap().commit().unwrap();
    }

    on_both_backends!(sync several_keys_are_read_at_once_in_the_order_asked);
    fn several_keys_are_read_at_once_in_the_order_asked(place: TestPlace) {
        let db = filled(&place);
        let keys = keys();
        let txn = db.begin_row_locking_write().unwrap();
        let mut pairs = txn.open_table(PAIRS).unwrap();
        // A write still waiting to be sent is seen, as by `get`.
        pairs.insert((keys[3].0, keys[3].1.as_str()), 99).unwrap();
        let asked = [
            (keys[7].0, keys[7].1.as_str()),
            (99, "missing"),
            (keys[3].0, keys[3].1.as_str()),
            (keys[7].0, keys[7].1.as_str()),
        ];
        assert_eq!(
            pairs.get_each(&asked).unwrap(),
            [Some(7), None, Some(99), Some(7)]
        );
        let none: [(u64, &str); 0] = [];
        assert!(pairs.get_each(&none).unwrap().is_empty());
    }

    /// Rows locked together wait for a transaction holding one of them, are read as it left
    /// them (not as they were when the statement began), and stay locked until the locking
    /// transaction ends.
    #[test]
    fn rows_locked_together_are_read_as_the_transaction_holding_one_left_them() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let db = filled(&place);
        let keys = keys();
        let (first, second) = (
            (keys[1].0, keys[1].1.as_str()),
            (keys[2].0, keys[2].1.as_str()),
        );
        // The first row as a transaction of its own finds it: none when it is held.
        let taken_by_another = || {
            db.begin_row_locking_write()
                .unwrap()
                .open_table(PAIRS)
                .unwrap()
                .lock_unless_held(first)
                .unwrap()
        };
        let holder = db.begin_row_locking_write().unwrap();
        assert_eq!(
            holder.open_table(PAIRS).unwrap().lock(second).unwrap(),
            Some(2)
        );
        std::thread::scope(|scope| {
            let locker = scope.spawn(|| {
                let txn = db.begin_row_locking_write().unwrap();
                let found = txn
                    .lock_together(((PAIRS, first), (PAIRS, second), (PAIRS, (99, "missing"))))
                    .unwrap();
                (found, txn)
            });
            std::thread::sleep(std::time::Duration::from_millis(300));
            holder
                .open_table(PAIRS)
                .unwrap()
                .insert(second, 200)
                .unwrap();
            holder.commit().unwrap();
            let (found, locker) = locker.join().unwrap();
            assert_eq!(found, (Some(1), Some(200), None));
            assert_eq!(
                taken_by_another(),
                None,
                "still locked by the transaction that locked it"
            );
            drop(locker);
            assert_eq!(taken_by_another(), Some(1));
        });

        // Without the first row, the others are not locked.
        let txn = db.begin_row_locking_write().unwrap();
        let (missing, _) = txn
            .lock_together(((PAIRS, (99, "missing")), (PAIRS, first)))
            .unwrap();
        assert_eq!(missing, None);
        assert_eq!(
            taken_by_another(),
            Some(1),
            "locked although the first row was not there"
        );
    }

    /// A put that PostgreSQL refuses when it is finally sent fails the commit, which then
    /// commits nothing of the transaction.
    #[test]
    fn a_put_refused_when_sent_fails_the_commit_and_leaves_nothing() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        const NOT_MIGRATED: TableDefinition<u64, u64> = TableDefinition::new("not_migrated");
        let db = place.open_database(&[PAIRS.name()]);
        // A row-locking transaction that only writes commits as its one write statement,
        // without BEGIN and COMMIT: the same holds for it.
        for txn in [db.begin_write(), db.begin_row_locking_write()] {
            let txn = txn.unwrap();
            txn.open_table(PAIRS).unwrap().insert((1, "a"), 1).unwrap();
            txn.open_table(NOT_MIGRATED).unwrap().insert(1, 1).unwrap();
            let refused = txn.commit().unwrap_err();
            assert!(refused.to_string().contains("kv_not_migrated"), "{refused}");
            let txn = db.begin_read().unwrap();
            assert_eq!(txn.open_table(PAIRS).unwrap().get((1, "a")).unwrap(), None);
        }
        let txn = db.begin_row_locking_write().unwrap();
        txn.open_table(PAIRS).unwrap().insert((1, "a"), 1).unwrap();
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(PAIRS).unwrap().get((1, "a")).unwrap(),
            Some(1)
        );
    }

    on_both_backends!(sync writes_are_seen_by_their_transaction_and_by_later_ones_only);
    fn writes_are_seen_by_their_transaction_and_by_later_ones_only(place: TestPlace) {
        let db = filled(&place);
        let before = db.begin_read().unwrap();
        // Its snapshot is taken by its first read (on PostgreSQL; by its beginning on redb).
        assert_eq!(
            before.open_table(PAIRS).unwrap().get((0, "k0000")).unwrap(),
            Some(0)
        );
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(PAIRS).unwrap();
            assert_eq!(table.remove((0, "k0000")).unwrap(), Some(0));
            assert_eq!(table.remove((0, "k0000")).unwrap(), None);
            table.insert((99, "new"), 7).unwrap();
            table.remove_range((1, "")..(3, "")).unwrap();
            assert_eq!(table.get((99, "new")).unwrap(), Some(7));
            assert_eq!(table.len().unwrap(), 1500 - 1 - 200 + 1);
        }
        txn.commit().unwrap();
        // A transaction that began before the commit still sees the table as it was.
        let old = before.open_table(PAIRS).unwrap();
        assert_eq!(old.len().unwrap(), 1500);
        assert!(old.get((99, "new")).unwrap().is_none());
        let now = db.begin_read().unwrap();
        let table = now.open_table(PAIRS).unwrap();
        assert_eq!(table.len().unwrap(), 1300);
        assert_eq!(table.range((1, "")..(3, "")).unwrap().count(), 0);
        assert_eq!(table.last().unwrap(), Some(((99, "new".to_string()), 7)));

        // A write transaction dropped without its commit leaves nothing.
        let txn = db.begin_write().unwrap();
        txn.open_table(PAIRS)
            .unwrap()
            .insert((99, "gone"), 1)
            .unwrap();
        drop(txn);
        let after = db.begin_read().unwrap();
        assert!(
            after
                .open_table(PAIRS)
                .unwrap()
                .get((99, "gone"))
                .unwrap()
                .is_none()
        );
    }
}
