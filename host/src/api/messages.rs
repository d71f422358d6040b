//! Messages: submit, simulate, read and list (Flowmailer's v1 shapes).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::message_views::{Additions, EventView, MessageView, view};
use super::paging::{Order, Requested, content_range, page, reference_range, requested};
use super::parameters::{Matrix, date_range, flexible_bool, id_list, oldest_first};
use crate::message::{
    Envelope, ForbiddenInHeader, Message, describe_control, forbidden_in_header, is_address,
};
use crate::store::{MessageRecord, MessageStatus, Source, now_millis};
use crate::store::{MessageSelection, PageStart};
use crate::submit::{self, Submission, SubmitError};

/// A header given with a submission.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct HeaderField {
    name: String,
    value: String,
}

/// An attachment given with a submission.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = Attachment)]
#[serde(rename_all = "camelCase")]
pub struct SubmitAttachment {
    content: String,
    content_type: String,
    filename: Option<String>,
    disposition: Option<String>,
    content_id: Option<String>,
}

/// The body of `POST /{account}/messages/submit` and `.../simulate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitMessage {
    message_type: Option<String>,
    recipient_address: Option<String>,
    sender_address: Option<String>,
    header_from_address: Option<String>,
    header_from_name: Option<String>,
    header_to_address: Option<String>,
    header_to_name: Option<String>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    mimedata: Option<String>,
    data: Option<serde_json::Value>,
    flow_selector: Option<String>,
    #[serde(default)]
    headers: Vec<HeaderField>,
    #[serde(default)]
    attachments: Vec<SubmitAttachment>,
    #[serde(default)]
    tags: Vec<String>,
    schedule_at: Option<String>,
}

/// A submission checked and turned into RFC 5322 content.
struct Prepared {
    sender: String,
    recipient: String,
    content: Vec<u8>,
    data: Option<serde_json::Value>,
    flow_selector: Option<String>,
    tags: Vec<String>,
    schedule_at: Option<String>,
}

/// `type/subtype` with token characters only (RFC 2045 section 5.1), parameters allowed
/// after a semicolon but no control characters anywhere.
fn is_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    !value.chars().any(char::is_control)
        && essence
            .split_once('/')
            .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

/// The error for a value that would be written into a header field with a character it may
/// not hold there; none when it is fine.
pub(super) fn header_text_error(object: &str, field: &str, value: &str) -> Option<FieldError> {
    let (code, message) = match forbidden_in_header(value)? {
        ForbiddenInHeader::LineBreak => (
            "lineBreak",
            "may not contain a line break (CR or LF)".to_string(),
        ),
        ForbiddenInHeader::Control(character) => (
            "controlCharacter",
            format!("may not contain {}", describe_control(character)),
        ),
    };
    let mut error = field_error(field, code, &message, Some(value.into()));
    error.object_name = Some(object.into());
    Some(error)
}

/// Records an error when `value` (if given) may not go into a header; true when it may.
fn check_header_text(errors: &mut Vec<FieldError>, field: &str, value: Option<&str>) -> bool {
    match value.and_then(|value| header_text_error("submitMessage", field, value)) {
        Some(error) => {
            errors.push(error);
            false
        }
        None => true,
    }
}

fn required_address(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &Option<String>,
) -> Option<String> {
    if !check_header_text(errors, field, value.as_deref()) {
        return None;
    }
    match value.as_deref().map(str::trim) {
        Some(address) if is_address(address) => Some(address.to_string()),
        Some(other) => {
            errors.push(field_error(
                field,
                "invalidEmailAddress",
                "not an e-mail address",
                Some(other.into()),
            ));
            None
        }
        None => {
            errors.push(field_error(field, "required", "is required", None));
            None
        }
    }
}

fn field_error(
    field: &str,
    code: &str,
    message: &str,
    rejected: Option<serde_json::Value>,
) -> FieldError {
    FieldError {
        code: code.into(),
        default_message: format!("{field} {message}"),
        field: Some(field.into()),
        object_name: Some("submitMessage".into()),
        rejected_value: rejected,
    }
}

