//! A user's own security settings: an authenticator app (RFC 6238) as the second factor in
//! place of the mailed code, with ten single-use recovery codes shown once.

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::render_page;
use super::secret;
use super::session::{CsrfOnly, Viewer, internal};
use crate::store::now_millis;
use crate::totp;

/// Recovery codes made with an authenticator.
const RECOVERY_CODES: usize = 10;

fn page(state: &DashboardState, viewer: &Viewer, extra: minijinja::Value) -> Response {
    // A fresh secret for setting up; it is kept only once a code made from it is typed back.
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let new_secret = totp::base32(&bytes);
    let uri = format!(
        "otpauth://totp/Sluice:{}?secret={new_secret}&issuer=Sluice&digits=6&period=30",
        form_urlencoded::byte_serialize(viewer.user.email.as_bytes()).collect::<String>()
    );
    render_page(
        state,
        viewer,
        "security.html",
        "security",
        context! {
            enabled => viewer.user.totp_secret.is_some(),
            recovery_left => viewer.user.recovery_codes.len(),
            new_secret => new_secret,
            secret_hex => hex::encode(bytes),
            uri => uri,
            ..extra
        },
    )
}

/// `GET /security`.
pub(super) async fn show(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    page(&state, &viewer, context! {})
}

/// The set-up form: the secret shown and a code made from it.
#[derive(Deserialize)]
pub(super) struct SetUp {
    secret: String,
    code: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `POST /security/authenticator`: keeps the secret when the code proves the app has it,
/// and shows the recovery codes once.
pub(super) async fn set_up(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<SetUp>,
) -> Response {
    if let Err(refusal) = viewer.check_csrf(&form.csrf) {
        return refusal.into_response();
    }
    let secret = match hex::decode(form.secret.trim()) {
        Ok(secret) if secret.len() == 20 => secret,
        _ => {
            return page(
                &state,
                &viewer,
                context! { error => "The form was damaged; try again." },
            );
        }
    };
    let typed: String = form.code.chars().filter(char::is_ascii_digit).collect();
    let Some(step) = totp::matching_step(&secret, &typed, now_millis() / 1000, 0) else {
        return page(
            &state,
            &viewer,
            context! { error => "That code does not match; check the app's clock and try again." },
        );
    };
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| secret::recovery_code())
        .collect();
    let digests = codes
        .iter()
        .map(|code| secret::recovery_digest(code))
        .collect();
    let user = match state
        .store
        .set_authenticator(viewer.user.id, Some(hex::encode(&secret)), digests, step)
        .await
    {
        Ok(user) => user,
        Err(error) => return internal(error),
    };
    let viewer = Viewer { user, ..viewer };
    page(&state, &viewer, context! { recovery_codes => codes })
}

/// `POST /security/authenticator/remove`: back to codes by mail.
pub(super) async fn remove(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(refusal) = viewer.check_csrf(&form.csrf) {
        return refusal.into_response();
    }
    let user = match state
        .store
        .set_authenticator(viewer.user.id, None, Vec::new(), 0)
        .await
    {
        Ok(user) => user,
        Err(error) => return internal(error),
    };
    let viewer = Viewer { user, ..viewer };
    page(
        &state,
        &viewer,
        context! { notice => "The authenticator app was removed: login codes come by mail again." },
    )
}
