//! `GET /{account}/plugins/{plugin}` and `POST /{account}/plugins/{plugin}/enable`: whether a
//! plugin (an uploaded one by sha256, an operator's by name) runs for the account, and
//! letting one that failed its way to disabled run again.
//!
//! A plugin is disabled per account: the account whose mail made it fail is the one that
//! decides when it has seen enough, and its decision touches no other account.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;

/// A plugin as the account sees it run.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PluginState)]
#[serde(rename_all = "camelCase")]
pub struct PluginStateView {
    /// The sha256 of the version in service.
    sha256: String,
    /// Its name: the sha256 for an uploaded plugin, the file name for an operator's.
    name: String,
    /// False once it failed too often in a row for this account.
    enabled: bool,
    /// Why it was disabled.
    disabled_reason: Option<String>,
}

/// Finds a plugin the account may use, or 404 (the same answer for another account's).
pub(crate) async fn usable(
    state: &ApiState,
    account_id: u64,
    reference: &str,
) -> Result<PluginStateView, ApiError> {
    let usable =
        state.plugins.get(reference).is_some() || state.store.owns_plugin(account_id, reference)?;
    if !usable {
        return Err(ApiError::not_found("plugin"));
    }
    let (plugin, reason) = state
        .pipeline
        .plugin_disabled(account_id, reference)
        .await
        .map_err(|_| ApiError::not_found("plugin"))?;
    Ok(PluginStateView {
        sha256: plugin.sha256().to_string(),
        name: plugin.name().to_string(),
        enabled: reason.is_none(),
        disabled_reason: reason,
    })
}

/// `GET /{account}/plugins/{plugin}`.
#[utoipa::path(
    get,
    path = "/{account}/plugins/{plugin}",
    tags = ["Sluice extensions"],
    responses((status = 200, description = "The plugin and whether the account may use it", body = PluginStateView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, reference)): Path<(u64, String)>,
    caller: Caller,
) -> Result<Json<PluginStateView>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(usable(&state, account_id, &reference).await?))
}

/// `DELETE /{account}/plugins/{sha256}`: the account no longer keeps the uploaded plugin;
/// refused while a flow of its or its bounce classifier uses it.
#[utoipa::path(
    delete,
    path = "/{account}/plugins/{plugin}",
    tags = ["Sluice extensions"],
    responses((status = 204, description = "Done"), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, sha256)): Path<(u64, String)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    state.store.remove_plugin(account_id, &sha256).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /{account}/plugins/{plugin}/enable`: runs the plugin again for this account, with a
/// fresh count of failures. Enabling one that runs changes nothing.
#[utoipa::path(
    post,
    path = "/{account}/plugins/{plugin}/enable",
    tags = ["Sluice extensions"],
    responses((status = 200, description = "The plugin, enabled again", body = PluginStateView))
)]
pub async fn enable(
    State(state): State<ApiState>,
    Path((account_id, reference)): Path<(u64, String)>,
    caller: Caller,
) -> Result<Json<PluginStateView>, ApiError> {
    caller.require(account_id)?;
    usable(&state, account_id, &reference).await?;
    state
        .pipeline
        .enable_plugin(account_id, &reference)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(usable(&state, account_id, &reference).await?))
}