impl SubmitMessage {
    /// Checks every field and builds the message; all problems are reported at once.
    fn prepare(self) -> Result<Prepared, ApiError> {
        let mut errors = Vec::new();
        match self.message_type.as_deref() {
            Some("EMAIL") => {}
            Some("SMS") => errors.push(field_error(
                "messageType",
                "notSupported",
                "SMS is not supported by this server",
                Some("SMS".into()),
            )),
            Some(other) => errors.push(field_error(
                "messageType",
                "invalidValue",
                "must be EMAIL",
                Some(other.into()),
            )),
            None => errors.push(field_error("messageType", "required", "is required", None)),
        }
        let recipient = required_address(&mut errors, "recipientAddress", &self.recipient_address);
        let sender = required_address(&mut errors, "senderAddress", &self.sender_address);
        for (field, value) in [
            ("headerFromAddress", &self.header_from_address),
            ("headerToAddress", &self.header_to_address),
        ] {
            if !check_header_text(&mut errors, field, value.as_deref()) {
                continue;
            }
            if value
                .as_deref()
                .is_some_and(|address| !is_address(address.trim()))
            {
                errors.push(field_error(
                    field,
                    "invalidEmailAddress",
                    "not an e-mail address",
                    value.clone().map(Into::into),
                ));
            }
        }
        for (field, value) in [
            ("headerFromName", &self.header_from_name),
            ("headerToName", &self.header_to_name),
            ("subject", &self.subject),
        ] {
            check_header_text(&mut errors, field, value.as_deref());
        }
        if self.data.as_ref().is_some_and(|data| !data.is_object()) {
            errors.push(field_error(
                "data",
                "invalidValue",
                "must be a JSON object",
                self.data.clone(),
            ));
        }
        let mimedata = match self.mimedata.as_deref().map(|m| STANDARD.decode(m.trim())) {
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(_)) => {
                errors.push(field_error(
                    "mimedata",
                    "invalidBase64",
                    "is not base64",
                    None,
                ));
                None
            }
            None => None,
        };
        let mut attachments = Vec::new();
        for (index, attachment) in self.attachments.iter().enumerate() {
            let content_type = format!("attachments[{index}].contentType");
            if check_header_text(&mut errors, &content_type, Some(&attachment.content_type))
                && !is_media_type(&attachment.content_type)
            {
                errors.push(field_error(
                    &content_type,
                    "invalidValue",
                    "must be a media type such as application/pdf",
                    Some(attachment.content_type.clone().into()),
                ));
            }
            for (name, value) in [
                ("filename", &attachment.filename),
                ("contentId", &attachment.content_id),
                ("disposition", &attachment.disposition),
            ] {
                let field = format!("attachments[{index}].{name}");
                check_header_text(&mut errors, &field, value.as_deref());
            }
            match STANDARD.decode(attachment.content.trim()) {
                Ok(bytes) => attachments.push(bytes),
                Err(_) => errors.push(field_error(
                    &format!("attachments[{index}].content"),
                    "invalidBase64",
                    "is not base64",
                    None,
                )),
            }
        }
        for (index, header) in self.headers.iter().enumerate() {
            let name = format!("headers[{index}].name");
            if check_header_text(&mut errors, &name, Some(&header.name))
                && (header.name.is_empty()
                    || !header
                        .name
                        .bytes()
                        .all(|b| (33..=126).contains(&b) && b != b':'))
            {
                errors.push(field_error(
                    &name,
                    "invalidHeader",
                    "must be a field name: printable ASCII without spaces or colons",
                    Some(header.name.clone().into()),
                ));
            }
            check_header_text(
                &mut errors,
                &format!("headers[{index}].value"),
                Some(&header.value),
            );
        }
        let (Some(recipient), Some(sender)) = (recipient, sender) else {
            return Err(ApiError::fields(errors));
        };
        if !errors.is_empty() {
            return Err(ApiError::fields(errors));
        }

