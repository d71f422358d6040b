//! The durable store: accounts, sources, credentials, flows, plugins, messages and events,
//! written once over a storage layer ([`kv`]) whose backend today is one embedded redb file.
//!
//! Every change is a committed transaction before anyone is told it happened: a client hears
//! 250 or 201 only after its message is durable. Writers share commits (group commit): while
//! one transaction is being made durable, the next writers queue up and are committed
//! together, so concurrent submissions cost one fsync between them.

mod archive;
#[cfg(test)]
pub(crate) mod backends;
mod cluster;
mod compressed;
mod configuration;
mod credentials;
mod deletion;
mod delivery;
mod engagement;
mod identities;
mod kept;
pub mod kv;
mod listing;
pub mod model;
mod plugin_health;
mod quota;
mod retention;
mod returned;
mod users;
mod webhooks;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use kv::{AnyTable, Database, ReadOnlyTable, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use cluster::{NodeRecord, PLUGIN_CHANGES_KEPT, PluginChanges};
pub use deletion::StillNamed;
pub use delivery::{
    AttemptRecord, DeliveryJob, DeliveryState, DueLook, DueMessage, FilterEntry, FilterKey, Lease,
    filter_key,
};
pub use engagement::{Engagement, MAX_KEPT_ENGAGEMENTS};
pub use kept::{ErrorArchiveEntry, HeldCopy, SUBMITTED_KEPT_DAYS, SubmittedCopy};
pub use listing::{MessagePage, MessageSelection, PageStart};
use model::Routing;
pub use model::{
    Account, ArchiveEntry, Credential, CredentialKind, Event, EventKind, Flow, Flowstep,
    IdentityValidation, MessageRecord, MessageStatus, RecordCheck, SenderIdentity, Source,
    StepResult, StepResultOutcome, Template, present,
};
pub use quota::Kept;
pub use retention::Purged;
pub use returned::{ReturnedEffect, ReturnedMail};
pub use users::{
    AUDIT_KEPT_PER_ACCOUNT, AuditEntry, AuditOutcome, CodeCheck, NewUser, PendingCode, Role,
    SessionRecord, User,
};
pub use webhooks::{
    WebhookCallKey, WebhookCallState, WebhookDeadLetter, WebhookEndpoint, WebhookJob,
    WebhookOutcome, event_id,
};

const ACCOUNTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accounts");
const SOURCES: TableDefinition<u64, &[u8]> = TableDefinition::new("sources");
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::copied("credentials");
const FLOWS: TableDefinition<u64, &[u8]> = TableDefinition::copied("flows");
const ROUTING: TableDefinition<u64, &[u8]> = TableDefinition::copied("routing");
/// The largest encoded set of an account's flow rules: every message the account sends reads
/// them, so their size is bounded whichever way they are written (the API, the dashboard).
pub const MAX_ROUTING_BYTES: usize = 256 << 10;
const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
const BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("bodies");
const EVENTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("events");
/// Each account's messages, in id (so submission) order: a list reads its own account's
/// entries and decodes only the records of the page it shows. Written in the transaction that
/// spools a message; a message's account never changes, and whatever removes a message must
/// remove its entry in the same transaction. Built from `messages` when a store made before
/// it is opened.
const ACCOUNT_MESSAGES: TableDefinition<(u64, &str), ()> = TableDefinition::new("account_messages");
/// Messages accepted but not yet through their flow: what a restart resumes.
const SPOOL: TableDefinition<&str, u64> = TableDefinition::new("spool");
/// Messages through their flow and ready to be delivered.
const OUTBOX: TableDefinition<&str, u64> = TableDefinition::new("outbox");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Which account uploaded which plugin: a flow may only use its own account's plugins.
const PLUGIN_OWNERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("plugin_owners");
/// The same pairs by plugin, (sha256, account): whether another account still owns a plugin
/// is one range, not a scan of every account's plugins. Written beside `plugin_owners`;
/// built from it when a store made before it is opened.
const OWNERS_BY_PLUGIN: TableDefinition<(&str, u64), ()> = TableDefinition::new("owners_by_plugin");

/// Every table of the store, the one list of them: opening a store creates each, and the
/// retention test walks each for what a purged message leaves behind (and refuses a table the
/// database has beyond this list, so a new table cannot be forgotten silently).
pub(crate) const TABLES: &[&dyn AnyTable] = &[
    &ACCOUNTS,
    &SOURCES,
    &CREDENTIALS,
    &FLOWS,
    &ROUTING,
    &PLUGINS,
    &MESSAGES,
    &ACCOUNT_MESSAGES,
    &retention::MESSAGE_RETENTION,
    &BODIES,
    &EVENTS,
    &SPOOL,
    &OUTBOX,
    &COUNTERS,
    &PLUGIN_OWNERS,
    &OWNERS_BY_PLUGIN,
    &credentials::SOURCE_CREDENTIALS,
    &identities::IDENTITIES,
    &identities::IDENTITY_DOMAINS,
    &identities::DOMAIN_SIGNERS,
    &identities::TEMPLATES,
    &identities::TEMPLATE_NAMES,
    &archive::ARCHIVES,
    &archive::ARCHIVE_BODIES,
    &archive::ARCHIVE_EXPIRY,
    &kept::SUBMITTED,
    &kept::SUBMITTED_KEPT,
    &kept::SUBMITTED_EXPIRY,
    &kept::ERROR_ARCHIVES,
    &kept::ERROR_ARCHIVE_BODIES,
    &delivery::OUTBOX_DUE,
    &delivery::DELIVERIES,
    &delivery::FILTERS,
    &delivery::FILTER_IDS,
    &returned::RETURNED,
    &returned::RETURNED_BODIES,
    &returned::RETURNED_PENDING,
    &returned::SENT_MESSAGE_IDS,
    &users::USERS,
    &users::USER_EMAILS,
    &users::LOGIN_CODES,
    &users::SESSIONS,
    &users::USER_SESSIONS,
    &users::RESET_TOKENS,
    &users::LOGIN_AUDIT,
    &users::PLATFORM,
    &webhooks::WEBHOOK_ENDPOINTS,
    &webhooks::WEBHOOK_SUBSCRIPTIONS,
    &webhooks::WEBHOOK_CALLS,
    &webhooks::WEBHOOK_DUE,
    &webhooks::WEBHOOK_DEAD_LETTERS,
    &engagement::ENGAGEMENT,
    &plugin_health::DISABLED_PLUGINS,
    &cluster::NODES,
    &cluster::SHARED_SECRETS,
    &cluster::PLUGIN_CHANGES,
];

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(Box<redb::Error>),
    /// PostgreSQL failed, refused, or could not be reached.
    #[error("PostgreSQL: {0}")]
    Postgres(Box<kv::postgres::PostgresError>),
    /// A record could not be (de)serialized.
    #[error("record encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// A referenced record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A record with this key already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// Hashing a secret failed.
    #[error("hashing a secret: {0}")]
    Hash(String),
    /// The writer thread is gone (the store is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A record would be larger than the store keeps of its kind.
    #[error("{0}")]
    TooLarge(String),
    /// The record is used by another, which would be left pointing at nothing.
    #[error("{0}")]
    InUse(String),
    /// The account keeps as many records of this kind as it may ([`Kept::limit`]).
    #[error("{0}")]
    Full(String),
    /// A record changed since the caller read it, so a change made from that reading is
    /// refused (optimistic concurrency: two editors, or a stale page).
    #[error("{0} changed since it was read")]
    Changed(String),
    /// A message body could not be compressed or a stored one decompressed.
    #[error("message body: {0}")]
    Body(String),
}

