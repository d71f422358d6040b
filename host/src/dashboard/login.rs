//! Logging in: a password, then a six-digit code mailed through the platform's own pipeline.
//! The code works once, in the browser that gave the password, for a few minutes and a few
//! tries; a new code voids the old. An unknown address gets the same answer, after the same
//! password check, as a wrong password. Also logging out (here or everywhere) and setting a
//! password with a mailed link (reset and invitation alike).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::secret;
use super::session::{
    CHALLENGE_COOKIE, CsrfOnly, SESSION_COOKIE, Viewer, cookie, internal, set_cookie,
};
use super::throttle::Attempt;
use crate::store::{
    AuditEntry, AuditOutcome, CodeCheck, PendingCode, SessionRecord, User, now_millis,
    verify_credential,
};

/// The cookie holding the token the login and reset forms carry back (login CSRF).
const FORM_COOKIE: &str = "sluice_form";
/// The shortest password accepted.
pub(super) const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (argon2 takes any length; a bound keeps the work bounded).
const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest e-mail address (RFC 5321's path limit).
const MAX_EMAIL_BYTES: usize = 254;

/// A page of the login flow, with a fresh form token (in a cookie and in the form).
fn login_page(
    state: &DashboardState,
    template: &str,
    status: StatusCode,
    page: minijinja::Value,
    extra_cookies: Vec<String>,
) -> Response {
    let token = secret::token();
    let mut response = state
        .templates
        .render(template, context! { form_token => &token, ..page });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for cookie in
        extra_cookies
            .into_iter()
            .chain([set_cookie(state, FORM_COOKIE, &token, Some(3600))])
    {
        if let Ok(value) = cookie.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

fn form_token_matches(headers: &HeaderMap, token: &str) -> bool {
    cookie(headers, FORM_COOKIE).is_some_and(|expected| secret::same(expected, token))
}

fn expired_form(state: &DashboardState, template: &str) -> Response {
    login_page(
        state,
        template,
        StatusCode::FORBIDDEN,
        context! { error => "The form had expired. Please try again." },
        Vec::new(),
    )
}

async fn audit(
    state: &DashboardState,
    user: Option<&User>,
    email: &str,
    peer: SocketAddr,
    outcome: AuditOutcome,
) {
    let entry = AuditEntry {
        at: now_millis(),
        email: crate::truncate::cut_to(email.to_string(), MAX_EMAIL_BYTES),
        user_id: user.map(|user| user.id),
        address: peer.ip().to_string(),
        outcome,
    };
    if let Err(error) = state
        .store
        .record_login(user.and_then(|user| user.account_id), entry)
        .await
    {
        tracing::warn!(%error, "recording a login in the audit log failed");
    }
    if outcome.is_failure() {
        tracing::info!(%peer, email, ?outcome, "dashboard login refused");
    }
}

/// `GET /login`.
pub(super) async fn form(State(state): State<DashboardState>) -> Response {
    login_page(
        &state,
        "login.html",
        StatusCode::OK,
        context! {},
        Vec::new(),
    )
}

/// The login form.
#[derive(Deserialize)]
pub(super) struct PasswordForm {
    email: String,
    password: String,
    form_token: String,
}

/// `POST /login`: checks the password and mails a code.
pub(super) async fn password(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    if !form_token_matches(&headers, &form.form_token) {
        return expired_form(&state, "login.html");
    }
    let email = form.email.trim().to_ascii_lowercase();
    let refuse = |status, error: &str| {
        login_page(
            &state,
            "login.html",
            status,
            context! { error => error, email => &email },
            Vec::new(),
        )
    };
    if email.len() > MAX_EMAIL_BYTES || form.password.len() > MAX_PASSWORD_BYTES {
        return refuse(StatusCode::OK, "Wrong e-mail address or password.");
    }
    let user = match state.store.user_by_email(&email) {
        Ok(user) => user,
        Err(error) => return internal(error),
    };
    if !state
        .throttle
        .allow(Attempt::PasswordFromAddress, &peer.ip().to_string())
        || !state.throttle.allow(Attempt::PasswordForEmail, &email)
    {
        audit(&state, user.as_ref(), &email, peer, AuditOutcome::Throttled).await;
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a few minutes and try again.",
        );
    }
    // An unknown address is checked against a dummy hash: the same work, the same answer.
    let hash = user.as_ref().and_then(|user| user.password_hash.clone());
    let valid = verify_credential(form.password, hash).await;
    let Some(user) = user.filter(|_| valid) else {
        audit(&state, None, &email, peer, AuditOutcome::WrongPassword).await;
        return refuse(StatusCode::OK, "Wrong e-mail address or password.");
    };
    if user.totp_secret.is_some() {
        let challenge = secret::token();
        let pending = PendingCode {
            challenge_digest: secret::digest(&[&challenge]),
            code_digest: String::new(),
            expires_at: now_millis() + state.config.code_valid_secs.saturating_mul(1000),
            tries_left: state.config.code_tries,
            authenticator: true,
        };
        if let Err(error) = state.store.set_login_code(user.id, pending).await {
            return internal(error);
        }
        return to_code_form(&state, user.id, &challenge);
    }
    mail_code(&state, &user, peer, &email, None).await
}

/// Sends the browser on to the code form, holding its challenge.
fn to_code_form(state: &DashboardState, user_id: u64, challenge: &str) -> Response {
    (
        [(
            header::SET_COOKIE,
            set_cookie(
                state,
                CHALLENGE_COOKIE,
                &format!("{user_id}.{challenge}"),
                Some(state.config.code_valid_secs),
            ),
        )],
        Redirect::to("/login/code"),
    )
        .into_response()
}

/// Mails `user` a login code for a new challenge (or for `challenge`, when the browser that
/// gave the password asks for a mail instead of its authenticator app).
async fn mail_code(
    state: &DashboardState,
    user: &User,
    peer: SocketAddr,
    email: &str,
    challenge: Option<String>,
) -> Response {
    if !state
        .throttle
        .allow(Attempt::CodeMailed, &user.id.to_string())
    {
        audit(state, Some(user), email, peer, AuditOutcome::Throttled).await;
        return login_page(
            state,
            "login.html",
            StatusCode::TOO_MANY_REQUESTS,
            context! {
                error => "Several codes were mailed to you in the last minutes. Wait a few \
                          minutes, then use the newest one or log in again.",
                email => email,
            },
            Vec::new(),
        );
    }
    let challenge = challenge.unwrap_or_else(secret::token);
    let code = secret::login_code();
    let pending = PendingCode {
        challenge_digest: secret::digest(&[&challenge]),
        code_digest: secret::digest(&[&challenge, &code]),
        expires_at: now_millis() + state.config.code_valid_secs.saturating_mul(1000),
        tries_left: state.config.code_tries,
        authenticator: false,
    };
    if let Err(error) = state.store.set_login_code(user.id, pending).await {
        return internal(error);
    }
    let minutes = state.config.code_valid_secs.div_ceil(60);
    let text = format!(
        "Your Sluice login code is\r\n\r\n    {code}\r\n\r\nIt works once, in the browser where \
         you typed your password, for {minutes} minutes.\r\nIf you did not just try to log in, \
         someone knows your password: change it at {}/reset\r\n",
        state.public_url
    );
    if let Err(error) = state
        .mail
        .send(&user.email, "Your Sluice login code", &text)
        .await
    {
        return internal(error);
    }
    audit(state, Some(user), email, peer, AuditOutcome::CodeSent).await;
    to_code_form(state, user.id, &challenge)
}

/// `POST /login/mail`: the browser holding a challenge asks for a mailed code instead of
/// its authenticator app.
pub(super) async fn mail_instead(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some((user_id, challenge)) = challenge(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let user = match state.store.user(user_id) {
        Ok(Some(user)) => user,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return internal(error),
    };
    // Only the browser whose challenge is the one waiting may ask: a stale cookie gets nothing.
    let waiting = state
        .store
        .login_code_waiting(user.id, secret::digest(&[challenge]))
        .unwrap_or(false);
    if !waiting {
        return Redirect::to("/login").into_response();
    }
    let (challenge, email) = (challenge.to_string(), user.email.clone());
    mail_code(&state, &user, peer, &email, Some(challenge)).await
}

/// The login in progress in this browser: the user and the challenge.
fn challenge(headers: &HeaderMap) -> Option<(u64, &str)> {
    let (user, challenge) = cookie(headers, CHALLENGE_COOKIE)?.split_once('.')?;
    Some((user.parse().ok()?, challenge))
}

/// `GET /login/code`.
pub(super) async fn code_form(State(state): State<DashboardState>, headers: HeaderMap) -> Response {
    let Some((user_id, _)) = challenge(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let authenticator =
        matches!(state.store.user(user_id), Ok(Some(user)) if user.totp_secret.is_some());
    state
        .templates
        .render("code.html", context! { authenticator => authenticator })
}

/// The code form.
#[derive(Deserialize)]
pub(super) struct CodeForm {
    code: String,
}

/// `POST /login/code`: checks the code and opens a session.
pub(super) async fn code(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some((user_id, challenge)) = challenge(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let user = match state.store.user(user_id) {
        Ok(Some(user)) => user,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return internal(error),
    };
    let clear_challenge = set_cookie(&state, CHALLENGE_COOKIE, "", Some(0));
    let start_over = |state: &DashboardState, error: &str| {
        login_page(
            state,
            "login.html",
            StatusCode::OK,
            context! { error => error, email => &user.email },
            vec![clear_challenge.clone()],
        )
    };
    if !state
        .throttle
        .allow(Attempt::CodeFromAddress, &peer.ip().to_string())
    {
        audit(
            &state,
            Some(&user),
            &user.email,
            peer,
            AuditOutcome::Throttled,
        )
        .await;
        let mut page = state.templates.render(
            "code.html",
            context! { error => "Too many attempts. Wait a few minutes and try again." },
        );
        *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return page;
    }
    let typed: String = form
        .code
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(16)
        .collect();
    let check = state
        .store
        .check_login_code(
            user.id,
            secret::digest(&[challenge]),
            secret::digest(&[challenge, &typed]),
            typed.clone(),
            secret::recovery_digest(&typed),
            now_millis(),
        )
        .await;
    match check {
        Err(error) => internal(error),
        Ok(CodeCheck::Accepted) => {
            let token = secret::token();
            let now = now_millis();
            let session = SessionRecord {
                user_id: user.id,
                created_at: now,
                last_seen: now,
                csrf_token: secret::token(),
                address: peer.ip().to_string(),
            };
            if let Err(error) = state
                .store
                .create_session(secret::digest(&[&token]), session)
                .await
            {
                return internal(error);
            }
            audit(
                &state,
                Some(&user),
                &user.email,
                peer,
                AuditOutcome::LoggedIn,
            )
            .await;
            let mut response = Redirect::to("/").into_response();
            for cookie in [
                set_cookie(&state, SESSION_COOKIE, &token, None),
                clear_challenge,
            ] {
                if let Ok(value) = cookie.parse() {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Ok(CodeCheck::Wrong { tries_left }) => {
            audit(
                &state,
                Some(&user),
                &user.email,
                peer,
                AuditOutcome::WrongCode,
            )
            .await;
            let error = if tries_left == 1 {
                "Wrong code. One try left.".to_string()
            } else {
                format!("Wrong code. {tries_left} tries left.")
            };
            state.templates.render(
                "code.html",
                context! { error => error, authenticator => user.totp_secret.is_some() },
            )
        }
        Ok(CodeCheck::TooManyTries) => {
            audit(
                &state,
                Some(&user),
                &user.email,
                peer,
                AuditOutcome::Throttled,
            )
            .await;
            start_over(
                &state,
                "Too many wrong codes. Log in again to get a new one.",
            )
        }
        Ok(CodeCheck::Expired | CodeCheck::NoneWaiting) => {
            audit(
                &state,
                Some(&user),
                &user.email,
                peer,
                AuditOutcome::StaleCode,
            )
            .await;
            start_over(
                &state,
                "That code has expired, was already used or was replaced by a newer one. Log in \
                 again to get a new one.",
            )
        }
    }
}

/// `POST /logout`.
pub(super) async fn logout(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    viewer: Viewer,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(refusal) = viewer.check_csrf(&form.csrf) {
        return refusal.into_response();
    }
    if let Err(error) = state.store.end_session(viewer.session_digest.clone()).await {
        return internal(error);
    }
    audit(
        &state,
        Some(&viewer.user),
        &viewer.user.email,
        peer,
        AuditOutcome::LoggedOut,
    )
    .await;
    logged_out(&state, "You are logged out.")
}

/// `POST /logout/everywhere`: ends every session of the user, this one included.
pub(super) async fn logout_everywhere(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    viewer: Viewer,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(refusal) = viewer.check_csrf(&form.csrf) {
        return refusal.into_response();
    }
    if let Err(error) = state.store.end_sessions_of(viewer.user.id).await {
        return internal(error);
    }
    audit(
        &state,
        Some(&viewer.user),
        &viewer.user.email,
        peer,
        AuditOutcome::LoggedOutEverywhere,
    )
    .await;
    logged_out(&state, "You are logged out on every device.")
}

fn logged_out(state: &DashboardState, notice: &str) -> Response {
    login_page(
        state,
        "login.html",
        StatusCode::OK,
        context! { notice => notice },
        vec![set_cookie(state, SESSION_COOKIE, "", Some(0))],
    )
}

/// `GET /reset`.
pub(super) async fn reset_form(State(state): State<DashboardState>) -> Response {
    login_page(
        &state,
        "reset.html",
        StatusCode::OK,
        context! {},
        Vec::new(),
    )
}

/// The reset request form.
#[derive(Deserialize)]
pub(super) struct ResetForm {
    email: String,
    form_token: String,
}

/// `POST /reset`: mails a link to set a new password, when the address has a user. The
/// answer is the same, and comes as fast, either way: the mail is sent after it.
pub(super) async fn reset_request(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<ResetForm>,
) -> Response {
    if !form_token_matches(&headers, &form.form_token) {
        return expired_form(&state, "reset.html");
    }
    let email = form.email.trim().to_ascii_lowercase();
    let allowed = email.len() <= MAX_EMAIL_BYTES
        && state.throttle.allow(Attempt::Reset, &peer.ip().to_string())
        && state.throttle.allow(Attempt::Reset, &email);
    if allowed {
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(Some(user)) = state.store.user_by_email(&email) else {
                audit(&state, None, &email, peer, AuditOutcome::ResetRequested).await;
                return;
            };
            if let Err(error) = send_password_link(&state, &user, false).await {
                tracing::warn!(%error, "mailing a password-reset link failed");
            }
            audit(
                &state,
                Some(&user),
                &email,
                peer,
                AuditOutcome::ResetRequested,
            )
            .await;
        });
    }
    login_page(
        &state,
        "reset.html",
        StatusCode::OK,
        context! { notice => "If a user has this address, a link to set a new password is on its way. It works once." },
        Vec::new(),
    )
}

/// Mails `user` a link to set its password: a reset, or an invitation for a new user.
pub(super) async fn send_password_link(
    state: &DashboardState,
    user: &User,
    invitation: bool,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let token = password_link_token(&state.store, user, &state.config).await?;
    let link = format!("{}/reset/{token}", state.public_url);
    let hours = state.config.reset_valid_secs.div_ceil(3600);
    let (subject, text) = if invitation {
        (
            "You are invited to Sluice",
            format!(
                "You have been given a {} login to Sluice's dashboard.\r\nChoose your password \
                 here (the link works once, for {hours} hours):\r\n\r\n    {link}\r\n",
                user.role.as_str()
            ),
        )
    } else {
        (
            "Set a new Sluice password",
            format!(
                "Someone (hopefully you) asked to set a new password for {}.\r\nThe link works \
                 once, for {hours} hours:\r\n\r\n    {link}\r\n\r\nIf it was not you, ignore this \
                 mail: your password stays as it is.\r\n",
                user.email
            ),
        )
    };
    Ok(state.mail.send(&user.email, subject, &text).await?)
}

/// A new token for a user's set-password link (any earlier one stops working).
pub(super) async fn password_link_token(
    store: &crate::store::Store,
    user: &User,
    config: &super::DashboardConfig,
) -> Result<String, crate::store::StoreError> {
    let token = secret::token();
    let expires_at = now_millis() + config.reset_valid_secs.saturating_mul(1000);
    store
        .set_reset_token(user.id, secret::digest(&[&token]), expires_at)
        .await?;
    Ok(token)
}

/// `GET /reset/{token}`.
pub(super) async fn new_password_form(
    State(state): State<DashboardState>,
    Path(token): Path<String>,
) -> Response {
    login_page(
        &state,
        "new_password.html",
        StatusCode::OK,
        context! { token => token, min_chars => MIN_PASSWORD_CHARS },
        Vec::new(),
    )
}

/// The new-password form.
#[derive(Deserialize)]
pub(super) struct NewPasswordForm {
    password: String,
    confirm: String,
    form_token: String,
}

/// `POST /reset/{token}`: sets the password and ends the user's sessions.
pub(super) async fn new_password(
    State(state): State<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<NewPasswordForm>,
) -> Response {
    let again = |error: &str| {
        login_page(
            &state,
            "new_password.html",
            StatusCode::OK,
            context! { token => &token, error => error, min_chars => MIN_PASSWORD_CHARS },
            Vec::new(),
        )
    };
    if !form_token_matches(&headers, &form.form_token) {
        return again("The form had expired. Please try again.");
    }
    if let Some(problem) = password_problem(&form.password, &form.confirm) {
        return again(&problem);
    }
    let user_id = match state
        .store
        .take_reset_token(secret::digest(&[&token]), now_millis())
        .await
    {
        Ok(Some(user_id)) => user_id,
        Ok(None) => {
            return login_page(
                &state,
                "reset.html",
                StatusCode::OK,
                context! { error => "This link has expired or was already used. Ask for a new one." },
                Vec::new(),
            );
        }
        Err(error) => return internal(error),
    };
    let password = form.password;
    let hash = match crate::store::hash_secret_queued(password).await {
        Ok(hash) => hash,
        Err(error) => return internal(error),
    };
    let user = match state.store.set_user_password(user_id, hash).await {
        Ok(user) => user,
        Err(error) => return internal(error),
    };
    audit(
        &state,
        Some(&user),
        &user.email,
        peer,
        AuditOutcome::PasswordReset,
    )
    .await;
    login_page(
        &state,
        "login.html",
        StatusCode::OK,
        context! { notice => "Your password is set. Log in with it.", email => user.email },
        Vec::new(),
    )
}

/// What is wrong with a new password, if anything.
pub(super) fn password_problem(password: &str, confirm: &str) -> Option<String> {
    if password != confirm {
        return Some("The two passwords differ.".into());
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!(
            "A password needs at least {MIN_PASSWORD_CHARS} characters."
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "A password has at most {MAX_PASSWORD_BYTES} bytes."
        ));
    }
    None
}