        let content = match mimedata {
            Some(mut raw) => {
                if !self.headers.is_empty() {
                    let mut extra = Vec::new();
                    for header in &self.headers {
                        extra.extend_from_slice(
                            format!("{}: {}\r\n", header.name, header.value).as_bytes(),
                        );
                    }
                    extra.append(&mut raw);
                    raw = extra;
                }
                raw
            }
            None => {
                // Checked above in their trimmed form: written in that form too.
                let trimmed =
                    |address: &Option<String>| address.as_deref().map(|a| a.trim().to_string());
                let from_address = trimmed(&self.header_from_address).unwrap_or(sender.clone());
                let to_address = trimmed(&self.header_to_address).unwrap_or(recipient.clone());
                let from = match &self.header_from_name {
                    Some(name) => Address::new_address(Some(name.clone()), from_address),
                    None => Address::new_address(None::<String>, from_address),
                };
                let to = match &self.header_to_name {
                    Some(name) => Address::new_address(Some(name.clone()), to_address),
                    None => Address::new_address(None::<String>, to_address),
                };
                let mut builder = MessageBuilder::new().from(from).to(to);
                if let Some(subject) = &self.subject {
                    builder = builder.subject(subject.clone());
                }
                for header in &self.headers {
                    builder = builder.header(header.name.clone(), Raw::new(header.value.clone()));
                }
                if let Some(text) = &self.text {
                    builder = builder.text_body(text.clone());
                }
                if let Some(html) = &self.html {
                    builder = builder.html_body(html.clone());
                }
                for (attachment, bytes) in self.attachments.iter().zip(attachments) {
                    let inline = attachment.disposition.as_deref() == Some("inline");
                    let filename = attachment.filename.clone().unwrap_or_default();
                    builder = match (&attachment.content_id, inline) {
                        (Some(cid), true) => builder.inline(
                            attachment.content_type.clone(),
                            cid.trim_matches(|c| c == '<' || c == '>').to_string(),
                            bytes,
                        ),
                        _ => builder.attachment(attachment.content_type.clone(), filename, bytes),
                    };
                }
                builder.write_to_vec().map_err(ApiError::internal)?
            }
        };
        Ok(Prepared {
            sender,
            recipient,
            content,
            data: self.data,
            flow_selector: self.flow_selector,
            tags: self.tags,
            schedule_at: self.schedule_at,
        })
    }
}

fn source_of(state: &ApiState, caller: &Caller) -> Result<Source, ApiError> {
    state
        .store
        .source(caller.source_id)?
        .filter(|source| source.account_id == caller.account_id)
        .ok_or_else(|| ApiError::unauthorized("the source of this token no longer exists"))
}

/// The answer to a submission refused before anything was stored.
pub(super) fn submit_error(error: SubmitError) -> ApiError {
    match error {
        SubmitError::Malformed(error) => {
            ApiError::field("mimedata", "invalidMessage", error.to_string(), None)
        }
        SubmitError::TooLarge { size, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "messageTooLarge",
            format!("the message is {size} bytes, over the source's limit of {limit}"),
        ),
        SubmitError::NoRecipients => {
            ApiError::field("recipientAddress", "required", "is required", None)
        }
        SubmitError::Store(error) => ApiError::internal(error),
    }
}

/// `POST /{account}/messages/submit`: 201 with the new message's address once it is durable.
#[utoipa::path(
    post,
    path = "/{account}/messages/submit",
    tags = ["Messages"],
    request_body = SubmitMessage,
    responses((status = 201, description = "Accepted and durable; Location names the message", headers(("Location" = String, description = ".../{account}/messages/{messageId}"))), (status = 409, description = "In conflict with what the account has: allErrors says what"), (status = 413, description = "Larger than the source takes"))
)]
pub async fn submit(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let request: SubmitMessage = parse_json(&body)?;
    let prepared = request.prepare()?;
    let source = source_of(&state, &caller)?;
    let submission = Submission {
        source,
        over: "api",
        sender: prepared.sender,
        recipients: vec![prepared.recipient],
        content: prepared.content,
        data: prepared.data,
        flow_selector: prepared.flow_selector,
        tags: prepared.tags,
        schedule_at: prepared.schedule_at,
    };
    let ids = submit::accept(&state.store, &state.pipeline, submission)
        .await
        .map_err(submit_error)?;
    message_created(&headers, account_id, &ids[0])
}