impl StoreError {
    /// Whether the database refused a transaction only because a concurrent one conflicted
    /// with it: the same changes may succeed in a new transaction.
    pub fn is_transient_conflict(&self) -> bool {
        matches!(self, Self::Postgres(error) if error.is_transient_conflict())
    }

    /// Whether the database failed, rather than a change deciding to refuse: on PostgreSQL
    /// a change's writes go out with a later statement, so the change whose statement met the
    /// failure need not be the one that caused it.
    pub(crate) fn is_database_failure(&self) -> bool {
        matches!(self, Self::Postgres(_) | Self::Database(_))
    }
}

/// A new message for the spool: its record and its RFC 5322 bytes.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The record (status SUBMITTED).
    pub record: MessageRecord,
    /// The message as submitted.
    pub body: Vec<u8>,
}

/// The id of the flow an account's rules picked for a message, and that flow (none when it
/// does not exist or is another account's).
pub type RoutedFlow = (u64, Option<Arc<Flow>>);

/// A message's record and its current RFC 5322 bytes, if it has them.
pub type MessageWithBody = (MessageRecord, Option<Vec<u8>>);

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: writer::GroupWriter,
    /// Writes a message's way through spool, flow and delivery, which every node makes at
    /// once (see [`Store::write_row_locking`]); on redb the same writer as `writer`.
    row_locking_writer: writer::GroupWriter,
    webhooks: Arc<webhooks::WebhookHooks>,
    /// This node's copies of the configuration every message reads.
    configuration: Arc<configuration::ConfigurationCopies>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// A new message id: submission time in microseconds first, strictly increasing within this
/// process so that ids sort in submission order even within one clock tick, then randomness
/// so ids of different processes never collide.
pub fn new_message_id() -> String {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64);
    let previous = LAST
        .fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |last| Some(now.max(last + 1)),
        )
        .unwrap_or_else(|last| last);
    let stamp = now.max(previous + 1);
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).expect("the OS provides randomness");
    format!("{stamp:014x}{}", hex::encode(random))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// An account's flow rules as stored; refused past [`MAX_ROUTING_BYTES`].
fn encoded_routing(routing: &Routing) -> Result<Vec<u8>, StoreError> {
    let encoded = encode(routing)?;
    if encoded.len() > MAX_ROUTING_BYTES {
        return Err(StoreError::TooLarge(format!(
            "an account's flow rules take at most {} KiB (these take {} KiB)",
            MAX_ROUTING_BYTES >> 10,
            encoded.len().div_ceil(1024)
        )));
    }
    Ok(encoded)
}

/// The next number of `counter`, its row locked until the transaction ends (so transactions
/// of either isolation taking numbers at once take different ones).
fn next_id(txn: &WriteTransaction, counter: &str) -> Result<u64, StoreError> {
    let mut counters = txn.open_table(COUNTERS)?;
    // A row to lock: two transactions taking a counter's first number must not both see none.
    counters.insert_if_absent(counter, 0)?;
    let next = counters.lock(counter)?.map_or(1, |value| value + 1);
    counters.insert(counter, next)?;
    Ok(next)
}

/// `change`, followed by [`configuration::note_change`] when it opened a table this node keeps
/// copies of: however a change reaches those tables, the copies are let go.
fn noting_configuration_changes<T>(
    change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
) -> impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static {
    move |txn| {
        kv::take_copied_table_opened();
        let value = change(txn)?;
        if kv::take_copied_table_opened() {
            configuration::note_change(txn)?;
        }
        Ok(value)
    }
}

/// Appends events after a message's last one, writes its record with the number the next
/// event gets, and queues the webhook calls the events make, all in `txn`. `message` must be
/// the record as read under its lock ([`record_in`]) in `txn`, or a copy carrying that
/// record's `next_event`: a stale number would write over events.
fn append_events(
    txn: &WriteTransaction,
    hooks: &webhooks::WebhookHooks,
    message: &mut MessageRecord,
    events: &[Event],
) -> Result<(), StoreError> {
    let id = message.id.as_str();
    let mut table = txn.open_table(EVENTS)?;
    let next = match message.next_event {
        Some(next) => next,
        // Written before records kept the number: one past the last event.
        None => table
            .range((id, 0)..=(id, u32::MAX))?
            .next_back()
            .transpose()?
            .map_or(0, |(key, _)| key.1 + 1),
    };
    let mut after = next;
    for event in events {
        table.insert((id, after), encode(event)?.as_slice())?;
        after = after
            .checked_add(1)
            .ok_or_else(|| StoreError::TooLarge(format!("message {id} has too many events")))?;
    }
    drop(table);
    message.next_event = Some(after);
    txn.open_table(MESSAGES)?
        .insert(id, encode(&*message)?.as_slice())?;
    webhooks::queue_calls(txn, hooks, message, next, events)
}

/// Fills `owners_by_plugin` from `plugin_owners`, for a store made before it existed (in the
/// transaction that creates the table, so it is never seen half-built).
fn index_owners_by_plugin(txn: &WriteTransaction) -> Result<(), StoreError> {
    let owners = txn.open_table(PLUGIN_OWNERS)?;
    let mut by_plugin = txn.open_table(OWNERS_BY_PLUGIN)?;
    for entry in owners.iter()? {
        let (key, _) = entry?;
        let (account_id, sha256) = key;
        by_plugin.insert((sha256.as_str(), account_id), ())?;
    }
    Ok(())
}

/// Fills the per-account message index from the message records, for a store made before
/// the index existed (in the transaction that creates the index table, so it is never seen
/// half-built).
fn index_messages_by_account(txn: &WriteTransaction) -> Result<(), StoreError> {
    /// The one field of a record the index needs.
    #[derive(serde::Deserialize)]
    struct AccountOf {
        account_id: u64,
    }
    let records = txn.open_table(MESSAGES)?;
    let mut index = txn.open_table(ACCOUNT_MESSAGES)?;
    for entry in records.iter()? {
        let (id, record) = entry?;
        let record: AccountOf = decode(&record)?;
        index.insert((record.account_id, id.as_str()), ())?;
    }
    if !records.is_empty()? {
        tracing::info!(
            messages = records.len()?,
            "indexed the stored messages by account"
        );
    }
    Ok(())
}

/// The index entries of one account, oldest message first.
fn account_entries<'table>(
    index: &'table ReadOnlyTable<(u64, &'static str), ()>,
    account_id: u64,
) -> Result<kv::Range<'table, (u64, &'static str), ()>, StoreError> {
    Ok(match account_id.checked_add(1) {
        Some(next) => index.range((account_id, "")..(next, ""))?,
        None => index.range((account_id, "")..)?,
    })
}

/// A message's record as a write transaction sees it, its row locked until the transaction
/// ends: the message's row is the lock every change to a message's events takes first (see
/// [`Store::write_row_locking`]).
fn record_in(txn: &WriteTransaction, id: &str) -> Result<Option<MessageRecord>, StoreError> {
    txn.open_table(MESSAGES)?
        .lock(id)?
        .map(|value| decode(&value))
        .transpose()
}

/// Hashes a secret with argon2 and a random salt.
pub fn hash_secret(secret: &str) -> Result<String, StoreError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| StoreError::Hash(error.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| StoreError::Hash(error.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| StoreError::Hash(error.to_string()))
}

/// Checks a secret against an argon2 hash.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// An argon2 hash of a random secret, checked when a username is unknown, so the answer
/// takes as long either way and does not tell which usernames exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2x1aWNlLWR1bW15LXNhbHQ$9s1ksXhfGyUBMYDaeBf3ElKeANhWaU8gKpcCtpk5cjc";

/// Argon2 runs at once, checks and hashes alike: each takes ~19 MiB and a core for tens of
/// milliseconds, so a flood of logins, new secrets or new passwords must queue rather than
/// exhaust memory.
static VERIFICATIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `bytes` random bytes in hex: a new secret or a name's random part, as credentials get them.
pub fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random).map_err(|error| StoreError::Hash(error.to_string()))?;
    Ok(hex::encode(random))
}

