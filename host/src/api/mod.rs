//! The REST API, in Flowmailer's v1 shapes so existing clients can switch by changing the
//! base URL: OAuth2 client credentials, then `/{account_id}/...` with a bearer token.

mod account_users;
mod api_credentials;
mod archive;
mod archive_attachment;
mod auth;
mod classifier;
pub(crate) mod deletion;
mod error;
mod event_flows;
mod filters;
mod flow_rule;
mod flow_templates;
mod flows;
mod identities;
mod identity_update;
mod listener;
mod manage;
mod message_lists;
mod message_views;
mod messages;
mod openapi;
mod paging;
mod parameters;
mod plugins;
mod recipient;
mod representation;
mod resend;
mod source_users;
mod stats;
mod templates;
mod unsupported;
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
use crate::scans::Scans;
use crate::store::Store;
use crate::tracking::{self, LinkSigner};

pub use auth::{Caller, TokenSigner};
/// The account's bounce classifier installed and removed, shared with the dashboard.
pub(crate) use classifier::{install as install_classifier, remove as remove_classifier};
pub use error::ApiError;
/// Flow checks (steps, conditions, rule limits), shared with the dashboard's flow editor.
pub(crate) use flows::{
    ConditionView, MAX_CONDITIONS, MAX_RULES, StepView, check_flow_count, check_owned,
    checked_steps, condition_from, condition_views, step_view,
};
/// The plugin upload's checks and a plugin's state for an account, shared with the dashboard.
pub(crate) use identities::{make_identity, own_identity, validated as validated_identity};
pub(crate) use manage::checked_upload;
/// A source's settings as the API takes and checks them, shared with the dashboard.
pub(crate) use manage::{SourceInput, source_from};
/// Paging by a `Range` header as every list answers it; public for the fuzz target in `fuzz/`.
pub use paging::{Order, page, requested};
pub(crate) use plugins::usable as usable_plugin;
/// Template checks and previews, shared with the dashboard.
pub(crate) use templates::{
    PreviewView, SampleMessage, TemplateInput, checked as check_template, render_preview,
};
pub(crate) use webhooks::{WebhookInput, make_webhook};

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
    /// Wrong client secrets from one address (an IPv6 /64) before it waits.
    pub max_auth_failures: u32,
    /// Seconds such an address waits before it may ask for a token again.
    pub auth_backoff_secs: u64,
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
            max_auth_failures: 5,
            auth_backoff_secs: 60,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) store: Store,
    pub(crate) pipeline: PipelineHandle,
    runtime: Arc<PluginRuntime>,
    pub(crate) plugins: Arc<PluginRegistry>,
    tokens: TokenSigner,
    links: Arc<LinkSigner>,
    pub(crate) dkim: Arc<Dkim>,
    resolver: Resolver,
    allow_private_webhooks: bool,
    pub(crate) scans: Arc<Scans>,
    /// Where sender identities' keys are made: one at a time on the platform, so making keys
    /// (an RSA key is a few hundred milliseconds of CPU) takes at most one core, and accounts
    /// take turns.
    key_making: Arc<crate::fairness::FairShare>,
    /// Wrong client secrets per address, for the token endpoint.
    auth_failures: Arc<crate::auth_failures::AuthFailures>,
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
    /// The pool of heavy reads (statistics), shared with the dashboard.
    pub scans: Arc<Scans>,
}

impl ApiState {
    /// The state for a server's API; the token key is kept in `key_file` (made if missing).
    pub fn new(parts: ApiParts, key_file: &Path, config: &ApiConfig) -> std::io::Result<Self> {
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
            scans,
        } = parts;
        Ok(Self {
            store,
            pipeline,
            runtime,
            plugins,
            tokens: TokenSigner::new(key, config.token_lifetime_secs),
            links,
            dkim,
            resolver,
            allow_private_webhooks,
            scans,
            key_making: crate::fairness::FairShare::new(1, 1),
            auth_failures: Arc::new(crate::auth_failures::AuthFailures::new(
                config.max_auth_failures,
                std::time::Duration::from_secs(config.auth_backoff_secs),
            )),
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
        .route(
            "/{account}/messages/{id}/error_archive",
            get(archive::error_archive),
        )
        .route("/{account}/messages/{id}/resend", post(resend::resend))
        .route("/{account}/message_events", get(messages::events))
        .route("/{account}/messagestats", get(stats::account))
        .route("/{account}/flows/{flow}/stats", get(stats::flow))
        .route(
            "/{account}/flows/{flow}/rule",
            get(flow_rule::get).put(flow_rule::put),
        )
        .route("/{account}/sources/{source}/stats", get(stats::source))
        .route(
            "/{account}/recipient/{address}/messages",
            get(message_lists::by_recipient),
        )
        .route(
            "/{account}/sender/{address}/messages",
            get(message_lists::by_sender),
        )
        .route("/{account}/tag/{tag}/messages", get(message_lists::by_tag))
        .route(
            "/{account}/sources/{source}/messages",
            get(message_lists::by_source),
        )
        .route(
            "/{account}/flows/{flow}/messages",
            get(message_lists::by_flow),
        )
        .route(
            "/{account}/undeliveredmessages",
            get(message_lists::undelivered),
        )
        .route("/{account}/message_hold", get(message_lists::holds))
        .route("/{account}/message_hold/{id}", get(message_lists::hold))
        .route(
            "/{account}/sources",
            get(manage::list_sources).post(manage::create_source),
        )
        .route(
            "/{account}/sources/{source}",
            get(manage::get_source).put(manage::update_source),
        )
        .route(
            "/{account}/sources/{source}/credentials",
            post(manage::create_credential),
        )
        .route("/{account}/flows", get(flows::list).post(flows::create))
        .route(
            "/{account}/flows/{flow}",
            get(flows::get).put(flows::update),
        )
        .route(
            "/{account}/flow_rules",
            get(flows::get_rules).put(flows::put_rules),
        )
        .route("/{account}/plugins", post(manage::upload_plugin))
        .route(
            "/{account}/plugins/{plugin}",
            get(plugins::get).delete(plugins::delete),
        )
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
                    .route(
                        &format!("/{{account}}/{name}/by_domain/{{domain}}"),
                        get(identities::by_domain),
                    )
                    .route(
                        &format!("/{{account}}/{name}/validate"),
                        post(identities::validate_domain),
                    )
            });
    let router = unsupported_routes(router);
    router
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(axum::middleware::from_fn(flowmailer_representation))
        .with_state(state)
}