/// 201 with no body and the new message's address in `Location`: Flowmailer's SDK reads the
/// new id from its last segment.
pub(super) fn message_created(
    headers: &HeaderMap,
    account_id: u64,
    id: &str,
) -> Result<Response, ApiError> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    let location = format!("http://{host}/{account_id}/messages/{id}");
    let mut response = StatusCode::CREATED.into_response();
    response.headers_mut().insert(
        axum::http::header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// Parses a JSON body, answering a syntax error with where it is.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalidJson",
            format!("the request body is not valid JSON for this call: {error}"),
        )
    })
}

/// The answer of `simulate`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    /// The flow the message was sorted into (Flowmailer's field).
    flow: Option<serde_json::Value>,
    /// The same flow's id (Sluice's earlier field, kept for its clients).
    flow_id: Option<u64>,
    message_type: &'static str,
    status: MessageStatus,
    reason: Option<String>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    data: Option<serde_json::Value>,
    events: Vec<EventView>,
}

/// `POST /{account}/messages/simulate`: runs the flow and shows the result; sends nothing.
#[utoipa::path(
    post,
    path = "/{account}/messages/simulate",
    tags = ["Messages"],
    request_body = SubmitMessage,
    responses((status = 200, description = "What the flow would make of the message", body = Simulation))
)]
pub async fn simulate(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Simulation>, ApiError> {
    caller.require(account_id)?;
    let request: SubmitMessage = parse_json(&body)?;
    let prepared = request.prepare()?;
    let source = source_of(&state, &caller)?;
    let envelope = Envelope {
        sender: prepared.sender.clone(),
        recipient: prepared.recipient.clone(),
    };
    let message = Message::parse(prepared.content, envelope)
        .map_err(|error| ApiError::field("mimedata", "invalidMessage", error.to_string(), None))?
        .with_data(prepared.data.as_ref().map(|data| data.to_string()));
    let record = MessageRecord {
        id: "simulation".into(),
        account_id,
        source_id: source.id,
        submitted_over: "api".into(),
        sender: prepared.sender,
        recipient: prepared.recipient,
        submitted_at: now_millis(),
        data: prepared.data.clone(),
        flow_selector: prepared.flow_selector,
        flow_id: None,
        status: MessageStatus::Submitted,
        status_reason: None,
        subject: message.header("Subject"),
        tags: prepared.tags,
        schedule_at: prepared.schedule_at,
        dmarc: None,
        header_message_id: None,
        resent_from: None,
        steps: Vec::new(),
        next_event: None,
    };
    let run = state
        .pipeline
        .simulate(&record, message)
        .await
        .map_err(ApiError::from)?;
    let output = run.message.as_ref();
    let flow = match run.flow_id {
        Some(id) => Some(json!({
            "id": id,
            "description": state.store.flow(id)?.map(|flow| flow.name),
        })),
        None => None,
    };
    Ok(Json(Simulation {
        flow,
        flow_id: run.flow_id,
        message_type: "EMAIL",
        status: run.status,
        reason: run.reason,
        subject: output.and_then(|message| message.header("Subject")),
        html: output.and_then(Message::html),
        text: output.and_then(Message::text),
        data: prepared.data,
        events: run
            .events
            .iter()
            .enumerate()
            .map(|(seq, event)| EventView::new("simulation", seq, event))
            .collect(),
    }))
}

/// Query options of message reads, as Flowmailer's clients send them (PHP writes booleans as
/// 0 and 1).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    #[serde(default, deserialize_with = "flexible_bool")]
    addevents: bool,
    #[serde(default, deserialize_with = "flexible_bool")]
    addheaders: bool,
    #[serde(default, deserialize_with = "flexible_bool")]
    addonlinelink: bool,
    /// Tags are always shown; accepted so the SDK's requests are.
    #[serde(default, deserialize_with = "flexible_bool", rename = "addtags")]
    _addtags: bool,
    /// Messages are ordered by submission time only; `submitted` (the one Flowmailer
    /// supports for this list) is accepted, any other refused.
    #[serde(default)]
    sortfield: Option<String>,
    /// ASC (oldest first) or DESC (the default).
    #[serde(default)]
    sortorder: Option<String>,
}

