//! What the nodes of one platform share through the store: which nodes are alive (each
//! writes a heartbeat), the secrets every node must hold alike (sealed under the master key,
//! which never enters the store), and a log of plugin changes each node polls to bring its
//! loaded plugins up to date.

use serde::{Deserialize, Serialize};

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use super::{COUNTERS, Store, StoreError, decode, encode};

/// Node id → its heartbeat ([`NodeRecord`]).
pub(super) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Secret name → its value as the platform keeps it (sealed under the master key by the
/// caller; the store never sees a secret in the clear).
pub(super) const SHARED_SECRETS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("shared_secrets");
/// Change number → the sha256 of the plugin whose blob, owners or disabled states changed.
/// Only the last [`PLUGIN_CHANGES_KEPT`] are kept; a node further behind reloads everything.
pub(super) const PLUGIN_CHANGES: TableDefinition<u64, &str> =
    TableDefinition::new("plugin_changes");

/// The counter (in `counters`) numbering plugin changes.
const PLUGIN_CHANGE_COUNTER: &str = "plugin-change";

/// Plugin changes kept in the log: far more than happen between two polls of a live node.
pub const PLUGIN_CHANGES_KEPT: u64 = 1_000;

/// One node's heartbeat: who it is and when it was last seen alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id: its configured name, or random per process.
    pub id: String,
    /// A name for people (the configured name, else the id).
    pub name: String,
    /// Random per process: tells two processes configured with one name apart.
    pub instance: String,
    /// When the process started (milliseconds since the epoch).
    pub started_at: u64,
    /// When it last wrote its heartbeat.
    pub last_seen: u64,
    /// The Sluice version it runs.
    pub version: String,
}

/// What changed in the plugins since a change number a node had seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginChanges {
    /// Nothing since.
    None,
    /// These plugins (by sha256) changed; `latest` is the number to ask from next.
    Some {
        /// The newest change number.
        latest: u64,
        /// The plugins that changed, each once.
        changed: Vec<String>,
    },
    /// The node is further behind than the log keeps: everything may have changed.
    All {
        /// The newest change number.
        latest: u64,
    },
}

/// Numbers a change of plugin `sha256` in the transaction that makes it, so every node sees
/// it at its next poll; the oldest entry past [`PLUGIN_CHANGES_KEPT`] goes.
pub(super) fn note_plugin_change(txn: &WriteTransaction, sha256: &str) -> Result<(), StoreError> {
    let number = super::next_id(txn, PLUGIN_CHANGE_COUNTER)?;
    let mut log = txn.open_table(PLUGIN_CHANGES)?;
    log.insert(number, sha256)?;
    if number > PLUGIN_CHANGES_KEPT {
        log.delete(number - PLUGIN_CHANGES_KEPT)?;
    }
    Ok(())
}

/// The shared secret `name`, storing `value` as it first.
fn insert_if_absent(
    txn: &WriteTransaction,
    name: &str,
    value: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut table = txn.open_table(SHARED_SECRETS)?;
    if let Some(stored) = table.get(name)? {
        return Ok(stored);
    }
    table.insert(name, value)?;
    Ok(value.to_vec())
}

