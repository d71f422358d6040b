//! A step's stdout and stderr: captured up to a cap, the rest counted and dropped.
//!
//! A guest's print must never fail: a write that fails traps the step in most languages'
//! runtimes, so a chatty step would count as faulty and be disabled for what is only noise.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much a guest may write in one go; writes are accepted whole whatever their size.
const WRITE_BUDGET: usize = 64 << 10;

#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

/// One captured stream, shared by the WASI context and the host that reads it after the call.
#[derive(Clone, Debug)]
pub(crate) struct CapturedOutput {
    capacity: usize,
    captured: Arc<Mutex<Captured>>,
}

impl CapturedOutput {
    /// A stream that keeps the first `capacity` bytes written to it.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            captured: Arc::new(Mutex::new(Captured::default())),
        }
    }

    fn captured(&self) -> MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, bytes: &[u8]) {
        let mut captured = self.captured();
        let room = self.capacity.saturating_sub(captured.kept.len());
        let kept = bytes.len().min(room);
        captured.kept.extend_from_slice(&bytes[..kept]);
        captured.dropped += (bytes.len() - kept) as u64;
    }

    /// What was kept, and how many bytes past the cap were dropped.
    pub(crate) fn contents(&self) -> (Vec<u8>, u64) {
        let captured = self.captured();
        (captured.kept.clone(), captured.dropped)
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_cap_are_counted_not_refused() {
        let mut output = CapturedOutput::new(8);
        assert!(output.write(Bytes::from_static(b"hello ")).is_ok());
        assert!(output.write(Bytes::from_static(b"world, again")).is_ok());
        assert_eq!(output.check_write().ok(), Some(WRITE_BUDGET));
        let (kept, dropped) = output.contents();
        assert_eq!(kept, b"hello wo");
        assert_eq!(dropped, 10);
    }
}
