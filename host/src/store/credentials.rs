//! A source's credentials listed, given a new secret and removed (the API's
//! `sources/{id}/users`, the dashboard's sources page).

use redb::ReadableTable;

use super::{
    CREDENTIALS, Credential, CredentialKind, Store, StoreError, decode, encode, hash_secret_queued,
};

impl Store {
    /// The credentials of one kind that authenticate as a source, by username.
    pub fn credentials_of_source(
        &self,
        source_id: u64,
        kind: CredentialKind,
    ) -> Result<Vec<Credential>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CREDENTIALS)?;
        let mut found = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            let credential: Credential = decode(value.value())?;
            if credential.source_id == source_id && credential.kind == kind {
                found.push(credential);
            }
        }
        Ok(found)
    }

    /// Removes a credential; false when there was none by that username.
    pub async fn remove_credential(&self, username: &str) -> Result<bool, StoreError> {
        let username = username.to_string();
        self.write(move |txn| {
            Ok(txn
                .open_table(CREDENTIALS)?
                .remove(username.as_str())?
                .is_some())
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
        let username = username.to_string();
        self.write(move |txn| {
            let mut table = txn.open_table(CREDENTIALS)?;
            let current: Option<Credential> = match table.get(username.as_str())? {
                Some(value) => Some(decode(value.value())?),
                None => None,
            };
            let Some(mut credential) = current.filter(|found| found.source_id == source_id) else {
                return Err(StoreError::NotFound(format!("credential {username}")));
            };
            credential.description = description.clone();
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
        let secret_hash = hash_secret_queued(secret.to_string()).await?;
        let username = username.to_string();
        self.write(move |txn| {
            let mut table = txn.open_table(CREDENTIALS)?;
            let current: Option<Credential> = match table.get(username.as_str())? {
                Some(value) => Some(decode(value.value())?),
                None => None,
            };
            let Some(mut credential) = current.filter(|found| found.source_id == source_id) else {
                return Err(StoreError::NotFound(format!("credential {username}")));
            };
            credential.secret_hash = secret_hash.clone();
            table.insert(username.as_str(), encode(&credential)?.as_slice())?;
            Ok(credential)
        })
        .await
    }
}
