//! A source's credentials listed, given a new secret and removed (the API's
//! `sources/{id}/users`, the dashboard's sources page).

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::{
    CREDENTIALS, Credential, CredentialKind, Store, StoreError, decode, encode, hash_secret_queued,
};

/// Each source's credentials, (source id, username): a source's listing and its deletion
/// read its own entries, not every account's credentials. Written beside `credentials`
/// wherever one is added or removed; built from it when a store made before it is opened.
pub(super) const SOURCE_CREDENTIALS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("source_credentials");

/// Fills `source_credentials` from the credentials, for a store made before it existed (in
/// the transaction that creates the table, so it is never seen half-built).
pub(super) fn index_credentials_by_source(txn: &WriteTransaction) -> Result<(), StoreError> {
    let credentials = txn.open_table(CREDENTIALS)?;
    let mut by_source = txn.open_table(SOURCE_CREDENTIALS)?;
    for entry in credentials.iter()? {
        let (username, value) = entry?;
        let credential: Credential = decode(&value)?;
        by_source.insert((credential.source_id, username.as_str()), ())?;
    }
    Ok(())
}

/// Removes every credential of a source, with its index entries.
pub(super) fn remove_credentials_of_source(
    txn: &WriteTransaction,
    source_id: u64,
) -> Result<(), StoreError> {
    let mut by_source = txn.open_table(SOURCE_CREDENTIALS)?;
    let mut credentials = txn.open_table(CREDENTIALS)?;
    let usernames = usernames_of(&by_source, source_id)?;
    for username in &usernames {
        credentials.delete(username.as_str())?;
        by_source.delete((source_id, username.as_str()))?;
    }
    Ok(())
}

