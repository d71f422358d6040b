//! The API's own accept loop: each connection is counted (in all and per address; over the
//! limit it is closed at once), must send a request's headers in time (which also ends idle
//! keep-alive connections), and is closed when no byte moves either way for too long.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::ApiConfig;
use crate::net::proxy_protocol::TrustedProxies;
use crate::net::{Acceptor, ClientAddresses, ConnectionLimits, OpenConnections};

/// How a connection is bounded.
#[derive(Clone, Copy, Debug)]
pub(super) struct HttpLimits {
    connections: ConnectionLimits,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl HttpLimits {
    /// The limits of `config`.
    pub(super) fn new(config: &ApiConfig) -> Self {
        Self {
            connections: ConnectionLimits {
                total: config.max_connections,
                per_ip: config.max_connections_per_ip,
            },
            header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
        }
    }
}

/// Serves `router` on `listener` until the task is dropped, reading PROXY headers from the
/// `trusted` balancers.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    trusted: TrustedProxies,
) {
    let open = Arc::new(OpenConnections::default());
    let clients = ClientAddresses::new(trusted, limits.connections.total);
    let mut acceptor = Acceptor::new("API");
    loop {
        let (mut stream, socket_peer) = acceptor.accept(&listener).await;
        if !clients.is_balancer(socket_peer.ip()) {
            admit(stream, socket_peer, &open, &router, limits);
            continue;
        }
        let (router, open, clients) = (router.clone(), Arc::clone(&open), clients.clone());
        // A task of its own: the balancer's header may take a moment to come.
        tokio::spawn(async move {
            if let Some(peer) = clients
                .relayed_client(&mut stream, socket_peer, "API")
                .await
            {
                admit(stream, peer, &open, &router, limits);
            }
        });
    }
}

/// Serves a connection from `peer` in a task of its own, or closes it at once when the
/// limits are reached: a connection waiting for a place would hold a descriptor.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    open: &Arc<OpenConnections>,
    router: &Router,
    limits: HttpLimits,
) {
    let Some(slot) = open.admit(peer.ip(), limits.connections) else {
        tracing::info!(%peer, "too many API connections; closed");
        return;
    };
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let router = router.clone();
    tokio::spawn(async move {
        let _slot = slot;
        connection(stream, peer, router, limits).await;
    });
}

/// Serves one connection until it ends, times out or stays idle too long.
async fn connection(stream: TcpStream, peer: SocketAddr, router: Router, limits: HttpLimits) {
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let inner = TowerToHyperService::new(router);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // Before routing: routes match the path without its matrix parameters.
        super::parameters::split_matrix(&mut request);
        inner.call(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    loop {
        let quiet_until = activity.last() + limits.idle_timeout;
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "API connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(quiet_until) => {
                if activity.last() + limits.idle_timeout <= Instant::now() {
                    tracing::debug!(%peer, "API connection idle; closed");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A stream that notes each time bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
