//! The storage layer the store is written over: ordered tables of typed keys and values, read
//! in read transactions and changed in write transactions, with the subset of redb's table API
//! the store uses (get, insert, remove, ranges walked from either end, first, last, len).
//!
//! The store's logic is written once, over this layer; a backend implements it. Backends are a
//! closed set, so every type here is an `enum` over them (no `dyn`: the methods are generic
//! over key and value types). Reads hand back owned keys and values, never guards borrowing
//! the backend's pages, so a backend that fetches rows over a connection can answer the same
//! calls. Today's one backend is redb ([`redb`]); a table here is the redb table of the same
//! name and types, so store files made before this layer open unchanged. See docs/DESIGN.md
//! ("The store") for how a byte-keyed backend maps it (keys in [`columns`]' encoding).

pub mod columns;
pub mod redb;

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use ::redb::{ReadableTable as _, ReadableTableMetadata as _};

pub use columns::{Column, Key};

use super::StoreError;

/// A table: its name and the types of its keys and values.
pub struct TableDefinition<K: Key, V: Column> {
    name: &'static str,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: Column> TableDefinition<K, V> {
    /// A table named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
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
}

impl Database {
    /// A transaction that sees the database as it is now, for as long as it is kept.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        match self {
            Self::Redb(db) => Ok(ReadTransaction::Redb(db.begin_read()?)),
        }
    }

    /// A transaction whose changes are made durable together by [`WriteTransaction::commit`].
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        match self {
            Self::Redb(db) => Ok(WriteTransaction::Redb(db.begin_write()?)),
        }
    }
}

/// A read-only view of the database at one moment.
pub enum ReadTransaction {
    /// A redb read transaction.
    Redb(::redb::ReadTransaction),
}

impl ReadTransaction {
    /// Opens a table for reading; it must exist (opening the store creates every table).
    pub fn open_table<K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, StoreError> {
        match self {
            Self::Redb(txn) => Ok(ReadOnlyTable::Redb(txn.open_table(table.in_redb())?)),
        }
    }

    /// The names of the tables the database has.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Redb(txn) => redb::table_names(txn.list_tables()?),
        }
    }
}

/// Changes made together: all of them are made durable by [`WriteTransaction::commit`], or none.
pub enum WriteTransaction {
    /// A redb write transaction.
    Redb(::redb::WriteTransaction),
}

impl WriteTransaction {
    /// Opens a table for reading and writing, creating it when it does not exist.
    pub fn open_table<K: Key, V: Column>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Table<'_, K, V>, StoreError> {
        match self {
            Self::Redb(txn) => Ok(Table::Redb(txn.open_table(table.in_redb())?)),
        }
    }

    /// The names of the tables the database has.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Redb(txn) => redb::table_names(txn.list_tables()?),
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
        }
    }

    /// Makes every change of the transaction durable.
    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Redb(txn) => Ok(txn.commit()?),
        }
    }
}

/// A table as a write transaction sees it.
pub enum Table<'txn, K: Key, V: Column> {
    /// A redb table.
    Redb(::redb::Table<'txn, K, V>),
}

/// A table as a read transaction sees it.
pub enum ReadOnlyTable<K: Key, V: Column> {
    /// A redb table.
    Redb(::redb::ReadOnlyTable<K, V>),
}

/// An entry of a table: its key and value, owned.
pub type Entry<K, V> = (<K as Column>::Owned, <V as Column>::Owned);

/// The reads both kinds of table answer.
pub trait ReadableTable<K: Key, V: Column> {
    /// The value under `key`.
    fn get<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<Option<V::Owned>, StoreError>;

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
                }
            }

            fn iter(&self) -> Result<Range<'_, K, V>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(Range::Redb(table.iter()?)),
                }
            }

            fn first(&self) -> Result<Option<Entry<K, V>>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.first()?.map(redb::owned_entry::<K, V>)),
                }
            }

            fn last(&self) -> Result<Option<Entry<K, V>>, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.last()?.map(redb::owned_entry::<K, V>)),
                }
            }

            fn len(&self) -> Result<u64, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.len()?),
                }
            }

            fn is_empty(&self) -> Result<bool, StoreError> {
                match self {
                    Self::Redb(table) => Ok(table.is_empty()?),
                }
            }
        }
    };
}
readable!(Table<'txn>);
readable!(ReadOnlyTable);

impl<K: Key, V: Column> Table<'_, K, V> {
    /// Puts `value` under `key`, replacing the value there.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Redb(table) => table.insert(key, value).map(drop).map_err(Into::into),
        }
    }

    /// Removes the entry under `key`; returns its value.
    pub fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<V::Owned>, StoreError> {
        match self {
            Self::Redb(table) => Ok(table.remove(key)?.map(|value| V::to_owned(value.value()))),
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
        }
    }
}

/// Entries of a table in key order, walked from the front (`next`) or the back (`next_back`).
pub enum Range<'table, K: Key, V: Column> {
    /// A redb range.
    Redb(::redb::Range<'table, K, V>),
}

impl<K: Key, V: Column> Iterator for Range<'_, K, V> {
    type Item = Result<Entry<K, V>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Redb(range) => range.next().map(redb::owned_result::<K, V>),
        }
    }
}

impl<K: Key, V: Column> DoubleEndedIterator for Range<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Self::Redb(range) => range.next_back().map(redb::owned_result::<K, V>),
        }
    }
}
