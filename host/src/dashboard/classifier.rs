//! The account's bounce classifier: which uploaded component (if any) may replace the
//! built-in verdict on its returned mail. Everyone of the account sees it; admins and owners
//! (`Action::Configure`, as for the API) install or remove one through the API's own
//! `api::install_classifier`, so the page refuses exactly what `PUT bounce_classifier` does.

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::{error_lines, render_form_page};
use super::session::{CsrfOnly, Refusal, Viewer};
use crate::access::Action;
use crate::api::{install_classifier, remove_classifier};

/// `GET /classifier`.
pub(super) async fn show(
    State(state): State<DashboardState>,
    viewer: Viewer,
) -> Result<Response, Refusal> {
    let account_id = viewer.account_for(Action::Read)?;
    Ok(page(&state, &viewer, account_id, Vec::new()))
}

fn page(state: &DashboardState, viewer: &Viewer, account_id: u64, errors: Vec<String>) -> Response {
    let installed = match state.store.account(account_id) {
        Ok(account) => account.and_then(|account| account.bounce_classifier),
        Err(error) => return Refusal::store(error).into_response(),
    };
    // Only those who may choose one are shown the account's uploads to choose from.
    let uploads = if viewer.may(Action::Configure) {
        state.store.plugins_owned_by(account_id).unwrap_or_default()
    } else {
        Vec::new()
    };
    render_form_page(
        state,
        viewer,
        "classifier.html",
        "classifier",
        errors,
        context! { installed => installed, uploads => uploads },
    )
}

/// The form choosing an uploaded component.
#[derive(Deserialize)]
pub(super) struct InstallForm {
    #[serde(default)]
    plugin: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `POST /classifier`: installs an uploaded component once it loads as a classifier.
pub(super) async fn install(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<InstallForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    match install_classifier(&state.api, account_id, form.plugin.trim()).await {
        Ok(()) => Ok(Redirect::to("/classifier").into_response()),
        Err(error) => Ok(page(&state, &viewer, account_id, error_lines(&error))),
    }
}

/// `POST /classifier/remove`: the built-in verdicts apply again.
pub(super) async fn remove(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    match remove_classifier(&state.api, account_id).await {
        Ok(()) => Ok(Redirect::to("/classifier").into_response()),
        Err(error) => Ok(page(&state, &viewer, account_id, error_lines(&error))),
    }
}
