//! Message bodies as the store keeps them: zstd-compressed.
//!
//! Bodies are most of what the store holds (the final message and its archived copy, ~20 KB
//! each for a newsletter), and redb gives a value larger than a page a run of pages rounded up
//! to a power of two: compressing a body before it is stored is what keeps the file near the
//! size of its content. A value that does not start with zstd's frame magic is a body stored
//! raw by an older version and is read as it is: a message never starts with those bytes (the
//! first is `(`, the second is not ASCII, while a message starts with a header name).

use super::StoreError;

/// zstd's level 3 (its default): about 3× on mail text at ~200 MB/s per core, so a 20 KB
/// body costs ~0.1 ms to store, a few percent of its flow.
const LEVEL: i32 = 3;

/// The first four bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A body as it is stored.
pub(super) fn pack(body: &[u8]) -> Result<Vec<u8>, StoreError> {
    zstd::bulk::compress(body, LEVEL).map_err(|error| StoreError::Body(error.to_string()))
}

/// A body already compressed for the store. Made before a change is handed to the writer
/// thread, never inside it: compressing a large message takes tens of milliseconds, which
/// the one thread all accounts' commits go through must not spend. Packing is deterministic
/// (one level, one library), so two equal bodies pack to equal bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Packed(Vec<u8>);

impl Packed {
    /// The stored form of `body`.
    pub(super) fn of(body: &[u8]) -> Result<Self, StoreError> {
        pack(body).map(Packed)
    }

    /// The bytes to store.
    pub(super) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// Packs `bodies` off the writer thread: on the calling task when they are small together
/// (a message of tens of kilobytes packs in well under a millisecond, less than handing it to
/// another thread and waking the task again costs in switches), else on a blocking worker, so
/// a large message never holds an async worker thread for long.
pub(super) async fn pack_all(bodies: Vec<Vec<u8>>) -> Result<Vec<Packed>, StoreError> {
    let inline = bodies.iter().map(Vec::len).sum::<usize>() <= INLINE_PACK_BYTES;
    let pack_each = move || bodies.iter().map(|body| Packed::of(body)).collect();
    if inline {
        return pack_each();
    }
    tokio::task::spawn_blocking(pack_each)
        .await
        .map_err(|error| StoreError::Body(error.to_string()))?
}

/// The most bytes packed on the calling task: about 0.2 ms of zstd at level 3 on this class
/// of machine.
const INLINE_PACK_BYTES: usize = 64 << 10;

/// A stored body as it was given to [`pack`] (or stored raw, before bodies were compressed).
pub(super) fn unpack(stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Ok(stored.to_vec());
    }
    let failed = |error: std::io::Error| StoreError::Body(error.to_string());
    // `pack` writes the content's size into the frame: one buffer of that size, no growing
    // and re-copying while reading. A frame without it is read as a stream.
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(stored) {
        if size > MAX_UNPACKED_BYTES {
            return Err(StoreError::Body(format!(
                "a stored body unpacks to more than {MAX_UNPACKED_BYTES} bytes"
            )));
        }
        // A frame whose content is longer than it says fails here rather than growing.
        return with_decompressor(|decompressor| decompressor.decompress(stored, size as usize))
            .map_err(failed);
    }
    let mut body = Vec::new();
    zstd::stream::read::Decoder::new(stored)
        .map_err(failed)?
        .take(MAX_UNPACKED_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(failed)?;
    if body.len() as u64 > MAX_UNPACKED_BYTES {
        return Err(StoreError::Body(format!(
            "a stored body unpacks to more than {MAX_UNPACKED_BYTES} bytes"
        )));
    }
    Ok(body)
}

/// Decompression contexts kept between bodies. A new one is ~100 KB of memory the allocator
/// has often given back, so making one per body cost page faults and zeroing (~2 % of the
/// server's CPU under the relay load without steps, where every message is unpacked twice).
/// A context carries nothing from one frame to the next that changes what it decompresses.
static DECOMPRESSORS: std::sync::Mutex<Vec<zstd::bulk::Decompressor<'static>>> =
    std::sync::Mutex::new(Vec::new());

/// The most contexts kept: about as many as threads unpack at once on a busy node.
const KEPT_DECOMPRESSORS: usize = 8;

/// Runs `decompress` with a kept context (or a new one when all are in use), and keeps it
/// afterwards while fewer than [`KEPT_DECOMPRESSORS`] are.
fn with_decompressor<T>(
    decompress: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let kept = DECOMPRESSORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop();
    let mut decompressor = match kept {
        Some(decompressor) => decompressor,
        None => zstd::bulk::Decompressor::new()?,
    };
    let result = decompress(&mut decompressor);
    // One that failed on a damaged frame is not kept, whatever state it was left in.
    if result.is_ok() {
        let mut kept = DECOMPRESSORS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < KEPT_DECOMPRESSORS {
            kept.push(decompressor);
        }
    }
    result
}

/// The most a stored body may unpack to: far above any message the platform accepts, so only
/// a value that was never a body of ours (raw bytes of an older store that happen to start
/// like a zstd frame) can reach it, and then it costs bounded memory.
const MAX_UNPACKED_BYTES: u64 = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_comes_back_byte_for_byte_and_smaller() {
        let body = "From: a@example.com\r\nSubject: hi\r\n\r\nsome text, some more text\r\n"
            .repeat(200)
            .into_bytes();
        let stored = pack(&body).unwrap();
        assert!(stored.len() < body.len() / 4, "{} bytes", stored.len());
        assert_eq!(unpack(&stored).unwrap(), body);
    }

    #[test]
    fn a_body_stored_raw_before_compression_reads_as_it_is() {
        let raw = b"From: a@example.com\r\n\r\nhello\r\n";
        assert_eq!(unpack(raw).unwrap(), raw);
        assert_eq!(unpack(b"").unwrap(), b"");
    }

    #[test]
    fn a_frame_that_does_not_say_its_size_is_read_as_a_stream() {
        use std::io::Write;
        let body = b"Subject: streamed\r\n\r\nwritten without a pledged size\r\n".repeat(50);
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), LEVEL).unwrap();
        encoder.write_all(&body).unwrap();
        let stored = encoder.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&stored),
            Ok(None)
        ));
        assert_eq!(unpack(&stored).unwrap(), body);
        // What `pack` writes does say it: the path that reads into one buffer is the one taken.
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&pack(&body).unwrap()),
            Ok(Some(size)) if size == body.len() as u64
        ));
    }

    #[test]
    fn kept_contexts_read_each_body_as_its_own_after_a_damaged_one() {
        let bodies: Vec<Vec<u8>> = (0..20)
            .map(|n| format!("Subject: {n}\r\n\r\n{}\r\n", "text ".repeat(n * 50)).into_bytes())
            .collect();
        let packed: Vec<Vec<u8>> = bodies.iter().map(|body| pack(body).unwrap()).collect();
        let mut damaged = packed[10].clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        assert!(unpack(&damaged).is_err() || unpack(&damaged).unwrap() != bodies[10]);
        for _ in 0..3 {
            for (body, stored) in bodies.iter().zip(&packed).rev() {
                assert_eq!(&unpack(stored).unwrap(), body);
            }
        }
    }

    #[test]
    fn an_empty_body_round_trips() {
        assert_eq!(unpack(&pack(b"").unwrap()).unwrap(), b"");
    }
}
