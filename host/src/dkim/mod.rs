//! DKIM for outgoing mail: the platform's key and the accounts' sender identities, signing,
//! the DNS records an identity needs, and the DMARC alignment each signed message will get.
//!
//! Private keys live only here in the host: sealed under the master key in the store, opened
//! when a message is signed. The DKIM Flowstep asks for a signature through its capability and
//! never sees a key.

mod dmarc;
mod keys;
mod records;
mod sign;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

pub use dmarc::{DmarcReport, SignatureAlignment, aligned, organizational_domain};
pub use keys::{GeneratedKey, KeyAlgorithm, KeyError, KeyVault, generate, signing_key};
pub use records::{expected_records, validate};
pub use sign::{DomainKey, SIGNED_HEADERS, sign};

use crate::store::{SenderIdentity, Store, StoreError};

/// The `[dkim]` section: the platform's signing domain and the names customers point their
/// DNS records at.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    /// The platform's own signing domain: every message carries a signature for it.
    pub platform_domain: String,
    /// The selector of the platform key.
    pub platform_selector: String,
    /// The algorithm of the platform key, made on first start.
    #[serde(default)]
    pub platform_algorithm: KeyAlgorithm,
    /// The file with the master key that seals private keys (64 hex digits); relative to
    /// data_dir, generated when missing.
    pub master_key_file: PathBuf,
    /// The SPF record customers include.
    pub spf_include: String,
    /// The envelope-sender domain when the customer has no return-path CNAME of their own.
    pub return_path_domain: String,
    /// The label under a customer's domain for the return-path CNAME (`bounce` →
    /// bounce.customer.example).
    pub return_path_label: String,
    /// What a customer's web-domain CNAME points at (tracking and online links).
    pub web_domain: String,
    /// The label under a customer's domain for the web-domain CNAME.
    pub web_label: String,
}

impl Default for DkimConfig {
    fn default() -> Self {
        Self {
            platform_domain: "sluice.example".into(),
            platform_selector: "sluice1".into(),
            platform_algorithm: KeyAlgorithm::Rsa2048,
            master_key_file: "keys/master.key".into(),
            spf_include: "_spf.sluice.example".into(),
            return_path_domain: "bounce.sluice.example".into(),
            return_path_label: "bounce".into(),
            web_domain: "links.sluice.example".into(),
            web_label: "links".into(),
        }
    }
}

/// Why a message could not be signed or an identity made.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(String),
}

/// The signature fields for a message and its DMARC alignment.
#[derive(Debug)]
pub struct Signed {
    /// DKIM-Signature fields, CRLF-terminated, to put in front of the message.
    pub fields: String,
    /// What the signatures and the return path mean for DMARC.
    pub report: DmarcReport,
}

