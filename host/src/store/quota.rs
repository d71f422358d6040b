//! How many records of each kind one account may keep.
//!
//! Every kind an account makes through the API or the dashboard is bounded here, where it is
//! written, so neither path can grow the store without limit: a tenant making sources,
//! credentials or plugins by the million would fill the disk and slow every listing that reads
//! over all accounts' records. A count is read before the write that adds, so requests racing
//! each other can overshoot a limit by how many of them run at once; never by more.

use super::kv::{ReadableTable, TableDefinition};

use super::{
    CREDENTIALS, Credential, PLUGIN_OWNERS, SOURCES, Source, Store, StoreError, decode,
    identities::{IDENTITY_DOMAINS, TEMPLATE_NAMES},
    users::{USERS, User},
    webhooks::{WEBHOOK_ENDPOINTS, WebhookEndpoint},
};

/// A kind of record an account makes and keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Sources (applications that submit).
    Sources,
    /// API clients and SMTP users, over all the account's sources.
    Credentials,
    /// Templates.
    Templates,
    /// Sender identities (a DKIM key each).
    Identities,
    /// Webhook endpoints, made as webhooks or as Flowmailer's event flows (each gets a copy of
    /// every event it takes).
    Webhooks,
    /// Dashboard users.
    Users,
    /// Uploaded plugins (components kept whole, up to the upload limit each).
    Plugins,
}

impl Kept {
    /// The most an account keeps of this kind.
    pub const fn limit(self) -> usize {
        match self {
            Kept::Sources => 100,
            Kept::Credentials => 1_000,
            Kept::Templates => 1_000,
            Kept::Identities => 100,
            Kept::Webhooks => 100,
            Kept::Users => 200,
            Kept::Plugins => 100,
        }
    }

    /// The kind's name in a sentence, plural.
    pub const fn plural(self) -> &'static str {
        match self {
            Kept::Sources => "sources",
            Kept::Credentials => "API clients and SMTP users",
            Kept::Templates => "templates",
            Kept::Identities => "sender identities",
            Kept::Webhooks => "webhooks and event flows together",
            Kept::Users => "users",
            Kept::Plugins => "uploaded plugins",
        }
    }
}

impl Store {
    /// `Full` when the account keeps as many records of `kind` as it may: checked before a
    /// costly step (hashing a secret, compiling a plugin, making a key) and by the store's create
    /// call, both outside the writer thread (see the module's note on racing requests).
    pub fn check_room(&self, account_id: u64, kind: Kept) -> Result<(), StoreError> {
        if self.count_kept(account_id, kind)? >= kind.limit() {
            return Err(StoreError::Full(format!(
                "an account keeps at most {} {}: remove one first",
                kind.limit(),
                kind.plural()
            )));
        }
        Ok(())
    }

    fn count_kept(&self, account_id: u64, kind: Kept) -> Result<usize, StoreError> {
        let txn = self.db.begin_read()?;
        match kind {
            Kept::Templates => prefixed(&txn, TEMPLATE_NAMES, account_id),
            Kept::Identities => prefixed(&txn, IDENTITY_DOMAINS, account_id),
            Kept::Plugins => prefixed(&txn, PLUGIN_OWNERS, account_id),
            Kept::Sources => count_decoded(&txn, SOURCES, |source: &Source| {
                source.account_id == account_id
            }),
            Kept::Webhooks => count_decoded(&txn, WEBHOOK_ENDPOINTS, |hook: &WebhookEndpoint| {
                hook.account_id == account_id
            }),
            Kept::Users => count_decoded(&txn, USERS, |user: &User| {
                user.account_id == Some(account_id)
            }),
            Kept::Credentials => {
                let table = txn.open_table(CREDENTIALS)?;
                let mut count = 0;
                for entry in table.iter()? {
                    let credential: Credential = decode(&entry?.1)?;
                    count += usize::from(credential.account_id == account_id);
                }
                Ok(count)
            }
        }
    }
}

/// Entries of an index keyed by (account, name) whose account is `account_id`.
fn prefixed<V: super::kv::Column>(
    txn: &super::kv::ReadTransaction,
    table: TableDefinition<(u64, &'static str), V>,
    account_id: u64,
) -> Result<usize, StoreError> {
    let table = txn.open_table(table)?;
    let mut count = 0;
    for entry in table.range((account_id, "")..)? {
        if entry?.0.0 != account_id {
            break;
        }
        count += 1;
    }
    Ok(count)
}

/// Records of a table keyed by id that `belongs` says are the account's.
fn count_decoded<T: serde::de::DeserializeOwned>(
    txn: &super::kv::ReadTransaction,
    table: TableDefinition<u64, &'static [u8]>,
    belongs: impl Fn(&T) -> bool,
) -> Result<usize, StoreError> {
    let table = txn.open_table(table)?;
    let mut count = 0;
    for entry in table.iter()? {
        count += usize::from(belongs(&decode(&entry?.1)?));
    }
    Ok(count)
}
