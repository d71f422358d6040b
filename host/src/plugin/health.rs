//! Which plugins failed too often in a row, per account. A plugin shared by several accounts
//! (an operator's or a built-in) is disabled only for the account whose mail made it fail,
//! so one account cannot switch a shared step off for everyone.

use std::collections::HashMap;
use std::sync::Mutex;

/// Who a call ran for: an account, or no one (the CLI, tests).
pub(crate) type Tenant = Option<u64>;

#[derive(Debug, Default)]
struct TenantHealth {
    failures_in_a_row: u32,
    disabled: Option<String>,
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

    /// Makes the accounts' disabled states those `recorded` (in the store, by any node): an
    /// account recorded is disabled, one no longer recorded runs again with a fresh count.
    /// Calls without an account keep their state.
    pub(crate) fn set_recorded(&self, recorded: &[(u64, String)]) {
        let mut tenants = self.tenants();
        tenants.retain(|tenant, health| {
            tenant.is_none_or(|account| {
                health.disabled.is_none() || recorded.iter().any(|(id, _)| *id == account)
            })
        });
        for (account, reason) in recorded {
            tenants.entry(Some(*account)).or_default().disabled = Some(reason.clone());
        }
    }

    /// Disables the plugin for a tenant (a state kept across a restart).
    pub(crate) fn disable(&self, tenant: Tenant, reason: String) {
        self.tenants().entry(tenant).or_default().disabled = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_states_replace_the_accounts_but_not_the_calls_without_one() {
        let health = Health::new(1);
        health.record_fault(Some(1), "trap");
        health.record_fault(None, "trap");
        health.set_recorded(&[(2, "elsewhere".into())]);
        assert_eq!(
            health.disabled(Some(1)),
            None,
            "enabled through another node"
        );
        assert_eq!(health.disabled(Some(2)).as_deref(), Some("elsewhere"));
        assert!(health.disabled(None).is_some());
    }
}
