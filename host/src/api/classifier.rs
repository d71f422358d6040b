//! `/{account}/bounce_classifier`: the account's own bounce classifier, a component it
//! uploaded through `/{account}/plugins` that may replace the built-in verdict on its
//! returned mail.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::messages::parse_json;

/// The account's classifier setting.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = BounceClassifier)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassifierView {
    /// The sha256 of an uploaded bounce-classifier component; absent when none is installed.
    #[serde(default)]
    plugin: Option<String>,
}

/// `GET /{account}/bounce_classifier`.
#[utoipa::path(
    get,
    path = "/{account}/bounce_classifier",
    tags = ["Sluice extensions"],
    responses((status = 200, description = "The account's bounce classifier plugin, if any", body = ClassifierView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<ClassifierView>, ApiError> {
    caller.require(account_id)?;
    let account = state
        .store
        .account(account_id)?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Json(ClassifierView {
        plugin: account.bounce_classifier,
    }))
}

/// `PUT /{account}/bounce_classifier`: installs an uploaded classifier, checked first.
#[utoipa::path(
    put,
    path = "/{account}/bounce_classifier",
    tags = ["Sluice extensions"],
    request_body = ClassifierView,
    responses((status = 200, description = "Installed", body = ClassifierView))
)]
pub async fn put(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<ClassifierView>, ApiError> {
    caller.require(account_id)?;
    let view: ClassifierView = parse_json(&body)?;
    let Some(sha256) = view.plugin.as_deref() else {
        return Err(ApiError::field(
            "plugin",
            "required",
            "plugin is required (DELETE removes the classifier)",
            None,
        ));
    };
    install(&state, account_id, sha256).await?;
    Ok(Json(view))
}

/// Installs the account's uploaded component `sha256` as its bounce classifier, once it
/// loads as one: the API's PUT and the dashboard's form both come here.
pub(crate) async fn install(
    state: &ApiState,
    account_id: u64,
    sha256: &str,
) -> Result<(), ApiError> {
    let unknown = || {
        ApiError::field(
            "plugin",
            "unknownPlugin",
            "no plugin of this account has this sha256",
            Some(sha256.to_string().into()),
        )
    };
    if !state.store.owns_plugin(account_id, sha256)? {
        return Err(unknown());
    }
    let bytes = state.store.plugin(sha256)?.ok_or_else(unknown)?;
    let runtime = Arc::clone(&state.runtime);
    tokio::task::spawn_blocking(move || runtime.load_classifier(&bytes))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| {
            ApiError::field(
                "plugin",
                "notAClassifier",
                format!("not a bounce classifier: {error}"),
                Some(sha256.to_string().into()),
            )
        })?;
    state
        .store
        .set_bounce_classifier(account_id, Some(sha256.to_string()))
        .await?;
    Ok(())
}

/// `DELETE /{account}/bounce_classifier`: the built-in verdicts apply again.
#[utoipa::path(
    delete,
    path = "/{account}/bounce_classifier",
    tags = ["Sluice extensions"],
    responses((status = 204, description = "Done"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    remove(&state, account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the account's bounce classifier: the built-in verdicts apply again.
pub(crate) async fn remove(state: &ApiState, account_id: u64) -> Result<(), ApiError> {
    state.store.set_bounce_classifier(account_id, None).await?;
    Ok(())
}
