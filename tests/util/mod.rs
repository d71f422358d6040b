//! Helpers shared by the test modules: the built guest components, fixtures and runtimes.

pub use sluice_test_support::{arrivals, postgres, receiver, sink};

/// The loopback DNS server, and how the host resolves through it.
pub mod dns {
    pub use sluice_test_support::dns::*;

    /// A host's DNS configuration that resolves through a test DNS server only.
    pub trait ResolveThrough {
        /// The configuration for resolving through this server only.
        fn config(&self) -> sluice::dns::DnsConfig;
    }

    impl ResolveThrough for DnsServer {
        fn config(&self) -> sluice::dns::DnsConfig {
            sluice::dns::DnsConfig {
                nameservers: vec![self.addr()],
                timeout_ms: Some(2000),
            }
        }
    }
}

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sluice::message::{Envelope, Message};
use sluice::plugin::{CompiledCache, Grants, Plugin, PluginRuntime, RuntimeLimits};

/// The guest components host/build.rs builds, one constant per crate (`TEST_MISBEHAVE`).
/// The built-ins among them are loaded by the server itself, not by name in tests.
#[allow(dead_code)]
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// A guest component built by host/build.rs, by its constant in [`guests`].
pub fn guest(component: &str) -> PathBuf {
    let path = PathBuf::from(component);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The bytes of a guest component.
pub fn guest_bytes(component: &str) -> Vec<u8> {
    std::fs::read(guest(component)).unwrap()
}

/// A guest's name as a plugin: its file name without `.wasm` (`test_misbehave`).
pub fn guest_name(component: &str) -> String {
    Path::new(component)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(component)
        .to_string()
}

/// Runs a future to its end on a runtime of its own, from a sync test.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A file from tests/data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

/// A fixture message from tests/data.
pub fn message(name: &str) -> Message {
    let raw = std::fs::read(data(name)).unwrap();
    Message::parse(raw, envelope()).unwrap()
}

/// The envelope fixture messages travel with.
pub fn envelope() -> Envelope {
    Envelope {
        sender: "bounces@example.com".into(),
        recipient: "ann@example.net".into(),
    }
}

/// A compiled-code cache shared by every test of this run, so each component compiles once.
fn shared_cache() -> CompiledCache {
    static CACHE: OnceLock<(tempfile::TempDir, CompiledCache)> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let cache = CompiledCache::open(dir.path().join("compiled")).unwrap();
            (dir, cache)
        })
        .1
        .clone()
}

/// Limits for tests: the defaults with a smaller pool (many runtimes live at once here).
pub fn test_limits() -> RuntimeLimits {
    RuntimeLimits {
        concurrent_calls: 16,
        ..RuntimeLimits::default()
    }
}

/// A runtime with these limits, sharing the run's compiled-code cache.
pub fn runtime(limits: RuntimeLimits) -> Arc<PluginRuntime> {
    PluginRuntime::new(limits, Some(shared_cache())).unwrap()
}

/// Loads a guest with no privileges, named after its file.
pub fn load(runtime: &Arc<PluginRuntime>, component: &str) -> Arc<Plugin> {
    runtime
        .load(
            &guest_name(component),
            &guest_bytes(component),
            Grants::none(),
        )
        .unwrap()
}

/// The tests' configuration of a server on data folder `dir`: loopback ports chosen by the
/// system, no delivery, no capture, a demo flow without steps.
pub fn test_config(dir: &Path) -> sluice::config::Config {
    let mut config = sluice::config::Config::load(None).unwrap();
    config.data_dir = dir.to_path_buf();
    config.smtp.listen = "127.0.0.1:0".parse().unwrap();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.inbound.listen = "127.0.0.1:0".parse().unwrap();
    config.dashboard.listen = "127.0.0.1:0".parse().unwrap();
    config.runtime.concurrent_calls = 16;
    // Tests that deliver turn this on with a route to their own sink; the rest never
    // reach for a real MX.
    config.delivery.enabled = false;
    // Webhook tests receive on loopback; the guard's own test turns it back on.
    config.webhooks.allow_private_destinations = true;
    // The tests' mail goes to example domains on purpose, to their own sinks and DNS
    // servers: the capture stays off unless a test is about it.
    config.delivery.capture_example_domains = false;
    // Tests set the flows they need; the demo account's default flow starts without steps,
    // so a message leaves it byte for byte as it came in.
    config.demo.flow_steps = Vec::new();
    config
}

