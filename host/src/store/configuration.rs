//! Per-node copies of what every message's flow reads of its account's configuration: the
//! flow rules, the flow they pick and the identity that signs for a sender's domain; and the
//! credential an SMTP session or an API token is checked against again on each message or
//! request (kept by account, as the others: one tenant's usernames make room only from its
//! own copies). Each message read them from the store (on PostgreSQL four statements of its
//! own); they change rarely, through the API or the dashboard.
//!
//! The copies are let go whenever a write transaction that opened one of their tables
//! ([`TableDefinition::copied`]) commits, on this node before the change is answered. Such a
//! transaction also moves a counter, which nodes sharing the store poll
//! ([`Store::refresh_configuration`]): a change made through another node is seen here from the
//! next look on.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::kv::{ReadableTable as _, WriteTransaction};
use super::model::{Credential, Flow, Routing, SenderIdentity};
use super::{COUNTERS, Store, StoreError, decode, next_id};

/// The counter (in `counters`) every transaction changing a copied table moves.
const CONFIGURATION_CHANGE_COUNTER: &str = "configuration-change";

/// Entries one kind of copy holds; past it that kind makes room (see [`Copies::make_room`]).
/// The sender domains a tenant's mail names are its own choice, so the copies must not grow
/// with them.
const MAX_COPIES: usize = 4096;

/// Bytes (as stored) one kind of copy holds at most: an account's flow rules may be 256 KiB
/// and a flow's steps carry their configuration, so a count alone would not bound them.
const MAX_COPY_BYTES: usize = 16 << 20;

/// On a store other nodes share, copies are let go at least this often: a change that did not
/// move the counter (a node of an older version, an operator's SQL) is used from then on.
const SHARED_COPIES_LAST: Duration = Duration::from_secs(60);

thread_local! {
    /// Whether the transaction this writer thread is making changed a copied table (as
    /// [`super::webhooks`] notes queued calls): the copies are let go after its commit.
    static CHANGED_IN_THIS_TRANSACTION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One kind of copy: what the store held under a key (absence included), and how many
/// bytes that was.
#[derive(Debug)]
struct Copies<K, V> {
    entries: HashMap<K, (Option<Arc<V>>, usize)>,
    bytes: usize,
}

impl<K, V> Default for Copies<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<K: Eq + Hash + Clone + Owned, V> Copies<K, V> {
    fn get(&self, key: &K) -> Option<Option<Arc<V>>> {
        self.entries.get(key).map(|(value, _)| value.clone())
    }

    fn insert(&mut self, key: K, value: Option<Arc<V>>, bytes: usize) {
        if bytes > MAX_COPY_BYTES / 4 {
            // Read from the store each time rather than let one value push out the rest.
            return;
        }
        if self.entries.len() >= MAX_COPIES || self.bytes + bytes > MAX_COPY_BYTES {
            self.make_room(key.account());
        }
        self.bytes += bytes;
        if let Some((_, replaced)) = self.entries.insert(key, (value, bytes)) {
            self.bytes -= replaced;
        }
    }

    /// Drops the copies of the account that needs room when it holds a quarter of them or
    /// more (one tenant naming ever new sender domains empties only its own), else all.
    fn make_room(&mut self, account_id: u64) {
        let own = self
            .entries
            .keys()
            .filter(|key| key.account() == account_id)
            .count();
        if own * 4 >= self.entries.len() {
            self.entries.retain(|key, _| key.account() != account_id);
            self.bytes = self.entries.values().map(|(_, bytes)| bytes).sum();
        }
        if self.entries.len() >= MAX_COPIES || self.bytes > MAX_COPY_BYTES / 2 {
            self.entries.clear();
            self.bytes = 0;
        }
    }
}

/// The account a copy belongs to.
trait Owned {
    fn account(&self) -> u64;
}

/// Routing is kept by account.
impl Owned for u64 {
    fn account(&self) -> u64 {
        *self
    }
}

/// Signers are kept by account and domain, credentials by account and username.
impl Owned for (u64, String) {
    fn account(&self) -> u64 {
        self.0
    }
}

/// Flows are kept by (account, flow id), so that making room can tell whose they are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    account_id: u64,
    flow_id: u64,
}

impl Owned for FlowKey {
    fn account(&self) -> u64 {
        self.account_id
    }
}

/// Every copy, and the generation they belong to.
#[derive(Debug, Default)]
struct Kept {
    /// Moves each time the copies are let go: a value read from the store before that is not
    /// kept after it.
    generation: u64,
    routing: Copies<u64, Routing>,
    flows: Copies<FlowKey, Flow>,
    signers: Copies<(u64, String), SenderIdentity>,
    credentials: Copies<(u64, String), Credential>,
}

