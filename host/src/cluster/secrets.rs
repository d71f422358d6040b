//! The secrets every node must hold alike, kept in the store sealed under the master key: the
//! keys tracking links, return paths (VERP) and API tokens are signed with. The first node to
//! start stores them; the others read them. A node that signed with a key of its own before
//! (in a file in its data folder) offers that key when none is stored yet, so the links and
//! tokens it already handed out keep working.
//!
//! The master key itself never enters the store it protects: it stays in its file. The store
//! keeps a check value sealed under it, so a node started with another master key refuses to
//! start before it writes anything the others could not read.

use std::path::Path;

use crate::dkim::{KeyError, KeyVault};
use crate::store::{Store, StoreError};

/// The shared secret that proves which master key the store's secrets are sealed under.
const MASTER_KEY_CHECK: &str = "master-key-check";
/// What the check value seals.
const MASTER_KEY_CHECK_TEXT: &[u8] = b"the master key of this Sluice platform";

/// A key every node signs with alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedKey {
    /// Signs tracking (click and open) and online-view links.
    Links,
    /// Signs the message id in return paths (VERP), so returned mail is matched to its message.
    ReturnPath,
    /// Signs the API's bearer tokens.
    ApiTokens,
}

impl SharedKey {
    /// Its name in the store.
    pub fn name(self) -> &'static str {
        match self {
            SharedKey::Links => "links-key",
            SharedKey::ReturnPath => "return-path-key",
            SharedKey::ApiTokens => "api-token-key",
        }
    }

    /// The file in the data folder a node kept it in before keys were shared.
    pub fn former_file(self) -> &'static str {
        match self {
            SharedKey::Links => "links.key",
            SharedKey::ReturnPath => "return-path.key",
            SharedKey::ApiTokens => "api.key",
        }
    }

    fn label(self) -> String {
        format!("shared-key:{}", self.name())
    }
}

/// Why the shared secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The store's secrets are sealed under another master key than this node's.
    #[error(
        "the master key in {path} is not the one this platform's store is sealed under: \
         refusing to start (nothing was written). Give every node the same master key file \
         (copy it from a node that runs)."
    )]
    OtherMasterKey {
        /// The master key file.
        path: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A former key file could not be read.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        error: String,
    },
}

/// Checks that `vault` opens what the store is sealed under, storing the check value when
/// the store has none yet (a new platform, or one made before the check existed).
/// `master_key_file` is named in the refusal.
pub async fn check_master_key(
    store: &Store,
    vault: &KeyVault,
    master_key_file: &Path,
) -> Result<(), SecretsError> {
    let refused = || SecretsError::OtherMasterKey {
        path: master_key_file.display().to_string(),
    };
    let stored = match store.shared_secret(MASTER_KEY_CHECK)? {
        Some(stored) => stored,
        None => {
            let check = vault.seal(MASTER_KEY_CHECK, MASTER_KEY_CHECK_TEXT)?;
            store
                .shared_secret_or_insert(MASTER_KEY_CHECK, check)
                .await?
        }
    };
    match vault.open(MASTER_KEY_CHECK, &stored) {
        Ok(text) if text == MASTER_KEY_CHECK_TEXT => Ok(()),
        Ok(_) | Err(KeyError::Unseal) => Err(refused()),
        Err(error) => Err(error.into()),
    }
}

/// The key every node signs `key` with: the stored one, else this node's former file's (an
/// upgrade keeps what it signed valid), else a new random one, whichever is stored first.
/// Call [`check_master_key`] first: a key sealed under another master key is an error here.
pub async fn shared_key(
    store: &Store,
    vault: &KeyVault,
    key: SharedKey,
    data_dir: &Path,
) -> Result<[u8; 32], SecretsError> {
    let label = key.label();
    let former = data_dir.join(key.former_file());
    let sealed = match store.shared_secret(key.name())? {
        Some(sealed) => sealed,
        None => {
            let offered = match std::fs::read(&former) {
                Ok(bytes) => {
                    let offered: [u8; 32] = bytes.try_into().map_err(|_| SecretsError::File {
                        path: former.display().to_string(),
                        error: "not a 32-byte key".into(),
                    })?;
                    offered
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => random_key()?,
                Err(error) => {
                    return Err(SecretsError::File {
                        path: former.display().to_string(),
                        error: error.to_string(),
                    });
                }
            };
            let sealed = vault.seal(&label, &offered)?;
            let stored = store.shared_secret_or_insert(key.name(), sealed).await?;
            if former.exists() && vault.open(&label, &stored)? == offered {
                tracing::info!(key = key.name(), file = %former.display(), "this node's key is now the platform's");
            }
            stored
        }
    };
    let opened = vault.open(&label, &sealed)?;
    let opened: [u8; 32] = opened
        .try_into()
        .map_err(|_| KeyError::Crypto(format!("the stored {} is not 32 bytes", key.name())))?;
    if let Ok(bytes) = std::fs::read(&former)
        && bytes != opened
    {
        tracing::warn!(key = key.name(), file = %former.display(), "this node's former key is not the platform's: what it signed alone no longer verifies");
    }
    Ok(opened)
}

fn random_key() -> Result<[u8; 32], SecretsError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|error| KeyError::Crypto(error.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store::open(&dir.join("store.redb")).unwrap()
    }

    #[tokio::test]
    async fn a_node_with_another_master_key_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let path = dir.path().join("master.key");
        let first = KeyVault::new(&[1; 32]);
        check_master_key(&store, &first, &path).await.unwrap();
        let links = shared_key(&store, &first, SharedKey::Links, dir.path())
            .await
            .unwrap();
        let before = store.shared_secret(MASTER_KEY_CHECK).unwrap();
        let other = KeyVault::new(&[2; 32]);
        let error = check_master_key(&store, &other, &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("master key") && error.contains("master.key"),
            "{error}"
        );
        assert_eq!(store.shared_secret(MASTER_KEY_CHECK).unwrap(), before);
        // The same key again passes, and reads the same shared key.
        check_master_key(&store, &first, &path).await.unwrap();
        let again = shared_key(&store, &first, SharedKey::Links, dir.path())
            .await
            .unwrap();
        assert_eq!(links, again);
    }

    #[tokio::test]
    async fn a_former_key_file_becomes_the_platforms_key_and_later_nodes_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let vault = KeyVault::new(&[1; 32]);
        let upgraded = dir.path().join("upgraded");
        std::fs::create_dir_all(&upgraded).unwrap();
        std::fs::write(upgraded.join("api.key"), [9u8; 32]).unwrap();
        let key = shared_key(&store, &vault, SharedKey::ApiTokens, &upgraded)
            .await
            .unwrap();
        assert_eq!(key, [9; 32]);
        let fresh = dir.path().join("fresh");
        let read = shared_key(&store, &vault, SharedKey::ApiTokens, &fresh)
            .await
            .unwrap();
        assert_eq!(read, [9; 32]);
        // A key no file offered is random, and distinct per kind.
        let links = shared_key(&store, &vault, SharedKey::Links, &fresh)
            .await
            .unwrap();
        assert_ne!(links, [9; 32]);
        assert_ne!(links, [0; 32]);
        assert!(!fresh.exists(), "no file is made for a shared key");
    }
}
