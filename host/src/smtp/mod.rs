//! The SMTP servers: submission (RFC 6409) with AUTH, STARTTLS and the usual extensions, for
//! applications that send through a Source's SMTP credentials; and the MX for returned mail
//! (bounces, feedback reports, auto-replies), which takes no AUTH and only our own addresses.

mod auth;
mod session;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
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

/// A bound SMTP listener.
pub struct SmtpServer {
    listener: TcpListener,
    shared: Shared,
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
                Ok((stream, peer)) => {
                    // Replies are small writes answering small writes: without NODELAY,
                    // Nagle's algorithm and delayed ACKs add ~40 ms to every round trip.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                    }
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
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
