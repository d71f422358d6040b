//! A minimal SMTP sink for benches: it accepts every message and notes only its return path
//! and when it arrived; no content is kept.
//!
//! Why not [`SmtpSink`]: measured in the deliver bench, its thread per connection left
//! throughput as it was but added 0.3 to 0.8 ms to the median time from a message's
//! acknowledgement to its delivery, the harness's cost charged to the server. This sink serves
//! its sessions as tasks on the caller's tokio runtime, beside the server under test. Tests
//! that look at what was received use [`SmtpSink`].
//!
//! [`SmtpSink`]: crate::sink::SmtpSink

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

/// Room for a 20 KB message in one read, as the benches send.
const READ_BUFFER: usize = 32 * 1024;

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The reverse path of its `MAIL FROM`, without angle brackets.
    pub return_path: String,
    /// When its content had arrived, just before the sink's 250.
    pub at: Instant,
}

/// Plain ESMTP with PIPELINING on 127.0.0.1; stops (and closes every connection) when dropped.
pub struct ArrivalSink {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    acceptor: AbortHandle,
}

impl ArrivalSink {
    /// Starts a sink whose sessions run on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::<Mutex<Vec<Arrival>>>::default();
        let acceptor = tokio::spawn(accept_loop(listener, Arc::clone(&arrivals))).abort_handle();
        Self {
            addr,
            arrivals,
            acceptor,
        }
    }

    /// Where the sink listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// The messages accepted so far, in order of acceptance.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Drop for ArrivalSink {
    fn drop(&mut self) {
        // The sessions belong to the acceptor's task and end with it.
        self.acceptor.abort();
    }
}

async fn accept_loop(listener: TcpListener, arrivals: Arc<Mutex<Vec<Arrival>>>) {
    let mut sessions = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while sessions.try_join_next().is_some() {}
        sessions.spawn(serve(stream, Arc::clone(&arrivals)));
    }
}

async fn serve(stream: TcpStream, arrivals: Arc<Mutex<Vec<Arrival>>>) {
    stream.set_nodelay(true).ok();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, read);
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut return_path = None;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if command.starts_with("EHLO") {
            b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n"
        } else if command.starts_with("MAIL FROM:") {
            return_path = Some(reverse_path(&line));
            b"250 2.1.0 ok\r\n"
        } else if command.starts_with("RCPT TO:") {
            b"250 2.1.5 ok\r\n"
        } else if command == "DATA" {
            if write.write_all(b"354 go on\r\n").await.is_err()
                || skip_content(&mut reader).await.is_err()
            {
                return;
            }
            if let Some(return_path) = return_path.take() {
                let at = Instant::now();
                arrivals.lock().unwrap().push(Arrival { return_path, at });
            }
            b"250 2.0.0 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"250 2.0.0 ok\r\n"
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The address between the angle brackets of a `MAIL FROM` line; empty for `<>`.
fn reverse_path(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(path, _)| path.to_string())
        .unwrap_or_default()
}

/// Reads message content up to and including the line with a single dot, leaving whatever a
/// pipelining client sent after it in `reader`. Each read is searched as a whole, with the last
/// bytes of the one before for an end split between reads: rotating a window byte by byte cost
/// a tenth of both cores at bench rates, charged to the server under test.
async fn skip_content(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<()> {
    const END: &[u8] = b"\r\n.\r\n";
    // The CRLF of the DATA line comes first, so content of no lines ends at a leading ".\r\n".
    let mut window = Vec::with_capacity(READ_BUFFER + END.len());
    window.extend_from_slice(b"\r\n");
    loop {
        let read = reader.fill_buf().await?;
        if read.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let carried = window.len();
        window.extend_from_slice(read);
        let read = read.len();
        if let Some(at) = window
            .windows(END.len())
            .position(|candidate| candidate == END)
        {
            reader.consume(at + END.len() - carried);
            return Ok(());
        }
        reader.consume(read);
        window.drain(..window.len().saturating_sub(END.len() - 1));
    }
}
