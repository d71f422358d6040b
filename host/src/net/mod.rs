//! What every listener shares: a count of open connections, in all and per address, an
//! accept that survives running out of file descriptors, and the client's address read from a
//! trusted load balancer's PROXY header.
//!
//! Each listener (SMTP submission, the MX, the HTTP API) keeps its own count, so a flood of
//! one cannot take the places of another.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub mod proxy_protocol;

use proxy_protocol::{Header, TrustedProxies};

/// How long a trusted proxy may take to send its header: it sends it as it connects.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an accept loop pauses after an error that is not the peer's (no descriptor
/// left, no buffer memory): long enough not to spin, short enough to serve again soon.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a lasting accept error is logged.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept for what is not a client connection: the store, plugin files, outbound
/// SMTP and webhook connections, DNS.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Raises the limit of open files to the most the system allows this process, and warns when
/// the listeners' limits together could still use up the descriptors: a flood of one listener
/// would then make every listener (and the store) fail with `Too many open files`.
pub(crate) fn raise_open_file_limit(connection_totals: &[(&str, usize)]) {
    use rustix::process::{Resource, getrlimit, setrlimit};

    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "cannot raise the limit of open files");
        }
    }
    let Some(available) = getrlimit(Resource::Nofile).current else {
        return;
    };
    let wanted: u64 = connection_totals
        .iter()
        .map(|(_, total)| *total as u64)
        .sum::<u64>()
        + RESERVED_DESCRIPTORS;
    if wanted > available {
        let keys: Vec<String> = connection_totals
            .iter()
            .map(|(key, total)| format!("{key} = {total}"))
            .collect();
        tracing::warn!(
            open_files = available,
            needed = wanted,
            "the connection limits ({}) and {RESERVED_DESCRIPTORS} descriptors for the rest \
             exceed the limit of open files: lower them, or raise the limit (ulimit -n)",
            keys.join(", ")
        );
    }
}

/// Limits of open connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// In all.
    pub total: usize,
    /// From one IP address.
    pub per_ip: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Connections open now on one listener.
#[derive(Default)]
pub(crate) struct OpenConnections {
    counts: Mutex<Counts>,
}

/// One counted connection; uncounted when dropped, however it ends.
pub(crate) struct ConnectionSlot {
    open: Arc<OpenConnections>,
    ip: IpAddr,
}

impl OpenConnections {
    /// Counts a new connection from `ip`, unless a limit is reached.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: ConnectionLimits,
    ) -> Option<ConnectionSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= limits.total || from_ip >= limits.per_ip {
            return None;
        }
        counts.total += 1;
        *counts.per_ip.entry(ip).or_default() += 1;
        Some(ConnectionSlot {
            open: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.open.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections for one listener, riding out errors.
pub(crate) struct Acceptor {
    name: &'static str,
    last_warning: Option<Instant>,
}

impl Acceptor {
    /// An acceptor whose errors are logged as `name`'s.
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            last_warning: None,
        }
    }

    /// The next connection. An error that concerns only the connection being accepted is
    /// skipped; any other (the process's or the system's descriptors are used up: EMFILE,
    /// ENFILE; no memory for buffers) pauses briefly, so the loop neither spins nor stops,
    /// and sessions that end meanwhile give descriptors back.
    pub(crate) async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(accepted) => return accepted,
                Err(error) if concerns_one_connection(error.kind()) => {
                    tracing::debug!(listener = self.name, %error, "a connection failed while accepted");
                }
                Err(error) => {
                    let now = Instant::now();
                    if self
                        .last_warning
                        .is_none_or(|at| now.duration_since(at) >= ACCEPT_WARN_EVERY)
                    {
                        self.last_warning = Some(now);
                        tracing::warn!(listener = self.name, %error, "accept failed; pausing");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Learns whom the connections of one listener are from.
#[derive(Clone)]
pub(crate) struct ClientAddresses {
    trusted: Arc<TrustedProxies>,
    /// Headers being read at once; a connection over this is closed unread.
    reading: Arc<Semaphore>,
}

impl ClientAddresses {
    /// Reads headers from the `trusted` networks, at most `most_reading` at once.
    pub(crate) fn new(trusted: TrustedProxies, most_reading: usize) -> Self {
        Self {
            trusted: Arc::new(trusted),
            reading: Arc::new(Semaphore::new(most_reading.max(1))),
        }
    }

    /// Whether connections from `ip` start with a PROXY header.
    pub(crate) fn is_balancer(&self, ip: IpAddr) -> bool {
        self.trusted.trusts(ip)
    }

    /// The client a trusted balancer's connection serves, as its PROXY header names it (read
    /// off the stream, so what follows is the client's), or the balancer itself for its own
    /// connections. None when the header is missing, malformed or late, or too many are
    /// being read: the connection is then to be closed without a word, since its protocol is
    /// unknown.
    pub(crate) async fn relayed_client(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        listener: &'static str,
    ) -> Option<SocketAddr> {
        let Ok(_reading) = self.reading.try_acquire() else {
            tracing::info!(listener, %peer, "too many PROXY headers being read; closed");
            return None;
        };
        match tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy_protocol::read_header(stream)).await
        {
            // A v2 header may carry an IPv4 client as an IPv4-mapped IPv6 address; it is the
            // IPv4 client to allowlists, limits and logs.
            Ok(Ok(Header::Relayed(client))) => {
                Some(SocketAddr::new(client.ip().to_canonical(), client.port()))
            }
            Ok(Ok(Header::Local)) => Some(peer),
            // A plain TCP health check connects and closes.
            Ok(Err(proxy_protocol::HeaderError::Io(error)))
                if error.kind() == ErrorKind::UnexpectedEof =>
            {
                tracing::debug!(listener, %peer, "closed by a trusted proxy before its header");
                None
            }
            Ok(Err(error)) => {
                tracing::warn!(listener, %peer, %error, "connection from a trusted proxy refused");
                None
            }
            Err(_) => {
                tracing::warn!(listener, %peer, "no PROXY header in time from a trusted proxy; closed");
                None
            }
        }
    }
}

/// Errors of accept(2) that concern the one pending connection, not the listener.
fn concerns_one_connection(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_in_all_and_per_address_and_give_places_back() {
        let open = Arc::new(OpenConnections::default());
        let limits = ConnectionLimits {
            total: 3,
            per_ip: 2,
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let first = open.admit(a, limits).unwrap();
        let _second = open.admit(a, limits).unwrap();
        assert!(open.admit(a, limits).is_none(), "per address");
        let _third = open.admit(b, limits).unwrap();
        assert!(open.admit(c, limits).is_none(), "in all");
        drop(first);
        assert!(open.admit(c, limits).is_some());
    }

    #[test]
    fn running_out_of_descriptors_is_not_a_connections_error() {
        let emfile = std::io::Error::from_raw_os_error(24);
        assert!(!concerns_one_connection(emfile.kind()));
        assert!(concerns_one_connection(ErrorKind::ConnectionAborted));
    }
}