/// The usernames of a source's credentials, in order.
fn usernames_of(
    by_source: &impl ReadableTable<(u64, &'static str), ()>,
    source_id: u64,
) -> Result<Vec<String>, StoreError> {
    let mut usernames = Vec::new();
    for entry in by_source.range((source_id, "")..(source_id.saturating_add(1), ""))? {
        usernames.push(entry?.0.1.to_string());
    }
    Ok(usernames)
}

impl Store {
    /// The credentials of one kind that authenticate as a source, by username.
    pub fn credentials_of_source(
        &self,
        source_id: u64,
        kind: CredentialKind,
    ) -> Result<Vec<Credential>, StoreError> {
        let txn = self.db.begin_read()?;
        let credentials = txn.open_table(CREDENTIALS)?;
        let mut found = Vec::new();
        for username in usernames_of(&txn.open_table(SOURCE_CREDENTIALS)?, source_id)? {
            let Some(value) = credentials.get(username.as_str())? else {
                continue;
            };
            let credential: Credential = decode(&value)?;
            if credential.kind == kind {
                found.push(credential);
            }
        }
        Ok(found)
    }

    /// Removes a credential; false when there was none by that username.
    pub async fn remove_credential(&self, username: &str) -> Result<bool, StoreError> {
        let username = username.to_string();
        self.write(move |txn| {
            let removed = txn
                .open_table(CREDENTIALS)?
                .remove(username.as_str())?
                .map(|value| decode::<Credential>(&value))
                .transpose()?;
            if let Some(credential) = &removed {
                txn.open_table(SOURCE_CREDENTIALS)?
                    .delete((credential.source_id, username.as_str()))?;
            }
            Ok(removed.is_some())
        })
        .await
    }

    /// Sets (or with `None` removes) the description of credential `username` of `source_id`.
    /// `NotFound` when the source has no such credential.
    pub async fn describe_credential(
        &self,
        source_id: u64,
        username: &str,
        description: Option<String>,
    ) -> Result<Credential, StoreError> {
        self.change_credential(source_id, username, move |credential| {
            credential.description.clone_from(&description);
        })
        .await
    }

    /// Changes the credential `username` of `source_id` as the writer finds it; `NotFound`
    /// when the source has no such credential.
    async fn change_credential(
        &self,
        source_id: u64,
        username: &str,
        change: impl Fn(&mut Credential) + Send + Sync + 'static,
    ) -> Result<Credential, StoreError> {
        let username = username.to_string();
        self.write(move |txn| {
            let mut table = txn.open_table(CREDENTIALS)?;
            let current: Option<Credential> = match table.get(username.as_str())? {
                Some(value) => Some(decode(&value)?),
                None => None,
            };
            let Some(mut credential) = current.filter(|found| found.source_id == source_id) else {
                return Err(StoreError::NotFound(format!("credential {username}")));
            };
            change(&mut credential);
            table.insert(username.as_str(), encode(&credential)?.as_slice())?;
            Ok(credential)
        })
        .await
    }

    /// Gives the credential `username` of `source_id` a new secret in one write: the old
    /// secret stops working as the new one starts. `NotFound` when the source has no such
    /// credential.
    pub async fn rotate_credential(
        &self,
        source_id: u64,
        username: &str,
        secret: &str,
    ) -> Result<Credential, StoreError> {
        // Before the costly hash: a username that is not the source's costs nothing. The
        // write checks again, since the credential may go while the secret is hashed.
        if self
            .credential(username)?
            .is_none_or(|found| found.source_id != source_id)
        {
            return Err(StoreError::NotFound(format!("credential {username}")));
        }
        let secret_hash = hash_secret_queued(secret.to_string()).await?;
        self.change_credential(source_id, username, move |credential| {
            credential.secret_hash.clone_from(&secret_hash);
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::Source;
    use super::*;
    use crate::store::backends::{TestPlace, on_both_backends};

    /// A source of a new account, or of `account_id` when it is given.
    async fn source_of(store: &Store, account_id: u64, name: &str) -> Source {
        while store.account(account_id).unwrap().is_none() {
            store.create_account("tenant").await.unwrap();
        }
        store
            .create_source(Source {
                id: 0,
                account_id,
                name: name.into(),
                allowed_networks: None,
                max_message_bytes: 1 << 20,
                require_tls: false,
                allow_plain_auth: false,
                feedback_address: None,
            })
            .await
            .unwrap()
    }

    fn usernames(credentials: Vec<Credential>) -> Vec<String> {
        credentials.into_iter().map(|c| c.username).collect()
    }

    on_both_backends!(a_sources_credentials_are_found_and_deleted_without_reading_anothers);
    async fn a_sources_credentials_are_found_and_deleted_without_reading_anothers(
        place: TestPlace,
    ) {
        let store = place.open();
        let kept = source_of(&store, 1, "kept").await;
        let deleted = source_of(&store, 1, "deleted").await;
        let other = source_of(&store, 2, "other account").await;
        for (source, username) in [
            (&kept, "kept-smtp"),
            (&deleted, "deleted-smtp"),
            (&deleted, "deleted-smtp-2"),
            (&other, "other-smtp"),
        ] {
            store
                .add_credential(source, CredentialKind::Smtp, username, "secret")
                .await
                .unwrap();
        }
        store
            .add_credential(&deleted, CredentialKind::Api, "deleted-api", "secret")
            .await
            .unwrap();
        // Spoil the other account's record: reading it would fail.
        let txn = store.db.begin_write().unwrap();
        txn.open_table(CREDENTIALS)
            .unwrap()
            .insert("other-smtp", &b"not a credential"[..])
            .unwrap();
        txn.commit().unwrap();

        let smtp = store
            .credentials_of_source(deleted.id, CredentialKind::Smtp)
            .unwrap();
        assert_eq!(usernames(smtp), ["deleted-smtp", "deleted-smtp-2"]);
        store.delete_source(1, deleted.id).await.unwrap().unwrap();
        for username in ["deleted-smtp", "deleted-smtp-2", "deleted-api"] {
            assert!(store.credential(username).unwrap().is_none(), "{username}");
        }
        let kept_smtp = store
            .credentials_of_source(kept.id, CredentialKind::Smtp)
            .unwrap();
        assert_eq!(usernames(kept_smtp), ["kept-smtp"]);
        assert!(store.remove_credential("kept-smtp").await.unwrap());
        let txn = store.db.begin_read().unwrap();
        let left: Vec<(u64, String)> = txn
            .open_table(SOURCE_CREDENTIALS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|entry| {
                let (key, _) = entry.unwrap();
                key
            })
            .collect();
        assert_eq!(left, [(other.id, "other-smtp".to_string())]);
    }

    #[tokio::test]
    async fn a_store_made_before_the_index_finds_its_credentials_by_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let source = {
            let store = Store::open(&path).unwrap();
            let source = source_of(&store, 1, "old").await;
            store
                .add_credential(&source, CredentialKind::Smtp, "old-smtp", "secret")
                .await
                .unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.delete_table(SOURCE_CREDENTIALS).unwrap();
            txn.commit().unwrap();
            source
        };
        let store = super::super::tests::reopen(&path).await;
        let found = store
            .credentials_of_source(source.id, CredentialKind::Smtp)
            .unwrap();
        assert_eq!(usernames(found), ["old-smtp"]);
    }

    on_both_backends!(a_credential_for_a_source_deleted_meanwhile_is_refused);
    async fn a_credential_for_a_source_deleted_meanwhile_is_refused(place: TestPlace) {
        let store = place.open();
        let source = source_of(&store, 1, "gone").await;
        store.delete_source(1, source.id).await.unwrap().unwrap();
        let refused = store
            .add_credential(&source, CredentialKind::Api, "late", "secret")
            .await;
        assert!(matches!(refused, Err(StoreError::NotFound(_))));
        assert!(store.credential("late").unwrap().is_none());
    }

    /// Whether `username` of `account_id` still has the secret hash `hash`, as a session
    /// asks on each message.
    fn still_has(store: &Store, account_id: u64, username: &str, hash: &str) -> bool {
        store
            .credential_still(account_id, username, |credential| {
                credential.secret_hash == hash
            })
            .unwrap()
    }

    on_both_backends!(a_changed_credential_is_checked_at_once_on_the_node_that_changed_it);
    async fn a_changed_credential_is_checked_at_once_on_the_node_that_changed_it(place: TestPlace) {
        let store = place.open();
        let source = source_of(&store, 1, "app").await;
        let added = store
            .add_credential(&source, CredentialKind::Smtp, "app-smtp", "first")
            .await
            .unwrap();
        assert!(still_has(&store, 1, "app-smtp", &added.secret_hash));
        // Another account asking for the same username finds nothing of it.
        source_of(&store, 2, "other").await;
        assert!(!still_has(&store, 2, "app-smtp", &added.secret_hash));
        let rotated = store
            .rotate_credential(source.id, "app-smtp", "second")
            .await
            .unwrap();
        assert_ne!(rotated.secret_hash, added.secret_hash);
        assert!(!still_has(&store, 1, "app-smtp", &added.secret_hash));
        assert!(still_has(&store, 1, "app-smtp", &rotated.secret_hash));
        assert!(store.remove_credential("app-smtp").await.unwrap());
        assert!(!still_has(&store, 1, "app-smtp", &rotated.secret_hash));

        let api = store
            .add_credential(&source, CredentialKind::Api, "app-api", "secret")
            .await
            .unwrap();
        assert!(still_has(&store, 1, "app-api", &api.secret_hash));
        store.delete_source(1, source.id).await.unwrap().unwrap();
        assert!(!still_has(&store, 1, "app-api", &api.secret_hash));
    }

    /// Two nodes on one database: a credential given a new secret through one is used with
    /// that secret on the other at once; the old secret, and a credential removed, stop on
    /// the other from that node's next look at the change counter.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_credential_changed_through_another_node_is_seen_from_the_next_look() {
        let Some(place) = TestPlace::postgres(module_path!()) else {
            return;
        };
        let this_node = place.open();
        let other_node = place.open();
        let source = source_of(&this_node, 1, "app").await;
        let added = this_node
            .add_credential(&source, CredentialKind::Smtp, "app-smtp", "first")
            .await
            .unwrap();
        this_node.refresh_configuration().unwrap();
        assert!(still_has(&this_node, 1, "app-smtp", &added.secret_hash));

        let rotated = other_node
            .rotate_credential(source.id, "app-smtp", "second")
            .await
            .unwrap();
        assert!(still_has(&this_node, 1, "app-smtp", &rotated.secret_hash));
        // The copy this node made before the change stands until its next look.
        assert!(still_has(&this_node, 1, "app-smtp", &added.secret_hash));
        assert!(this_node.refresh_configuration().unwrap());
        assert!(!still_has(&this_node, 1, "app-smtp", &added.secret_hash));

        assert!(still_has(&this_node, 1, "app-smtp", &rotated.secret_hash));
        assert!(other_node.remove_credential("app-smtp").await.unwrap());
        assert!(still_has(&this_node, 1, "app-smtp", &rotated.secret_hash));
        assert!(this_node.refresh_configuration().unwrap());
        assert!(!still_has(&this_node, 1, "app-smtp", &rotated.secret_hash));
    }
}
