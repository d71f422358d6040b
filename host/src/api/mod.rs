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
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde::Deserialize;
use tokio::net::TcpListener;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::dkim::Dkim;
use crate::dns::Resolver;
use crate::flow::PipelineHandle;
use crate::net::proxy_protocol::TrustedProxies;
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
    /// Load balancers (addresses or networks) whose connections start with a PROXY header
    /// (version 1 or 2) naming the client they relay; required from them, believed from no
    /// one else.
    pub proxy_protocol_from: TrustedProxies,
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
            proxy_protocol_from: TrustedProxies::default(),
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
    /// The state for a server's API, signing tokens with `token_key` (the platform's: a token
    /// one node made is good on every node).
    pub fn new(parts: ApiParts, token_key: [u8; 32], config: &ApiConfig) -> Self {
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
        Self {
            store,
            pipeline,
            runtime,
            plugins,
            tokens: TokenSigner::new(token_key, config.token_lifetime_secs),
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
        }
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

/// Every route of the API, each entered in the OpenAPI document as it is routed.
pub fn router(state: ApiState, max_request_bytes: usize) -> Router {
    let (router, generated) = documented_routes().split_for_parts();
    let document = openapi::Document(Arc::new(openapi::finish(generated)));
    router
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(axum::Extension(document))
        .layer(axum::middleware::from_fn(flowmailer_representation))
        .with_state(state)
}

/// The API's routes with their OpenAPI entries (`routes!` takes both from a handler's
/// `#[utoipa::path]`; see `openapi`).
fn documented_routes() -> OpenApiRouter<ApiState> {
    let router = OpenApiRouter::new()
        // A token request is a small form: no reason to buffer megabytes unauthenticated.
        .routes(routes!(auth::token).layer(DefaultBodyLimit::max(TOKEN_REQUEST_BYTES)))
        .routes(routes!(openapi::document))
        .routes(routes!(tracking::http::click))
        .routes(routes!(tracking::http::open))
        .routes(routes!(archive::online))
        .routes(routes!(messages::submit))
        .routes(routes!(messages::simulate))
        .routes(routes!(messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(archive::get))
        .routes(routes!(archive::error_archive))
        .routes(routes!(resend::resend))
        .routes(routes!(messages::events))
        .routes(routes!(stats::account))
        .routes(routes!(stats::flow))
        .routes(routes!(flow_rule::get, flow_rule::put))
        .routes(routes!(stats::source))
        .routes(routes!(message_lists::by_recipient))
        .routes(routes!(message_lists::by_sender))
        .routes(routes!(message_lists::by_tag))
        .routes(routes!(message_lists::by_source))
        .routes(routes!(message_lists::by_flow))
        .routes(routes!(message_lists::undelivered))
        .routes(routes!(message_lists::holds))
        .routes(routes!(message_lists::hold))
        .routes(routes!(manage::list_sources, manage::create_source))
        .routes(routes!(
            manage::get_source,
            manage::update_source,
            deletion::source
        ))
        .routes(routes!(manage::create_credential))
        .routes(routes!(flows::list, flows::create))
        .routes(routes!(flows::get, flows::update, deletion::flow))
        .routes(routes!(flows::get_rules, flows::put_rules))
        .routes(routes!(manage::upload_plugin))
        .routes(routes!(plugins::get, plugins::delete))
        .routes(routes!(plugins::enable))
        .routes(routes!(
            classifier::get,
            classifier::put,
            classifier::delete
        ))
        .routes(routes!(templates::list, templates::create))
        .routes(routes!(templates::preview))
        .routes(routes!(
            templates::get,
            templates::update,
            templates::delete
        ))
        .routes(routes!(filters::list, filters::create))
        .routes(routes!(filters::delete))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::dead_letters))
        .routes(routes!(webhooks::discard))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(api_credentials::list, api_credentials::create))
        .routes(routes!(
            api_credentials::get,
            api_credentials::update,
            api_credentials::delete
        ))
        .routes(routes!(flow_templates::list))
        .routes(routes!(archive_attachment::get))
        .routes(routes!(recipient::get))
        .routes(routes!(identity_update::update))
        .routes(routes!(event_flows::list_rules))
        .routes(routes!(event_flows::rule_hierarchy))
        .routes(
            routes!(event_flows::list, event_flows::create)
                .layer(DefaultBodyLimit::max(event_flows::MAX_EVENT_FLOW_BYTES)),
        )
        .routes(
            routes!(event_flows::get, event_flows::update, event_flows::delete)
                .layer(DefaultBodyLimit::max(event_flows::MAX_EVENT_FLOW_BYTES)),
        )
        .routes(
            routes!(event_flows::get_rule, event_flows::put_rule)
                .layer(DefaultBodyLimit::max(event_flows::MAX_EVENT_FLOW_BYTES)),
        )
        .routes(routes!(account_users::roles))
        .routes(routes!(account_users::list))
        .routes(routes!(source_users::list, source_users::create))
        .routes(routes!(
            source_users::get,
            source_users::update,
            source_users::delete
        ))
        .routes(routes!(unsupported::accounts));
    // Flowmailer calls them sender domains; Sluice's own name, sender identities, works too.
    let router = [
        routes!(identities::list, identities::create),
        routes!(identities::get, identities::delete),
        routes!(identities::validate),
        routes!(identities::by_domain),
        routes!(identities::validate_domain),
    ]
    .into_iter()
    .fold(router, |router, routes| {
        let alias = openapi::aliased(routes.clone(), "/sender_domains", "/sender_identities");
        router.routes(routes).routes(alias)
    });
    unsupported_routes(router)
}

/// Flowmailer's calls that Sluice does not serve (see `unsupported`).
fn unsupported_routes(router: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    use unsupported::{Unsupported as U, answered};
    use utoipa::openapi::HttpMethod::Post;
    [(Post, "/{account}/users", U::Users)]
        .into_iter()
        .fold(router, |router, (method, path, what)| {
            router.routes(answered(method, path, what))
        })
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
        config.proxy_protocol_from.clone(),
    ))
}

/// Serves another router (the dashboard's) with the API's connection limits and timeouts,
/// reading PROXY headers from the `trusted` balancers.
pub fn serve_http(
    listener: TcpListener,
    app: Router,
    config: &ApiConfig,
    trusted: TrustedProxies,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    listener::serve(listener, app, listener::HttpLimits::new(config), trusted)
}
