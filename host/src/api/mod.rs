//! The REST API, in Flowmailer's v1 shapes so existing clients can switch by changing the
//! base URL: OAuth2 client credentials, then `/{account_id}/...` with a bearer token.

mod archive;
mod auth;
mod classifier;
mod error;
mod filters;
mod identities;
mod listener;
mod manage;
mod messages;
mod openapi;
mod paging;
mod parameters;
mod plugins;
mod templates;
mod webhooks;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::dkim::Dkim;
use crate::dns::Resolver;
use crate::flow::PipelineHandle;
use crate::plugin::PluginRuntime;
use crate::plugin::registry::PluginRegistry;
use crate::store::Store;
use crate::tracking::{self, LinkSigner};

pub use auth::{Caller, TokenSigner};
pub use error::ApiError;
/// Paging by a `Range` header as every list answers it; public for the fuzz target in `fuzz/`.
pub use paging::{Order, page, requested};
/// Template checks and previews, shared with the dashboard.
pub(crate) use templates::{
    PreviewView, SampleMessage, TemplateInput, checked as check_template, render_preview,
};

/// The largest `POST /oauth/token` body.
const TOKEN_REQUEST_BYTES: usize = 8 << 10;

/// The API's settings (`[api]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Seconds a bearer token is valid.
    pub token_lifetime_secs: u64,
    /// The largest request body, in bytes (a submission with attachments, a plugin).
    pub max_request_bytes: usize,
    /// The address recipients reach tracking links at (`https://t.example.com`); by
    /// default the listen address.
    pub public_url: Option<String>,
    /// Connections open at once; a connection over the limit is closed at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers, counted from the moment the
    /// connection opens or the previous response went out: it closes slow headers and idle
    /// keep-alive connections alike.
    pub header_timeout_secs: u64,
    /// Seconds a connection may carry no byte either way (a stalled body or a reader that
    /// stopped reading) before it is closed.
    pub idle_timeout_secs: u64,
}

impl ApiConfig {
    /// Where tracking and online links point, given the address the API is bound to.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".parse().expect("a valid address"),
            token_lifetime_secs: 3600,
            max_request_bytes: 40 << 20,
            public_url: None,
            max_connections: 512,
            max_connections_per_ip: 64,
            header_timeout_secs: 20,
            idle_timeout_secs: 60,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    store: Store,
    pipeline: PipelineHandle,
    runtime: Arc<PluginRuntime>,
    plugins: Arc<PluginRegistry>,
    tokens: TokenSigner,
    links: Arc<LinkSigner>,
    dkim: Arc<Dkim>,
    resolver: Resolver,
    allow_private_webhooks: bool,
}

/// The server's parts the API reads and drives.
#[derive(Clone, Debug)]
pub struct ApiParts {
    /// The store.
    pub store: Store,
    /// Runs flows (simulate, configuration checks).
    pub pipeline: PipelineHandle,
    /// Loads uploaded plugins.
    pub runtime: Arc<PluginRuntime>,
    /// The operator's and built-in plugins.
    pub plugins: Arc<PluginRegistry>,
    /// Signs tracking and online links.
    pub links: Arc<LinkSigner>,
    /// DKIM keys and sender identities.
    pub dkim: Arc<Dkim>,
    /// Checks sender identities' DNS records.
    pub resolver: Resolver,
    /// Webhook URLs may name private addresses (`[webhooks] allow_private_destinations`).
    pub allow_private_webhooks: bool,
}

