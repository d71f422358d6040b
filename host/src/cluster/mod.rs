//! Several `sluice serve` processes over one store act as one platform: each node writes a
//! heartbeat, so every node knows how many are alive ([`Membership`]); the keys links, return
//! paths and API tokens are signed with are the same on every node ([`secrets`]); a plugin
//! changed through one node is brought up to date on every node within a poll
//! ([`plugins`]); and per-destination limits are split between the live nodes
//! ([`NodeCount::share_of`]). A single node is a platform of one: nothing changes for it.

pub mod plugins;
pub mod secrets;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::store::{NodeRecord, Store, StoreError, now_millis, random_hex};

/// How this node claims queued work (deliveries, webhook calls) on a store other nodes share:
/// each claim is a lease the node renews while the work lasts.
#[derive(Clone, Debug)]
pub struct Leasing {
    /// This node process, as its leases name it ([`Membership::holder`]).
    pub holder: String,
    /// How long a claim lasts unless renewed; renewed every third of it while in flight.
    pub duration: Duration,
}

impl Leasing {
    /// When a lease taken or renewed at `now` runs out.
    pub fn until(&self, now: u64) -> u64 {
        now.saturating_add(millis(self.duration))
    }
}

/// The `[cluster]` section: how this node names itself and how nodes watch each other.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id among the platform's nodes; absent, a random id per process.
    pub node_name: Option<String>,
    /// Seconds between two heartbeats of this node.
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a node counts as gone (and its row is removed).
    pub node_timeout_secs: u64,
    /// Milliseconds between two looks for plugins changed through another node.
    pub plugin_poll_millis: u64,
    /// Milliseconds between two looks for changes made through another node to what this node
    /// keeps copies of: the longest an account's first webhook endpoint waits for the events
    /// this node records, and a change of flow rules, flows or sender identities waits to be
    /// used by this node's mail.
    pub change_poll_millis: u64,
    /// Seconds a node's claim on queued work lasts unless it renews it (it renews every third
    /// of this while the work lasts); work a dead node claimed is taken over after this.
    pub lease_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            heartbeat_secs: 5,
            node_timeout_secs: 30,
            plugin_poll_millis: 1000,
            change_poll_millis: 1000,
            lease_secs: 60,
        }
    }
}

impl ClusterConfig {
    fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    /// How long a node may be silent before it counts as gone: at least two heartbeats, so
    /// one late heartbeat never drops a live node.
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.node_timeout_secs.max(self.heartbeat_secs.max(1) * 2))
    }

    /// How long a claim on queued work lasts unless renewed.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// Between two plugin polls.
    pub fn plugin_poll(&self) -> Duration {
        Duration::from_millis(self.plugin_poll_millis.max(10))
    }

    /// Between two looks for changes made through another node.
    pub fn change_poll(&self) -> Duration {
        Duration::from_millis(self.change_poll_millis.max(10))
    }
}

/// Looks every `every` for changes made through another node to what this node keeps copies
/// of, until aborted: which accounts have webhook endpoints (a node records events without
/// reading the store's subscriptions for accounts it knows have none) and the configuration
/// every message reads (flow rules, flows, signing identities). On a store no other node
/// shares, this node hears of every change as it is made, and this does nothing.
pub fn watch_shared_changes(store: Store, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !store.is_shared() {
            return;
        }
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match store.refresh_webhook_accounts() {
                Ok(true) => tracing::debug!("webhook endpoints changed on the platform"),
                Ok(false) => {}
                Err(StoreError::Closed) => return,
                Err(error) => tracing::warn!(%error, "looking for new webhook endpoints failed"),
            }
            match store.refresh_configuration() {
                Ok(true) => tracing::debug!("the configuration changed on the platform"),
                Ok(false) => {}
                Err(StoreError::Closed) => return,
                Err(error) => tracing::warn!(%error, "looking for configuration changes failed"),
            }
        }
    })
}

/// How many nodes are alive, as this node last saw it; shared by everything that splits a
/// platform-wide limit between the nodes. Starts at one.
#[derive(Clone, Debug)]
pub struct NodeCount(Arc<AtomicUsize>);

impl Default for NodeCount {
    fn default() -> Self {
        Self::new(1)
    }
}

impl NodeCount {
    /// A count of `nodes` (at least one).
    pub fn new(nodes: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(nodes.max(1))))
    }

    /// The nodes alive.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed).max(1)
    }

    /// Sets the nodes alive (at least one: this node is).
    pub fn set(&self, nodes: usize) {
        self.0.store(nodes.max(1), Ordering::Relaxed);
    }

    /// This node's share of a limit that holds for the whole platform: the limit divided by
    /// the nodes alive, rounded up, at least one. Rounding up means the nodes together may go
    /// over the limit by less than one share each; at least one keeps every node sending.
    pub fn share_of(&self, limit: usize) -> usize {
        limit.div_ceil(self.get()).max(1)
    }
}