/// Flowmailer's calls that Sluice does not serve (see `unsupported`).
fn unsupported_routes(router: Router<ApiState>) -> Router<ApiState> {
    use axum::routing::{delete, put};
    use unsupported::{Unsupported as U, handler};
    router
        .route("/accounts", post(unsupported::accounts))
        .route(
            "/{account}/api_credentials",
            get(api_credentials::list).post(api_credentials::create),
        )
        .route(
            "/{account}/api_credentials/{client}",
            get(api_credentials::get)
                .put(api_credentials::update)
                .delete(api_credentials::delete),
        )
        .route("/{account}/event_flow_rules", get(event_flows::list_rules))
        .route(
            "/{account}/event_flow_rules/hierarchy",
            get(event_flows::rule_hierarchy),
        )
        .route(
            "/{account}/event_flows",
            get(event_flows::list)
                .post(event_flows::create)
                .layer(DefaultBodyLimit::max(event_flows::MAX_EVENT_FLOW_BYTES)),
        )
        .route(
            "/{account}/event_flows/{id}",
            get(event_flows::get)
                .put(event_flows::update)
                .delete(event_flows::delete)
                .layer(DefaultBodyLimit::max(event_flows::MAX_EVENT_FLOW_BYTES)),
        )
        .route(
            "/{account}/event_flows/{id}/rule",
            get(event_flows::get_rule)
                .put(event_flows::put_rule)
                .layer(DefaultBodyLimit::max(event_flows::MAX_EVENT_FLOW_BYTES)),
        )
        .route("/{account}/flow_templates", get(flow_templates::list))
        .route(
            "/{account}/messages/{id}/archive/{step}/attachment/{content}",
            get(archive_attachment::get),
        )
        .route("/{account}/recipient/{address}", get(recipient::get))
        .route("/{account}/roles", get(account_users::roles))
        .route(
            "/{account}/users",
            get(account_users::list).post(handler(U::Users)),
        )
        .route(
            "/{account}/sources/{source}/users",
            get(source_users::list).post(source_users::create),
        )
        .route(
            "/{account}/sources/{source}/users/{user}",
            get(source_users::get)
                .put(source_users::update)
                .delete(source_users::delete),
        )
        .route(
            "/{account}/sender_domains/{id}",
            put(identity_update::update),
        )
        .route("/{account}/flows/{flow}", delete(deletion::flow))
        .route("/{account}/sources/{source}", delete(deletion::source))
}

/// The largest JSON answer rewritten to Flowmailer's representation; a larger one (an archive
/// with a huge body) is refused with a 500 rather than sent in another shape.
const MAX_REWRITTEN_BYTES: usize = 64 << 20;

/// Writes every JSON answer in Flowmailer's representation (identifiers as strings, see
/// `representation`) whatever the client asked for, and labels it with the media type a
/// Flowmailer client asks for (`Accept: application/vnd.flowmailer.v1.12+json`), plain
/// `application/json` otherwise.
async fn flowmailer_representation(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use axum::response::IntoResponse;
    let asked = representation::vendor_media_type(request.headers());
    let response = next.run(request).await;
    if asked.is_some()
        && response
            .extensions()
            .get::<representation::LocationNamesIt>()
            .is_some()
    {
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(CONTENT_TYPE);
        parts
            .headers
            .insert(CONTENT_LENGTH, axum::http::HeaderValue::from(0));
        return axum::response::Response::from_parts(parts, axum::body::Body::empty());
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REWRITTEN_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => return ApiError::internal(error).into_response(),
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut value) => {
            representation::identifiers_as_strings(&mut value);
            serde_json::to_vec(&value).map_or(bytes, axum::body::Bytes::from)
        }
        Err(_) => bytes,
    };
    if let Some(asked) = asked {
        parts.headers.insert(CONTENT_TYPE, asked);
    }
    parts.headers.remove(CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
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
