//! Plugins: the account's uploaded versions (each by its sha256) and the built-in and
//! operator's plugins its flows may name, with whether each runs for the account and, when
//! it failed its way to disabled, why; enable one again; upload a new version through the
//! API's own checks (`api::checked_upload`); remove one no flow uses. Admins and owners only (`Action::Configure`).

use axum::extract::{Form, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use super::DashboardState;
use super::multipart;
use super::pages::render_form_page;
use super::session::{Refusal, Viewer};
use crate::access::Action;
use crate::api::{checked_upload, usable_plugin};
use crate::store::StoreError;

/// The largest component the upload form takes (the API's default request limit).
pub(super) const MAX_UPLOAD_BYTES: usize = 40 << 20;

/// One plugin as the page lists it.
async fn entry(
    state: &DashboardState,
    account_id: u64,
    reference: &str,
    classifier: Option<&str>,
    flows: &[crate::store::Flow],
) -> Value {
    let used_by: Vec<String> = flows
        .iter()
        .filter(|flow| flow.steps.iter().any(|step| step.plugin == reference))
        .map(|flow| flow.name.clone())
        .collect();
    let in_service = usable_plugin(&state.api, account_id, reference)
        .await
        .ok()
        .and_then(|view| serde_json::to_value(view).ok());
    let is_classifier = classifier == Some(reference);
    context! {
        reference => reference,
        used_by => used_by,
        loaded => in_service.is_some(),
        sha256 => in_service.as_ref().and_then(|view| view["sha256"].as_str().map(str::to_string)),
        enabled => in_service.as_ref().is_some_and(|view| view["enabled"] == true),
        disabled_reason => in_service.as_ref().and_then(|view| view["disabledReason"].as_str().map(str::to_string)),
        classifier => is_classifier,
    }
}

/// `GET /plugins`.
pub(super) async fn list(
    State(state): State<DashboardState>,
    viewer: Viewer,
) -> Result<Response, Refusal> {
    let account_id = viewer.account_for(Action::Configure)?;
    Ok(page(&state, &viewer, account_id, Vec::new()).await)
}

async fn page(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    errors: Vec<String>,
) -> Response {
    let flows = state.store.flows_of(account_id).unwrap_or_default();
    let classifier = state
        .store
        .account(account_id)
        .ok()
        .flatten()
        .and_then(|account| account.bounce_classifier);
    let mut uploads = Vec::new();
    for sha256 in state.store.plugins_owned_by(account_id).unwrap_or_default() {
        uploads.push(entry(state, account_id, &sha256, classifier.as_deref(), &flows).await);
    }
    let mut names: Vec<String> = crate::plugin::builtin::BUILTINS
        .iter()
        .map(|builtin| builtin.name.to_string())
        .collect();
    for name in state.plugins.names() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut shared = Vec::new();
    for name in &names {
        shared.push(entry(state, account_id, name, None, &flows).await);
    }
    render_form_page(
        state,
        viewer,
        "plugins.html",
        "plugins",
        errors,
        context! {
            uploads => uploads, shared => shared,
            max_uploads => crate::store::Kept::Plugins.limit(),
        },
    )
}

/// Reads a body to its end, or to `limit` bytes, keeping none of it.
async fn discard(mut body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut read = 0;
    while read <= limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len()),
            _ => return,
        }
    }
}

/// `POST /plugins`: a `multipart/form-data` form with the CSRF token and the component file.
pub(super) async fn upload(
    State(state): State<DashboardState>,
    viewer: Viewer,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Refusal> {
    // The role first: a session that may not upload is answered without its body being
    // kept or parsed (it is read to its end, unkept, so the client gets the answer rather
    // than a connection closed under its upload).
    if let Err(refusal) = viewer.account_for(Action::Configure) {
        discard(body, MAX_UPLOAD_BYTES).await;
        return Err(refusal);
    }
    let body = axum::body::to_bytes(body, MAX_UPLOAD_BYTES)
        .await
        .map_err(|_| Refusal::BadRequest("The upload is larger than 40 MB."))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // A body that is no form carries no token: refused like a forged form.
    let fields = multipart::fields(content_type, &body).ok_or(Refusal::Csrf)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    };
    let csrf = field("csrf")
        .and_then(|token| std::str::from_utf8(token).ok())
        .unwrap_or_default();
    let account_id = viewer.form_account(Action::Configure, csrf)?;
    let component = match field("component") {
        Some(component) if !component.is_empty() => component.to_vec(),
        _ => {
            let errors = vec!["Choose a component file (.wasm) to upload.".to_string()];
            return Ok(page(&state, &viewer, account_id, errors).await);
        }
    };
    match checked_upload(&state.api, account_id, component).await {
        Ok(view) => {
            let sha256 = serde_json::to_value(view)
                .ok()
                .and_then(|view| view["sha256"].as_str().map(str::to_string))
                .unwrap_or_default();
            Ok(Redirect::to(&format!("/plugins#plugin-{sha256}")).into_response())
        }
        Err(error) => {
            let errors = super::pages::error_lines(&error)
                .into_iter()
                .map(|line| format!("The component was refused: {line}"))
                .collect();
            Ok(page(&state, &viewer, account_id, errors).await)
        }
    }
}

/// A form naming one plugin ("enable again", "remove").
#[derive(Deserialize)]
pub(super) struct PluginForm {
    #[serde(default)]
    plugin: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `POST /plugins/enable`: the plugin runs again for the account, with a fresh count of
/// failures (as the API's `plugins/{plugin}/enable`).
pub(super) async fn enable(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<PluginForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    // The API's check: the account's own upload, or a built-in or operator's plugin.
    usable_plugin(&state.api, account_id, &form.plugin)
        .await
        .map_err(|_| Refusal::NotFound("No such plugin."))?;
    state
        .pipeline
        .enable_plugin(account_id, &form.plugin)
        .await
        .map_err(Refusal::store)?;
    Ok(Redirect::to("/plugins").into_response())
}

/// `POST /plugins/remove`: the account no longer keeps an uploaded version (as the API's
/// `DELETE plugins/{sha256}`); refused while a flow or the bounce classifier uses it.
pub(super) async fn remove(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<PluginForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    match state.store.remove_plugin(account_id, &form.plugin).await {
        Ok(()) => Ok(Redirect::to("/plugins").into_response()),
        Err(StoreError::NotFound(_)) => Err(Refusal::NotFound("No such plugin.")),
        Err(StoreError::InUse(why)) => Ok(page(&state, &viewer, account_id, vec![why]).await),
        Err(error) => Err(Refusal::store(error)),
    }
}
