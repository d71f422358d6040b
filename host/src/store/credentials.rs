//! A source's credentials listed and removed (the API's `sources/{id}/users`).

use redb::ReadableTable;

use super::{CREDENTIALS, Credential, CredentialKind, Store, StoreError, decode};

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
}