/// The copies a store's handles share.
#[derive(Debug)]
pub(super) struct ConfigurationCopies {
    kept: RwLock<Kept>,
    /// Other nodes share the store and change it without this node hearing of it.
    shared: bool,
    /// The change counter as of the last look (shared stores).
    change_seen: AtomicU64,
    /// When the copies were last let go (shared stores).
    let_go_at: Mutex<Instant>,
}

impl ConfigurationCopies {
    /// Empty copies; `change_seen` is the change counter as the store holds it now.
    pub(super) fn new(shared: bool, change_seen: u64) -> Self {
        Self {
            kept: RwLock::default(),
            shared,
            change_seen: AtomicU64::new(change_seen),
            let_go_at: Mutex::new(Instant::now()),
        }
    }

    /// Called by a writer thread after each of its commits: lets the copies go when that
    /// commit changed a copied table.
    pub(super) fn committed(&self) {
        if CHANGED_IN_THIS_TRANSACTION.take() {
            self.let_go();
        }
    }

    fn let_go(&self) {
        let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
        let generation = kept.generation.wrapping_add(1);
        *kept = Kept {
            generation,
            ..Kept::default()
        };
        drop(kept);
        *self.let_go_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// The copy under `key`, or the store's value and its size as stored, read by `read`
    /// (and kept unless the copies were let go while it was read).
    fn copy_of<K: Eq + Hash + Clone + Owned, V>(
        &self,
        copies: impl Fn(&Kept) -> &Copies<K, V>,
        copies_mut: impl FnOnce(&mut Kept) -> &mut Copies<K, V>,
        key: &K,
        read: impl FnOnce() -> Result<(Option<V>, usize), StoreError>,
    ) -> Result<Option<Arc<V>>, StoreError> {
        let generation = {
            let kept = self.kept.read().unwrap_or_else(|e| e.into_inner());
            if let Some(copy) = copies(&kept).get(key) {
                return Ok(copy);
            }
            kept.generation
        };
        let (value, bytes) = read()?;
        let value = value.map(Arc::new);
        let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
        if kept.generation == generation {
            // The key's own size counts too: a sender domain is the tenant's choice.
            copies_mut(&mut kept).insert(key.clone(), value.clone(), bytes + 64);
        }
        Ok(value)
    }
}

/// A value as stored, decoded, with its size.
fn decoded<T: serde::de::DeserializeOwned>(
    stored: Option<Vec<u8>>,
) -> Result<(Option<T>, usize), StoreError> {
    let bytes = stored.as_ref().map_or(0, Vec::len);
    Ok((stored.map(|value| decode(&value)).transpose()?, bytes))
}

/// Notes, in a write transaction that opened a copied table, that the configuration changed:
/// moves the counter other nodes poll, and has this node's copies let go after the commit.
pub(super) fn note_change(txn: &WriteTransaction) -> Result<(), StoreError> {
    next_id(txn, CONFIGURATION_CHANGE_COUNTER)?;
    CHANGED_IN_THIS_TRANSACTION.set(true);
    Ok(())
}

/// The change counter as `read` sees it.
pub(super) fn change_counter(txn: &super::kv::ReadTransaction) -> Result<u64, StoreError> {
    Ok(txn
        .open_table(COUNTERS)?
        .get(CONFIGURATION_CHANGE_COUNTER)?
        .unwrap_or(0))
}

impl Store {
    /// An account's flow rules, from this node's copy.
    pub(super) fn copied_routing(
        &self,
        account_id: u64,
    ) -> Result<Option<Arc<Routing>>, StoreError> {
        self.configuration.copy_of(
            |kept| &kept.routing,
            |kept| &mut kept.routing,
            &account_id,
            || decoded(self.db.get_one(super::ROUTING, account_id)?),
        )
    }

    /// An account's flow, from this node's copy (none when it is not the account's).
    pub(super) fn copied_flow(
        &self,
        account_id: u64,
        flow_id: u64,
    ) -> Result<Option<Arc<Flow>>, StoreError> {
        let key = FlowKey {
            account_id,
            flow_id,
        };
        self.configuration.copy_of(
            |kept| &kept.flows,
            |kept| &mut kept.flows,
            &key,
            || {
                let (flow, bytes) = decoded::<Flow>(self.db.get_one(super::FLOWS, flow_id)?)?;
                Ok((flow.filter(|flow| flow.account_id == account_id), bytes))
            },
        )
    }

