//! `POST /{account}/messages/{id}/resend`: sends a message again as a new one (see
//! [`crate::resend`]), answered as Flowmailer answers it: 201, no body, the new message's
//! address in `Location`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::messages::{message_created, parse_json, submit_error};
use crate::resend::{ResendError, resend as send_again};

/// Flowmailer's `ResendMessage`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ResendMessage {
    /// Another recipient than the original's; the original's when absent.
    #[serde(default)]
    recipient_address: Option<String>,
}

fn resend_error(error: ResendError) -> ApiError {
    match error {
        ResendError::NotFound => ApiError::not_found("message"),
        ResendError::InvalidRecipient(given) => ApiError::field(
            "recipientAddress",
            "invalidEmailAddress",
            "recipientAddress not an e-mail address",
            Some(given.into()),
        ),
        ResendError::NotYetProcessed => ApiError::new(
            StatusCode::CONFLICT,
            "notProcessed",
            ResendError::NotYetProcessed.to_string(),
        ),
        ResendError::NotKept => ApiError::new(
            StatusCode::GONE,
            "submittedCopyNotKept",
            ResendError::NotKept.to_string(),
        ),
        ResendError::SourceGone => ApiError::new(
            StatusCode::CONFLICT,
            "sourceGone",
            ResendError::SourceGone.to_string(),
        ),
        ResendError::Submit(error) => submit_error(error),
        ResendError::Store(error) => ApiError::internal(error),
    }
}

/// `POST /{account}/messages/{id}/resend`.
#[utoipa::path(
    post,
    path = "/{account}/messages/{id}/resend",
    tags = ["Messages"],
    request_body(content = Option<ResendMessage>, description = "Optional: another recipient"),
    responses((status = 201, description = "Accepted and durable as a new message; Location names it", headers(("Location" = String, description = ".../{account}/messages/{messageId}"))), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn resend(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    // The SDK always sends a body; an empty one means the original recipient too.
    let request: ResendMessage = if body.iter().all(u8::is_ascii_whitespace) {
        ResendMessage::default()
    } else {
        parse_json(&body)?
    };
    let new_id = send_again(
        &state.store,
        &state.pipeline,
        account_id,
        &id,
        request.recipient_address.as_deref(),
    )
    .await
    .map_err(resend_error)?;
    message_created(&headers, account_id, &new_id)
}
