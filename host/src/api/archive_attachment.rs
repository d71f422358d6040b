//! `GET /{account}/messages/{id}/archive/{flowStepId}/attachment/{contentId}`: one attachment
//! of an archived copy with its content, as Flowmailer's SDK reads it (`getMessageArchiveAttachment`
//! deserialises the answer into its `Attachment` model: `content` in base64, `contentId`,
//! `contentType`, `disposition`, `filename`).
//!
//! `flowStepId` names the copy: the archive step's number in the flow (the archive's
//! `flowStepId`), or the step that held the message or failed on it (the error archive's). An
//! attachment is named by its Content-ID, or, when it has none, by `sluice-part-N` (its place
//! among the message's attachments, from 1), as the archive lists it.
//!
//! The work is bounded: the stored copy unpacks to at most the store's limit, the message is
//! read on a blocking thread, and an attachment larger than [`MAX_ATTACHMENT_BYTES`] is refused
//! (the whole message is at `archive?format=eml`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::Serialize;

use super::ApiState;
use super::archive::archived_message;
use super::auth::Caller;
use super::error::ApiError;
use crate::message::AttachmentInfo;
use crate::store::{MessageRecord, StepResultOutcome};

/// The largest attachment answered: its base64 (4/3 as long) stays well inside the largest
/// JSON answer the API writes.
const MAX_ATTACHMENT_BYTES: usize = 32 << 20;
/// The archive's `flowStepId` when the message's record does not say which step archived it
/// (records written before each step's outcome was kept).
const UNNUMBERED_ARCHIVE_STEP: &str = "archive";
/// How an attachment without a Content-ID is named: this and its place, from 1.
const PART_PREFIX: &str = "sluice-part-";

/// The `flowStepId` of a message's archive: the number of the last archive step that ran.
pub(super) fn archive_step_id(record: &MessageRecord) -> String {
    record
        .steps
        .iter()
        .rev()
        .find(|step| step.plugin == "archive" && step.outcome != StepResultOutcome::Skipped)
        .map_or_else(
            || UNNUMBERED_ARCHIVE_STEP.to_string(),
            |step| step.number.to_string(),
        )
}

/// The name of an attachment in the attachment path: its Content-ID, else its place.
pub(super) fn content_id(attachment: &AttachmentInfo) -> String {
    match attachment.content_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("{PART_PREFIX}{}", attachment.index + 1),
    }
}

/// The attachment `wanted` names: a Content-ID first, so a part whose real Content-ID looks
/// like a made-up name is still found by it.
fn find<'a>(attachments: &'a [AttachmentInfo], wanted: &str) -> Option<&'a AttachmentInfo> {
    attachments
        .iter()
        .find(|attachment| attachment.content_id.as_deref() == Some(wanted))
        .or_else(|| {
            attachments.iter().find(|attachment| {
                attachment.content_id.as_deref().is_none_or(str::is_empty)
                    && content_id(attachment) == wanted
            })
        })
}

/// Flowmailer's `Attachment`, with its content.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Attachment)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    /// The decoded content, in base64.
    content: String,
    content_id: String,
    content_type: String,
    disposition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
}

/// `GET /{account}/messages/{id}/archive/{flowStepId}/attachment/{contentId}`.
#[utoipa::path(
    get,
    path = "/{account}/messages/{id}/archive/{step}/attachment/{content}",
    tags = ["Messages"],
    responses((status = 200, description = "The attachment of the archived copy, its content in base64", body = AttachmentView), (status = 422, description = "The attachment is larger than an answer may carry"))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id, step_id, wanted)): Path<(u64, String, String, String)>,
    caller: Caller,
) -> Result<Json<AttachmentView>, ApiError> {
    caller.require(account_id)?;
    let record = super::messages::own_message(&state, account_id, &id)?;
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let raw = copy_of_step(&store, &record, &step_id)?;
        let message = archived_message(&record, raw)?;
        let attachments = message.attachments();
        let found = find(&attachments, &wanted)
            .ok_or_else(|| ApiError::not_found("attachment of this archived message"))?;
        if found.size > MAX_ATTACHMENT_BYTES {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "tooLarge",
                format!(
                    "the attachment has {} bytes, more than the {MAX_ATTACHMENT_BYTES} answered \
                     here: GET /{{account}}/messages/{{id}}/archive?format=eml answers the whole \
                     message",
                    found.size
                ),
            ));
        }
        let content = message
            .attachment_content(found.index)
            .ok_or_else(|| ApiError::not_found("attachment of this archived message"))?;
        Ok(Json(AttachmentView {
            content: base64::engine::general_purpose::STANDARD.encode(content),
            content_id: content_id(found),
            content_type: found.content_type.clone(),
            disposition: found.disposition.clone(),
            filename: found.filename.clone(),
        }))
    })
    .await
    .map_err(ApiError::internal)?
}

/// The kept copy `step_id` names: the archive's or the error archive's; 404 for any other.
fn copy_of_step(
    store: &crate::store::Store,
    record: &MessageRecord,
    step_id: &str,
) -> Result<Vec<u8>, ApiError> {
    if step_id == archive_step_id(record)
        && let Some((_, raw)) = store.archive(&record.id)?
    {
        return Ok(raw);
    }
    match store.error_archive(&record.id)? {
        Some((entry, raw)) if entry.step.to_string() == step_id => Ok(raw),
        _ => Err(ApiError::not_found(
            "archived copy of this message at this flow step (the archive's or the error \
             archive's flowStepId)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(index: usize, content_id: Option<&str>) -> AttachmentInfo {
        AttachmentInfo {
            index,
            filename: None,
            content_type: "image/png".into(),
            disposition: "inline".into(),
            content_id: content_id.map(str::to_string),
            size: 1,
        }
    }

    #[test]
    fn an_attachment_is_found_by_its_content_id_before_a_made_up_name() {
        let attachments = [
            attachment(0, None),
            attachment(1, Some("logo@shop")),
            attachment(2, Some("sluice-part-1")),
        ];
        assert_eq!(content_id(&attachments[0]), "sluice-part-1");
        assert_eq!(find(&attachments, "logo@shop").unwrap().index, 1);
        // A real Content-ID wins over the made-up name of another part.
        assert_eq!(find(&attachments, "sluice-part-1").unwrap().index, 2);
        assert!(find(&attachments, "sluice-part-2").is_none());
        assert!(find(&attachments, "missing").is_none());
    }
}