    /// The identity that signs for `domain` in an account's mail, from this node's copy.
    pub(super) fn copied_signer(
        &self,
        account_id: u64,
        domain: &str,
        read: impl FnOnce() -> Result<Option<SenderIdentity>, StoreError>,
    ) -> Result<Option<Arc<SenderIdentity>>, StoreError> {
        self.configuration.copy_of(
            |kept| &kept.signers,
            |kept| &mut kept.signers,
            &(account_id, domain.to_string()),
            || {
                let identity = read()?;
                let bytes = identity.as_ref().map_or(0, |identity| {
                    identity.public_key.len() + identity.sealed_private_key.len() + 256
                });
                Ok((identity, bytes + domain.len()))
            },
        )
    }

    /// Whether the credential `username` of account `account_id` still passes `check`: what
    /// a logged-in SMTP session and an API token ask again on each message or request.
    /// Answered by this node's copy when the copy passes; otherwise by the store, so a
    /// credential changed through another node (a new secret, made again) is used here at
    /// once. A removal or a new secret made through this node is seen at once; through
    /// another node, from this node's next look at the change counter
    /// ([`Store::refresh_configuration`]).
    pub fn credential_still(
        &self,
        account_id: u64,
        username: &str,
        check: impl Fn(&Credential) -> bool,
    ) -> Result<bool, StoreError> {
        let of_account = |credential: Option<Credential>| {
            credential.filter(|credential| credential.account_id == account_id)
        };
        let copy = self.configuration.copy_of(
            |kept| &kept.credentials,
            |kept| &mut kept.credentials,
            &(account_id, username.to_string()),
            || {
                let (credential, bytes) =
                    decoded::<Credential>(self.db.get_one(super::CREDENTIALS, username)?)?;
                Ok((of_account(credential), bytes + username.len()))
            },
        )?;
        if copy.is_some_and(|credential| check(&credential)) {
            return Ok(true);
        }
        Ok(of_account(self.credential(username)?).is_some_and(|credential| check(&credential)))
    }

    /// On a store other nodes share, looks whether the configuration changed since the last
    /// look (one read) and, if so or if the copies are a minute old, lets this node's copies
    /// go. Answers whether it did.
    pub fn refresh_configuration(&self) -> Result<bool, StoreError> {
        let copies = &self.configuration;
        if !copies.shared {
            return Ok(false);
        }
        let change = change_counter(&self.db.begin_read()?)?;
        let last = copies
            .let_go_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        if change == copies.change_seen.load(Ordering::SeqCst) && last < SHARED_COPIES_LAST {
            return Ok(false);
        }
        copies.let_go();
        copies.change_seen.store(change, Ordering::SeqCst);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};
    use crate::store::model::IdentityValidation;

    fn flow(account_id: u64, name: &str) -> Flow {
        Flow {
            id: 0,
            account_id,
            name: name.into(),
            steps: Vec::new(),
            expiry_hours: None,
        }
    }

    fn identity(account_id: u64, domain: &str) -> SenderIdentity {
        SenderIdentity {
            id: 0,
            account_id,
            domain: domain.into(),
            selector: "s1".into(),
            algorithm: Default::default(),
            public_key: "cHVibGlj".into(),
            sealed_private_key: "00".into(),
            created_at: 0,
            validation: None,
        }
    }

    fn validated(mut identity: SenderIdentity) -> SenderIdentity {
        identity.validation = Some(IdentityValidation {
            checked_at: 1,
            valid: true,
            dkim: true,
            return_path: false,
            records: Vec::new(),
        });
        identity
    }

    /// The name of the flow the account's routing picks, as a message would get it.
    fn routed(store: &Store, account_id: u64) -> Option<String> {
        let (_, flow) = store
            .routed_flow(account_id, |routing| routing.default_flow_id)
            .unwrap()?;
        flow.map(|flow| flow.name.clone())
    }

