//! Which plugin versions are disabled for which account, kept across a restart: a plugin
//! that failed its way to being disabled stays so until the account (or an operator)
//! enables it again.

use super::kv::{ReadableTable, TableDefinition};

use super::{Store, StoreError};

/// (plugin sha256, account) → why it was disabled.
pub(super) const DISABLED_PLUGINS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("disabled_plugins");

impl Store {
    /// Records that a plugin version is disabled for an account.
    pub async fn record_plugin_disabled(
        &self,
        sha256: &str,
        account_id: u64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let sha256 = sha256.to_string();
        let reason = reason.to_string();
        self.write(move |txn| {
            let mut table = txn.open_table(DISABLED_PLUGINS)?;
            table.insert((sha256.as_str(), account_id), reason.as_str())?;
            super::cluster::note_plugin_change(txn, &sha256)?;
            Ok(())
        })
        .await
    }

    /// Forgets that a plugin version is disabled for an account; true when it was.
    pub async fn clear_plugin_disabled(
        &self,
        sha256: &str,
        account_id: u64,
    ) -> Result<bool, StoreError> {
        let sha256 = sha256.to_string();
        self.write(move |txn| {
            let mut table = txn.open_table(DISABLED_PLUGINS)?;
            let removed = table.remove((sha256.as_str(), account_id))?.is_some();
            if removed {
                super::cluster::note_plugin_change(txn, &sha256)?;
            }
            Ok(removed)
        })
        .await
    }

    /// The accounts a plugin version is disabled for, with why.
    pub fn plugin_disabled_accounts(&self, sha256: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DISABLED_PLUGINS)?;
        table
            .range((sha256, 0)..=(sha256, u64::MAX))?
            .map(|entry| {
                let (key, reason) = entry?;
                Ok((key.1, reason))
            })
            .collect()
    }
}
