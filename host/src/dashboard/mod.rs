//! The web dashboard: people log in with a password and a code mailed to them, then see and
//! manage their account's flows, messages, statistics and filter list. Pages are rendered on
//! the server from templates embedded in the binary and work without JavaScript.
//!
//! The dashboard reads and changes the same store as the API, and every page and form asks
//! [`crate::access`] whether the logged-in user may do what it does.

mod chart;
mod classifier;
mod filters;
mod flows;
mod login;
mod messages;
mod multipart;
mod operator;
mod overview;
mod pages;
mod plugins;
mod resend;
mod secret;
mod security;
mod sending;
mod session;
mod simulate;
mod sources;
mod system_mail;
mod templates;
mod throttle;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::api::{ApiConfig, ApiState};
use crate::delivery::capture::Capture;
use crate::dkim::Dkim;
use crate::flow::PipelineHandle;
use crate::net::proxy_protocol::TrustedProxies;
use crate::plugin::registry::PluginRegistry;
use crate::scans::Scans;
use crate::store::Store;

pub use system_mail::SystemMail;

/// Makes a one-time token for `user`'s set-password link (`{public_url}/reset/{token}`), for
/// `sluice user add`; any earlier link of the user stops working.
pub async fn new_password_link_token(
    store: &Store,
    user: &crate::store::User,
    config: &DashboardConfig,
) -> Result<String, crate::store::StoreError> {
    login::password_link_token(store, user, config).await
}

/// The dashboard's settings (`[dashboard]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Serve the dashboard at all.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The address people reach the dashboard at (`https://mail.example.com`), used in the
    /// links it mails; by default the listen address. Cookies are marked `Secure` when it is
    /// `https`.
    pub public_url: Option<String>,
    /// The sender of login codes, invitations and reset links.
    pub mail_from: String,
    /// Seconds a session lasts without being used.
    pub session_idle_secs: u64,
    /// Seconds a session lasts at most, however busy.
    pub session_max_secs: u64,
    /// Seconds a mailed login code works.
    pub code_valid_secs: u64,
    /// Wrong guesses a login code allows before it is void.
    pub code_tries: u32,
    /// Seconds a password-reset or invitation link works.
    pub reset_valid_secs: u64,
    /// Load balancers (addresses or networks) whose connections start with a PROXY header
    /// naming the browser they relay; required from them, believed from no one else.
    pub proxy_protocol_from: TrustedProxies,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8026".parse().expect("a valid address"),
            public_url: None,
            mail_from: "dashboard@sluice.localhost".into(),
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            code_valid_secs: 10 * 60,
            code_tries: 5,
            reset_valid_secs: 24 * 3600,
            proxy_protocol_from: TrustedProxies::default(),
        }
    }
}

impl DashboardConfig {
    /// Where the dashboard is reached, given the address it is bound to.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .map(|url| url.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct DashboardState {
    store: Store,
    config: Arc<DashboardConfig>,
    public_url: Arc<str>,
    mail: Arc<SystemMail>,
    pipeline: PipelineHandle,
    plugins: Arc<PluginRegistry>,
    dkim: Arc<Dkim>,
    throttle: Arc<throttle::LoginThrottle>,
    templates: Arc<pages::Templates>,
    scans: Arc<Scans>,
    /// The API's state, whose checks the editing pages call so a page accepts exactly what
    /// the API accepts.
    api: ApiState,
    /// Where the delivery's capture keeps mail for example domains, for the operator's purge.
    capture: Option<Capture>,
}

impl DashboardState {
    /// The state for a dashboard bound to `bound`, working on the API's `api`: the same store,
    /// pipeline, plugins, keys and scan pool, and the same checks of every change, so a page
    /// accepts exactly what the API accepts.
    pub fn new(config: DashboardConfig, bound: SocketAddr, api: ApiState) -> Self {
        let public_url: Arc<str> = config.public_url(bound).into();
        let mail = Arc::new(SystemMail::new(
            api.store.clone(),
            api.pipeline.clone(),
            config.mail_from.clone(),
        ));
        Self {
            store: api.store.clone(),
            config: Arc::new(config),
            public_url,
            mail,
            pipeline: api.pipeline.clone(),
            plugins: Arc::clone(&api.plugins),
            dkim: Arc::clone(&api.dkim),
            throttle: Arc::new(throttle::LoginThrottle::default()),
            templates: Arc::new(pages::Templates::new()),
            scans: Arc::clone(&api.scans),
            api,
            capture: None,
        }
    }

    /// The same state, with the capture folder the operator's page counts and purges.
    pub fn with_capture(self, capture: Capture) -> Self {
        Self {
            capture: Some(capture),
            ..self
        }
    }