impl Store {
    /// Whether this node is the first of the platform to do the one-time task `task` (making
    /// the demo account at a platform's first start): exactly one of the nodes asking, however
    /// many ask at once, is told yes, ever.
    pub async fn first_to(&self, task: &str) -> Result<bool, StoreError> {
        let marker = format!("once:{task}");
        self.write(move |txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            if counters.get(marker.as_str())?.is_some() {
                return Ok(false);
            }
            counters.insert(marker.as_str(), 1)?;
            Ok(true)
        })
        .await
    }

    /// Writes this node's heartbeat, removes the nodes not seen since `gone_before`
    /// (milliseconds since the epoch) and returns the nodes alive, this one included.
    pub async fn heartbeat(
        &self,
        node: NodeRecord,
        gone_before: u64,
    ) -> Result<Vec<NodeRecord>, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(NODES)?;
            table.insert(node.id.as_str(), encode(&node)?.as_slice())?;
            let mut alive = Vec::new();
            let mut gone = Vec::new();
            for entry in table.iter()? {
                let (id, record) = entry?;
                let record: NodeRecord = decode(&record)?;
                if record.last_seen < gone_before {
                    gone.push(id);
                } else {
                    alive.push(record);
                }
            }
            for id in gone {
                table.delete(id.as_str())?;
            }
            Ok(alive)
        })
        .await
    }

    /// The nodes seen since `seen_after` (milliseconds since the epoch), by id.
    pub fn live_nodes(&self, seen_after: u64) -> Result<Vec<NodeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NODES)?;
        let mut alive = Vec::new();
        for entry in table.iter()? {
            let (_, record) = entry?;
            let record: NodeRecord = decode(&record)?;
            if record.last_seen >= seen_after {
                alive.push(record);
            }
        }
        Ok(alive)
    }

    /// A node's heartbeat, whatever its age.
    pub fn node(&self, id: &str) -> Result<Option<NodeRecord>, StoreError> {
        self.get(NODES, id)
    }

    /// Removes a node's heartbeat (a node stopping cleanly) when `instance` still owns it.
    pub async fn remove_node(&self, id: &str, instance: &str) -> Result<(), StoreError> {
        let (id, instance) = (id.to_string(), instance.to_string());
        self.write(move |txn| {
            let mut table = txn.open_table(NODES)?;
            let owned = match table.get(id.as_str())? {
                Some(record) => decode::<NodeRecord>(&record)?.instance == instance,
                None => false,
            };
            if owned {
                table.delete(id.as_str())?;
            }
            Ok(())
        })
        .await
    }

    /// A shared secret as stored (sealed by whoever stored it).
    pub fn shared_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        txn.open_table(SHARED_SECRETS)?.get(name)
    }

    /// Stores `value` as the shared secret `name` unless one is stored already, and returns
    /// the one stored: the first node to store a secret decides it for every node.
    pub async fn shared_secret_or_insert(
        &self,
        name: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let name = name.to_string();
        self.write(move |txn| insert_if_absent(txn, &name, &value))
            .await
    }

    /// [`Store::shared_secret_or_insert`] for threads outside the async runtime.
    pub fn shared_secret_or_insert_blocking(
        &self,
        name: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let name = name.to_string();
        self.write_blocking(move |txn| insert_if_absent(txn, &name, &value))
    }

    /// The plugin changes after change number `seen` (0: none seen yet).
    pub fn plugin_changes_since(&self, seen: u64) -> Result<PluginChanges, StoreError> {
        let txn = self.db.begin_read()?;
        let latest = txn
            .open_table(COUNTERS)?
            .get(PLUGIN_CHANGE_COUNTER)?
            .unwrap_or(0);
        if latest <= seen {
            return Ok(PluginChanges::None);
        }
        let log = txn.open_table(PLUGIN_CHANGES)?;
        let mut changed = Vec::new();
        let mut expected = seen + 1;
        for entry in log.range(expected..=latest)? {
            let (number, sha256) = entry?;
            if number != expected {
                break;
            }
            expected += 1;
            if !changed.contains(&sha256) {
                changed.push(sha256);
            }
        }
        if expected <= latest {
            // Entries the node had not seen were dropped from the log.
            return Ok(PluginChanges::All { latest });
        }
        Ok(PluginChanges::Some { latest, changed })
    }

    /// The newest plugin change number: where a node starting now begins to poll.
    pub fn latest_plugin_change(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(COUNTERS)?
            .get(PLUGIN_CHANGE_COUNTER)?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, last_seen: u64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            name: id.into(),
            instance: format!("{id}-instance"),
            started_at: 1,
            last_seen,
            version: "test".into(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        (dir, store)
    }

    // Four nodes (four stores over one database) asking at once: one yes between them.
    crate::store::backends::on_both_backends!(one_node_of_many_asking_at_once_is_first);
    async fn one_node_of_many_asking_at_once_is_first(place: crate::store::backends::TestPlace) {
        let nodes: Vec<Store> = match place.database() {
            Some(_) => (0..4).map(|_| place.open()).collect(),
            None => vec![place.open()],
        };
        let asking: Vec<_> = (0..8)
            .map(|n| {
                let node = nodes[n % nodes.len()].clone();
                tokio::spawn(async move { node.first_to("demo-account").await.unwrap() })
            })
            .collect();
        let mut yes = 0;
        for answer in asking {
            yes += usize::from(answer.await.unwrap());
        }
        assert_eq!(yes, 1);
        assert!(!nodes[0].first_to("demo-account").await.unwrap());
        assert!(nodes[0].first_to("another task").await.unwrap());
    }

    #[tokio::test]
    async fn a_heartbeat_lists_the_live_nodes_and_drops_the_gone() {
        let (_dir, store) = store();
        store.heartbeat(node("a", 100), 0).await.unwrap();
        store.heartbeat(node("b", 200), 0).await.unwrap();
        let alive = store.heartbeat(node("c", 300), 150).await.unwrap();
        let ids: Vec<_> = alive.iter().map(|node| node.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(store.node("a").unwrap().is_none(), "a gone node is purged");
        assert_eq!(store.live_nodes(250).unwrap(), vec![node("c", 300)]);
        store.remove_node("c", "someone else").await.unwrap();
        assert!(
            store.node("c").unwrap().is_some(),
            "only its instance removes it"
        );
        store.remove_node("c", "c-instance").await.unwrap();
        assert!(store.node("c").unwrap().is_none());
    }

    #[tokio::test]
    async fn the_first_shared_secret_stored_wins() {
        let (_dir, store) = store();
        assert!(store.shared_secret("links").unwrap().is_none());
        let first = store
            .shared_secret_or_insert("links", b"one".to_vec())
            .await
            .unwrap();
        let second = store
            .shared_secret_or_insert("links", b"two".to_vec())
            .await
            .unwrap();
        assert_eq!(
            (first.as_slice(), second.as_slice()),
            (&b"one"[..], &b"one"[..])
        );
        assert_eq!(store.shared_secret("links").unwrap().unwrap(), b"one");
    }

    #[tokio::test]
    async fn plugin_changes_are_numbered_and_a_node_too_far_behind_reloads_all() {
        let (_dir, store) = store();
        assert_eq!(store.plugin_changes_since(0).unwrap(), PluginChanges::None);
        store.put_plugin(1, "aaa", b"one".to_vec()).await.unwrap();
        store
            .record_plugin_disabled("aaa", 1, "faults")
            .await
            .unwrap();
        store.put_plugin(1, "bbb", b"two".to_vec()).await.unwrap();
        assert_eq!(
            store.plugin_changes_since(0).unwrap(),
            PluginChanges::Some {
                latest: 3,
                changed: vec!["aaa".into(), "bbb".into()]
            }
        );
        assert_eq!(
            store.plugin_changes_since(2).unwrap(),
            PluginChanges::Some {
                latest: 3,
                changed: vec!["bbb".into()]
            }
        );
        assert_eq!(store.plugin_changes_since(3).unwrap(), PluginChanges::None);
        store
            .write(|txn| {
                for _ in 0..PLUGIN_CHANGES_KEPT {
                    note_plugin_change(txn, "aaa")?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let latest = 3 + PLUGIN_CHANGES_KEPT;
        assert_eq!(store.latest_plugin_change().unwrap(), latest);
        assert_eq!(
            store.plugin_changes_since(1).unwrap(),
            PluginChanges::All { latest }
        );
        assert!(matches!(
            store.plugin_changes_since(latest - 5).unwrap(),
            PluginChanges::Some { latest: l, .. } if l == latest
        ));
    }
}
