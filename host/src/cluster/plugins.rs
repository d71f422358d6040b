//! Plugins changed through any node, brought up to date on this one: every change to a
//! plugin's blob, owners or disabled states is numbered in the store (in the transaction
//! that makes it), and each node polls the numbers every `plugin_poll_millis`. For each
//! plugin that changed, the node drops what it loaded of a plugin no longer stored, applies
//! the disabled states now recorded, and loads a new upload ahead of its first message.

use std::sync::Arc;
use std::time::Duration;

use crate::flow::PipelineHandle;
use crate::plugin::classifier::AccountClassifiers;
use crate::store::{PluginChanges, Store, StoreError};

/// Applies the plugin changes numbered after `seen` to this node's pipeline and classifiers,
/// and returns the number to poll from next.
pub async fn reconcile(
    store: &Store,
    pipeline: &PipelineHandle,
    classifiers: &AccountClassifiers,
    seen: u64,
) -> Result<u64, StoreError> {
    match store.plugin_changes_since(seen)? {
        PluginChanges::None => Ok(seen),
        PluginChanges::Some { latest, changed } => {
            tracing::debug!(plugins = ?changed, "plugins changed on the platform");
            pipeline.plugins_changed(Some(&changed)).await?;
            classifiers.plugins_changed(Some(&changed))?;
            Ok(latest)
        }
        PluginChanges::All { latest } => {
            tracing::info!(
                "more plugin changes than the store keeps since the last look: checking every loaded plugin"
            );
            pipeline.plugins_changed(None).await?;
            classifiers.plugins_changed(None)?;
            Ok(latest)
        }
    }
}

/// Polls for plugin changes every `every`, from change number `seen` on, until dropped.
pub fn watch(
    store: Store,
    pipeline: PipelineHandle,
    classifiers: Arc<AccountClassifiers>,
    seen: u64,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = seen;
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match reconcile(&store, &pipeline, &classifiers, seen).await {
                Ok(latest) => seen = latest,
                Err(StoreError::Closed) => return,
                Err(error) => tracing::warn!(%error, "looking for changed plugins failed"),
            }
        }
    })
}