/// Query options of the event list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// ASC (oldest first) or DESC (the default).
    #[serde(default)]
    sortorder: Option<String>,
    /// Each event with its message's tags.
    #[serde(default, deserialize_with = "flexible_bool")]
    addmessagetags: bool,
}

/// `GET /{account}/messages/{id}`, with its events, headers and online link.
#[utoipa::path(
    get,
    path = "/{account}/messages/{id}",
    tags = ["Messages"],
    responses((status = 200, description = "The message with its events, headers and online link", body = MessageView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, String)>,
    caller: Caller,
) -> Result<Json<MessageView>, ApiError> {
    caller.require(account_id)?;
    let record = own_message(&state, account_id, &id)?;
    let everything = Additions {
        events: true,
        headers: true,
        online_link: true,
    };
    Ok(Json(view(&state, record, everything)?))
}

/// The account's message `id`; another account's is answered like a missing one.
pub(crate) fn own_message(
    state: &ApiState,
    account_id: u64,
    id: &str,
) -> Result<MessageRecord, ApiError> {
    state
        .store
        .message(id)?
        .filter(|record| record.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("message"))
}

/// The date range of a list (matrix parameter `daterange`), as milliseconds.
pub(super) fn matrix_date_range(
    matrix: &Matrix,
    name: &str,
) -> Result<(Option<u64>, Option<u64>), ApiError> {
    Ok(match matrix.get(name) {
        Some(range) => {
            let (since, before) = date_range(name, range)?;
            (Some(since), Some(before))
        }
        None => (None, None),
    })
}

/// A request for one of the message lists: what the query, the matrix parameters and the
/// `Range` header ask for.
pub struct ListRequest {
    query: MessageQuery,
    matrix: Matrix,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ListRequest {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<MessageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalidQuery",
                    rejection.body_text(),
                )
            })?;
        let Ok(matrix) = Matrix::from_request_parts(parts, state).await;
        Ok(Self {
            query,
            matrix,
            headers: parts.headers.clone(),
        })
    }
}

/// The page of records of `selection` that the `Range` header asks for, and the headers that
/// name it.
pub(super) fn records_page(
    state: &ApiState,
    account_id: u64,
    selection: &MessageSelection,
    headers: &HeaderMap,
) -> Result<(HeaderMap, Vec<MessageRecord>), ApiError> {
    let requested = requested(headers)?;
    let start = match &requested {
        Requested::Items { first, .. } => PageStart::Position(*first),
        Requested::After { reference, .. } => PageStart::After(reference.as_deref()),
    };
    let listed = state
        .store
        .message_list(account_id, selection, start, requested.count())?;
    let answer = match &requested {
        Requested::Items { first, .. } => content_range(
            *first,
            listed.records.len(),
            listed.total.unwrap_or_default(),
        ),
        Requested::After { reference, count } => reference_range(
            reference.as_deref(),
            listed.records.first().map(|record| record.id.as_str()),
            listed.records.last().map(|record| record.id.as_str()),
            *count,
            listed.more,
        ),
    };
    Ok((answer, listed.records))
}