/// The compiled-code cache of the first server this process started, once it has started:
/// each server compiles the built-in steps into its own data folder, which costs a debug
/// build more than a second of CPU per start, so later servers start from a copy of it (the
/// cache's own key comes with it, so its entries are read as the server's own).
static COMPILED_CACHE_SEED: OnceLock<tempfile::TempDir> = OnceLock::new();

/// The compiled-code cache folder of a server on data folder `dir`.
fn config_cache_path(dir: &Path) -> PathBuf {
    test_config(dir).compiled_cache_path()
}

/// Copies the seed into a new server's cache folder (none yet: a data folder a server ran on
/// keeps its own).
fn seed_compiled_cache(cache: &Path) {
    let Some(seed) = COMPILED_CACHE_SEED.get() else {
        return;
    };
    if cache.exists() {
        return;
    }
    copy_folder(seed.path(), cache).unwrap();
}

/// Keeps the first started server's compiled-code cache as the seed.
fn keep_compiled_cache(cache: &Path) {
    if COMPILED_CACHE_SEED.get().is_some() {
        return;
    }
    let seed = tempfile::tempdir().unwrap();
    copy_folder(cache, seed.path()).unwrap();
    // Another server may have set it meanwhile: either copy serves.
    let _ = COMPILED_CACHE_SEED.set(seed);
}

/// The `keys` folder (master key, sealed platform DKIM key) of the first server this process
/// started on a new platform with the test configuration's DKIM settings: making an RSA-2048
/// key costs a debug build about a tenth of a second at every start, so later new platforms
/// start from a copy (each still has its own store and the keys made in it).
static KEYS_SEED: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Whether a server with `config` would make the same keys as the seed's (the platform key's
/// algorithm, selector and domain, and the master key's place, as in the test configuration).
fn keys_are_seedable(config: &sluice::config::Config) -> bool {
    let usual = test_config(Path::new("")).dkim;
    config.dkim.platform_algorithm == usual.platform_algorithm
        && config.dkim.platform_selector == usual.platform_selector
        && config.dkim.platform_domain == usual.platform_domain
        && config.dkim.master_key_file == usual.master_key_file
}

fn seed_keys(dir: &Path) {
    let keys = dir.join("keys");
    if let Some(seed) = KEYS_SEED.get()
        && !keys.exists()
    {
        copy_folder(seed.path(), &keys).unwrap();
    }
}

/// Keeps a new platform's master key and, beside it, its platform DKIM key as the store holds
/// it (sealed under that master key): a start that finds the file there stores it instead of
/// making a key.
fn keep_keys(dir: &Path, store: &sluice::store::Store) {
    if KEYS_SEED.get().is_some() {
        return;
    }
    let dkim = test_config(Path::new("")).dkim;
    let (domain, selector) = (dkim.platform_domain, dkim.platform_selector);
    let Some(platform_key) = store
        .shared_secret(&format!("platform:{domain}:{selector}"))
        .unwrap()
    else {
        return;
    };
    let seed = tempfile::tempdir().unwrap();
    copy_folder(&dir.join("keys"), seed.path()).unwrap();
    let file = seed
        .path()
        .join(format!("platform-{domain}-{selector}.sealed"));
    std::fs::write(file, platform_key).unwrap();
    let _ = KEYS_SEED.set(seed);
}