/// The host's DKIM service: the platform key, the sealed identity keys, and signing.
pub struct Dkim {
    config: DkimConfig,
    platform: DomainKey,
    platform_public_key: String,
    vault: KeyVault,
    store: Store,
    /// Identity keys opened once: identities are never changed in place, only replaced.
    opened: Mutex<HashMap<u64, Arc<DomainKey>>>,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkim")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// Whether a stored platform key (JSON with its private half sealed) opens under `vault`.
fn opens_under(vault: &KeyVault, label: &str, text: &[u8]) -> bool {
    serde_json::from_slice::<StoredPlatformKey>(text)
        .ok()
        .and_then(|stored| hex::decode(&stored.sealed).ok())
        .is_some_and(|sealed| vault.open(label, &sealed).is_ok())
}

impl Dkim {
    /// Opens the master key under `data_dir` (made when missing) and the platform key: the
    /// one in the store, which every node signs with alike; else the one this node kept in its
    /// data folder before keys were shared (DNS publishes it); else a new one. May generate an
    /// RSA key and waits for the store: call it off async workers.
    pub fn open(config: DkimConfig, data_dir: &Path, store: Store) -> Result<Self, DkimError> {
        let vault = KeyVault::open_or_create(&data_dir.join(&config.master_key_file))?;
        let key_file = data_dir.join("keys").join(format!(
            "platform-{}-{}.sealed",
            config.platform_domain, config.platform_selector
        ));
        let label = format!(
            "platform:{}:{}",
            config.platform_domain, config.platform_selector
        );
        let file_error = |error: &dyn std::fmt::Display| KeyError::MasterKeyFile {
            path: key_file.display().to_string(),
            error: error.to_string(),
        };
        // Its private half is sealed inside: stored as the file holds it, when it opens under
        // this node's master key. A file sealed under an earlier key is never stored: every
        // node would then fail to open the platform's key.
        let text = match store.shared_secret(&label)? {
            Some(text) => text,
            None => {
                let generate_sealed = || -> Result<Vec<u8>, DkimError> {
                    let generated = generate(config.platform_algorithm)?;
                    let stored = StoredPlatformKey {
                        algorithm: generated.algorithm,
                        public_key: generated.public_key,
                        sealed: hex::encode(vault.seal(&label, &generated.private_der)?),
                    };
                    Ok(serde_json::to_vec_pretty(&stored).map_err(|e| file_error(&e))?)
                };
                let offered = match std::fs::read(&key_file) {
                    Ok(text) if opens_under(&vault, &label, &text) => text,
                    Ok(_) => {
                        tracing::warn!(
                            file = %key_file.display(),
                            "the platform DKIM key file does not open under this master key; \
                             a new platform key is made"
                        );
                        generate_sealed()?
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        generate_sealed()?
                    }
                    Err(error) => return Err(file_error(&error).into()),
                };
                store.shared_secret_or_insert_blocking(&label, offered)?
            }
        };
        let stored: StoredPlatformKey =
            serde_json::from_slice(&text).map_err(|e| KeyError::Crypto(format!("{label}: {e}")))?;
        let sealed =
            hex::decode(&stored.sealed).map_err(|e| KeyError::Crypto(format!("{label}: {e}")))?;
        let private_der = vault.open(&label, &sealed)?;
        let (algorithm, public_key) = (stored.algorithm, stored.public_key);
        let platform = DomainKey::new(
            &config.platform_domain,
            &config.platform_selector,
            signing_key(algorithm, &private_der)?,
        );
        Ok(Self {
            platform_public_key: dkim_record_value(algorithm, &public_key),
            config,
            platform,
            vault,
            store,
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DkimConfig {
        &self.config
    }

    /// The TXT record (name, value) the operator publishes for the platform key.
    pub fn platform_record(&self) -> (String, String) {
        (
            format!(
                "{}._domainkey.{}",
                self.config.platform_selector, self.config.platform_domain
            ),
            self.platform_public_key.clone(),
        )
    }

    /// Makes a new identity for `domain` with a fresh key, sealed. Not stored yet. Generating
    /// an RSA key takes a while: call it off async workers.
    pub fn new_identity(
        &self,
        account_id: u64,
        domain: &str,
        algorithm: KeyAlgorithm,
        selector: &str,
    ) -> Result<SenderIdentity, DkimError> {
        let generated = generate(algorithm)?;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let sealed = self.vault.seal(
            &identity_label(account_id, &domain, selector),
            &generated.private_der,
        )?;
        Ok(SenderIdentity {
            id: 0,
            account_id,
            domain,
            selector: selector.to_string(),
            algorithm,
            public_key: generated.public_key,
            sealed_private_key: hex::encode(sealed),
            created_at: crate::store::now_millis(),
            validation: None,
        })
    }

    /// Signs `raw` for the account: always with the platform key, and with the account's
    /// identity for the From domain when there is one that signs (its DKIM key validated,
    /// and the domain not validated by another account first). Blocking (store read, RSA).
    pub fn sign(&self, account_id: u64, raw: &[u8]) -> Result<Signed, DkimError> {
        let from_domain = from_domain(raw);
        let identity = match &from_domain {
            Some(domain) => self.identity_for(account_id, domain)?,
            None => None,
        };
        let identity_key = identity
            .as_ref()
            .map(|identity| self.opened_key(identity))
            .transpose()?;
        let mut keys = vec![&self.platform];
        if let Some(key) = &identity_key {
            keys.push(key);
        }
        let fields = sign(raw, &keys).map_err(|error| DkimError::Sign(error.to_string()))?;
        let signed: Vec<(&str, &str)> = keys
            .iter()
            .map(|key| (key.domain(), key.selector()))
            .collect();
        let validation = identity
            .as_ref()
            .and_then(|identity| identity.validation.as_ref());
        let return_path_domain = self.return_path_domain(identity.as_ref());
        let report = dmarc::report(
            from_domain.as_deref(),
            &signed,
            &return_path_domain,
            validation.is_some_and(|validation| validation.dkim),
        );
        Ok(Signed { fields, report })
    }

    /// The envelope-sender domain for a message of the account, by its From domain's identity.
    pub fn return_path_domain_for(&self, account_id: u64, raw: &[u8]) -> Result<String, DkimError> {
        let identity = match from_domain(raw) {
            Some(domain) => self.identity_for(account_id, &domain)?,
            None => None,
        };
        Ok(self.return_path_domain(identity.as_ref()))
    }

    /// The envelope-sender domain for mail of this identity: the customer's return-path name
    /// once its CNAME and its DKIM key are validated, the platform's otherwise.
    pub fn return_path_domain(&self, identity: Option<&SenderIdentity>) -> String {
        // The CNAME alone points at a name every account shares: only the DKIM key, made for
        // this one identity, proves that the domain's owner set it up for this account.
        match identity {
            Some(identity)
                if identity
                    .validation
                    .as_ref()
                    .is_some_and(|validation| validation.return_path && validation.dkim) =>
            {
                format!("{}.{}", self.config.return_path_label, identity.domain)
            }
            _ => self.config.return_path_domain.clone(),
        }
    }

    /// The account's signing identity for the From domain or, failing that, for its parent
    /// domains (an identity for example.com signs mail from news.example.com). An identity
    /// not validated, or for a domain another account validated first, never signs.
    fn identity_for(
        &self,
        account_id: u64,
        from_domain: &str,
    ) -> Result<Option<SenderIdentity>, StoreError> {
        let mut domain = from_domain;
        loop {
            if let Some(identity) = self.store.signing_identity(account_id, domain)? {
                return Ok(Some(identity));
            }
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent,
                _ => return Ok(None),
            }
        }
    }

    fn opened_key(&self, identity: &SenderIdentity) -> Result<Arc<DomainKey>, DkimError> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = opened.get(&identity.id) {
            return Ok(Arc::clone(key));
        }
        let sealed = hex::decode(&identity.sealed_private_key)
            .map_err(|_| DkimError::Key(KeyError::Unseal))?;
        let label = identity_label(identity.account_id, &identity.domain, &identity.selector);
        let private_der = self.vault.open(&label, &sealed)?;
        let key = Arc::new(DomainKey::new(
            &identity.domain,
            &identity.selector,
            signing_key(identity.algorithm, &private_der)?,
        ));
        opened.insert(identity.id, Arc::clone(&key));
        Ok(key)
    }
}

/// The platform key as kept on disk.
#[derive(serde::Serialize, Deserialize)]
struct StoredPlatformKey {
    algorithm: KeyAlgorithm,
    public_key: String,
    sealed: String,
}

/// What a sealed identity key is bound to.
fn identity_label(account_id: u64, domain: &str, selector: &str) -> String {
    format!("identity:{account_id}:{domain}:{selector}")
}

/// The DKIM TXT record's value for a public key.
pub fn dkim_record_value(algorithm: KeyAlgorithm, public_key: &str) -> String {
    format!("v=DKIM1; k={}; p={public_key}", algorithm.dns_tag())
}

/// The domain of the message's From address, lower case.
pub fn from_domain(raw: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(raw)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_domain_is_read_from_the_header() {
        let raw = b"From: \"Shop\" <News@Mail.Example.COM>\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(from_domain(raw).as_deref(), Some("mail.example.com"));
        assert_eq!(from_domain(b"Subject: none\r\n\r\nbody\r\n"), None);
    }

    #[test]
    fn a_platform_key_file_sealed_under_another_master_key_is_not_shared() {
        let config = DkimConfig {
            platform_algorithm: KeyAlgorithm::Ed25519,
            ..DkimConfig::default()
        };
        let label = format!(
            "platform:{}:{}",
            config.platform_domain, config.platform_selector
        );
        // A node that made its platform key under its own master key...
        let first = tempfile::tempdir().unwrap();
        let first_store = Store::open(&first.path().join("store.redb")).unwrap();
        Dkim::open(config.clone(), first.path(), first_store.clone()).unwrap();
        let sealed_elsewhere = first_store.shared_secret(&label).unwrap().unwrap();
        // ...whose key file reaches a node with another master key, first on a new store.
        let second = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(second.path().join("keys")).unwrap();
        std::fs::write(
            second.path().join("keys").join(format!(
                "platform-{}-{}.sealed",
                config.platform_domain, config.platform_selector
            )),
            &sealed_elsewhere,
        )
        .unwrap();
        let second_store = Store::open(&second.path().join("store.redb")).unwrap();
        Dkim::open(config.clone(), second.path(), second_store.clone())
            .expect("a key file that does not open is replaced, not stored");
        let shared = second_store.shared_secret(&label).unwrap().unwrap();
        assert_ne!(shared, sealed_elsewhere);
        // Every later node with this master key opens what was stored.
        Dkim::open(config, second.path(), second_store).unwrap();
    }
}
