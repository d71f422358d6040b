//! The SMTP servers: submission (RFC 6409) with AUTH, STARTTLS and the usual extensions, for
//! applications that send through a Source's SMTP credentials; and the MX for returned mail
//! (bounces, feedback reports, auto-replies), which takes no AUTH and only our own addresses.

mod auth;
mod session;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::flow::PipelineHandle;
use crate::inbound::Inbound;
use crate::store::Store;

pub use auth::AuthFailures;

/// The SMTP server's settings (`[smtp]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The name the server greets with.
    pub hostname: String,
    /// Recipients accepted in one transaction.
    pub max_recipients: usize,
    /// The largest message any source may send (each source may set less), in bytes.
    pub max_message_bytes: usize,
    /// Seconds to wait for a command.
    pub command_timeout_secs: u64,
    /// Seconds to wait for the whole DATA of a message.
    pub data_timeout_secs: u64,
    /// Failed AUTH attempts from one IP address before it must wait.
    pub max_auth_failures: u32,
    /// Seconds an IP address waits after too many failed AUTH attempts.
    pub auth_backoff_secs: u64,
    /// Connections open at once; more are told to come back later (421).
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// PEM certificate chain for STARTTLS; a self-signed one is made in the data folder when
    /// absent.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".parse().expect("a valid address"),
            hostname: "localhost".into(),
            max_recipients: 100,
            max_message_bytes: 25 << 20,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            max_auth_failures: 5,
            auth_backoff_secs: 60,
            max_connections: 1000,
            max_connections_per_ip: 100,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// What a listener is for.
#[derive(Clone)]
pub(crate) enum Role {
    /// Applications submit mail after AUTH with their Source's credentials.
    Submission {
        pipeline: PipelineHandle,
        failures: Arc<AuthFailures>,
    },
    /// Other MTAs return mail to our return-path and feedback addresses; nothing else is
    /// taken (no relaying) and nobody logs in.
    Mx(Arc<Inbound>),
}

/// What every session needs.
#[derive(Clone)]
pub(crate) struct Shared {
    config: Arc<SmtpConfig>,
    store: Store,
    tls: TlsAcceptor,
    role: Role,
}

impl Shared {
    fn failures(&self) -> Option<Arc<AuthFailures>> {
        match &self.role {
            Role::Submission { failures, .. } => Some(Arc::clone(failures)),
            Role::Mx(_) => None,
        }
    }
}

impl SmtpConfig {
    fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs)
    }
}

/// Connections open now, in all and per address, for the listener's limits.
#[derive(Default)]
struct OpenConnections {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped, however the session ends.
struct ConnectionSlot {
    open: Arc<OpenConnections>,
    ip: IpAddr,
}

impl OpenConnections {
    /// Counts a new connection from `ip`, unless a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr, config: &SmtpConfig) -> Option<ConnectionSlot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = per_ip.values().sum();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if total >= config.max_connections || from_ip >= config.max_connections_per_ip {
            return None;
        }
        *per_ip.entry(ip).or_default() += 1;
        Some(ConnectionSlot {
            open: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.open.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// A bound SMTP listener.
pub struct SmtpServer {
    listener: TcpListener,
    shared: Shared,
    open: Arc<OpenConnections>,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("listen", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// Binds the submission listener.
    pub async fn bind(
        config: SmtpConfig,
        tls: TlsAcceptor,
        store: Store,
        pipeline: PipelineHandle,
    ) -> std::io::Result<Self> {
        let failures = Arc::new(AuthFailures::new(
            config.max_auth_failures,
            Duration::from_secs(config.auth_backoff_secs),
        ));
        Self::bind_as(config, tls, store, Role::Submission { pipeline, failures }).await
    }

    /// Binds the MX listener for returned mail.
    pub async fn bind_mx(
        config: SmtpConfig,
        tls: TlsAcceptor,
        store: Store,
        inbound: Arc<Inbound>,
    ) -> std::io::Result<Self> {
        Self::bind_as(config, tls, store, Role::Mx(inbound)).await
    }

    async fn bind_as(
        config: SmtpConfig,
        tls: TlsAcceptor,
        store: Store,
        role: Role,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            shared: Shared {
                config: Arc::new(config),
                store,
                tls,
                role,
            },
            open: Arc::default(),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        loop {
            match self.listener.accept().await {
                Ok((mut stream, peer)) => {
                    // Replies are small writes answering small writes: without NODELAY,
                    // Nagle's algorithm and delayed ACKs add ~40 ms to every round trip.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                    }
                    let Some(slot) = self.open.admit(peer.ip(), &self.shared.config) else {
                        tracing::info!(%peer, "too many SMTP connections; refused");
                        tokio::spawn(async move {
                            let _ = stream
                                .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                                .await;
                        });
                        continue;
                    };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(error) = session::serve(stream, peer, shared).await {
                            tracing::debug!(%peer, %error, "SMTP session ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "SMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
