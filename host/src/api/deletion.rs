//! Deleting a flow or a source (`DELETE /{account}/flows/{id}`, `DELETE
//! /{account}/sources/{id}`), with the checks the store makes in the same transaction: a flow
//! the account's routing names, or a source a flow rule names, is refused with 409 saying what
//! names it. A deleted source's SMTP users and API clients end with it, and tokens issued to
//! them stop working at once (every call checks its credential); messages already accepted
//! go on. The dashboard can call [`delete_flow`] and [`delete_source`] as the API does.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::store::StillNamed;

/// 409 for a flow or source something still names.
fn still_named(what: &str, StillNamed(reason): StillNamed) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "stillInUse",
        format!("this {what} cannot be deleted: {reason}"),
    )
}

/// Deletes an account's flow unless its routing names it.
pub(crate) async fn delete_flow(
    state: &ApiState,
    account_id: u64,
    flow_id: u64,
) -> Result<(), ApiError> {
    state
        .store
        .delete_flow(account_id, flow_id)
        .await
        .map_err(|error| match error {
            crate::store::StoreError::NotFound(_) => ApiError::not_found("flow"),
            other => other.into(),
        })?
        .map_err(|named| still_named("flow", named))
}

/// Deletes an account's source with its SMTP users and API clients unless a flow rule names it.
pub(crate) async fn delete_source(
    state: &ApiState,
    account_id: u64,
    source_id: u64,
) -> Result<(), ApiError> {
    state
        .store
        .delete_source(account_id, source_id)
        .await
        .map_err(|error| match error {
            crate::store::StoreError::NotFound(_) => ApiError::not_found("source"),
            other => other.into(),
        })?
        .map_err(|named| still_named("source", named))
}

/// `DELETE /{account}/flows/{id}`.
#[utoipa::path(
    delete,
    path = "/{account}/flows/{flow}",
    tags = ["Flows"],
    responses((status = 204, description = "Done"), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn flow(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    delete_flow(&state, account_id, flow_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /{account}/sources/{id}`. The source of the caller's own credential is refused:
/// deleting it would end the very token that asked, and maybe the account's last API client.
#[utoipa::path(
    delete,
    path = "/{account}/sources/{source}",
    tags = ["Sources"],
    responses((status = 204, description = "Done"), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn source(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let own = state
        .store
        .source(source_id)?
        .is_some_and(|source| source.account_id == account_id);
    if own && source_id == caller.source_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stillInUse",
            "this source cannot be deleted with its own credentials: use another source's API \
             client or the dashboard",
        ));
    }
    delete_source(&state, account_id, source_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