/// This node's place among the platform's nodes: its heartbeat, written every
/// `heartbeat_secs`, and the count of live nodes it keeps up to date. Dropping it stops the
/// heartbeat; [`Membership::leave`] also removes the node's row at once.
pub struct Membership {
    store: Store,
    record: NodeRecord,
    nodes: NodeCount,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.record.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Membership {
    /// Writes this node's first heartbeat (so the node count is known before anything uses
    /// it) and keeps writing them.
    pub async fn join(store: Store, config: &ClusterConfig) -> Result<Self, StoreError> {
        let random = random_hex(8)?;
        let id = config.node_name.clone().unwrap_or_else(|| random.clone());
        let now = now_millis();
        let timeout = config.timeout();
        if let Some(earlier) = store.node(&id)?
            && earlier.last_seen >= now.saturating_sub(millis(timeout))
        {
            tracing::warn!(node = %id, "a node of this name was seen alive moments ago: if it is another process, give each node its own [cluster] node_name");
        }
        let record = NodeRecord {
            name: id.clone(),
            id,
            instance: random,
            started_at: now,
            last_seen: now,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let nodes = NodeCount::default();
        let alive = store
            .heartbeat(record.clone(), now.saturating_sub(millis(timeout)))
            .await?;
        nodes.set(alive.len());
        let task = tokio::spawn(beat(
            store.clone(),
            record.clone(),
            nodes.clone(),
            config.heartbeat(),
            timeout,
        ));
        Ok(Self {
            store,
            record,
            nodes,
            task,
        })
    }

    /// This node's heartbeat as first written.
    pub fn node(&self) -> &NodeRecord {
        &self.record
    }

    /// This node process as its leases on queued work name it: its id and its instance, so a
    /// restarted node does not take its earlier process's leases for its own.
    pub fn holder(&self) -> String {
        format!("{}/{}", self.record.id, self.record.instance)
    }

    /// The count of live nodes, kept up to date.
    pub fn nodes(&self) -> NodeCount {
        self.nodes.clone()
    }

    /// Stops the heartbeat and removes this node's row, so the others count it gone at
    /// their next heartbeat instead of after the timeout.
    pub async fn leave(&self) -> Result<(), StoreError> {
        self.task.abort();
        self.store
            .remove_node(&self.record.id, &self.record.instance)
            .await
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes a heartbeat every `every`, and counts the nodes seen within `timeout`.
async fn beat(
    store: Store,
    mut record: NodeRecord,
    nodes: NodeCount,
    every: Duration,
    timeout: Duration,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, and the first heartbeat was written by `join`.
    interval.tick().await;
    loop {
        interval.tick().await;
        let now = now_millis();
        record.last_seen = now;
        match store
            .heartbeat(record.clone(), now.saturating_sub(millis(timeout)))
            .await
        {
            Ok(alive) => {
                let count = alive.len();
                if count != nodes.get() {
                    tracing::info!(nodes = count, "the number of live nodes changed");
                }
                nodes.set(count);
            }
            Err(StoreError::Closed) => return,
            Err(error) => tracing::warn!(%error, "writing this node's heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_the_limit_over_the_nodes_rounded_up_and_never_zero() {
        let nodes = NodeCount::default();
        assert_eq!(nodes.share_of(4), 4);
        nodes.set(3);
        assert_eq!(nodes.share_of(4), 2);
        assert_eq!(nodes.share_of(9), 3);
        assert_eq!(nodes.share_of(10), 4);
        nodes.set(8);
        assert_eq!(nodes.share_of(4), 1);
        assert_eq!(nodes.share_of(0), 1);
        nodes.set(0);
        assert_eq!(nodes.get(), 1, "this node is alive");
    }

    #[tokio::test]
    async fn nodes_joining_count_each_other_and_a_node_leaving_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let named = ClusterConfig {
            node_name: Some("mx-1".into()),
            ..ClusterConfig::default()
        };
        let first = Membership::join(store.clone(), &named).await.unwrap();
        assert_eq!(first.node().id, "mx-1");
        assert_eq!(first.nodes().get(), 1);
        let second = Membership::join(store.clone(), &ClusterConfig::default())
            .await
            .unwrap();
        assert_eq!(second.node().id.len(), 16, "a random id");
        assert_eq!(second.nodes().get(), 2);
        let listed: Vec<_> = store
            .live_nodes(0)
            .unwrap()
            .into_iter()
            .map(|node| node.id)
            .collect();
        assert!(listed.contains(&"mx-1".to_string()), "{listed:?}");
        first.leave().await.unwrap();
        assert_eq!(store.live_nodes(0).unwrap().len(), 1);
    }
}
