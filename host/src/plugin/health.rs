//! Which plugins failed too often in a row, per account. A plugin shared by several accounts
//! (an operator's or a built-in) is disabled only for the account whose mail made it fail,
//! so one account cannot switch a shared step off for everyone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who a call ran for: an account, or no one (the CLI, tests).
pub(crate) type Tenant = Option<u64>;

#[derive(Debug, Default)]
struct TenantHealth {
    failures_in_a_row: u32,
    disabled: Option<String>,
    /// When the disabled state was known to be in the store (a [`store_ticket`]); none while
    /// this node disabled it and has not yet recorded that.
    stored_at: Option<u64>,
}

/// The clock of reads and writes of recorded disabled states, shared by every plugin: a
/// ticket taken before reading the store orders that read against the moments disabled
/// states were known to be stored.
static STORE_CLOCK: AtomicU64 = AtomicU64::new(1);

/// A ticket of [`STORE_CLOCK`]: take one before reading recorded states, or after recording.
pub(crate) fn store_ticket() -> u64 {
    STORE_CLOCK.fetch_add(1, Ordering::SeqCst)
}

/// Fault counts and disabled states of one plugin version.
#[derive(Debug)]
pub(crate) struct Health {
    threshold: u32,
    tenants: Mutex<HashMap<Tenant, TenantHealth>>,
}

impl Health {
    /// Disables after `threshold` sandbox faults in a row (never when 0).
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            threshold,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<Tenant, TenantHealth>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the plugin is disabled for this tenant, if it is.
    pub(crate) fn disabled(&self, tenant: Tenant) -> Option<String> {
        self.tenants()
            .get(&tenant)
            .and_then(|health| health.disabled.clone())
    }

    /// A call that ran to completion resets the count.
    pub(crate) fn record_success(&self, tenant: Tenant) {
        if let Some(health) = self.tenants().get_mut(&tenant) {
            health.failures_in_a_row = 0;
        }
    }

    /// Counts a sandbox fault; returns the reason when this fault disabled the plugin.
    pub(crate) fn record_fault(&self, tenant: Tenant, failure: &str) -> Option<String> {
        let mut tenants = self.tenants();
        let health = tenants.entry(tenant).or_default();
        health.failures_in_a_row += 1;
        if self.threshold == 0
            || health.failures_in_a_row < self.threshold
            || health.disabled.is_some()
        {
            return None;
        }
        let reason = format!(
            "{} failures in a row, the last: {failure}",
            health.failures_in_a_row
        );
        health.disabled = Some(reason.clone());
        Some(reason)
    }

    /// Enables the plugin again for every tenant.
    pub(crate) fn enable_all(&self) {
        self.tenants().clear();
    }

    /// Enables the plugin again for one tenant, with a fresh count.
    pub(crate) fn enable(&self, tenant: Tenant) {
        self.tenants().remove(&tenant);
    }

    /// Makes the accounts' disabled states those `recorded` (in the store, by any node, as read
    /// after taking `ticket`): an account recorded is disabled; one no longer recorded runs
    /// again with a fresh count, unless the read could not have seen it: disabled here and not
    /// yet recorded, or recorded after the ticket. Calls without an account keep their state.
    pub(crate) fn set_recorded(&self, recorded: &[(u64, String)], ticket: u64) {
        let mut tenants = self.tenants();
        tenants.retain(|tenant, health| {
            tenant.is_none_or(|account| {
                health.disabled.is_none()
                    || recorded.iter().any(|(id, _)| *id == account)
                    || health.stored_at.is_none_or(|stored| stored > ticket)
            })
        });
        for (account, reason) in recorded {
            let health = tenants.entry(Some(*account)).or_default();
            health.disabled = Some(reason.clone());
            health.stored_at = Some(health.stored_at.map_or(ticket, |at| at.max(ticket)));
        }
    }

    /// Disables the plugin for a tenant, as the store records it (a state kept across a
    /// restart).
    pub(crate) fn disable(&self, tenant: Tenant, reason: String) {
        let mut tenants = self.tenants();
        let health = tenants.entry(tenant).or_default();
        health.disabled = Some(reason);
        health.stored_at = Some(store_ticket());
    }

    /// Notes that the tenant's disabled state is now recorded in the store.
    pub(crate) fn recorded(&self, tenant: Tenant) {
        if let Some(health) = self.tenants().get_mut(&tenant)
            && health.disabled.is_some()
        {
            health.stored_at = Some(store_ticket());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_states_replace_the_accounts_but_not_the_calls_without_one() {
        let health = Health::new(1);
        health.record_fault(Some(1), "trap");
        health.recorded(Some(1));
        health.record_fault(None, "trap");
        health.set_recorded(&[(2, "elsewhere".into())], store_ticket());
        assert_eq!(
            health.disabled(Some(1)),
            None,
            "enabled through another node"
        );
        assert_eq!(health.disabled(Some(2)).as_deref(), Some("elsewhere"));
        assert!(health.disabled(None).is_some());
    }

    /// A read of the store that began before this node recorded a plugin it disabled does
    /// not have it, and must not enable it again; a read that began after it does.
    #[test]
    fn a_read_older_than_the_record_of_a_disable_does_not_undo_it() {
        let health = Health::new(1);
        let read_before_the_fault = store_ticket();
        health.record_fault(Some(1), "trap");
        health.set_recorded(&[], read_before_the_fault);
        assert!(health.disabled(Some(1)).is_some(), "not recorded yet");
        let read_before_the_record = store_ticket();
        health.recorded(Some(1));
        health.set_recorded(&[], read_before_the_record);
        assert!(
            health.disabled(Some(1)).is_some(),
            "recorded after the read"
        );
        // Read after the record and without it: enabled through another node.
        health.set_recorded(&[], store_ticket());
        assert_eq!(health.disabled(Some(1)), None);
    }
}