/// [`hash_secret`] off the async workers, queued with every other Argon2 run.
pub async fn hash_secret_queued(secret: String) -> Result<String, StoreError> {
    let _permit = VERIFICATIONS
        .acquire()
        .await
        .map_err(|_| StoreError::Closed)?;
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|error| StoreError::Hash(error.to_string()))?
}

/// Checks a secret against a credential's hash (or a dummy hash when there is none), off the
/// async workers and at most a few at a time.
pub async fn verify_credential(secret: String, hash: Option<String>) -> bool {
    let Ok(_permit) = VERIFICATIONS.acquire().await else {
        return false;
    };
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
    let valid = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
        .await
        .unwrap_or(false);
    valid && known
}

/// The record of a message found in the per-account index.
fn read_indexed(
    records: &ReadOnlyTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<MessageRecord, StoreError> {
    let record = records
        .get(id)?
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
    decode(&record)
}

impl Store {
    /// Opens (or creates) the database file and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Arc::new(kv::redb::open(path)?);
        let txn = db.begin_write()?;
        let tables = txn.table_names()?;
        let lacks = |name: &str| !tables.iter().any(|table| table == name);
        let has_account_index = !lacks(ACCOUNT_MESSAGES.name());
        let has_plugin_index = !lacks(OWNERS_BY_PLUGIN.name());
        let has_credential_index = !lacks(credentials::SOURCE_CREDENTIALS.name());
        let has_retention_index = !lacks(retention::MESSAGE_RETENTION.name());
        for table in TABLES {
            table.create(&txn)?;
        }
        identities::assign_domain_signers(&txn)?;
        if !has_account_index {
            index_messages_by_account(&txn)?;
        }
        if !has_plugin_index {
            index_owners_by_plugin(&txn)?;
        }
        if !has_credential_index {
            credentials::index_credentials_by_source(&txn)?;
        }
        if !has_retention_index {
            retention::index_stored_messages(&txn)?;
        }
        txn.commit()?;
        Self::start(db)
    }

    /// Opens the PostgreSQL database at `url` (a `postgres://` URL or `key=value` pairs),
    /// applying the schema migrations it lacks; refuses a schema newer than this build knows.
    pub fn open_postgres(url: &str, pool: kv::postgres::PoolSettings) -> Result<Self, StoreError> {
        Self::start(Arc::new(kv::postgres::open(url, pool)?))
    }

    /// Opens the store `config` names: PostgreSQL when `[store] url` is set, else the redb
    /// file in the data folder.
    pub fn open_configured(config: &crate::config::Config) -> Result<Self, StoreError> {
        match &config.store.url {
            Some(url) => Self::open_postgres(url, config.store.pool_settings()),
            None => Self::open(&config.store_path()),
        }
    }

    /// What opening either backend shares: the webhook hooks and the group writer.
    fn start(db: Arc<Database>) -> Result<Self, StoreError> {
        let read = db.begin_read()?;
        let hooks = Arc::new(webhooks::WebhookHooks::load(&read, db.is_shared())?);
        let configuration = Arc::new(configuration::ConfigurationCopies::new(
            db.is_shared(),
            configuration::change_counter(&read)?,
        ));
        drop(read);
        let committed: writer::AfterCommit = {
            let hooks = Arc::clone(&hooks);
            let configuration = Arc::clone(&configuration);
            Arc::new(move || {
                hooks.committed();
                configuration.committed();
            })
        };
        let writer = writer::GroupWriter::start(
            Arc::clone(&db),
            writer::Isolation::Serializable,
            1,
            Arc::clone(&committed),
        );
        // redb takes one write transaction at a time: a second writer would only wait for the
        // first, and make smaller groups. On PostgreSQL each group's statements are round
        // trips: one writer thread would spend most of its time waiting for answers while
        // the next group waits for it.
        let row_locking_writer = if db.is_shared() {
            writer::GroupWriter::start(
                Arc::clone(&db),
                writer::Isolation::RowLocking,
                db.concurrent_writers(),
                committed,
            )
        } else {
            writer.clone()
        };
        Ok(Self {
            db,
            writer,
            row_locking_writer,
            webhooks: hooks,
            configuration,
        })
    }

    /// How many times the writer ran a group of changes again because a concurrent
    /// transaction (another node's) conflicted with it.
    pub fn conflicts_retried(&self) -> u64 {
        self.writer.conflicts_retried() + self.row_locking_writer.conflicts_retried()
    }

    /// Whether other nodes may work on this store at the same time (PostgreSQL), so that
    /// queued work is claimed with a lease before it is done; a redb file belongs to one
    /// process, whose own bookkeeping is enough.
    pub fn is_shared(&self) -> bool {
        self.db.is_shared()
    }

    /// Runs `change` in a write transaction shared with other writers, and returns once it is
    /// durable. `change` may run twice (alone, if a transaction shared with a failing writer
    /// had to be rolled back), so it must not have effects outside the transaction.
    pub async fn write<T: Send + 'static>(
        &self,
        change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer
            .write(noting_configuration_changes(change))
            .await
    }

    /// Runs `change` as [`Store::write`] does, for the changes every node makes at once to
    /// messages of its own (spooling, finishing a flow, recording events and delivery
    /// attempts). On PostgreSQL these run at `READ COMMITTED`, so two busy nodes do not abort
    /// each other's transactions over rows neither shares; in exchange `change` must lock
    /// ([`kv::Table::lock`]) what its decisions rest on before it reads the rest, in this
    /// order: a queued message's due entry, then the message's record (which reading it in
    /// a write transaction locks). A message's events are appended only under its record's
    /// lock.
    pub async fn write_row_locking<T: Send + 'static>(
        &self,
        change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.row_locking_writer
            .write(noting_configuration_changes(change))
            .await
    }

    /// The same as [`Store::write`], for threads outside the async runtime.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        change: impl Fn(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer
            .write_blocking(noting_configuration_changes(change))
    }

    fn get<K: kv::Key, T: DeserializeOwned>(
        &self,
        table: TableDefinition<K, &'static [u8]>,
        key: K::SelfType<'_>,
    ) -> Result<Option<T>, StoreError> {
        self.db
            .get_one(table, key)?
            .map(|value| decode(&value))
            .transpose()
    }

    // ---- accounts, sources, credentials

    /// Creates an account.
    pub async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            let account = Account {
                id: next_id(txn, "account")?,
                name: name.clone(),
                bounce_classifier: None,
            };
            txn.open_table(ACCOUNTS)?
                .insert(account.id, encode(&account)?.as_slice())?;
            Ok(account)
        })
        .await
    }

    /// Every account, in id order.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.all_of(ACCOUNTS, |_: &Account| true)
    }

    /// An account by id.
    pub fn account(&self, id: u64) -> Result<Option<Account>, StoreError> {
        self.get(ACCOUNTS, id)
    }

    /// Installs (or, with `None`, removes) an account's own bounce classifier.
    pub async fn set_bounce_classifier(
        &self,
        account_id: u64,
        sha256: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut accounts = txn.open_table(ACCOUNTS)?;
            let mut account: Account = accounts
                .get(account_id)?
                .map(|value| decode(&value))
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))?;
            account.bounce_classifier = sha256.clone();
            accounts.insert(account_id, encode(&account)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Replaces a source's settings (its id and account stay).
    pub async fn update_source(&self, source: Source) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut sources = txn.open_table(SOURCES)?;
            let existing: Option<Source> = sources
                .get(source.id)?
                .map(|value| decode(&value))
                .transpose()?;
            if existing.is_none_or(|existing| existing.account_id != source.account_id) {
                return Err(StoreError::NotFound(format!("source {}", source.id)));
            }
            sources.insert(source.id, encode(&source)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Creates a source; its id is assigned here.
    pub async fn create_source(&self, source: Source) -> Result<Source, StoreError> {
        self.check_room(source.account_id, Kept::Sources)?;
        self.write(move |txn| {
            let mut source = source.clone();
            if txn.open_table(ACCOUNTS)?.get(source.account_id)?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "account {}",
                    source.account_id
                )));
            }
            source.id = next_id(txn, "source")?;
            txn.open_table(SOURCES)?
                .insert(source.id, encode(&source)?.as_slice())?;
            Ok(source)
        })
        .await
    }

    /// A source by id.
    pub fn source(&self, id: u64) -> Result<Option<Source>, StoreError> {
        self.get(SOURCES, id)
    }

    /// Adds a credential for a source; the secret is stored only as an argon2 hash.
    pub async fn add_credential(
        &self,
        source: &Source,
        kind: CredentialKind,
        username: &str,
        secret: &str,
    ) -> Result<Credential, StoreError> {
        self.add_described_credential(source, kind, username, secret, None)
            .await
    }

    /// Adds a credential as [`Store::add_credential`] does, with the account's description of
    /// it.
    pub async fn add_described_credential(
        &self,
        source: &Source,
        kind: CredentialKind,
        username: &str,
        secret: &str,
        description: Option<String>,
    ) -> Result<Credential, StoreError> {
        self.check_room(source.account_id, Kept::Credentials)?;
        let secret_hash = hash_secret_queued(secret.to_string()).await?;
        let credential = Credential {
            username: username.to_string(),
            kind,
            source_id: source.id,
            account_id: source.account_id,
            secret_hash,
            description,
        };
        self.write(move |txn| {
            // The source may have been deleted while the secret was hashed: its credentials
            // went with it, and this one must not outlive it.
            let source_kept = txn
                .open_table(SOURCES)?
                .get(credential.source_id)?
                .map(|value| decode::<Source>(&value))
                .transpose()?
                .is_some_and(|source| source.account_id == credential.account_id);
            if !source_kept {
                return Err(StoreError::NotFound(format!(
                    "source {}",
                    credential.source_id
                )));
            }
            let mut table = txn.open_table(CREDENTIALS)?;
            if table.get(credential.username.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "credential {}",
                    credential.username
                )));
            }
            table.insert(
                credential.username.as_str(),
                encode(&credential)?.as_slice(),
            )?;
            txn.open_table(credentials::SOURCE_CREDENTIALS)?
                .insert((credential.source_id, credential.username.as_str()), ())?;
            Ok(credential.clone())
        })
        .await
    }

    /// A credential by username.
    pub fn credential(&self, username: &str) -> Result<Option<Credential>, StoreError> {
        self.get(CREDENTIALS, username)
    }

    // ---- flows and routing

    /// Creates a flow; its id is assigned here.
    pub async fn create_flow(&self, flow: Flow) -> Result<Flow, StoreError> {
        self.write(move |txn| {
            let mut flow = flow.clone();
            flow.id = next_id(txn, "flow")?;
            txn.open_table(FLOWS)?
                .insert(flow.id, encode(&flow)?.as_slice())?;
            Ok(flow)
        })
        .await
    }

    /// A flow by id.
    pub fn flow(&self, id: u64) -> Result<Option<Flow>, StoreError> {
        self.get(FLOWS, id)
    }

    /// Replaces a flow (same id and account).
    pub async fn update_flow(&self, flow: Flow) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(FLOWS)?;
            if table.get(flow.id)?.is_none() {
                return Err(StoreError::NotFound(format!("flow {}", flow.id)));
            }
            table.insert(flow.id, encode(&flow)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Replaces a flow as [`Store::update_flow`] does, but only while it is still as `read`:
    /// otherwise [`StoreError::Changed`], and nothing is written.
    pub async fn update_flow_unchanged(&self, flow: Flow, read: Flow) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(FLOWS)?;
            let stored: Option<Flow> = table
                .get(flow.id)?
                .map(|value| decode(&value))
                .transpose()?;
            match stored {
                None => return Err(StoreError::NotFound(format!("flow {}", flow.id))),
                Some(stored) if stored != read => {
                    return Err(StoreError::Changed(format!("flow {}", flow.id)));
                }
                Some(_) => {}
            }
            table.insert(flow.id, encode(&flow)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The flows of an account.
    pub fn flows_of(&self, account_id: u64) -> Result<Vec<Flow>, StoreError> {
        self.all_of(FLOWS, |flow: &Flow| flow.account_id == account_id)
    }

    /// The sources of an account.
    pub fn sources_of(&self, account_id: u64) -> Result<Vec<Source>, StoreError> {
        self.all_of(SOURCES, |source: &Source| source.account_id == account_id)
    }

    fn all_of<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &'static [u8]>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let mut found = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            let item: T = decode(&value)?;
            if keep(&item) {
                found.push(item);
            }
        }
        Ok(found)
    }

    /// Sets an account's flow rules and default flow; refused past [`MAX_ROUTING_BYTES`].
    pub async fn set_routing(&self, account_id: u64, routing: Routing) -> Result<(), StoreError> {
        let encoded = encoded_routing(&routing)?;
        self.write(move |txn| {
            txn.open_table(ROUTING)?
                .insert(account_id, encoded.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Sets an account's flow rules as [`Store::set_routing`] does, but only while they are
    /// still as `read` (`None`: the account had none): otherwise [`StoreError::Changed`], and
    /// nothing is written.
    pub async fn set_routing_unchanged(
        &self,
        account_id: u64,
        routing: Routing,
        read: Option<Routing>,
    ) -> Result<(), StoreError> {
        let encoded = encoded_routing(&routing)?;
        self.write(move |txn| {
            let mut table = txn.open_table(ROUTING)?;
            let stored: Option<Routing> = table
                .get(account_id)?
                .map(|value| decode(&value))
                .transpose()?;
            if stored != read {
                return Err(StoreError::Changed(format!(
                    "the flow rules of account {account_id}"
                )));
            }
            table.insert(account_id, encoded.as_slice())?;
            Ok(())
        })
        .await
    }

    /// An account's flow rules and default flow.
    pub fn routing(&self, account_id: u64) -> Result<Option<Routing>, StoreError> {
        self.get(ROUTING, account_id)
    }

    /// The account's flow rules and the flow `select` picks by them (the flow is none when it
    /// does not exist or is another account's; both are none when the account has no rules).
    pub fn routed_flow(
        &self,
        account_id: u64,
        select: impl FnOnce(&Routing) -> u64,
    ) -> Result<Option<RoutedFlow>, StoreError> {
        // This node's copies: a change made through another node is seen from its next look
        // (see `configuration`).
        let Some(routing) = self.copied_routing(account_id)? else {
            return Ok(None);
        };
        let flow_id = select(&routing);
        Ok(Some((flow_id, self.copied_flow(account_id, flow_id)?)))
    }

    // ---- plugins

    /// Stores a plugin component by its sha256, owned by (usable in the flows of) an account.
    pub async fn put_plugin(
        &self,
        account_id: u64,
        sha256: &str,
        component: Vec<u8>,
    ) -> Result<(), StoreError> {
        if !self.owns_plugin(account_id, sha256)? {
            self.check_room(account_id, Kept::Plugins)?;
        }
        let sha256 = sha256.to_string();
        self.write(move |txn| {
            txn.open_table(PLUGINS)?
                .insert(sha256.as_str(), component.as_slice())?;
            txn.open_table(PLUGIN_OWNERS)?
                .insert((account_id, sha256.as_str()), ())?;
            txn.open_table(OWNERS_BY_PLUGIN)?
                .insert((sha256.as_str(), account_id), ())?;
            cluster::note_plugin_change(txn, &sha256)?;
            Ok(())
        })
        .await
    }

    /// Takes an uploaded plugin away from an account: `NotFound` when the account does not own
    /// it, `InUse` while one of its flows or its bounce classifier uses it. The component
    /// itself goes once no account owns it.
    pub async fn remove_plugin(&self, account_id: u64, sha256: &str) -> Result<(), StoreError> {
        // Read outside the writer: a scan over every account's flows must not hold up the
        // commits of other accounts' mail, nor a refusal make the writer retry its group one
        // by one. A flow saved to name the plugin between this read and the removal holds its
        // messages with "plugin not found", harming only its own account.
        if !self.owns_plugin(account_id, sha256)? {
            return Err(StoreError::NotFound(format!("plugin {sha256}")));
        }
        let account = self.account(account_id)?;
        if account.is_some_and(|account| account.bounce_classifier.as_deref() == Some(sha256)) {
            return Err(StoreError::InUse(
                "the plugin is the account's bounce classifier".into(),
            ));
        }
        let used_by = self
            .flows_of(account_id)?
            .into_iter()
            .find(|flow| flow.steps.iter().any(|step| step.plugin == sha256));
        if let Some(flow) = used_by {
            return Err(StoreError::InUse(format!(
                "flow {} ({}) runs the plugin",
                flow.id, flow.name
            )));
        }
        let sha256 = sha256.to_string();
        self.write(move |txn| {
            txn.open_table(PLUGIN_OWNERS)?
                .delete((account_id, sha256.as_str()))?;
            let mut by_plugin = txn.open_table(OWNERS_BY_PLUGIN)?;
            by_plugin.delete((sha256.as_str(), account_id))?;
            let still_owned = by_plugin
                .range((sha256.as_str(), 0)..=(sha256.as_str(), u64::MAX))?
                .next()
                .is_some();
            if !still_owned {
                txn.open_table(PLUGINS)?.delete(sha256.as_str())?;
            }
            txn.open_table(plugin_health::DISABLED_PLUGINS)?
                .delete((sha256.as_str(), account_id))?;
            cluster::note_plugin_change(txn, &sha256)?;
            Ok(())
        })
        .await
    }

    /// Whether an account uploaded this plugin.
    pub fn owns_plugin(&self, account_id: u64, sha256: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLUGIN_OWNERS)?;
        Ok(table.get((account_id, sha256))?.is_some())
    }

    /// The sha256s of the plugins an account uploaded, in order.
    pub fn plugins_owned_by(&self, account_id: u64) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLUGIN_OWNERS)?;
        let mut owned = Vec::new();
        for entry in table.range((account_id, "")..(account_id.saturating_add(1), ""))? {
            let (key, _) = entry?;
            owned.push(key.1.to_string());
        }
        Ok(owned)
    }

    /// Whether a plugin component is stored.
    pub fn has_plugin(&self, sha256: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let owners = txn.open_table(OWNERS_BY_PLUGIN)?;
        Ok(owners
            .range((sha256, 0)..=(sha256, u64::MAX))?
            .next()
            .transpose()?
            .is_some())
    }

    /// A plugin component by sha256.
    pub fn plugin(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLUGINS)?;
        table.get(sha256)
    }

    // ---- messages

    /// Spools new messages with their SUBMITTED events, in one durable transaction; returns
    /// their records as kept.
    pub async fn spool(&self, messages: Vec<NewMessage>) -> Result<Vec<MessageRecord>, StoreError> {
        let hooks = Arc::clone(&self.webhooks);
        // Compressed here, not in the writer thread every account's commits wait for.
        let (records_in, bodies): (Vec<MessageRecord>, Vec<Vec<u8>>) = messages
            .into_iter()
            .map(|message| {
                // Its SUBMITTED event is number 0.
                let record = MessageRecord {
                    next_event: Some(1),
                    ..message.record
                };
                (record, message.body)
            })
            .unzip();
        let packed = compressed::pack_all(bodies).await?;
        let kept = records_in.clone();
        self.write_row_locking(move |txn| {
            let mut records = txn.open_table(MESSAGES)?;
            let mut bodies = txn.open_table(BODIES)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut spool = txn.open_table(SPOOL)?;
            let mut by_account = txn.open_table(ACCOUNT_MESSAGES)?;
            let mut by_submission = txn.open_table(retention::MESSAGE_RETENTION)?;
            for (record, body) in records_in.iter().zip(&packed) {
                let id = record.id.as_str();
                records.insert(id, encode(record)?.as_slice())?;
                by_account.insert((record.account_id, id), ())?;
                by_submission.insert((record.submitted_at, id), ())?;
                bodies.insert(id, body.as_slice())?;
                let event = Event {
                    kind: EventKind::Submitted,
                    at: record.submitted_at,
                    detail: record
                        .resent_from
                        .as_ref()
                        .map(|original| format!("resent from message {original}")),
                };
                events.insert((id, 0), encode(&event)?.as_slice())?;
                spool.insert(id, record.submitted_at)?;
                webhooks::queue_calls(txn, &hooks, record, 0, &[event])?;
            }
            drop((records, bodies, events, spool, by_account, by_submission));
            for record in &records_in {
                let Some(original) = &record.resent_from else {
                    continue;
                };
                // The original tells where it went, in the transaction that makes the new
                // message: neither is ever seen without the other.
                let mut original = record_in(txn, original)?
                    .ok_or_else(|| StoreError::NotFound(format!("message {original}")))?;
                let resent = Event {
                    kind: EventKind::Resent,
                    at: record.submitted_at,
                    detail: Some(format!("as message {} to {}", record.id, record.recipient)),
                };
                append_events(txn, &hooks, &mut original, &[resent])?;
            }
            Ok(())
        })
        .await?;
        Ok(kept)
    }

    /// Ids of the messages still waiting for their flow, oldest first.
    pub fn spooled(&self) -> Result<Vec<String>, StoreError> {
        self.spooled_before(u64::MAX)
    }

    /// Ids of the messages submitted before `before` (milliseconds since the Unix epoch) and
    /// still waiting for their flow, oldest first.
    pub fn spooled_before(&self, before: u64) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SPOOL)?;
        let mut ids: Vec<(u64, String)> = Vec::new();
        for entry in table.iter()? {
            let (id, at) = entry?;
            if at < before {
                ids.push((at, id));
            }
        }
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    /// Ids of the messages ready for delivery.
    pub fn outbox(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        table.iter()?.map(|entry| entry.map(|(id, _)| id)).collect()
    }

    /// A message record.
    pub fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        self.get(MESSAGES, id)
    }

    /// A message's record with its current RFC 5322 bytes (none when it has no body), read
    /// together: what running its flow starts from.
    pub fn message_with_body(&self, id: &str) -> Result<Option<MessageWithBody>, StoreError> {
        let (Some(record), body) = self.db.get_together(((MESSAGES, id), (BODIES, id)))? else {
            return Ok(None);
        };
        let body = body.map(|value| compressed::unpack(&value)).transpose()?;
        Ok(Some((decode(&record)?, body)))
    }

    /// A message's current RFC 5322 bytes.
    pub fn body(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_one(BODIES, id)?
            .map(|value| compressed::unpack(&value))
            .transpose()
    }

    /// A message's events, in order.
    pub fn events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        table
            .range((id, 0)..=(id, u32::MAX))?
            .map(|entry| {
                let (_, value) = entry?;
                decode(&value)
            })
            .collect()
    }

    /// Every message record of an account, oldest first.
    pub fn messages_of(&self, account_id: u64) -> Result<Vec<MessageRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(ACCOUNT_MESSAGES)?;
        let records = txn.open_table(MESSAGES)?;
        account_entries(&index, account_id)?
            .map(|entry| read_indexed(&records, &entry?.0.1))
            .collect()
    }

    /// The ids of an account's messages, oldest first, read from the index alone.
    pub fn message_ids_of(&self, account_id: u64) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(ACCOUNT_MESSAGES)?;
        account_entries(&index, account_id)?
            .map(|entry| Ok(entry?.0.1))
            .collect()
    }

    /// Adds an event to a message (an open, a click...).
    pub async fn append_event(&self, id: &str, event: Event) -> Result<(), StoreError> {
        let key = id.to_string();
        let hooks = Arc::clone(&self.webhooks);
        // A missing message is an answer, not a failure: returning an error here would roll
        // back the transaction this writer shares with others.
        let found = self
            .write_row_locking(move |txn| {
                let Some(mut message) = record_in(txn, &key)? else {
                    return Ok(false);
                };
                append_events(txn, &hooks, &mut message, std::slice::from_ref(&event))?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("message {id}")))
        }
    }

    /// Records the end of a message's flow: its new status, body, events, archived copy and
    /// the copy a step held (see [`HeldCopy`]), keeps its submitted copy, and moves it from the
    /// spool to the delivery queue (when processed; REJECT instead when its recipient is
    /// filtered) in one transaction. Returns the status recorded; none when the message had
    /// left the spool (another node finished it first, or it was deleted): its flow's outcome
    /// is recorded once, whichever node ran it.
    pub async fn finish_flow(
        &self,
        record: MessageRecord,
        body: Option<Vec<u8>>,
        events: Vec<Event>,
        archive: Option<(ArchiveEntry, Vec<u8>)>,
        held: Option<HeldCopy>,
        expires_at: u64,
    ) -> Result<Option<MessageStatus>, StoreError> {
        let hooks = Arc::clone(&self.webhooks);
        // Compressed here, not in the writer thread every account's commits wait for.
        let (archive_entry, mut archived_body) = archive.unzip();
        // The archive step's copy is usually the delivered body without the fields the DKIM
        // step put on top: kept as where it starts in the body, not packed and stored again.
        let archived_in_body = match (&body, &archived_body) {
            (Some(body), Some(archived)) if body.ends_with(archived) => {
                Some((body.len() - archived.len()) as u64)
            }
            _ => None,
        };
        if archived_in_body.is_some() {
            archived_body = None;
        }
        let held_step = held.as_ref().map(|held| held.step);
        let (has_body, has_archive) = (body.is_some(), archived_body.is_some());
        let bodies: Vec<Vec<u8>> = [body, archived_body, held.map(|held| held.body)]
            .into_iter()
            .flatten()
            .collect();
        let mut packed = compressed::pack_all(bodies).await?.into_iter();
        let body = if has_body { packed.next() } else { None };
        let archive = match archived_in_body {
            Some(from) => {
                archive_entry.map(|entry| (entry, archive::ArchivedCopy::InBody { from }))
            }
            None if has_archive => {
                archive_entry.zip(packed.next().map(archive::ArchivedCopy::Packed))
            }
            None => None,
        };
        let held = held_step.zip(packed.next());
        // The recipient as the flow left it (a step may have redirected this copy).
        let (filter_account, filter_address) = delivery::recipient_filter_key(&record);
        self.write_row_locking(move |txn| {
            let mut record = record.clone();
            // The record and the spool entry are locked (in the order a deletion locks them),
            // and the recipient's filter entry read with them: one statement.
            let ((spooled, in_spool), filter_entry) = txn.lock_and_read(
                ((MESSAGES, record.id.as_str()), (SPOOL, record.id.as_str())),
                (delivery::FILTERS, (filter_account, filter_address.as_str())),
            )?;
            if in_spool.is_none() {
                // Finished already (another node ran the same spooled message, and its outcome
                // is the one on record) or deleted meanwhile: nothing to record twice.
                return Ok(None);
            }
            let spooled: Option<MessageRecord> = spooled.map(|value| decode(&value)).transpose()?;
            txn.open_table(SPOOL)?.delete(record.id.as_str())?;
            // The recipient as spooled: a step may have redirected this copy since.
            let submitted_recipient = spooled.as_ref().map_or_else(
                || record.recipient.clone(),
                |spooled| spooled.recipient.clone(),
            );
            // The events are numbered from the record as locked, not as the flow read it.
            record.next_event = spooled.and_then(|spooled| spooled.next_event);
            append_events(txn, &hooks, &mut record, &events)?;
            if record.status == MessageStatus::Processed {
                delivery::queue_or_reject(txn, &hooks, &mut record, filter_entry, expires_at)?;
                if record.status == MessageStatus::Processed {
                    returned::index_sent(txn, &record)?;
                }
            }
            let id = record.id.as_str();
            txn.open_table(MESSAGES)?
                .insert(id, encode(&record)?.as_slice())?;
            let archived = archive
                .as_ref()
                .filter(|_| record.status == MessageStatus::Processed)
                .map(|(entry, _)| entry.expires_at);
            kept::keep_at_finish(
                txn,
                id,
                &submitted_recipient,
                body.is_some(),
                held.as_ref().map(|(step, packed)| (*step, packed)),
                kept::retention_end(archived, now_millis()),
            )?;
            if let Some(body) = &body {
                txn.open_table(BODIES)?.insert(id, body.as_slice())?;
            }
            // A message its filter list stopped is not sent, so it has nothing to view online.
            if let Some((entry, archived)) = &archive
                && record.status == MessageStatus::Processed
            {
                archive::put_archive(txn, entry, archived)?;
            }
            Ok(Some(record.status))
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};

    /// A submitted message's record for tests of the store.
    pub(crate) fn record(account_id: u64, subject: &str) -> MessageRecord {
        MessageRecord {
            id: new_message_id(),
            account_id,
            source_id: account_id,
            submitted_over: "api".into(),
            sender: "app@example.com".into(),
            recipient: "ann@example.net".into(),
            submitted_at: now_millis(),
            data: None,
            flow_selector: None,
            flow_id: None,
            status: MessageStatus::Submitted,
            status_reason: None,
            subject: Some(subject.into()),
            tags: Vec::new(),
            schedule_at: None,
            dmarc: None,
            header_message_id: None,
            resent_from: None,
            steps: Vec::new(),
            next_event: None,
        }
    }

    /// Opens the store at `path` again once the one dropped before has let go of it (its
    /// writer thread ends after the drop).
    pub(super) async fn reopen(path: &Path) -> Store {
        for _ in 0..100 {
            match Store::open(path) {
                Ok(store) => return store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        Store::open(path).unwrap()
    }

    /// Spools one message per subject, alternating between accounts 1 and 2; returns the ids
    /// of each account's messages, oldest first.
    async fn spool_alternating(store: &Store, count: usize) -> (Vec<String>, Vec<String>) {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for n in 0..count {
            let account = 1 + (n % 2) as u64;
            let record = record(account, &format!("m{n}"));
            if account == 1 {
                first.push(record.id.clone());
            } else {
                second.push(record.id.clone());
            }
            let body = b"Subject: x\r\n\r\nbody\r\n".to_vec();
            store
                .spool(vec![NewMessage { record, body }])
                .await
                .unwrap();
        }
        (first, second)
    }

    #[tokio::test]
    async fn a_plugin_stays_while_another_account_owns_it_in_a_store_made_before_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = Store::open(&path).unwrap();
            for account in [1, 2] {
                store
                    .put_plugin(account, "abc", vec![1, 2, 3])
                    .await
                    .unwrap();
            }
            store.put_plugin(3, "def", vec![4]).await.unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.delete_table(OWNERS_BY_PLUGIN).unwrap();
            txn.commit().unwrap();
        }
        let store = reopen(&path).await;
        store.remove_plugin(1, "abc").await.unwrap();
        assert!(!store.owns_plugin(1, "abc").unwrap());
        assert!(
            store.plugin("abc").unwrap().is_some(),
            "account 2 still owns it"
        );
        store.remove_plugin(2, "abc").await.unwrap();
        assert!(store.plugin("abc").unwrap().is_none());
        assert!(store.plugin("def").unwrap().is_some());
        assert!(matches!(
            store.remove_plugin(2, "def").await,
            Err(StoreError::NotFound(_))
        ));
    }

    on_both_backends!(an_accounts_messages_are_listed_without_reading_another_accounts_records);
    async fn an_accounts_messages_are_listed_without_reading_another_accounts_records(
        place: TestPlace,
    ) {
        let store = place.open();
        let (first, second) = spool_alternating(&store, 8).await;
        // Spoil every record of account 1: a list that decoded them would fail.
        let txn = store.db.begin_write().unwrap();
        {
            let mut records = txn.open_table(MESSAGES).unwrap();
            for id in &first {
                records.insert(id.as_str(), &b"not a record"[..]).unwrap();
            }
        }
        txn.commit().unwrap();
        let listed: Vec<String> = store
            .messages_of(2)
            .unwrap()
            .into_iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(listed, second);
        assert!(store.messages_of(1).is_err());
        assert!(store.messages_of(3).unwrap().is_empty());
    }

    on_both_backends!(a_page_holds_the_accounts_newest_messages_and_reads_only_its_records);
    async fn a_page_holds_the_accounts_newest_messages_and_reads_only_its_records(
        place: TestPlace,
    ) {
        let store = place.open();
        let (first, second) = spool_alternating(&store, 12).await;
        // Spoil the other account's records and this account's oldest one: only the records
        // of the page asked for are decoded.
        let txn = store.db.begin_write().unwrap();
        {
            let mut records = txn.open_table(MESSAGES).unwrap();
            for id in first.iter().chain(&second[..1]) {
                records.insert(id.as_str(), &b"not a record"[..]).unwrap();
            }
        }
        txn.commit().unwrap();
        let newest: Vec<String> = second.iter().rev().cloned().collect();
        let page = |first, count| {
            let listed = store.messages_page(2, first, count).unwrap();
            let ids: Vec<String> = listed.1.into_iter().map(|record| record.id).collect();
            (listed.0, ids)
        };
        assert_eq!(page(0, 2), (6, newest[..2].to_vec()));
        assert_eq!(page(2, 3), (6, newest[2..5].to_vec()));
        assert_eq!(page(6, 10), (6, Vec::new()));
        assert!(
            store.messages_page(2, 0, 6).is_err(),
            "the spoiled one is read"
        );
        assert_eq!(store.messages_page(7, 0, 10).unwrap(), (0, Vec::new()));
        assert_eq!(store.message_ids_of(1).unwrap(), first);
        assert_eq!(
            store.message_ids_of(u64::MAX).unwrap(),
            Vec::<String>::new()
        );
    }

    impl Store {
        /// Newest first by position, as the API's lists ask by default.
        fn messages_page(
            &self,
            account_id: u64,
            first: usize,
            count: usize,
        ) -> Result<(usize, Vec<MessageRecord>), StoreError> {
            let listed = self.message_list(
                account_id,
                &MessageSelection::default(),
                PageStart::Position(first),
                count,
            )?;
            Ok((listed.total.unwrap_or_default(), listed.records))
        }
    }

    #[test]
    fn a_store_made_before_the_account_index_gets_it_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let records: Vec<MessageRecord> = (0..5)
            .map(|n| record(if n == 2 { 1 } else { 2 }, &format!("m{n}")))
            .collect();
        {
            // The layout of before: message records and nothing to find them by account.
            let db = kv::redb::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(MESSAGES).unwrap();
                for record in &records {
                    table
                        .insert(record.id.as_str(), encode(record).unwrap().as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let ids = |account| -> Vec<String> {
            records
                .iter()
                .filter(|record| record.account_id == account)
                .map(|record| record.id.clone())
                .collect()
        };
        assert_eq!(store.message_ids_of(1).unwrap(), ids(1));
        assert_eq!(store.message_ids_of(2).unwrap(), ids(2));
        let (total, page) = store.messages_page(2, 0, 1).unwrap();
        assert_eq!(total, 4);
        assert_eq!(page[0].subject.as_deref(), Some("m4"));
    }

    on_both_backends!(events_follow_each_other_whoever_appends_them);
    /// Events are numbered from the record as locked: after a record written before it kept
    /// the next number (the events tell), and when a flow's outcome comes with a copy of the
    /// record read before other events were appended.
    async fn events_follow_each_other_whoever_appends_them(place: TestPlace) {
        let store = place.open();
        let spooled = record(1, "news");
        let id = spooled.id.clone();
        let body = b"Subject: news\r\n\r\nbody\r\n".to_vec();
        let new = NewMessage {
            record: spooled,
            body: body.clone(),
        };
        store.spool(vec![new]).await.unwrap();
        let stored = store.message(&id).unwrap().unwrap();
        assert_eq!(stored.next_event, Some(1));
        // The record as a version before the number was kept wrote it.
        let txn = store.db.begin_write().unwrap();
        let old = MessageRecord {
            next_event: None,
            ..stored
        };
        txn.open_table(MESSAGES)
            .unwrap()
            .insert(id.as_str(), encode(&old).unwrap().as_slice())
            .unwrap();
        txn.commit().unwrap();
        let event = |kind, detail: &str| Event {
            kind,
            at: now_millis(),
            detail: Some(detail.into()),
        };
        store
            .append_event(&id, event(EventKind::Opened, "first"))
            .await
            .unwrap();
        // The flow read its copy now; another event comes before its outcome is recorded.
        let mut copy = store.message(&id).unwrap().unwrap();
        assert_eq!(copy.next_event, Some(2));
        store
            .append_event(&id, event(EventKind::Clicked, "second"))
            .await
            .unwrap();
        copy.status = MessageStatus::Processed;
        let outcome = store
            .finish_flow(
                copy,
                Some(body),
                vec![event(EventKind::Processed, "third")],
                None,
                None,
                u64::MAX,
            )
            .await
            .unwrap();
        assert_eq!(outcome, Some(MessageStatus::Processed));
        let details: Vec<(EventKind, Option<String>)> = store
            .events(&id)
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.detail))
            .collect();
        assert_eq!(
            details,
            [
                (EventKind::Submitted, None),
                (EventKind::Opened, Some("first".into())),
                (EventKind::Clicked, Some("second".into())),
                (EventKind::Processed, Some("third".into())),
            ]
        );
        assert_eq!(store.message(&id).unwrap().unwrap().next_event, Some(4));
    }

    on_both_backends!(spooled_records_are_returned_as_a_flow_reads_them_back);
    async fn spooled_records_are_returned_as_a_flow_reads_them_back(place: TestPlace) {
        let store = place.open();
        let mut resent = record(1, "again");
        let original = record(1, "first");
        store
            .spool(vec![NewMessage {
                record: original.clone(),
                body: b"Subject: first\r\n\r\nx\r\n".to_vec(),
            }])
            .await
            .unwrap();
        resent.resent_from = Some(original.id.clone());
        let messages = vec![
            NewMessage {
                record: resent,
                body: b"Subject: again\r\n\r\nx\r\n".to_vec(),
            },
            NewMessage {
                record: record(1, "other"),
                body: b"Subject: other\r\n\r\ny\r\n".to_vec(),
            },
        ];
        let kept = store.spool(messages.clone()).await.unwrap();
        assert_eq!(kept.len(), 2);
        for (kept, message) in kept.into_iter().zip(messages) {
            // What the pipeline starts a flow from when it has the copy, and what it reads.
            let (read, body) = store.message_with_body(&kept.id).unwrap().unwrap();
            assert_eq!(read, kept);
            assert_eq!(body, Some(message.body));
        }
    }

    on_both_backends!(bodies_are_stored_compressed_and_read_back_as_they_were);
    async fn bodies_are_stored_compressed_and_read_back_as_they_were(place: TestPlace) {
        let store = place.open();
        let message = NewMessage {
            record: record(1, "news"),
            body: "From: shop@example.com\r\nSubject: news\r\n\r\nwinter coats and boots\r\n"
                .repeat(300)
                .into_bytes(),
        };
        let id = message.record.id.clone();
        store.spool(vec![message.clone()]).await.unwrap();
        let stored = {
            let txn = store.db.begin_read().unwrap();
            let bodies = txn.open_table(BODIES).unwrap();
            bodies.get(id.as_str()).unwrap().unwrap().len()
        };
        assert!(
            stored < message.body.len() / 4,
            "{stored} bytes stored for {}",
            message.body.len()
        );
        assert_eq!(store.body(&id).unwrap(), Some(message.body));
    }

    on_both_backends!(an_archived_copy_under_the_signatures_is_kept_once);
    async fn an_archived_copy_under_the_signatures_is_kept_once(place: TestPlace) {
        let store = place.open();
        let archived = "From: shop@example.com\r\nSubject: news\r\n\r\nwinter coats and boots\r\n"
            .repeat(300)
            .into_bytes();
        let signed = [
            b"DKIM-Signature: v=1; a=rsa-sha256; b=abc\r\n".as_slice(),
            &archived,
        ]
        .concat();
        // One flow whose DKIM step signed the archived copy, one whose later step changed it.
        let mut changed = archived.clone();
        changed.extend_from_slice(b"a footer a later step added\r\n");
        let mut stored_places = Vec::new();
        for final_body in [signed, changed] {
            let mut message = record(1, "news");
            store
                .spool(vec![NewMessage {
                    record: message.clone(),
                    body: b"Subject: news\r\n\r\nsubmitted\r\n".to_vec(),
                }])
                .await
                .unwrap();
            message.status = MessageStatus::Processed;
            let entry = ArchiveEntry {
                message_id: message.id.clone(),
                account_id: 1,
                stored_at: now_millis(),
                expires_at: u64::MAX,
            };
            store
                .finish_flow(
                    message.clone(),
                    Some(final_body.clone()),
                    Vec::new(),
                    Some((entry.clone(), archived.clone())),
                    None,
                    u64::MAX,
                )
                .await
                .unwrap();
            assert_eq!(
                store.archive(&message.id).unwrap(),
                Some((entry, archived.clone()))
            );
            assert_eq!(store.body(&message.id).unwrap(), Some(final_body));
            let txn = store.db.begin_read().unwrap();
            let table = txn.open_table(archive::ARCHIVE_BODIES).unwrap();
            let stored = table.get(message.id.as_str()).unwrap().unwrap();
            stored_places.push(archive::in_body_from(&stored));
        }
        // Signed: where it starts in the body, after the signature's field. Changed: its own copy.
        let signature = b"DKIM-Signature: v=1; a=rsa-sha256; b=abc\r\n".len() as u64;
        assert_eq!(stored_places, [Some(signature), None]);
    }

    /// What the store is asked from every kind of thread: async writes, sync reads, and the
    /// writes that read outside the writer first (a plugin's upload and removal, which check
    /// ownership and room), from the calling task and from many tasks at once.
    async fn used_from_this_thread_and_others(place: TestPlace) {
        let store = place.open();
        let account = store.create_account("threads").await.unwrap();
        assert_eq!(store.account(account.id).unwrap(), Some(account.clone()));
        store
            .put_plugin(account.id, "abc", vec![1, 2, 3])
            .await
            .unwrap();
        store
            .put_plugin(account.id, "abc", vec![1, 2, 3])
            .await
            .unwrap();
        assert_eq!(store.plugins_owned_by(account.id).unwrap(), ["abc"]);
        assert_eq!(store.plugin("abc").unwrap(), Some(vec![1, 2, 3]));
        store.remove_plugin(account.id, "abc").await.unwrap();
        assert!(store.plugin("abc").unwrap().is_none());
        assert!(matches!(
            store.remove_plugin(account.id, "abc").await,
            Err(StoreError::NotFound(_))
        ));

        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let message = NewMessage {
                        record: record(1 + n % 2, &format!("task {n}")),
                        body: format!("Subject: task {n}\r\n\r\nbody\r\n").into_bytes(),
                    };
                    let id = message.record.id.clone();
                    store.spool(vec![message]).await.unwrap();
                    assert_eq!(
                        store.message(&id).unwrap().unwrap().subject.as_deref(),
                        Some(format!("task {n}").as_str())
                    );
                    id
                })
            })
            .collect();
        let mut spooled = Vec::new();
        for task in tasks {
            spooled.push(task.await.unwrap());
        }
        spooled.sort();
        let mut listed = store.spooled().unwrap();
        listed.sort();
        assert_eq!(listed, spooled);

        let blocking = store.clone();
        let id = spooled[0].clone();
        let (named, body) = tokio::task::spawn_blocking(move || {
            let named = blocking
                .write_blocking(|txn| next_id(txn, "threads"))
                .unwrap();
            (named, blocking.body(&id).unwrap())
        })
        .await
        .unwrap();
        assert_eq!(named, 1);
        assert!(body.unwrap().starts_with(b"Subject: task"));
    }

    on_both_backends!(used_from_a_current_thread_runtime);
    async fn used_from_a_current_thread_runtime(place: TestPlace) {
        used_from_this_thread_and_others(place).await;
    }

    on_both_backends!(used_from_a_multi_thread_runtime, flavor = "multi_thread");
    async fn used_from_a_multi_thread_runtime(place: TestPlace) {
        used_from_this_thread_and_others(place).await;
    }

    /// What a read and a write cost on each backend: a message's record read again and
    /// again, and 64 writers spooling messages at once (each spool one commit shared with
    /// whoever else is waiting). Prints its figures.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn read_and_write_cost_on_each_backend() {
        let places = [
            Some(TestPlace::redb()),
            TestPlace::postgres("store::tests::read_and_write_cost_on_each_backend"),
        ];
        for place in places.into_iter().flatten() {
            let backend = if place.redb_path().is_some() {
                "redb"
            } else {
                "postgres"
            };
            let store = place.open();
            let message = NewMessage {
                record: record(1, "measured"),
                body: b"Subject: measured\r\n\r\nbody\r\n".to_vec(),
            };
            let id = message.record.id.clone();
            store.spool(vec![message]).await.unwrap();
            let reads = 5_000;
            let started = std::time::Instant::now();
            for _ in 0..reads {
                assert!(store.message(&id).unwrap().is_some());
            }
            let per_read = started.elapsed() / reads;

            let (writers, each) = (64, 40);
            let started = std::time::Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|n| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for m in 0..each {
                            let message = NewMessage {
                                record: record(1 + n % 4, &format!("w{n} m{m}")),
                                body: format!("Subject: w{n} m{m}\r\n\r\nbody\r\n").into_bytes(),
                            };
                            store.spool(vec![message]).await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let elapsed = started.elapsed();
            println!(
                "{backend}: a message's record read in {per_read:?}; {writers} writers spooled \
                 {} messages at {:.0} msg/s ({} conflicts retried)",
                writers * each,
                (writers * each) as f64 / elapsed.as_secs_f64(),
                store.conflicts_retried()
            );
        }
    }

    #[test]
    fn message_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..10_000).map(|_| new_message_id()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            ids.iter()
                .all(|id| id.len() == 26 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