fn copy_folder(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A server started in this process on a free loopback port, with its own data folder, and
/// its store in that folder's redb file, or, with `SLUICE_TEST_STORE=postgres`, in a fresh
/// PostgreSQL database of its own (so the end-to-end tests run on either backend).
pub struct TestServer {
    pub server: sluice::server::Server,
    pub runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    database: Option<postgres::TestDatabase>,
}

/// The PostgreSQL databases of stopped servers, by data folder, until a server starts again
/// on the folder.
static STOPPED_DATABASES: std::sync::Mutex<Vec<(std::path::PathBuf, postgres::TestDatabase)>> =
    std::sync::Mutex::new(Vec::new());

/// The PostgreSQL database a server on `dir` keeps its store in, when the tests run the
/// server on PostgreSQL (`SLUICE_TEST_STORE=postgres`).
fn database_for(dir: &Path) -> Option<postgres::TestDatabase> {
    let mut stopped = STOPPED_DATABASES.lock().unwrap();
    if let Some(index) = stopped.iter().position(|(folder, _)| folder == dir) {
        return Some(stopped.swap_remove(index).1);
    }
    drop(stopped);
    match std::env::var("SLUICE_TEST_STORE").as_deref() {
        Ok("postgres") => Some(
            postgres::TestDatabase::create("a test server on PostgreSQL")
                .expect("SLUICE_TEST_STORE=postgres needs a PostgreSQL server"),
        ),
        _ => None,
    }
}

/// Opens the store of a stopped server's data folder `dir`, as the server kept it (its redb
/// file, or its PostgreSQL database when the tests run on PostgreSQL), for a look or a change
/// while no server runs on it. Drop it before starting a server on the folder again.
pub fn stopped_store(dir: &Path) -> sluice::store::Store {
    match stopped_store_url(dir) {
        Some(url) => sluice::store::Store::open_postgres(
            &url,
            sluice::store::kv::postgres::PoolSettings::default(),
        )
        .unwrap(),
        None => sluice::store::Store::open(&dir.join("sluice.redb")).unwrap(),
    }
}

/// The PostgreSQL database a stopped server on `dir` kept its store in, if it was not the
/// folder's redb file: for a `[store] url` of a process started on the folder.
pub fn stopped_store_url(dir: &Path) -> Option<String> {
    let stopped = STOPPED_DATABASES.lock().unwrap();
    stopped
        .iter()
        .find(|(folder, _)| folder == dir)
        .map(|(_, database)| database.url().to_string())
}

impl TestServer {
    /// Starts a server with the embedded default configuration, overridden as `adjust` says.
    pub fn start(adjust: impl FnOnce(&mut sluice::config::Config)) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), adjust)
    }

    /// Starts a server on an existing data folder.
    pub fn start_in(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut sluice::config::Config),
    ) -> Self {
        Self::start_with(dir, None, adjust).unwrap()
    }

    /// Starts one more node of `other`'s platform: a server over the same store, with a data
    /// folder of its own (its master key copied from `other`'s, as an operator would).
    pub fn start_beside(
        other: &TestServer,
        adjust: impl FnOnce(&mut sluice::config::Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = Path::new("keys").join("master.key");
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::copy(other.dir.path().join(&master), dir.path().join(&master)).unwrap();
        Self::start_with(dir, Some(other.store().clone()), adjust).unwrap()
    }

    /// Starts a server on a data folder, over `store` when given (else the folder's own);
    /// the error when it refuses to start.
    pub fn start_with(
        dir: tempfile::TempDir,
        store: Option<sluice::store::Store>,
        adjust: impl FnOnce(&mut sluice::config::Config),
    ) -> anyhow::Result<Self> {
        let mut config = test_config(dir.path());
        seed_compiled_cache(&config.compiled_cache_path());
        // One more node over another server's store uses that server's database.
        let database = match store {
            Some(_) => None,
            None => database_for(dir.path()),
        };
        config.store.url = database.as_ref().map(|database| database.url().to_string());
        adjust(&mut config);
        // A new platform's keys; one more node of a platform has its own (copied) master key.
        let seeds_keys = store.is_none() && keys_are_seedable(&config);
        if seeds_keys {
            seed_keys(dir.path());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(async move {
            match store {
                Some(store) => sluice::server::Server::start_on(config, store).await,
                None => sluice::server::Server::start(config).await,
            }
        })?;
        keep_compiled_cache(&config_cache_path(dir.path()));
        if seeds_keys {
            keep_keys(dir.path(), &server.store);
        }
        Ok(Self {
            server,
            runtime,
            dir,
            database,
        })
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server and gives its data folder back, to start again on it.
    pub fn stop(self) -> tempfile::TempDir {
        let Self {
            server,
            runtime,
            dir,
            database,
        } = self;
        if let Some(database) = database {
            STOPPED_DATABASES
                .lock()
                .unwrap()
                .push((dir.path().to_path_buf(), database));
        }
        drop(server);
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        // The store's writer thread closes the database once the last handle is gone, which
        // on a busy machine can take a while: until then the file cannot be opened again.
        let file = dir.path().join("sluice.redb");
        for _ in 0..400 {
            if !file.exists() || redb::Database::open(&file).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        dir
    }

    /// The store, for setting up and checking.
    pub fn store(&self) -> &sluice::store::Store {
        &self.server.store
    }

    /// Runs a future on the server's runtime.
    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The demo login made on first start.
    pub fn demo_login(&self) -> (String, String) {
        let demo = self.server.created_demo.clone().unwrap();
        (demo.username, demo.password)
    }

    /// Waits until a message has left the spool, and returns its record.
    pub fn wait_until_done(&self, id: &str) -> sluice::store::MessageRecord {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let record = self
                .store()
                .message(id)
                .unwrap()
                .expect("the message exists");
            if record.status != sluice::store::MessageStatus::Submitted {
                return record;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "message {id} stayed in the spool"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A REST API client logged in as one account.
pub struct Api {
    pub base: String,
    pub http: reqwest::blocking::Client,
    pub token: String,
    pub account: u64,
}

impl Api {
    pub fn connect(server: &TestServer, account: u64, client_id: &str, secret: &str) -> Self {
        let base = format!("http://{}", server.server.api_addr);
        let http = reqwest::blocking::Client::new();
        let response = http
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("client_id", client_id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["token_type"], "bearer");
        Self {
            base,
            http,
            token: body["access_token"].as_str().unwrap().to_string(),
            account,
        }
    }

    pub fn demo(server: &TestServer) -> Self {
        let demo = server.server.created_demo.clone().unwrap();
        Self::connect(
            server,
            demo.account_id,
            &demo.client_id,
            &demo.client_secret,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base, self.account, path)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.token)
    }

    pub fn put(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.put(self.url(path)).bearer_auth(&self.token)
    }

    /// Submits and returns the new message's id from the Location header.
    pub fn submit(&self, message: serde_json::Value) -> String {
        let response = self.post("messages/submit").json(&message).send().unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::CREATED,
            "{:?}",
            response.text()
        );
        let location = response.headers()["location"].to_str().unwrap().to_string();
        assert!(
            location.starts_with(&format!("{}/{}/messages/", self.base, self.account)),
            "{location}"
        );
        location.rsplit('/').next().unwrap().to_string()
    }
}

/// A second account with its own API login.
pub fn second_account(server: &TestServer) -> Api {
    let secret = "other-secret";
    server.block_on(async {
        let store = server.store();
        let account = store.create_account("other").await.unwrap();
        let source = store
            .create_source(sluice::store::Source {
                id: 0,
                account_id: account.id,
                name: "other app".into(),
                allowed_networks: None,
                max_message_bytes: 1 << 20,
                require_tls: false,
                allow_plain_auth: false,
                feedback_address: None,
            })
            .await
            .unwrap();
        store
            .add_credential(
                &source,
                sluice::store::CredentialKind::Api,
                "other-api",
                secret,
            )
            .await
            .unwrap();
        assert_eq!(account.id, 2);
    });
    Api::connect(server, 2, "other-api", secret)
}

/// The `id` of an object the API answered, which Flowmailer's representation writes as a
/// string (a number would be written into a path with quotes around it).
pub fn id_of(object: &serde_json::Value) -> &str {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id is a string: {object}"))
}

/// The JSON detail of a message's last event of `kind`.
pub fn event_detail(server: &TestServer, id: &str, kind: &str) -> serde_json::Value {
    let event = server
        .store()
        .events(id)
        .unwrap()
        .into_iter()
        .rfind(|event| event.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} event: {:?}", event_kinds(server, id)));
    serde_json::from_str(event.detail.as_deref().unwrap()).unwrap()
}

/// The kinds of a message's events, in order.
pub fn event_kinds(server: &TestServer, id: &str) -> Vec<String> {
    server
        .store()
        .events(id)
        .unwrap()
        .into_iter()
        .map(|event| event.kind.to_string())
        .collect()
}

impl TestServer {
    /// Stores a guest component as a plugin of the demo account; returns its sha256.
    pub fn upload_guest(&self, component: &str) -> String {
        let component = guest_bytes(component);
        let sha256 = sluice::plugin::hex_sha256(&component);
        self.block_on(self.store().put_plugin(1, &sha256, component))
            .unwrap();
        sha256
    }

    /// Makes a flow of one step the demo account's default flow; returns the flow's id.
    pub fn set_default_flow(&self, plugin: &str, config: serde_json::Value) -> u64 {
        let step = sluice::store::Flowstep {
            plugin: plugin.to_string(),
            config,
            enabled_when: None,
        };
        self.set_default_flow_of(1, vec![step])
    }

    /// Makes a flow of these steps an account's default flow; returns the flow's id.
    pub fn set_default_flow_of(&self, account_id: u64, steps: Vec<sluice::store::Flowstep>) -> u64 {
        self.block_on(async {
            let store = self.store();
            let flow = store
                .create_flow(sluice::store::Flow {
                    id: 0,
                    account_id,
                    name: "test default".into(),
                    steps,
                    expiry_hours: None,
                })
                .await
                .unwrap();
            let routing = match store.routing(account_id).unwrap() {
                Some(routing) => sluice::flow::rules::Routing {
                    default_flow_id: flow.id,
                    ..routing
                },
                None => sluice::flow::rules::Routing {
                    rules: Vec::new(),
                    default_flow_id: flow.id,
                },
            };
            store.set_routing(account_id, routing).await.unwrap();
            flow.id
        })
    }
}

/// A plain text message for `POST /{account}/messages/submit`, with this subject.
pub fn email(subject: &str) -> serde_json::Value {
    serde_json::json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "subject": subject,
        "text": "Hello",
    })
}

/// Mail the server keeps instead of sending: its capture of the domains reserved for examples
/// (`[delivery] capture_example_domains`), for tests that read what the platform mailed (a
/// login code, an invitation) the way a newcomer's first messages are kept.
impl TestServer {
    /// Starts a server that delivers, with the capture on: mail to example domains is kept in
    /// its data folder (see [`TestServer::captured_to`]), never sent.
    pub fn start_capturing(adjust: impl FnOnce(&mut sluice::config::Config)) -> Self {
        Self::start(|config| {
            config.delivery.enabled = true;
            config.delivery.capture_example_domains = true;
            adjust(config);
        })
    }

    /// The server's data folder.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The copies the capture kept for `recipient` (its Delivered-To), oldest first.
    pub fn captured_to(&self, recipient: &str) -> Vec<String> {
        let folder = self
            .data_dir()
            .join(sluice::delivery::capture::CAPTURE_FOLDER);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Vec::new();
        };
        let delivered_to = format!("\r\nDelivered-To: {recipient}\r\n");
        let mut kept: Vec<(String, String)> = entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let name = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".eml")?
                    .to_string();
                let text = String::from_utf8_lossy(&std::fs::read(&path).ok()?).into_owned();
                text.contains(&delivered_to).then_some((name, text))
            })
            .collect();
        // Message ids begin with the time they were accepted.
        kept.sort();
        kept.into_iter().map(|(_, text)| text).collect()
    }

    /// Waits until the capture holds at least `count` copies for `recipient`, and returns
    /// them, oldest first.
    pub fn wait_for_captured(&self, recipient: &str, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let kept = self.captured_to(recipient);
            if kept.len() >= count {
                return kept;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {count} messages to {recipient} were captured",
                kept.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}
