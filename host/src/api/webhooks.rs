//! Webhooks (`/{account}/webhooks`): URLs that receive the account's message events, signed
//! with a secret the server makes; and the dead letters of calls that ran out of retries, to
//! look at, redeliver or discard.
//!
//! The secret is shown to the account on every read, not only at creation: the server must
//! keep it in the clear to sign with, and any holder of the account's API credentials could
//! register an endpoint of its own anyway. `PUT` with `"rotateSecret": true` replaces it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::messages::parse_json;
use super::paging::{Order, page, requested};
use crate::store::{EventKind, Kept, WebhookDeadLetter, WebhookEndpoint, event_id, now_millis};
use crate::timestamp::iso8601;
use crate::webhooks::destination;
use crate::webhooks::signature::new_secret;

/// The longest URL taken.
const MAX_URL_BYTES: usize = 2048;
/// The longest description taken.
const MAX_DESCRIPTION_BYTES: usize = 1024;

/// An endpoint as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Webhook)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    id: u64,
    url: String,
    /// The event types it receives; empty means all.
    event_types: Vec<EventKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The HMAC-SHA256 key of `Sluice-Signature`.
    secret: String,
    created_on: String,
    updated_on: String,
    /// Calls waiting or being retried.
    queued: usize,
    /// Calls that ran out of retries.
    dead_letters: usize,
}

fn view(state: &ApiState, endpoint: WebhookEndpoint) -> Result<WebhookView, ApiError> {
    let queued = state.store.webhook_calls_queued(endpoint.id)?;
    let dead_letters = state.store.webhook_dead_letters(endpoint.id)?.len();
    Ok(WebhookView {
        id: endpoint.id,
        url: endpoint.url,
        event_types: endpoint.event_types,
        description: endpoint.description,
        secret: endpoint.secret,
        created_on: iso8601(endpoint.created_at),
        updated_on: iso8601(endpoint.updated_at),
        queued,
        dead_letters,
    })
}

/// What creating or replacing an endpoint takes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookInput {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    /// On PUT: make a new secret.
    #[serde(default)]
    rotate_secret: bool,
}

impl WebhookInput {
    /// An endpoint to make, as a form gives it.
    pub(crate) fn new(url: String, event_types: Vec<String>, description: Option<String>) -> Self {
        Self {
            url,
            event_types,
            description,
            rotate_secret: false,
        }
    }
}

/// The input's URL, event types and description, checked; the URL's host name is resolved
/// too unless private destinations are allowed.
async fn checked(
    state: &ApiState,
    input: &WebhookInput,
) -> Result<(String, Vec<EventKind>, Option<String>), ApiError> {
    let url = input.url.trim();
    let invalid_url =
        |message: &str| ApiError::field("url", "invalidUrl", message, Some(url.to_string().into()));
    if url.len() > MAX_URL_BYTES {
        return Err(invalid_url("at most 2048 bytes"));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|_| invalid_url("an absolute http or https URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid_url("an absolute http or https URL"));
    }
    if !state.allow_private_webhooks {
        destination::check_literal(&parsed).map_err(|message| invalid_url(&message))?;
    }
    let event_types = event_kinds(&input.event_types, "eventTypes")?;
    let description = input
        .description
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_string);
    if description
        .as_ref()
        .is_some_and(|text| text.len() > MAX_DESCRIPTION_BYTES)
    {
        return Err(ApiError::field(
            "description",
            "tooLong",
            "at most 1024 bytes",
            None,
        ));
    }
    // Last, so a request with other faults is answered without a DNS lookup.
    if !state.allow_private_webhooks {
        destination::check_name(&parsed, &state.resolver)
            .await
            .map_err(|message| invalid_url(&message))?;
    }
    Ok((parsed.to_string(), event_types, description))
}