/// One page of the account's messages that `choose` narrows the selection to, answered the
/// way every message list of the API answers.
pub(super) fn message_page(
    state: &ApiState,
    account_id: u64,
    request: &ListRequest,
    choose: impl FnOnce(&mut MessageSelection),
) -> Result<(HeaderMap, Json<Vec<MessageView>>), ApiError> {
    let query = &request.query;
    if let Some(field) = query.sortfield.as_deref()
        && !field.eq_ignore_ascii_case("submitted")
        && !field.eq_ignore_ascii_case("insertedAt")
    {
        return Err(ApiError::field(
            "sortfield",
            "invalidValue",
            "messages are ordered by when they were submitted: sortfield=submitted",
            Some(field.into()),
        ));
    }
    let (since_millis, before_millis) = matrix_date_range(&request.matrix, "daterange")?;
    let mut selection = MessageSelection {
        oldest_first: oldest_first(query.sortorder.as_deref())?,
        since_millis,
        before_millis,
        flow_ids: id_list(&request.matrix, "flow_ids")?,
        ..MessageSelection::default()
    };
    choose(&mut selection);
    let (answer, records) = records_page(state, account_id, &selection, &request.headers)?;
    let add = Additions {
        events: query.addevents,
        headers: query.addheaders,
        online_link: query.addonlinelink,
    };
    let views = records
        .into_iter()
        .map(|record| view(state, record, add))
        .collect::<Result<_, _>>()?;
    Ok((answer, Json(views)))
}

/// `GET /{account}/messages`: newest first (`?sortorder=ASC` for oldest first), paged by
/// `Range` with a message's id as its reference (see `paging`); matrix parameters
/// `daterange` (when the message was accepted) and `flow_ids`.
#[utoipa::path(
    get,
    path = "/{account}/messages",
    tags = ["Messages"],
    params(MessageQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of messages, newest first", body = Vec<MessageView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    request: ListRequest,
) -> Result<(HeaderMap, Json<Vec<MessageView>>), ApiError> {
    caller.require(account_id)?;
    message_page(&state, account_id, &request, |_| {})
}

