//! Sessions: a random token in an HttpOnly, SameSite=Strict cookie, its digest in the store,
//! ended by idleness, by age, by logging out (here or everywhere) and by a password change.
//! Every form carries the session's CSRF token, checked before anything changes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{DashboardConfig, DashboardState, secret};
use crate::access::{self, Action, Principal};
use crate::store::{Role, SessionRecord, Store, User, now_millis};

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "sluice_session";
/// The cookie naming the browser's login in progress (between password and code).
pub(super) const CHALLENGE_COOKIE: &str = "sluice_login";
/// The cookie naming the account an operator is looking at.
pub(super) const ACCOUNT_COOKIE: &str = "sluice_account";

/// A session's `last_seen` is written at most this often.
const TOUCH_EVERY_MILLIS: u64 = 60_000;

/// A cookie's value from the request's `Cookie` headers.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value; `max_age` none makes a cookie that ends with the browser session,
/// zero removes it.
pub(super) fn set_cookie(
    state: &DashboardState,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    if state.secure_cookies() {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The logged-in user of a request, and the account it is looking at.
#[derive(Clone, Debug)]
pub(super) struct Viewer {
    /// Who it is.
    pub user: User,
    /// The digest of its session token.
    pub session_digest: String,
    /// The token its forms must carry.
    pub csrf_token: String,
    /// The account its pages show: its own, or the one an operator chose.
    pub account_id: Option<u64>,
}

impl Viewer {
    /// The user as `crate::access` knows it.
    pub fn principal(&self) -> Principal {
        Principal::User {
            account_id: self.user.account_id,
            role: self.user.role,
        }
    }

    /// Whether the user may do `action` in the account shown.
    pub fn may(&self, action: Action) -> bool {
        match (action, self.account_id) {
            (Action::Operate, _) => access::may(self.principal(), action, 0),
            (_, Some(account)) => access::may(self.principal(), action, account),
            (_, None) => false,
        }
    }

    /// The account shown when the user may do `action` in it; otherwise a refusal.
    pub fn account_for(&self, action: Action) -> Result<u64, Refusal> {
        match self.account_id {
            Some(account) if self.may(action) => Ok(account),
            Some(_) => Err(Refusal::Role),
            None => Err(Refusal::NotFound("Choose an account first.")),
        }
    }

    /// The gate of every form that changes an account: refuses a CSRF token that is not
    /// this session's first (so a forged form learns nothing about roles), then answers the
    /// account shown when the user may do `action` in it.
    pub fn form_account(&self, action: Action, csrf: &str) -> Result<u64, Refusal> {
        self.check_csrf(csrf)?;
        self.account_for(action)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), Refusal> {
        if secret::same(&self.csrf_token, token) {
            Ok(())
        } else {
            Err(Refusal::Csrf)
        }
    }

    /// Whether the viewer is an operator.
    pub fn is_operator(&self) -> bool {
        self.user.role == Role::Operator
    }
}

/// A form that carries nothing but the CSRF token (remove, log out, redeliver...).
#[derive(serde::Deserialize)]
pub(super) struct CsrfOnly {
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    pub csrf: String,
}

/// Why a page or form was refused.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The user's role does not allow it.
    Role,
    /// The form's CSRF token is not the session's.
    Csrf,
    /// Nothing the user may see has this name (another account's things look the same).
    NotFound(&'static str),
    /// The form holds a value the change cannot take.
    BadRequest(&'static str),
    /// What the form changes is no longer as the page showed it (another editor, another
    /// tab): a change by position would hit the wrong item, or undo someone else's.
    Changed,
    /// The store failed (logged where it happened).
    Store,
}

impl Refusal {
    /// A store failure, logged.
    pub fn store(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "dashboard: store failure");
        Refusal::Store
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Role => refused(),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                "The form has expired or did not come from this dashboard. Go back, reload and \
                 try again.",
            )
                .into_response(),
            Refusal::NotFound(what) => (StatusCode::NOT_FOUND, what).into_response(),
            Refusal::BadRequest(why) => (StatusCode::BAD_REQUEST, why).into_response(),
            Refusal::Changed => (
                StatusCode::CONFLICT,
                "This changed since you opened the page (someone else, or another tab, saved \
                 first), so nothing was done. Reload the page and make the change again.",
            )
                .into_response(),
            Refusal::Store => internal("see the log line before"),
        }
    }
}

/// The answer to a change the user may not make.
pub(super) fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Your role does not allow this change.",
    )
        .into_response()
}

/// Whether a stored session is still alive.
fn alive(session: &SessionRecord, user: &User, config: &DashboardConfig, now: u64) -> bool {
    let idle = Duration::from_secs(config.session_idle_secs).as_millis() as u64;
    let max = Duration::from_secs(config.session_max_secs).as_millis() as u64;
    now.saturating_sub(session.last_seen) < idle
        && now.saturating_sub(session.created_at) < max
        && session.created_at >= user.sessions_valid_from
}

impl FromRequestParts<DashboardState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DashboardState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let digest = secret::digest(&[token]);
        let store = &state.store;
        let session = store.session(&digest).map_err(internal)?;
        let Some(session) = session else {
            return Err(to_login());
        };
        let user = store.user(session.user_id).map_err(internal)?;
        let now = now_millis();
        let Some(user) = user.filter(|user| alive(&session, user, &state.config, now)) else {
            let _ = store.end_session(digest).await;
            return Err(to_login());
        };
        if now.saturating_sub(session.last_seen) > TOUCH_EVERY_MILLIS {
            store
                .touch_session(digest.clone(), now)
                .await
                .map_err(internal)?;
        }
        let account_id = match user.account_id {
            Some(own) => Some(own),
            None => cookie(&parts.headers, ACCOUNT_COOKIE)
                .and_then(|value| value.parse::<u64>().ok())
                .filter(|id| store.account(*id).ok().flatten().is_some()),
        };
        Ok(Viewer {
            user,
            session_digest: digest,
            csrf_token: session.csrf_token,
            account_id,
        })
    }
}

/// A store failure as a page.
pub(super) fn internal(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "dashboard: store failure");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side; try again in a moment.",
    )
        .into_response()
}

/// How often ended sessions are swept from the store.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Removes sessions that ended by idleness or age, every few minutes.
pub(super) async fn purge_expired(store: Store, config: Arc<DashboardConfig>) {
    let mut interval = tokio::time::interval(PURGE_EVERY);
    loop {
        interval.tick().await;
        let now = now_millis();
        let idle_before = now.saturating_sub(config.session_idle_secs.saturating_mul(1000));
        let made_before = now.saturating_sub(config.session_max_secs.saturating_mul(1000));
        match store.purge_sessions(idle_before, made_before).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "dashboard sessions ended by time"),
            Err(error) => tracing::warn!(%error, "purging dashboard sessions failed"),
        }
    }
}