/// Event type names, checked and without repeats; `field` names them in an error.
pub(super) fn event_kinds(names: &[String], field: &str) -> Result<Vec<EventKind>, ApiError> {
    let mut event_types = Vec::new();
    for name in names {
        let name = name.trim().to_ascii_uppercase();
        let Some(kind) = EventKind::from_name(&name) else {
            let known: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
            return Err(ApiError::field(
                field,
                "invalidEventType",
                format!("one of {}", known.join(", ")),
                Some(name.into()),
            ));
        };
        if !event_types.contains(&kind) {
            event_types.push(kind);
        }
    }
    Ok(event_types)
}

/// The account's endpoint with this id; another account's is answered like a missing one.
pub(super) fn own_endpoint(
    state: &ApiState,
    account_id: u64,
    id: u64,
) -> Result<WebhookEndpoint, ApiError> {
    state
        .store
        .webhook(id)?
        .filter(|endpoint| endpoint.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// `GET /{account}/webhooks`.
#[utoipa::path(
    get,
    path = "/{account}/webhooks",
    tags = ["Sluice extensions"],
    responses((status = 200, description = "The account's webhooks", body = Vec<WebhookView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    caller.require(account_id)?;
    let endpoints = state.store.webhooks_of(account_id)?;
    let views = endpoints
        .into_iter()
        .map(|endpoint| view(&state, endpoint))
        .collect::<Result<_, _>>()?;
    Ok(Json(views))
}

/// `POST /{account}/webhooks`: registers a URL; the answer holds its new secret.
#[utoipa::path(
    post,
    path = "/{account}/webhooks",
    tags = ["Sluice extensions"],
    request_body = WebhookInput,
    responses((status = 201, description = "The webhook with its signing secret", body = WebhookView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    caller.require(account_id)?;
    let input: WebhookInput = parse_json(&body)?;
    let endpoint = make_webhook(&state, account_id, &input).await?;
    Ok((StatusCode::CREATED, Json(view(&state, endpoint)?)))
}

/// Registers an endpoint with a new secret (the API's create and the dashboard's form).
pub(crate) async fn make_webhook(
    state: &ApiState,
    account_id: u64,
    input: &WebhookInput,
) -> Result<WebhookEndpoint, ApiError> {
    // Before the URL's DNS check; the store checks again as it writes.
    state.store.check_room(account_id, Kept::Webhooks)?;
    let (url, event_types, description) = checked(state, input).await?;
    let now = now_millis();
    Ok(state
        .store
        .create_webhook(WebhookEndpoint {
            id: 0,
            account_id,
            url,
            event_types,
            description,
            secret: new_secret(),
            created_at: now,
            updated_at: now,
        })
        .await?)
}

/// `GET /{account}/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/{account}/webhooks/{id}",
    tags = ["Sluice extensions"],
    responses((status = 200, description = "The webhook", body = WebhookView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(account_id)?;
    let endpoint = own_endpoint(&state, account_id, id)?;
    Ok(Json(view(&state, endpoint)?))
}

/// `PUT /{account}/webhooks/{id}`: replaces URL, event types and description; calls already
/// queued go to the new URL.
#[utoipa::path(
    put,
    path = "/{account}/webhooks/{id}",
    tags = ["Sluice extensions"],
    request_body = WebhookInput,
    responses((status = 200, description = "The webhook", body = WebhookView))
)]
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(account_id)?;
    let input: WebhookInput = parse_json(&body)?;
    let endpoint = own_endpoint(&state, account_id, id)?;
    let endpoint = replace_webhook(&state, endpoint, &input, false).await?;
    Ok(Json(view(&state, endpoint)?))
}

/// Replaces an endpoint's URL, event types and description with the input's, checked as a
/// new endpoint's are (the API's `PUT` and event flows'). `keep_event_types` leaves the
/// endpoint's event types as they stand (an event flow's rule is written on its own).
pub(super) async fn replace_webhook(
    state: &ApiState,
    endpoint: WebhookEndpoint,
    input: &WebhookInput,
    keep_event_types: bool,
) -> Result<WebhookEndpoint, ApiError> {
    let (url, event_types, description) = checked(state, input).await?;
    let secret = input.rotate_secret.then(new_secret);
    let updated_at = now_millis();
    let endpoint = state
        .store
        .update_webhook(endpoint.account_id, endpoint.id, move |endpoint| {
            endpoint.url.clone_from(&url);
            if !keep_event_types {
                endpoint.event_types.clone_from(&event_types);
            }
            endpoint.description.clone_from(&description);
            if let Some(secret) = &secret {
                endpoint.secret.clone_from(secret);
            }
            endpoint.updated_at = updated_at;
        })
        .await?;
    Ok(endpoint)
}

/// `DELETE /{account}/webhooks/{id}`: with its queued calls and dead letters.
#[utoipa::path(
    delete,
    path = "/{account}/webhooks/{id}",
    tags = ["Sluice extensions"],
    responses((status = 204, description = "Done"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    state.store.delete_webhook(account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A dead letter as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DeadLetter)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    id: u64,
    /// The event's stable id, as sent in `Sluice-Event-Id`.
    event_id: String,
    message_id: String,
    #[serde(rename = "type")]
    kind: String,
    sequence: u32,
    /// When the event happened.
    inserted: String,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    queued_on: String,
    failed_on: String,
}

impl From<WebhookDeadLetter> for DeadLetterView {
    fn from(letter: WebhookDeadLetter) -> Self {
        Self {
            id: letter.id,
            event_id: event_id(&letter.message_id, letter.seq),
            message_id: letter.message_id,
            kind: letter.event_type,
            sequence: letter.seq,
            inserted: iso8601(letter.event_at),
            attempts: letter.attempts,
            last_status: letter.last_status,
            last_error: letter.last_error,
            queued_on: iso8601(letter.queued_at),
            failed_on: iso8601(letter.dead_at),
        }
    }
}

/// `GET /{account}/webhooks/{id}/dead_letters`, oldest first, paged by `Range` (see `paging`).
#[utoipa::path(
    get,
    path = "/{account}/webhooks/{id}/dead_letters",
    tags = ["Sluice extensions"],
    params(super::openapi::ItemsRange),
    responses((status = 200, description = "A page of the calls that ran out of retries, oldest first", body = Vec<DeadLetterView>))
)]
pub async fn dead_letters(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<(HeaderMap, Json<Vec<DeadLetterView>>), ApiError> {
    caller.require(account_id)?;
    let endpoint = own_endpoint(&state, account_id, id)?;
    let letters = state.store.webhook_dead_letters(endpoint.id)?;
    let (answer, letters) = page(&requested(&headers)?, letters, Order::Ascending, |letter| {
        format!("{:020}", letter.id)
    })?;
    Ok((
        answer,
        Json(letters.into_iter().map(DeadLetterView::from).collect()),
    ))
}

/// `POST /{account}/webhooks/{id}/dead_letters/{dead_letter}/redeliver`: queues the call again
/// with fresh retries.
#[utoipa::path(
    post,
    path = "/{account}/webhooks/{id}/dead_letters/{dead_letter}/redeliver",
    tags = ["Sluice extensions"],
    responses((status = 204, description = "Queued again"))
)]
pub async fn redeliver(
    State(state): State<ApiState>,
    Path((account_id, id, dead_letter)): Path<(u64, u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let endpoint = own_endpoint(&state, account_id, id)?;
    state
        .store
        .redeliver_webhook_dead_letter(endpoint.id, dead_letter)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /{account}/webhooks/{id}/dead_letters/{dead_letter}`: discards it.
#[utoipa::path(
    delete,
    path = "/{account}/webhooks/{id}/dead_letters/{dead_letter}",
    tags = ["Sluice extensions"],
    responses((status = 204, description = "Done"))
)]
pub async fn discard(
    State(state): State<ApiState>,
    Path((account_id, id, dead_letter)): Path<(u64, u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let endpoint = own_endpoint(&state, account_id, id)?;
    state
        .store
        .discard_webhook_dead_letter(endpoint.id, dead_letter)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
