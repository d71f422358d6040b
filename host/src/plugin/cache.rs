//! Compiled plugin code on disk, so a restart does not compile every plugin again.
//!
//! Entries are keyed by the component's sha256 and the engine's compatibility hash. Loading
//! compiled code means trusting it completely, so every file carries an HMAC made with a key
//! only this host holds: a file the host did not write is never deserialized.

use std::fs;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;
use crate::private_file::{load_or_create_key, write_private};

type HmacSha256 = Hmac<Sha256>;
const MAC_LEN: usize = 32;

/// A folder of compiled components, authenticated with the host's own key.
#[derive(Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CompiledCache {
    /// Opens (creating if needed) a cache folder and its key.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        restrict(&dir, 0o700)?;
        let key = load_or_create_key(&dir.join("cache.key"))?;
        Ok(Self { dir, key })
    }

    /// The compiled component for `sha256`, from disk when a valid entry exists, otherwise
    /// from `compile` (and then stored).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        compile: impl FnOnce() -> Result<Component, LoadError>,
    ) -> Result<Component, LoadError> {
        let path = self.entry_path(engine, sha256);
        if let Some(component) = self.read(engine, &path, sha256) {
            return Ok(component);
        }
        let component = compile()?;
        match component.serialize() {
            Ok(code) => {
                if let Err(error) = self.write(&path, sha256, &code) {
                    tracing::warn!(path = %path.display(), %error, "could not cache compiled code");
                }
            }
            Err(error) => tracing::warn!(%error, "could not serialize compiled code"),
        }
        Ok(component)
    }

    /// Where the entry for this component and engine lives.
    pub fn entry_path(&self, engine: &Engine, sha256: &str) -> PathBuf {
        self.dir
            .join(engine_fingerprint(engine))
            .join(format!("{sha256}.cwasm"))
    }

    fn mac(&self, sha256: &str, code: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(sha256.as_bytes());
        mac.update(&[0]);
        mac.update(code);
        mac
    }

    fn read(&self, engine: &Engine, path: &Path, sha256: &str) -> Option<Component> {
        let file = fs::read(path).ok()?;
        if file.len() < MAC_LEN {
            return None;
        }
        let (tag, code) = file.split_at(MAC_LEN);
        if self.mac(sha256, code).verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "ignoring a cache entry this host did not write");
            return None;
        }
        deserialize(engine, code)
            .inspect_err(
                |error| tracing::warn!(path = %path.display(), %error, "stale cache entry"),
            )
            .ok()
    }

    fn write(&self, path: &Path, sha256: &str, code: &[u8]) -> std::io::Result<()> {
        let folder = path.parent().expect("entries live in a folder");
        fs::create_dir_all(folder)?;
        let tag = self.mac(sha256, code).finalize().into_bytes();
        let mut file = Vec::with_capacity(MAC_LEN + code.len());
        file.extend_from_slice(&tag);
        file.extend_from_slice(code);
        write_private(path, &file)
    }
}

/// Deserializes code whose MAC proved this host wrote it.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `code` is the output of `Component::serialize` by this host: the caller checked
    // the HMAC made with the host's secret key over exactly these bytes. Wasmtime itself then
    // checks that the code was compiled for this engine's configuration.
    unsafe { Component::deserialize(engine, code) }
}

/// A short stable name for the engine's compatibility hash: entries made by an engine with
/// other settings or another wasmtime land in another folder.
fn engine_fingerprint(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..12])
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
