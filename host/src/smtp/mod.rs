//! The SMTP servers: submission (RFC 6409) with AUTH, STARTTLS and the usual extensions, for
//! applications that send through a Source's SMTP credentials; and the MX for returned mail
//! (bounces, feedback reports, auto-replies), which takes no AUTH and only our own addresses.

mod auth;
mod memory;
mod session;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::auth_failures::AuthFailures;
use crate::flow::PipelineHandle;
use crate::inbound::Inbound;
use crate::net::proxy_protocol::TrustedProxies;
use crate::net::{Acceptor, ClientAddresses, ConnectionLimits, OpenConnections};
use crate::store::Store;

pub use memory::DataBudget;

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
    /// Seconds to wait for each read while a message's DATA comes in.
    pub data_timeout_secs: u64,
    /// Seconds the whole DATA of one message may take, however its bytes trickle in; then
    /// 421 and the connection is closed.
    pub max_data_secs: u64,
    /// Bytes of unfinished messages (DATA still coming in) held in memory at once, over all
    /// connections of the submission server and the MX together; a message that would go
    /// over gets 452 4.3.1. Read from `[smtp]` only.
    pub max_data_memory_bytes: usize,
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
    /// Load balancers (addresses or networks) whose connections start with a PROXY header
    /// (version 1 or 2) naming the client they relay; required from them, believed from no
    /// one else.
    pub proxy_protocol_from: TrustedProxies,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".parse().expect("a valid address"),
            hostname: "localhost".into(),
            max_recipients: 100,
            max_message_bytes: 25 << 20,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            max_data_secs: 600,
            max_data_memory_bytes: 256 << 20,
            max_auth_failures: 5,
            auth_backoff_secs: 60,
            max_connections: 1000,
            max_connections_per_ip: 100,
            tls_cert: None,
            tls_key: None,
            proxy_protocol_from: TrustedProxies::default(),
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
    /// Unfinished messages' memory, shared with the other SMTP listener.
    data_budget: Arc<DataBudget>,
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

    fn max_data_time(&self) -> Duration {
        Duration::from_secs(self.max_data_secs)
    }

    fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            total: self.max_connections,
            per_ip: self.max_connections_per_ip,
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
    /// Binds the submission listener. Unfinished messages hold memory from `data_budget`,
    /// which the MX may share.
    pub async fn bind(
        config: SmtpConfig,
        tls: TlsAcceptor,
        store: Store,
        pipeline: PipelineHandle,
        data_budget: Arc<DataBudget>,
    ) -> std::io::Result<Self> {
        let failures = Arc::new(AuthFailures::new(
            config.max_auth_failures,
            Duration::from_secs(config.auth_backoff_secs),
        ));
        let role = Role::Submission { pipeline, failures };
        Self::bind_as(config, tls, store, role, data_budget).await
    }

    /// Binds the MX listener for returned mail.
    pub async fn bind_mx(
        config: SmtpConfig,
        tls: TlsAcceptor,
        store: Store,
        inbound: Arc<Inbound>,
        data_budget: Arc<DataBudget>,
    ) -> std::io::Result<Self> {
        Self::bind_as(config, tls, store, Role::Mx(inbound), data_budget).await
    }

    async fn bind_as(
        config: SmtpConfig,
        tls: TlsAcceptor,
        store: Store,
        role: Role,
        data_budget: Arc<DataBudget>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            shared: Shared {
                config: Arc::new(config),
                store,
                tls,
                role,
                data_budget,
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
        let name = match self.shared.role {
            Role::Submission { .. } => "SMTP",
            Role::Mx(_) => "MX",
        };
        let limits = self.shared.config.connection_limits();
        let clients =
            ClientAddresses::new(self.shared.config.proxy_protocol_from.clone(), limits.total);
        let mut acceptor = Acceptor::new(name);
        loop {
            let (stream, socket_peer) = acceptor.accept(&self.listener).await;
            // Replies are small writes answering small writes: without NODELAY,
            // Nagle's algorithm and delayed ACKs add ~40 ms to every round trip.
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(peer = %socket_peer, %error, "could not set TCP_NODELAY");
            }
            if !clients.is_balancer(socket_peer.ip()) {
                admit(stream, socket_peer, &self.shared, &self.open, limits, name);
                continue;
            }
            let (shared, open, clients) =
                (self.shared.clone(), Arc::clone(&self.open), clients.clone());
            // A task of its own: the balancer's header may take a moment to come.
            tokio::spawn(async move {
                let mut stream = stream;
                if let Some(peer) = clients.relayed_client(&mut stream, socket_peer, name).await {
                    admit(stream, peer, &shared, &open, limits, name);
                }
            });
        }
    }
}

/// Serves a connection from `peer` in a task of its own, or tells it to come back later
/// when the listener's limits are reached.
fn admit(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    open: &Arc<OpenConnections>,
    limits: ConnectionLimits,
    name: &'static str,
) {
    let Some(slot) = open.admit(peer.ip(), limits) else {
        tracing::info!(%peer, "too many {name} connections; refused");
        tokio::spawn(async move {
            // Never wait long on a refused peer: its descriptor is what it costs.
            let refusal = b"421 4.7.0 Too many connections, try again later\r\n";
            let _ = tokio::time::timeout(REFUSAL_WRITE, stream.write_all(refusal)).await;
        });
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(error) = session::serve(stream, peer, shared).await {
            tracing::debug!(%peer, %error, "SMTP session ended with an error");
        }
    });
}

/// The longest a refusal (421, too many connections) may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(5);