    on_both_backends!(every_change_is_used_by_the_next_message_on_the_node_that_made_it);
    async fn every_change_is_used_by_the_next_message_on_the_node_that_made_it(place: TestPlace) {
        let store = place.open();
        let account = store.create_account("tenant").await.unwrap();
        let first = store.create_flow(flow(account.id, "first")).await.unwrap();
        let second = store.create_flow(flow(account.id, "second")).await.unwrap();
        let routing = |default_flow_id| Routing {
            rules: Vec::new(),
            default_flow_id,
        };
        store
            .set_routing(account.id, routing(first.id))
            .await
            .unwrap();
        assert_eq!(routed(&store, account.id).as_deref(), Some("first"));
        // Now copied: each change below is seen at once all the same.
        assert_eq!(routed(&store, account.id).as_deref(), Some("first"));

        store
            .set_routing(account.id, routing(second.id))
            .await
            .unwrap();
        assert_eq!(routed(&store, account.id).as_deref(), Some("second"));
        let renamed = Flow {
            name: "renamed".into(),
            ..second.clone()
        };
        store.update_flow(renamed).await.unwrap();
        assert_eq!(routed(&store, account.id).as_deref(), Some("renamed"));
        store
            .set_routing_unchanged(account.id, routing(first.id), Some(routing(second.id)))
            .await
            .unwrap();
        store
            .delete_flow(account.id, second.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(routed(&store, account.id).as_deref(), Some("first"));

        // A domain without an identity, then with one not yet validated, then validated.
        assert_eq!(
            store.signing_identity(account.id, "shop.example").unwrap(),
            None
        );
        let made = store
            .create_identity(identity(account.id, "shop.example"))
            .await
            .unwrap();
        assert_eq!(
            store.signing_identity(account.id, "shop.example").unwrap(),
            None
        );
        store
            .update_identity(validated(made.clone()))
            .await
            .unwrap();
        let signer = store.signing_identity(account.id, "shop.example").unwrap();
        assert_eq!(signer.map(|signer| signer.id), Some(made.id));
        store.delete_identity(made).await.unwrap();
        assert_eq!(
            store.signing_identity(account.id, "shop.example").unwrap(),
            None
        );
    }

    /// Two nodes on one database: a change made through one is used by the other from its
    /// next look on.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_change_made_through_another_node_is_used_from_the_next_look() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let this_node = place.open();
        let other_node = place.open();
        let account = this_node.create_account("tenant").await.unwrap();
        let first = this_node
            .create_flow(flow(account.id, "first"))
            .await
            .unwrap();
        let routing = Routing {
            rules: Vec::new(),
            default_flow_id: first.id,
        };
        this_node.set_routing(account.id, routing).await.unwrap();
        // This node's own changes moved the counter: its next look lets its copies go.
        this_node.refresh_configuration().unwrap();
        assert!(!this_node.refresh_configuration().unwrap());
        assert_eq!(routed(&this_node, account.id).as_deref(), Some("first"));

        let renamed = Flow {
            name: "renamed".into(),
            ..first
        };
        other_node.update_flow(renamed).await.unwrap();
        assert_eq!(routed(&other_node, account.id).as_deref(), Some("renamed"));
        // The copy this node made before the change stands until its next look.
        assert_eq!(routed(&this_node, account.id).as_deref(), Some("first"));
        assert!(this_node.refresh_configuration().unwrap());
        assert_eq!(routed(&this_node, account.id).as_deref(), Some("renamed"));
        assert!(!this_node.refresh_configuration().unwrap());
    }

    #[test]
    fn a_value_read_while_the_copies_are_let_go_is_not_kept() {
        let copies = ConfigurationCopies::new(false, 0);
        let reads = std::cell::Cell::new(0);
        let routing = |default_flow_id| Routing {
            rules: Vec::new(),
            default_flow_id,
        };
        let copy = |read: &dyn Fn() -> Result<(Option<Routing>, usize), StoreError>| {
            copies
                .copy_of(|kept| &kept.routing, |kept| &mut kept.routing, &1, read)
                .unwrap()
                .map(|routing| routing.default_flow_id)
        };
        // A change commits while the store is read: what was read may be from before it.
        let before = copy(&|| {
            copies.let_go();
            Ok((Some(routing(1)), 10))
        });
        assert_eq!(before, Some(1));
        let read_after = || {
            reads.set(reads.get() + 1);
            Ok((Some(routing(2)), 10))
        };
        assert_eq!(copy(&read_after), Some(2));
        assert_eq!(copy(&read_after), Some(2));
        assert_eq!(reads.get(), 1, "the second was the copy");
    }

    #[test]
    fn an_account_naming_ever_new_domains_makes_room_from_its_own_copies() {
        let mut signers: Copies<(u64, String), SenderIdentity> = Copies::default();
        signers.insert((1, "shop.example".into()), None, 64);
        signers.insert((2, "news.example".into()), None, 64);
        for n in 0..MAX_COPIES * 3 {
            signers.insert((3, format!("d{n}.example")), None, 64);
        }
        assert!(signers.entries.len() <= MAX_COPIES);
        assert!(signers.get(&(1, "shop.example".into())).is_some());
        assert!(signers.get(&(2, "news.example".into())).is_some());
        assert_eq!(
            signers.bytes,
            signers
                .entries
                .values()
                .map(|(_, bytes)| bytes)
                .sum::<usize>()
        );

        // Sizes bound the copies as much as their number.
        let mut routing: Copies<u64, Routing> = Copies::default();
        for account in 0..64 {
            routing.insert(account, None, MAX_COPY_BYTES / 8);
        }
        assert!(routing.bytes <= MAX_COPY_BYTES, "{}", routing.bytes);
        routing.insert(99, None, MAX_COPY_BYTES);
        assert!(
            routing.get(&99).is_none(),
            "a value too large to keep is read each time"
        );
    }
}
