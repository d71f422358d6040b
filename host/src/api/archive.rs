//! Archived messages: `GET /{account}/messages/{id}/archive` for the account, and `GET
//! /v/{token}`, the 'view online' page for whoever holds the signed link.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::message::{Envelope, Message};
use crate::store::MessageRecord;
use crate::timestamp::iso8601;

/// Query options of the archive read.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArchiveQuery {
    /// `eml` answers the archived message itself (message/rfc822).
    #[serde(default)]
    format: Option<String>,
    /// Adds the submitted JSON data.
    #[serde(default, deserialize_with = "super::parameters::flexible_bool")]
    adddata: bool,
    /// Attachments are listed without their content; accepted so the SDK's requests are.
    #[serde(
        default,
        deserialize_with = "super::parameters::flexible_bool",
        rename = "addattachments"
    )]
    _addattachments: bool,
}

/// An attachment of the archived message.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedAttachment {
    filename: Option<String>,
    content_type: String,
    size: usize,
    /// Names it in `.../archive/{flowStepId}/attachment/{contentId}` (see
    /// `archive_attachment::content_id`).
    content_id: String,
    /// `attachment` or `inline`.
    disposition: String,
}

/// The archived message as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessageArchive)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveView {
    message_id: String,
    /// The archiving step (see `archive_attachment::archive_step_id`).
    flow_step_id: String,
    message_type: &'static str,
    /// The archive keeps the copy for viewing online.
    online_version: bool,
    /// The submitted JSON data (`adddata=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    attachments: Vec<ArchivedAttachment>,
    online_link: String,
    stored_on: String,
    expires_on: String,
}

pub(super) fn archived_message(record: &MessageRecord, raw: Vec<u8>) -> Result<Message, ApiError> {
    let envelope = Envelope {
        sender: record.sender.clone(),
        recipient: record.recipient.clone(),
    };
    Message::parse(raw, envelope).map_err(ApiError::internal)
}

/// `GET /{account}/messages/{id}/archive`.
#[utoipa::path(
    get,
    path = "/{account}/messages/{id}/archive",
    tags = ["Messages"],
    params(ArchiveQuery),
    responses((status = 200, description = "The message as archived, one entry per archiving step; `?format=eml` answers the message itself (message/rfc822)", content((Vec<ArchiveView> = "application/json"), (String = "message/rfc822"))))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, String)>,
    Query(query): Query<ArchiveQuery>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let record = super::messages::own_message(&state, account_id, &id)?;
    let (entry, raw) = state
        .store
        .archive(&id)?
        .ok_or_else(|| ApiError::not_found("archive of this message"))?;
    if query.format.as_deref() == Some("eml") {
        let mut response = raw.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/rfc822"),
        );
        return Ok(response);
    }
    let data = query.adddata.then(|| record.data.clone()).flatten();
    let message = archived_message(&record, raw)?;
    let archive = ArchiveView {
        flow_step_id: super::archive_attachment::archive_step_id(&record),
        message_id: id.clone(),
        message_type: "EMAIL",
        online_version: true,
        data,
        subject: message.header("Subject"),
        html: message.html(),
        text: message.text(),
        attachments: attachments_of(&message),
        online_link: state.links.online_url(&id),
        stored_on: iso8601(entry.stored_at),
        expires_on: iso8601(entry.expires_at),
    };
    // Flowmailer answers a list: one archive per archiving step (Sluice keeps one).
    Ok(Json(vec![archive]).into_response())
}

/// The error archive as the API shows it (Flowmailer's `MessageArchive`, one object).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorArchive)]
#[serde(rename_all = "camelCase")]
pub struct ErrorArchiveView {
    message_id: String,
    message_type: &'static str,
    /// The step (counted from 1) that held the message or failed on it.
    flow_step_id: String,
    /// Never viewable online: it was not sent.
    online_version: bool,
    /// The submitted JSON data (`adddata=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    attachments: Vec<ArchivedAttachment>,
    stored_on: String,
    expires_on: String,
}

/// `GET /{account}/messages/{id}/error_archive`: the message as the step that held it or
/// failed on it got it, while the message's submitted copy is kept (`?format=eml` for the
/// message itself).
#[utoipa::path(
    get,
    path = "/{account}/messages/{id}/error_archive",
    tags = ["Messages"],
    params(ArchiveQuery),
    responses((status = 200, description = "The message as the step that held it or failed on it got it; `?format=eml` answers the message itself (message/rfc822)", content((ErrorArchiveView = "application/json"), (String = "message/rfc822"))))
)]
pub async fn error_archive(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, String)>,
    Query(query): Query<ArchiveQuery>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let record = super::messages::own_message(&state, account_id, &id)?;
    let (entry, raw) = state.store.error_archive(&id)?.ok_or_else(|| {
        ApiError::not_found(
            "error archive of this message (kept only for messages a step held or failed on)",
        )
    })?;
    if query.format.as_deref() == Some("eml") {
        let mut response = raw.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/rfc822"),
        );
        return Ok(response);
    }
    let data = query.adddata.then(|| record.data.clone()).flatten();
    let message = archived_message(&record, raw)?;
    Ok(Json(ErrorArchiveView {
        message_id: id,
        message_type: "EMAIL",
        flow_step_id: entry.step.to_string(),
        online_version: false,
        data,
        subject: message.header("Subject"),
        html: message.html(),
        text: message.text(),
        attachments: attachments_of(&message),
        stored_on: iso8601(entry.stored_at),
        expires_on: iso8601(entry.expires_at),
    })
    .into_response())
}

fn attachments_of(message: &Message) -> Vec<ArchivedAttachment> {
    message
        .attachments()
        .into_iter()
        .map(|attachment| ArchivedAttachment {
            content_id: super::archive_attachment::content_id(&attachment),
            filename: attachment.filename,
            content_type: attachment.content_type,
            size: attachment.size,
            disposition: attachment.disposition,
        })
        .collect()
}

/// The page's policy: the archived html may show images and its own styles, but runs no
/// script, submits no form, cannot be framed, and (sandboxed) lives in an origin of its own,
/// not the API's.
const ONLINE_VIEW_POLICY: &str = "sandbox; default-src 'none'; img-src * data:; \
     style-src 'unsafe-inline' *; font-src * data:; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// `GET /v/{token}`: the archived html of the message the token names; 404 for a token that
/// does not verify, a message without archive, or an expired one.
#[utoipa::path(
    get,
    path = "/v/{token}",
    tags = ["Sluice extensions", "Tracking"],
    responses((status = 200, description = "The online view of an archived message", content_type = "text/html", body = String), (status = 404, description = "No such link, or the archive has expired"))
)]
pub async fn online(State(state): State<ApiState>, Path(token): Path<String>) -> Response {
    let Some(message_id) = state.links.verify_online(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found = state.store.message(&message_id).and_then(|record| {
        Ok(match record {
            Some(record) => state
                .store
                .archive(&message_id)?
                .map(|(_, raw)| (record, raw)),
            None => None,
        })
    });
    let (record, raw) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let Ok(message) = archived_message(&record, raw) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let page = match message.html() {
        Some(html) => html,
        None => format!(
            "<!doctype html><meta charset=\"utf-8\"><pre>{}</pre>",
            escape_html(&message.text().unwrap_or_default())
        ),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, ONLINE_VIEW_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
