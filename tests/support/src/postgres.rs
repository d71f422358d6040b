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

/// A PostgreSQL cluster of one test's own that speaks TLS only: it listens on a loopback port,
/// shows a certificate for `localhost` signed by a CA made for it, refuses connections
/// without TLS and asks for the `postgres` user's password (SCRAM), made at random for it.
/// Stopped when dropped.
pub struct TlsCluster {
    folder: tempfile::TempDir,
    port: u16,
    password: String,
    postmaster: Option<std::process::Child>,
}

/// Why a cluster cannot start: PostgreSQL is not installed (the test is skipped), or it is
/// but cannot be run (the test fails).
enum NotStarted {
    NotInstalled(String),
    Failed(String),
}

impl TlsCluster {
    /// Makes and starts the cluster; `None` (after printing that `test` was skipped, and why)
    /// when PostgreSQL's programs are not installed, unless `SLUICE_TEST_POSTGRES_REQUIRED=1`
    /// makes that a failure.
    pub fn start(test: &str) -> Option<Self> {
        let programs = match Self::programs() {
            Ok(programs) => programs,
            Err(NotStarted::Failed(error)) => panic!("{test}: {error}"),
            Err(NotStarted::NotInstalled(error)) => {
                if std::env::var(REQUIRED_VARIABLE).as_deref() == Ok("1") {
                    panic!("{test}: PostgreSQL is required ({REQUIRED_VARIABLE}=1) but: {error}")
                }
                println!(
                    "SKIPPED: {test}: no cluster of its own ({error}); to run it, install \
                     PostgreSQL (as root: apt-get install postgresql)"
                );
                return None;
            }
        };
        // Another process may take the chosen port before PostgreSQL binds it: a new one then.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start(&programs) {
                Ok(cluster) => return Some(cluster),
                Err(error) => failures.push(error),
            }
        }
        panic!("{test}: the cluster did not start: {}", failures.join("; "))
    }

    /// The newest installed PostgreSQL's programs folder.
    fn programs() -> Result<std::path::PathBuf, NotStarted> {
        let installed = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|error| NotStarted::NotInstalled(format!("/usr/lib/postgresql: {error}")))?;
        let programs = installed
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max_by_key(|bin| {
                let version = bin.parent().and_then(|v| v.file_name());
                version.and_then(|v| v.to_str()?.parse::<u32>().ok())
            })
            .ok_or_else(|| {
                NotStarted::NotInstalled("no /usr/lib/postgresql/<version>/bin/initdb".into())
            })?;
        if is_root() && !std::path::Path::new("/usr/bin/setpriv").exists() {
            return Err(NotStarted::Failed(
                "PostgreSQL refuses to run as root, and there is no setpriv to run it as \
                 the postgres user"
                    .into(),
            ));
        }
        Ok(programs)
    }

    fn try_start(programs: &std::path::Path) -> Result<Self, String> {
        let folder = tempfile::Builder::new()
            .prefix("sluice-tls-cluster")
            .tempdir()
            .map_err(|error| error.to_string())?;
        let data = folder.path().join("data");
        let (certificate, key) = write_certificates(folder.path())?;
        let password = folder.path().join("password");
        let mut secret = [0u8; 16];
        getrandom_bytes(&mut secret);
        let secret = hex::encode(secret);
        std::fs::write(&password, &secret).map_err(|error| error.to_string())?;
        // PostgreSQL refuses to run as root: as root, it runs as the postgres user.
        let as_root = is_root();
        let as_owner = |program: &str| {
            let mut command = if as_root {
                let mut command = std::process::Command::new("setpriv");
                command
                    .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                    .arg(programs.join(program));
                command
            } else {
                std::process::Command::new(programs.join(program))
            };
            command.stdin(std::process::Stdio::null());
            command
        };
        if as_root {
            run(std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(folder.path()))?;
        }
        run(as_owner("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local=trust", "--no-sync"])
            .arg(format!("--pwfile={}", password.display())))?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n\
             hostnossl all all all reject\n",
        )
        .map_err(|error| error.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| error.to_string())?
            .port();
        let log = std::fs::File::create(folder.path().join("log")).map_err(|e| e.to_string())?;
        let postmaster = as_owner("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(folder.path())
            // One address, so a port taken there stops it instead of leaving it on another.
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "ssl=on", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", certificate.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("starting postgres: {error}"))?;
        let mut cluster = Self {
            folder,
            port,
            password: secret,
            postmaster: Some(postmaster),
        };
        let ready = programs.join("pg_isready");
        for _ in 0..300 {
            let answered = std::process::Command::new(&ready)
                .arg("-q")
                .arg("-h")
                .arg(cluster.folder.path())
                .args(["-p", &port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if answered {
                return Ok(cluster);
            }
            if let Some(Ok(Some(exit))) = cluster.postmaster.as_mut().map(|p| p.try_wait()) {
                let log = std::fs::read_to_string(cluster.folder.path().join("log"));
                return Err(format!(
                    "postgres ended ({exit}): {}",
                    log.unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("postgres did not answer within 30 s".into())
    }

    /// The password of the cluster's `postgres` user.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The loopback port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the cluster's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.folder.path().join("ca.pem")
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            // A fast shutdown: sessions a test left open do not hold it. Killed when it
            // has not ended within ten seconds.
            let _ = std::process::Command::new("kill")
                .args(["-INT", &postmaster.id().to_string()])
                .status();
            for _ in 0..100 {
                if !matches!(postmaster.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = postmaster.kill();
            let _ = postmaster.wait();
        }
    }
}

/// Writes a CA (`ca.pem`) and a certificate for `localhost` it signed, with its key, into
/// `folder`; returns the certificate's and the key's paths.
fn write_certificates(
    folder: &std::path::Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let failed = |error: rcgen::Error| error.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut ca = rcgen::CertificateParams::new(Vec::new()).map_err(failed)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Sluice test cluster CA");
    let ca = ca.self_signed(&ca_key).map_err(failed)?;
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .map_err(failed)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(failed)?;
    let write = |name: &str, contents: String| {
        let path = folder.join(name);
        std::fs::write(&path, contents).map_err(|error| format!("{name}: {error}"))?;
        Ok::<_, String>(path)
    };
    write("ca.pem", ca.pem())?;
    let certificate = write("server.pem", server.pem())?;
    let key_file = write("server.key", key.serialize_pem())?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| error.to_string())?;
    Ok((certificate, key_file))
}

/// Whether this process runs as root.
fn is_root() -> bool {
    run(std::process::Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// Runs `command`, returning what it printed; its error output when it fails.
fn run(command: &mut std::process::Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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