/// `GET /{account}/message_events`: every event of the account's messages, newest first
/// (`?sortorder=ASC` for oldest first), paged by `Range` (see `paging`); matrix parameters
/// `daterange` and `receivedrange` (when the event happened: Sluice records an event when it
/// happens), `flow_ids` and `source_ids`.
#[utoipa::path(
    get,
    path = "/{account}/message_events",
    tags = ["Messages"],
    params(EventQuery, super::openapi::ItemsRange),
    responses((status = 200, description = "A page of events", body = Vec<EventView>)),
    extensions(("x-matrix-parameters" = json!(["daterange", "receivedrange", "flow_ids", "source_ids"])))
)]
pub async fn events(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    Query(query): Query<EventQuery>,
    matrix: Matrix,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(HeaderMap, Json<Vec<EventView>>), ApiError> {
    caller.require(account_id)?;
    let requested = requested(&headers)?;
    let oldest_first = oldest_first(query.sortorder.as_deref())?;
    let within = match matrix.get("daterange").or(matrix.get("receivedrange")) {
        Some(range) => Some(date_range("daterange", range)?),
        None => None,
    };
    let flow_ids = id_list(&matrix, "flow_ids")?;
    let source_ids = id_list(&matrix, "source_ids")?;
    let mut all = Vec::new();
    for id in state.store.message_ids_of(account_id)? {
        let needs_record = flow_ids.is_some() || source_ids.is_some() || query.addmessagetags;
        let record = match needs_record {
            true => match state.store.message(&id)? {
                Some(record) => Some(record),
                None => continue,
            },
            false => None,
        };
        if let Some(record) = &record {
            let chosen = |ids: &Option<Vec<u64>>, value: Option<u64>| {
                ids.as_ref()
                    .is_none_or(|ids| value.is_some_and(|value| ids.contains(&value)))
            };
            if !chosen(&flow_ids, record.flow_id) || !chosen(&source_ids, Some(record.source_id)) {
                continue;
            }
        }
        for (seq, event) in state.store.events(&id)?.into_iter().enumerate() {
            if within.is_some_and(|(since, before)| event.at < since || event.at >= before) {
                continue;
            }
            let mut view = EventView::new(&id, seq, &event);
            if query.addmessagetags
                && let Some(record) = &record
            {
                view = view.with_tags(record.tags.clone());
            }
            // Time, then message, then place in the message: a total order, so a reference
            // names one place in the list.
            all.push((format!("{:020}.{id}.{seq:010}", event.at), view));
        }
    }
    all.sort_by(|(a, _), (b, _)| if oldest_first { a.cmp(b) } else { b.cmp(a) });
    let order = if oldest_first {
        Order::Ascending
    } else {
        Order::Descending
    };
    let (answer, page) = page(&requested, all, order, |(key, _)| key.clone())?;
    Ok((
        answer,
        Json(page.into_iter().map(|(_, view)| view).collect()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(extra: serde_json::Value) -> Result<Prepared, Vec<FieldError>> {
        let mut body = json!({
            "messageType": "EMAIL",
            "senderAddress": "app@example.com",
            "recipientAddress": "ann@example.net",
            "subject": "ok",
            "text": "body",
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let request: SubmitMessage = serde_json::from_value(body).unwrap();
        request.prepare().map_err(|error| error.errors().to_vec())
    }

    #[test]
    fn header_text_is_refused_with_a_line_break_or_control_and_named() {
        let lf = header_text_error("o", "subject", "a\nb").unwrap();
        assert_eq!(lf.code, "lineBreak");
        assert_eq!(lf.field.as_deref(), Some("subject"));
        assert_eq!(lf.object_name.as_deref(), Some("o"));
        assert_eq!(lf.rejected_value, Some(json!("a\nb")));
        let nul = header_text_error("o", "subject", "a\0b").unwrap();
        assert_eq!(nul.code, "controlCharacter");
        assert!(
            nul.default_message.contains("NUL"),
            "{}",
            nul.default_message
        );
        assert!(header_text_error("o", "subject", "Grüße\tund ✓").is_none());
    }

    #[test]
    fn every_field_written_into_a_header_is_checked() {
        let pdf = STANDARD.encode(b"%PDF");
        for (extra, field) in [
            (json!({"subject": "a\r\nBcc: x@y.example"}), "subject"),
            (json!({"headerFromName": "a\0"}), "headerFromName"),
            (json!({"headerToName": "a\r"}), "headerToName"),
            (
                json!({"headerFromAddress": "a@b.example\n"}),
                "headerFromAddress",
            ),
            (
                json!({"headerToAddress": "a@b.example\u{1}"}),
                "headerToAddress",
            ),
            (json!({"senderAddress": "a@b.example\r\n"}), "senderAddress"),
            (
                json!({"recipientAddress": "\na@b.example"}),
                "recipientAddress",
            ),
            (
                json!({"headers": [{"name": "X\n", "value": "1"}]}),
                "headers[0].name",
            ),
            (
                json!({"headers": [{"name": "X", "value": "1\u{7f}"}]}),
                "headers[0].value",
            ),
            (
                json!({"attachments": [{"content": pdf, "contentType": "a/b\n"}]}),
                "attachments[0].contentType",
            ),
            (
                json!({"attachments": [{"content": pdf, "contentType": "a/b", "filename": "f\0"}]}),
                "attachments[0].filename",
            ),
            (
                json!({"attachments": [{"content": pdf, "contentType": "a/b", "contentId": "c\r"}]}),
                "attachments[0].contentId",
            ),
            (
                json!({"attachments": [{"content": pdf, "contentType": "a/b", "disposition": "inline\n"}]}),
                "attachments[0].disposition",
            ),
        ] {
            let errors = prepare(extra)
                .err()
                .unwrap_or_else(|| panic!("{field} taken"));
            assert_eq!(errors.len(), 1, "{field}: {errors:?}");
            assert_eq!(errors[0].field.as_deref(), Some(field), "{errors:?}");
            assert!(
                matches!(errors[0].code.as_str(), "lineBreak" | "controlCharacter"),
                "{errors:?}"
            );
        }
        assert!(prepare(json!({"subject": "Grüße\tund ✓"})).is_ok());
    }

    #[test]
    fn header_addresses_are_written_as_checked() {
        let prepared = prepare(json!({"headerFromAddress": "  shop@example.com  "})).unwrap();
        let content = String::from_utf8(prepared.content).unwrap();
        assert!(
            content.contains("From: <shop@example.com>\r\n"),
            "{content}"
        );
    }
}
