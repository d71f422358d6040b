//! Fresh PostgreSQL databases for tests: each [`TestDatabase`] is a database of its own, with
//! a random name, on the server `SLUICE_TEST_POSTGRES` names (default: the local server's
//! socket), dropped when the test ends. Tests never share state through it.
//!
//! Without a server a test is skipped, saying so; with `SLUICE_TEST_POSTGRES_REQUIRED=1` (set
//! by `.ci/run`) a missing server fails the test instead.

use std::time::Duration;

/// The server tests create their databases on: a connection string (URL or `key=value`
/// pairs) to a database the user may create databases from.
pub const SERVER_VARIABLE: &str = "SLUICE_TEST_POSTGRES";

/// Set to `1`, a missing server fails the tests that need one instead of skipping them.
pub const REQUIRED_VARIABLE: &str = "SLUICE_TEST_POSTGRES_REQUIRED";

/// The local server's socket, as Debian's packaged cluster has it.
const LOCAL_SERVER: &str = "host=/var/run/postgresql dbname=postgres";

/// How to make these tests run, printed when they are skipped.
const HOW_TO_ENABLE: &str = "install and start PostgreSQL (as root: apt-get install postgresql; \
     pg_ctlcluster <version> main start; runuser -u postgres -- createuser -s $USER) or set \
     SLUICE_TEST_POSTGRES to a server's connection string";

/// A database made for one test and dropped when it is dropped.
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A new empty database for `test`; `None` (after printing that `test` was skipped, and
    /// why) when no server answers, unless `SLUICE_TEST_POSTGRES_REQUIRED=1` makes that a
    /// failure.
    pub fn create(test: &str) -> Option<Self> {
        let server = std::env::var(SERVER_VARIABLE).unwrap_or_else(|_| LOCAL_SERVER.to_string());
        let mut random = [0u8; 8];
        getrandom_bytes(&mut random);
        let name = format!("sluice_test_{}", hex::encode(random));
        match admin(&server, format!("CREATE DATABASE {name}")) {
            Ok(()) => Some(Self {
                url: with_database(&server, &name),
                server,
                name,
            }),
            Err(error) if std::env::var(REQUIRED_VARIABLE).as_deref() == Ok("1") => {
                panic!("{test}: PostgreSQL is required ({REQUIRED_VARIABLE}=1) but: {error}")
            }
            Err(error) => {
                println!(
                    "SKIPPED: {test}: no PostgreSQL server ({error}); to run it, {HOW_TO_ENABLE}"
                );
                None
            }
        }
    }

    /// The connection string of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs SQL statements on the database, outside any store (for tests that change it
    /// behind the store's back).
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        admin(&self.url, sql.to_string())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE: connections a store being torn down still holds must not keep it.
        let dropped = admin(
            &self.server,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if let Err(error) = dropped {
            eprintln!("the test database {} was not dropped: {error}", self.name);
        }
    }
}

/// Random bytes for a database's name, from the OS.
fn getrandom_bytes(out: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(out))
        .expect("the OS provides randomness");
}

/// Runs `sql` on the database `url` names, on a runtime of its own in a thread of its own
/// (so it works from any test, async or not).
fn admin(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        runtime.block_on(async move {
            let mut config: tokio_postgres::Config = url
                .parse()
                .map_err(|error: tokio_postgres::Error| error.to_string())?;
            config.connect_timeout(Duration::from_secs(5));
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|error| error.to_string())?;
            let connection = tokio::spawn(connection);
            let outcome = client
                .batch_execute(&sql)
                .await
                .map_err(|error| error.to_string());
            drop(client);
            let _ = connection.await;
            outcome
        })
    })
    .join()
    .map_err(|_| "the thread talking to PostgreSQL panicked".to_string())?
}

/// The connection string `server` with its database replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = server.strip_prefix(scheme) {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, after) = rest.split_at(authority_end);
            let query = after.find('?').map_or("", |start| &after[start..]);
            return format!("{scheme}{authority}/{name}{query}");
        }
    }
    // key=value pairs: a later pair overrides an earlier one.
    format!("{server} dbname={name}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_in_either_form() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "t1"), "postgresql://h/t1");
        assert_eq!(
            with_database("host=/var/run/postgresql dbname=postgres", "t1"),
            "host=/var/run/postgresql dbname=postgres dbname=t1"
        );
    }
}
