//! DKIM key pairs: generation, the public half as DNS publishes it, and the private half sealed
//! at rest under the host's master key.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

pub use crate::store::model::KeyAlgorithm;

impl KeyAlgorithm {
    /// The `k=` tag of the DNS record.
    pub fn dns_tag(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// Why a key could not be made, sealed or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generating or parsing a key failed.
    #[error("key: {0}")]
    Crypto(String),
    /// A sealed key does not open under this master key (another host's key, or tampering).
    #[error("a sealed private key does not open under this host's master key")]
    Unseal,
    /// Reading or writing the master key file failed.
    #[error("master key {path}: {error}")]
    MasterKeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        error: String,
    },
}

/// A freshly generated key pair: the private key in DER (PKCS#1 for RSA, PKCS#8 for Ed25519),
/// the public key as the `p=` tag wants it.
pub struct GeneratedKey {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// The private key, DER.
    pub private_der: Vec<u8>,
    /// The public key, base64: SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519.
    pub public_key: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// Generates a key pair. RSA generation takes a few hundred milliseconds: call it off async
/// workers.
pub fn generate(algorithm: KeyAlgorithm) -> Result<GeneratedKey, KeyError> {
    let crypto = |error: &dyn std::fmt::Display| KeyError::Crypto(error.to_string());
    match algorithm {
        KeyAlgorithm::Rsa2048 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::EncodePublicKey;
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| crypto(&e))?;
            let private_der = private.to_pkcs1_der().map_err(|e| crypto(&e))?;
            let public_der = rsa::RsaPublicKey::from(&private)
                .to_public_key_der()
                .map_err(|e| crypto(&e))?;
            Ok(GeneratedKey {
                algorithm,
                private_der: private_der.as_bytes().to_vec(),
                public_key: BASE64.encode(public_der.as_bytes()),
            })
        }
        KeyAlgorithm::Ed25519 => {
            use ring::signature::KeyPair;
            let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|e| crypto(&e))?;
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|e| crypto(&e))?;
            Ok(GeneratedKey {
                algorithm,
                private_der: pkcs8.as_ref().to_vec(),
                public_key: BASE64.encode(pair.public_key().as_ref()),
            })
        }
    }
}

/// A signing key from its private DER.
pub fn signing_key(algorithm: KeyAlgorithm, private_der: &[u8]) -> Result<DkimKey, KeyError> {
    let crypto = |error: mail_auth::Error| KeyError::Crypto(error.to_string());
    Ok(match algorithm {
        KeyAlgorithm::Rsa2048 => {
            let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(private_der));
            DkimKey::Rsa(RsaKey::<Sha256>::from_key_der(der).map_err(crypto)?)
        }
        KeyAlgorithm::Ed25519 => {
            DkimKey::Ed25519(Ed25519Key::from_pkcs8_der(private_der).map_err(crypto)?)
        }
    })
}

/// Seals private keys at rest with AES-256-GCM under the host's master key. Each sealed key is
/// bound to its owner's label (the additional data), so a sealed key copied onto another
/// identity's record does not open.
pub struct KeyVault {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault").finish_non_exhaustive()
    }
}

const MASTER_KEY_BYTES: usize = 32;

impl KeyVault {
    /// A vault over these 32 key bytes.
    pub fn new(master_key: &[u8; MASTER_KEY_BYTES]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, master_key).expect("a 32-byte AES-256 key");
        Self {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        }
    }

    /// The vault whose master key is in `path` (64 hex digits), generating the file (0600) when
    /// it does not exist. Losing this file makes every stored private key unreadable.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyError> {
        let file_error = |error: &dyn std::fmt::Display| KeyError::MasterKeyFile {
            path: path.display().to_string(),
            error: error.to_string(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| file_error(&e))?;
                let key: [u8; MASTER_KEY_BYTES] = bytes
                    .try_into()
                    .map_err(|_| file_error(&"the key is not 32 bytes (64 hex digits)"))?;
                Ok(Self::new(&key))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; MASTER_KEY_BYTES];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| file_error(&"no randomness"))?;
                crate::private_file::write_private(path, hex::encode(key).as_bytes())
                    .map_err(|e| file_error(&e))?;
                Ok(Self::new(&key))
            }
            Err(error) => Err(file_error(&error)),
        }
    }

    /// Seals `plaintext` for the owner `label`: nonce followed by ciphertext and tag.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| KeyError::Crypto("no randomness".into()))?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| KeyError::Crypto("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    /// Opens what `seal` made for the same `label`.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unseal)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut buffer)
            .map_err(|_| KeyError::Unseal)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_for_their_label_and_master_key() {
        let vault = KeyVault::new(&[7; 32]);
        let sealed = vault.seal("identity:1", b"private").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(vault.open("identity:1", &sealed).unwrap(), b"private");
        assert!(matches!(
            vault.open("identity:2", &sealed),
            Err(KeyError::Unseal)
        ));
        let other = KeyVault::new(&[8; 32]);
        assert!(matches!(
            other.open("identity:1", &sealed),
            Err(KeyError::Unseal)
        ));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            vault.open("identity:1", &tampered),
            Err(KeyError::Unseal)
        ));
    }

    #[test]
    fn the_master_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = KeyVault::open_or_create(&path).unwrap();
        let sealed = first.seal("x", b"secret").unwrap();
        let again = KeyVault::open_or_create(&path).unwrap();
        assert_eq!(again.open("x", &sealed).unwrap(), b"secret");
        std::fs::write(&path, "abcd").unwrap();
        assert!(KeyVault::open_or_create(&path).is_err());
    }

    #[test]
    fn generated_keys_load_as_signing_keys() {
        for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
            let key = generate(algorithm).unwrap();
            signing_key(algorithm, &key.private_der).unwrap();
            let public = BASE64.decode(&key.public_key).unwrap();
            match algorithm {
                KeyAlgorithm::Ed25519 => assert_eq!(public.len(), 32),
                // SubjectPublicKeyInfo of a 2048-bit key.
                KeyAlgorithm::Rsa2048 => assert!(public.len() > 256, "{}", public.len()),
            }
        }
    }
}
