//! The narrower message lists of Flowmailer's API: by recipient, sender, tag, source and flow,
//! the undelivered messages and the held ones. Each pages like `GET /messages` (see
//! `messages::message_page`) over the same store query, narrowed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::json;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::flows::own_flow;
use super::message_views::MessageView;
use super::messages::{ListRequest, message_page};
use super::parameters::Matrix;
use crate::store::{MessageRecord, MessageSelection, MessageStatus};
use crate::timestamp::iso8601;

/// The longest address or tag taken from a path.
const MAX_PATH_VALUE: usize = 320;

fn checked_value(what: &str, value: String) -> Result<String, ApiError> {
    if value.is_empty() || value.len() > MAX_PATH_VALUE {
        return Err(ApiError::field(
            what,
            "invalidValue",
            format!("{what} must be 1 to {MAX_PATH_VALUE} bytes"),
            None,
        ));
    }
    Ok(value)
}

type Page = Result<(HeaderMap, Json<Vec<MessageView>>), ApiError>;

/// `GET /{account}/recipient/{address}/messages`.
#[utoipa::path(
    get,
    path = "/{account}/recipient/{address}/messages",
    tags = ["Messages"],
    params(super::messages::MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the recipient's messages", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn by_recipient(
    State(state): State<ApiState>,
    Path((account_id, address)): Path<(u64, String)>,
    caller: Caller,
    request: ListRequest,
) -> Page {
    caller.require(account_id)?;
    let address = checked_value("recipient", address)?;
    message_page(&state, account_id, &request, |selection| {
        selection.recipient = Some(address)
    })
}

/// `GET /{account}/sender/{address}/messages`.
#[utoipa::path(
    get,
    path = "/{account}/sender/{address}/messages",
    tags = ["Messages"],
    params(super::messages::MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the sender's messages", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn by_sender(
    State(state): State<ApiState>,
    Path((account_id, address)): Path<(u64, String)>,
    caller: Caller,
    request: ListRequest,
) -> Page {
    caller.require(account_id)?;
    let address = checked_value("sender", address)?;
    message_page(&state, account_id, &request, |selection| {
        selection.sender = Some(address)
    })
}

/// `GET /{account}/tag/{tag}/messages`.
#[utoipa::path(
    get,
    path = "/{account}/tag/{tag}/messages",
    tags = ["Messages"],
    params(super::messages::MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the tag's messages", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn by_tag(
    State(state): State<ApiState>,
    Path((account_id, tag)): Path<(u64, String)>,
    caller: Caller,
    request: ListRequest,
) -> Page {
    caller.require(account_id)?;
    let tag = checked_value("tag", tag)?;
    message_page(&state, account_id, &request, |selection| {
        selection.tag = Some(tag)
    })
}

/// `GET /{account}/sources/{id}/messages`.
#[utoipa::path(
    get,
    path = "/{account}/sources/{source}/messages",
    tags = ["Messages"],
    params(super::messages::MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the source's messages", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn by_source(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
    request: ListRequest,
) -> Page {
    caller.require(account_id)?;
    state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    message_page(&state, account_id, &request, |selection| {
        selection.source_ids = Some(vec![source_id])
    })
}

/// `GET /{account}/flows/{id}/messages`.
#[utoipa::path(
    get,
    path = "/{account}/flows/{flow}/messages",
    tags = ["Messages"],
    params(super::messages::MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the flow's messages", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn by_flow(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
    request: ListRequest,
) -> Page {
    caller.require(account_id)?;
    own_flow(&state, account_id, flow_id)?;
    message_page(&state, account_id, &request, |selection| {
        selection.flow_ids = Some(vec![flow_id])
    })
}

/// The states of a message that was not delivered.
const UNDELIVERED: [MessageStatus; 3] = [
    MessageStatus::SoftBounce,
    MessageStatus::HardBounce,
    MessageStatus::Rejected,
];

/// `GET /{account}/undeliveredmessages`: bounced and rejected messages (Flowmailer's
/// `BouncedMessage` is a `Message`; the status and the events say how it bounced).
#[utoipa::path(
    get,
    path = "/{account}/undeliveredmessages",
    tags = ["Messages"],
    params(super::messages::MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the messages not delivered", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn undelivered(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    request: ListRequest,
) -> Page {
    caller.require(account_id)?;
    message_page(&state, account_id, &request, |selection| {
        selection.statuses = Some(UNDELIVERED.to_vec())
    })
}

/// A held message (Flowmailer's `MessageHold`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessageHold)]
#[serde(rename_all = "camelCase")]
pub struct HoldView {
    message_id: String,
    submitted: String,
    message_type: &'static str,
    sender: String,
    recipient: String,
    #[schema(value_type = super::flows::Described)]
    source: serde_json::Value,
    #[schema(value_type = Option<super::flows::Described>)]
    flow: Option<serde_json::Value>,
    status: MessageStatus,
    /// Why it is held: the step's reason or error.
    reason: Option<String>,
    /// The submitted JSON data, as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

fn hold_view(record: MessageRecord) -> HoldView {
    HoldView {
        submitted: iso8601(record.submitted_at),
        message_type: "EMAIL",
        sender: record.sender,
        recipient: record.recipient,
        source: json!({"id": record.source_id}),
        flow: record.flow_id.map(|id| json!({"id": id})),
        status: record.status,
        reason: record.status_reason,
        data: record.data.map(|data| data.to_string()),
        message_id: record.id,
    }
}

/// `GET /{account}/message_hold`: the held messages, newest first, paged by `Range` (a held
/// message's reference is its id); matrix parameter `daterange` (when it was submitted).
#[utoipa::path(
    get,
    path = "/{account}/message_hold",
    tags = ["Messages"],
    params(super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the held messages", body = Vec<HoldView>)),
    extensions(("x-matrix-parameters" = json!(["daterange"])))
)]
pub async fn holds(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    matrix: Matrix,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(HeaderMap, Json<Vec<HoldView>>), ApiError> {
    caller.require(account_id)?;
    let (since_millis, before_millis) = super::messages::matrix_date_range(&matrix, "daterange")?;
    let selection = MessageSelection {
        since_millis,
        before_millis,
        statuses: Some(vec![MessageStatus::Held]),
        ..MessageSelection::default()
    };
    let (answer, records) =
        super::messages::records_page(&state, account_id, &selection, &headers)?;
    Ok((answer, Json(records.into_iter().map(hold_view).collect())))
}

/// `GET /{account}/message_hold/{id}`: a held message; 404 when it is not held (or not the
/// account's).
#[utoipa::path(
    get,
    path = "/{account}/message_hold/{id}",
    tags = ["Messages"],
    responses((status = 200, description = "The held message", body = HoldView))
)]
pub async fn hold(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, String)>,
    caller: Caller,
) -> Result<Json<HoldView>, ApiError> {
    caller.require(account_id)?;
    let record = state
        .store
        .message(&id)?
        .filter(|record| record.account_id == account_id && record.status == MessageStatus::Held)
        .ok_or_else(|| ApiError::not_found("held message"))?;
    Ok(Json(hold_view(record)))
}