impl ApiState {
    /// The state for a server's API; the token key is kept in `key_file` (made if missing).
    pub fn new(
        parts: ApiParts,
        key_file: &Path,
        token_lifetime_secs: u64,
    ) -> std::io::Result<Self> {
        let key = crate::private_file::load_or_create_key(key_file)?;
        let ApiParts {
            store,
            pipeline,
            runtime,
            plugins,
            links,
            dkim,
            resolver,
            allow_private_webhooks,
        } = parts;
        Ok(Self {
            store,
            pipeline,
            runtime,
            plugins,
            tokens: TokenSigner::new(key, token_lifetime_secs),
            links,
            dkim,
            resolver,
            allow_private_webhooks,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tracking-link signer.
    pub fn links(&self) -> &LinkSigner {
        &self.links
    }
}

impl axum::extract::FromRef<ApiState> for tracking::http::TrackingState {
    fn from_ref(state: &ApiState) -> Self {
        Self {
            store: state.store.clone(),
            links: Arc::clone(&state.links),
        }
    }
}

/// Every route of the API.
pub fn router(state: ApiState, max_request_bytes: usize) -> Router {
    let router = Router::new()
        .route(
            "/oauth/token",
            // A token request is a small form: no reason to buffer megabytes unauthenticated.
            post(auth::token).layer(DefaultBodyLimit::max(TOKEN_REQUEST_BYTES)),
        )
        .route("/openapi.json", get(openapi::document))
        .route("/c/{token}", get(tracking::http::click))
        .route("/o/{token}", get(tracking::http::open))
        .route("/v/{token}", get(archive::online))
        .route("/{account}/messages/submit", post(messages::submit))
        .route("/{account}/messages/simulate", post(messages::simulate))
        .route("/{account}/messages", get(messages::list))
        .route("/{account}/messages/{id}", get(messages::get))
        .route("/{account}/messages/{id}/archive", get(archive::get))
        .route("/{account}/message_events", get(messages::events))
        .route(
            "/{account}/sources",
            get(manage::list_sources).post(manage::create_source),
        )
        .route(
            "/{account}/sources/{source}",
            axum::routing::put(manage::update_source),
        )
        .route(
            "/{account}/sources/{source}/credentials",
            post(manage::create_credential),
        )
        .route(
            "/{account}/flows",
            get(manage::list_flows).post(manage::create_flow),
        )
        .route(
            "/{account}/flows/{flow}",
            get(manage::get_flow).put(manage::update_flow),
        )
        .route(
            "/{account}/flow_rules",
            get(manage::get_rules).put(manage::put_rules),
        )
        .route("/{account}/plugins", post(manage::upload_plugin))
        .route("/{account}/plugins/{plugin}", get(plugins::get))
        .route("/{account}/plugins/{plugin}/enable", post(plugins::enable))
        .route(
            "/{account}/bounce_classifier",
            get(classifier::get)
                .put(classifier::put)
                .delete(classifier::delete),
        )
        .route(
            "/{account}/templates",
            get(templates::list).post(templates::create),
        )
        .route("/{account}/templates/preview", post(templates::preview))
        .route(
            "/{account}/filters",
            get(filters::list).post(filters::create),
        )
        .route(
            "/{account}/filters/{id}",
            axum::routing::delete(filters::delete),
        )
        .route(
            "/{account}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/{account}/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/{account}/webhooks/{id}/dead_letters",
            get(webhooks::dead_letters),
        )
        .route(
            "/{account}/webhooks/{id}/dead_letters/{dead_letter}",
            axum::routing::delete(webhooks::discard),
        )
        .route(
            "/{account}/webhooks/{id}/dead_letters/{dead_letter}/redeliver",
            post(webhooks::redeliver),
        )
        .route(
            "/{account}/templates/{id}",
            get(templates::get)
                .put(templates::update)
                .delete(templates::delete),
        );
    // Flowmailer calls them sender domains; both names work.
    let router =
        ["sender_identities", "sender_domains"]
            .into_iter()
            .fold(router, |router, name| {
                router
                    .route(
                        &format!("/{{account}}/{name}"),
                        get(identities::list).post(identities::create),
                    )
                    .route(
                        &format!("/{{account}}/{name}/{{id}}"),
                        get(identities::get).delete(identities::delete),
                    )
                    .route(
                        &format!("/{{account}}/{name}/{{id}}/validate"),
                        post(identities::validate),
                    )
            });
    router
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(axum::middleware::from_fn(vendor_media_type))
        .with_state(state)
}

/// Answers JSON in the media type a Flowmailer client asks for
/// (`Accept: application/vnd.flowmailer.v1.12+json`); the body is the same.
async fn vendor_media_type(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{ACCEPT, CONTENT_TYPE};
    let asked = request
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .and_then(|accept| {
            accept
                .split(',')
                .map(|range| range.split(';').next().unwrap_or("").trim())
                .find(|range| {
                    range.starts_with("application/vnd.flowmailer.") && range.ends_with("+json")
                })
                .and_then(|range| axum::http::HeaderValue::from_str(range).ok())
        });
    let mut response = next.run(request).await;
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if let (Some(asked), true) = (asked, is_json) {
        response.headers_mut().insert(CONTENT_TYPE, asked);
    }
    response
}

/// Serves the API on a bound listener until the task is dropped, with the configuration's
/// connection limits and timeouts.
pub fn spawn(
    listener: TcpListener,
    config: &ApiConfig,
    state: ApiState,
) -> tokio::task::JoinHandle<()> {
    let app = router(state, config.max_request_bytes);
    tokio::spawn(listener::serve(
        listener,
        app,
        listener::HttpLimits::new(config),
    ))
}

/// Serves another router (the dashboard's) with the API's connection limits and timeouts.
pub fn serve_http(
    listener: TcpListener,
    app: Router,
    config: &ApiConfig,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    listener::serve(listener, app, listener::HttpLimits::new(config))
}