    /// Runs a page's read over many records (statistics, a search, the queue) in the scan
    /// pool it shares with the API (see `crate::scans`): a tenant reloading a heavy page waits
    /// for its own earlier reads, not the others. `account_key` is the account read (the
    /// platform's pages use `u64::MAX`).
    async fn scan<T: Send + 'static>(
        &self,
        account_key: u64,
        read: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, axum::response::Response> {
        self.scans
            .run(account_key, read)
            .await
            .map_err(session::internal)
    }

    /// Whether cookies must only travel over TLS.
    fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Every route of the dashboard.
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login::form).post(login::password))
        .route("/login/code", get(login::code_form).post(login::code))
        .route("/login/mail", post(login::mail_instead))
        .route("/security", get(security::show))
        .route("/security/authenticator", post(security::set_up))
        .route("/security/authenticator/remove", post(security::remove))
        .route("/logout", post(login::logout))
        .route("/logout/everywhere", post(login::logout_everywhere))
        .route("/reset", get(login::reset_form).post(login::reset_request))
        .route(
            "/reset/{token}",
            get(login::new_password_form).post(login::new_password),
        )
        .route("/messages", get(messages::list))
        .route("/messages/{id}", get(messages::detail))
        .route("/messages/{id}/archive", get(messages::archived_copy))
        .route("/messages/{id}/resend", post(resend::send_again))
        .route("/flows", get(flows::list).post(flows::create))
        .route("/flows/simulate", get(simulate::form).post(simulate::run))
        .route("/flows/rules", post(flows::add_rule))
        .route("/flows/rules/{index}/{change}", post(flows::change_rule_at))
        .route("/flows/default", post(flows::set_default))
        .route("/flows/{id}", get(flows::show))
        .route("/flows/{id}/name", post(flows::rename))
        .route("/flows/{id}/delete", post(flows::delete))
        .route("/flows/{id}/steps", post(flows::add_step))
        .route("/flows/{id}/steps/{index}", post(flows::save_step))
        .route(
            "/flows/{id}/steps/{index}/{change}",
            post(flows::change_step_at),
        )
        .route("/operator", get(operator::page))
        .route("/operator/capture/purge", post(operator::purge_capture))
        .route("/sending", get(sending::page))
        .route("/sending/identities", post(sending::create_identity))
        .route(
            "/sending/identities/{id}/{change}",
            post(sending::change_identity),
        )
        .route("/sending/webhooks", post(sending::create_webhook))
        .route(
            "/sending/webhooks/{id}/delete",
            post(sending::delete_webhook),
        )
        .route(
            "/sending/webhooks/{endpoint}/dead/{id}/{change}",
            post(sending::change_dead_letter),
        )
        .route(
            "/plugins",
            get(plugins::list)
                .post(plugins::upload)
                .layer(DefaultBodyLimit::max(plugins::MAX_UPLOAD_BYTES)),
        )
        .route("/plugins/enable", post(plugins::enable))
        .route("/plugins/remove", post(plugins::remove))
        .route(
            "/classifier",
            get(classifier::show).post(classifier::install),
        )
        .route("/classifier/remove", post(classifier::remove))
        .route("/sources", get(sources::list).post(sources::create))
        .route("/sources/{id}", post(sources::update))
        .route("/sources/{id}/delete", post(sources::delete))
        .route("/sources/{id}/credentials", post(sources::add_credential))
        .route(
            "/sources/{id}/credentials/{change}",
            post(sources::change_credential),
        )
        .route("/templates", get(templates::list))
        .route(
            "/templates/{id}",
            get(templates::edit).post(templates::change),
        )
        .route("/filters", get(filters::list).post(filters::add))
        .route("/filters/{id}/remove", post(filters::remove))
        .route("/users", get(users::list).post(users::add))
        .route("/users/{id}/role", post(users::change_role))
        .route("/users/{id}/remove", post(users::remove))
        .route("/audit", get(users::audit))
        .route("/account", post(pages::choose_account))
        .route("/style.css", get(pages::style))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(state)
}

/// Serves the dashboard on `listener` with the API's connection limits and timeouts.
pub fn spawn(
    listener: TcpListener,
    api: &ApiConfig,
    state: DashboardState,
) -> tokio::task::JoinHandle<()> {
    let purge = tokio::spawn(session::purge_expired(
        state.store.clone(),
        Arc::clone(&state.config),
    ));
    let trusted = state.config.proxy_protocol_from.clone();
    let serve = crate::api::serve_http(listener, router(state), api, trusted);
    tokio::spawn(async move {
        serve.await;
        purge.abort();
    })
}
