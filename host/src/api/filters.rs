//! The filter list (`/{account}/filters`): recipients the account does not send to, because
//! they hard-bounced, complained, or were added by hand. Removing one lets mail through again.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::messages::{matrix_date_range, parse_json};
use super::paging::{Order, page, requested};
use super::parameters::Matrix;
use crate::store::{FilterEntry, filter_key};
use crate::timestamp::iso8601;

/// A filter entry as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Filter)]
#[serde(rename_all = "camelCase")]
pub struct FilterView {
    id: u64,
    account_id: u64,
    /// The filtered address (Flowmailer's name).
    address: String,
    /// The same address (Sluice's earlier name, kept for its clients).
    recipient_address: String,
    message_type: &'static str,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snippet: Option<String>,
    date: String,
}

impl From<FilterEntry> for FilterView {
    fn from(entry: FilterEntry) -> Self {
        Self {
            id: entry.id,
            account_id: entry.account_id,
            address: entry.address.clone(),
            recipient_address: entry.address,
            message_type: "EMAIL",
            reason: entry.reason,
            message_id: entry.message_id,
            snippet: entry.detail,
            date: iso8601(entry.created_at),
        }
    }
}

/// Query options of the list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// Only addresses containing this.
    #[serde(default)]
    address: Option<String>,
}

/// `GET /{account}/filters`, in address order, paged by `Range` (see `paging`); the matrix
/// parameter `daterange` keeps the entries added within it.
#[utoipa::path(
    get,
    path = "/{account}/filters",
    tags = ["Filters"],
    params(FilterQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the filter list", body = Vec<FilterView>)),
    extensions(("x-matrix-parameters" = json!(["daterange"])))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    Query(query): Query<FilterQuery>,
    matrix: Matrix,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(HeaderMap, Json<Vec<FilterView>>), ApiError> {
    caller.require(account_id)?;
    let (since, before) = matrix_date_range(&matrix, "daterange")?;
    let mut entries = state
        .store
        .filters_of(account_id, query.address.as_deref())?;
    entries.retain(|entry| {
        since.is_none_or(|since| entry.created_at >= since)
            && before.is_none_or(|before| entry.created_at < before)
    });
    // Entries come in address order: an address is the reference of its entry.
    let (answer, entries) = page(&requested(&headers)?, entries, Order::Ascending, |entry| {
        filter_key(&entry.address)
    })?;
    Ok((
        answer,
        Json(entries.into_iter().map(FilterView::from).collect()),
    ))
}

/// What adding an entry by hand takes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterInput {
    #[serde(alias = "address")]
    recipient_address: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /{account}/filters`: stops mail to an address by hand.
#[utoipa::path(
    post,
    path = "/{account}/filters",
    tags = ["Filters"],
    request_body = FilterInput,
    responses((status = 201, description = "The entry", body = FilterView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<FilterView>), ApiError> {
    caller.require(account_id)?;
    let input: FilterInput = parse_json(&body)?;
    let address = input.recipient_address.trim();
    let valid = address
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::field(
            "recipientAddress",
            "invalidAddress",
            "an e-mail address",
            Some(address.into()),
        ));
    }
    let reason = input.reason.unwrap_or_else(|| "manual".into());
    let entry = state
        .store
        .add_filter(account_id, address, &reason, None, None)
        .await?;
    Ok((StatusCode::CREATED, Json(entry.into())))
}

/// `DELETE /{account}/filters/{id}`: the address gets mail again.
#[utoipa::path(
    delete,
    path = "/{account}/filters/{id}",
    tags = ["Filters"],
    responses((status = 204, description = "Done"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    state.store.remove_filter(account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
