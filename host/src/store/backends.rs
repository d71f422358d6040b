//! The store's tests run once per backend from one body: [`on_both_backends!`] makes a test
//! for redb and one for PostgreSQL out of a body that takes a [`TestPlace`], so a behaviour
//! cannot differ between the backends unnoticed.

use std::path::PathBuf;

use sluice_test_support::postgres::TestDatabase;

use super::Store;
use super::kv::postgres::PoolSettings;

/// Where a test's store lives: a redb file in a folder of its own, or a PostgreSQL database
/// of its own; both go when the test ends.
pub(crate) enum TestPlace {
    /// A redb file in a temporary folder.
    Redb(tempfile::TempDir),
    /// A fresh PostgreSQL database.
    Postgres(TestDatabase),
}

impl TestPlace {
    /// A new redb store's place.
    pub(crate) fn redb() -> Self {
        Self::Redb(tempfile::tempdir().expect("a temporary folder"))
    }

    /// A new PostgreSQL database for `test`; `None` when the test is skipped (no server).
    pub(crate) fn postgres(test: &str) -> Option<Self> {
        TestDatabase::create(test).map(Self::Postgres)
    }

    /// The redb file, for redb places.
    pub(crate) fn redb_path(&self) -> Option<PathBuf> {
        match self {
            Self::Redb(dir) => Some(dir.path().join("store.redb")),
            Self::Postgres(_) => None,
        }
    }

    /// The PostgreSQL database, for PostgreSQL places.
    pub(crate) fn database(&self) -> Option<&TestDatabase> {
        match self {
            Self::Redb(_) => None,
            Self::Postgres(database) => Some(database),
        }
    }

    /// Opens the store kept here (again, after a store opened before was dropped: a redb
    /// file is free once the dropped store's writer thread has let go of it).
    pub(crate) fn open(&self) -> Store {
        match self {
            Self::Redb(dir) => {
                let path = dir.path().join("store.redb");
                for _ in 0..100 {
                    if let Ok(store) = Store::open(&path) {
                        return store;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Store::open(&path).expect("the redb store opens")
            }
            Self::Postgres(database) => {
                Store::open_postgres(database.url(), pool()).expect("the PostgreSQL store opens")
            }
        }
    }
}

impl TestPlace {
    /// Opens the storage layer alone (no store on it) with `scratch` tables beside the
    /// store's, for tests of the layer: redb makes tables on demand, PostgreSQL's must exist.
    pub(crate) fn open_database(&self, scratch: &[&str]) -> super::kv::Database {
        match self {
            Self::Redb(dir) => {
                super::kv::redb::open(&dir.path().join("layer.redb")).expect("the redb file opens")
            }
            Self::Postgres(database) => {
                for name in scratch {
                    database
                        .execute(&format!(
                            "CREATE TABLE IF NOT EXISTS kv_{name} (k bytea PRIMARY KEY, v bytea NOT NULL)"
                        ))
                        .expect("a scratch table is made");
                }
                super::kv::postgres::open(database.url(), pool()).expect("the database opens")
            }
        }
    }
}

/// A small pool: the machine runs many tests at once, each with a database of its own.
pub(crate) fn pool() -> PoolSettings {
    PoolSettings {
        max_connections: 4,
        ..PoolSettings::default()
    }
}

/// Runs a test body on both backends: `on_both_backends!(name)` beside `async fn name(place:
/// TestPlace)` makes the tests `name::redb` and `name::postgres`, each calling the body with a
/// fresh place of its backend (`, flavor = "multi_thread"` for a multi-thread runtime; `sync
/// name` for a body that is a plain function).
macro_rules! on_both_backends {
    ($name:ident $(, flavor = $flavor:literal)?) => {
        mod $name {
            use $crate::store::backends::TestPlace;

            #[tokio::test$((flavor = $flavor))?]
            async fn redb() {
                super::$name(TestPlace::redb()).await
            }

            #[tokio::test$((flavor = $flavor))?]
            async fn postgres() {
                if let Some(place) = TestPlace::postgres(module_path!()) {
                    super::$name(place).await
                }
            }
        }
    };
    (sync $name:ident) => {
        mod $name {
            use $crate::store::backends::TestPlace;

            #[test]
            fn redb() {
                super::$name(TestPlace::redb())
            }

            #[test]
            fn postgres() {
                if let Some(place) = TestPlace::postgres(module_path!()) {
                    super::$name(place)
                }
            }
        }
    };
}
pub(crate) use on_both_backends;
