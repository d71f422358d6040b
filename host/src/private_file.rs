//! Files that hold secrets (keys, sealed key files, compiled code the host vouches for):
//! written atomically and readable by the owner only; keys made on first use.

use std::fs;
use std::io::Write;
use std::path::Path;

/// A 32-byte secret kept in a file only the host can read, made on first use. A file that
/// exists but cannot be read, or has the wrong length, is an error: silently replacing the key
/// would invalidate every token and link made with it.
pub fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    match fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| std::io::Error::other(format!("{} is not a 32-byte key", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(folder) = path.parent() {
                fs::create_dir_all(folder)?;
            }
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|error| std::io::Error::other(error.to_string()))?;
            write_private(path, &key)?;
            Ok(key)
        }
        Err(error) => Err(error),
    }
}

/// Writes a file only the owner can read, atomically, making its folder if needed.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        fs::create_dir_all(folder)?;
    }
    // Unique per writer, not per process: two threads writing the same file at once (two
    // plugin loads opening one cache) must not rename each other's half-written file away.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp{}-{write}", std::process::id()));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)
}
