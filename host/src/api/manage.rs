//! Managing an account: sources and their credentials, and plugins (flows are in `flows`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::messages::parse_json;
use super::representation::created;
use crate::plugin::Grants;
use crate::store::{CredentialKind, Kept, Source};

/// A source as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Source)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    id: u64,
    description: String,
    /// Flowmailer's source type, which its clients require; a Sluice source takes both SMTP
    /// and the API, and is shown as `API`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `null`: any address may use the source; `[]`: none may.
    #[schema(value_type = Option<Vec<String>>, example = json!(["192.0.2.0/24"]))]
    allowed_networks: Option<Vec<IpNet>>,
    max_message_size: usize,
    require_tls: bool,
    /// The same as `requireTls`, as Flowmailer names it.
    tls_required: bool,
    allow_plain_auth: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback_address: Option<String>,
}

/// A source as the API takes it. On `POST` a field left out takes its default; on `PUT` it
/// keeps its value, so a client may send only what it changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceInput {
    /// Ignored: the path names the source (accepted so a view can be sent back as it is).
    #[serde(default, rename = "id")]
    #[schema(value_type = Option<String>)]
    _id: Option<serde::de::IgnoredAny>,
    /// Ignored: every Sluice source takes SMTP and the API (accepted as Flowmailer's clients
    /// send it).
    #[serde(default, rename = "type")]
    #[schema(value_type = Option<String>)]
    _kind: Option<serde::de::IgnoredAny>,
    /// Flowmailer's name of `requireTls`; when both are given they must agree.
    #[serde(default)]
    tls_required: Option<bool>,
    #[serde(default)]
    description: Option<String>,
    /// Left out or `null` on `POST`: no restriction. `null` on `PUT` lifts the restriction;
    /// `[]` admits nobody.
    #[serde(default, deserialize_with = "crate::store::present")]
    #[schema(value_type = Option<Vec<String>>)]
    allowed_networks: Option<Option<Vec<IpNet>>>,
    #[serde(default)]
    max_message_size: Option<usize>,
    #[serde(default)]
    require_tls: Option<bool>,
    #[serde(default)]
    allow_plain_auth: Option<bool>,
    /// `null` on `PUT` removes it.
    #[serde(default, deserialize_with = "crate::store::present")]
    feedback_address: Option<Option<String>>,
}

fn default_max_size() -> usize {
    25 << 20
}

impl From<Source> for SourceView {
    fn from(source: Source) -> Self {
        Self {
            id: source.id,
            description: source.name,
            kind: "API",
            allowed_networks: source.allowed_networks,
            max_message_size: source.max_message_bytes,
            require_tls: source.require_tls,
            tls_required: source.require_tls,
            allow_plain_auth: source.allow_plain_auth,
            feedback_address: source.feedback_address,
        }
    }
}

/// `GET /{account}/sources`.
#[utoipa::path(
    get,
    path = "/{account}/sources",
    tags = ["Sources"],
    responses((status = 200, description = "The account's sources", body = Vec<SourceView>))
)]
pub async fn list_sources(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    caller.require(account_id)?;
    let sources = state.store.sources_of(account_id)?;
    Ok(Json(sources.into_iter().map(SourceView::from).collect()))
}

/// `POST /{account}/sources`.
#[utoipa::path(
    post,
    path = "/{account}/sources",
    tags = ["Sources"],
    request_body = SourceInput,
    responses((status = 201, description = "The source", body = SourceView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create_source(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let defaults = Source {
        id: 0,
        account_id,
        name: String::new(),
        allowed_networks: None,
        max_message_bytes: default_max_size(),
        require_tls: false,
        allow_plain_auth: false,
        feedback_address: None,
    };
    let source = state
        .store
        .create_source(source_from(defaults, parse_json(&body)?)?)
        .await?;
    created(
        format!("/{account_id}/sources/{}", source.id),
        SourceView::from(source),
    )
}

/// `GET /{account}/sources/{id}`.
#[utoipa::path(
    get,
    path = "/{account}/sources/{source}",
    tags = ["Sources"],
    responses((status = 200, description = "The source", body = SourceView))
)]
pub async fn get_source(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<SourceView>, ApiError> {
    caller.require(account_id)?;
    let source = state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    Ok(Json(source.into()))
}

/// `PUT /{account}/sources/{id}`: changes the settings given and keeps the others; its
/// credentials stay.
#[utoipa::path(
    put,
    path = "/{account}/sources/{source}",
    tags = ["Sources"],
    request_body = SourceInput,
    responses((status = 200, description = "The source", body = SourceView))
)]
pub async fn update_source(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<SourceView>, ApiError> {
    caller.require(account_id)?;
    let input: SourceInput = parse_json(&body)?;
    let current = state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    let source = source_from(current, input)?;
    state.store.update_source(source.clone()).await?;
    Ok(Json(source.into()))
}

/// `source` with the input's fields applied, checked.
pub(crate) fn source_from(mut source: Source, input: SourceInput) -> Result<Source, ApiError> {
    if let Some(description) = input.description {
        source.name = description;
    }
    if source.name.trim().is_empty() {
        return Err(ApiError::field(
            "description",
            "required",
            "description is required",
            None,
        ));
    }
    if let Some(address) = input.feedback_address {
        source.feedback_address = address;
    }
    if let Some(address) = &source.feedback_address
        && (!address.contains('@') || address.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ApiError::field(
            "feedbackAddress",
            "invalid",
            "feedbackAddress must be one e-mail address",
            Some(serde_json::json!(address)),
        ));
    }
    if let Some(networks) = input.allowed_networks {
        source.allowed_networks = networks;
    }
    if let Some(size) = input.max_message_size {
        source.max_message_bytes = size;
    }
    match (input.require_tls, input.tls_required) {
        (Some(sluice), Some(flowmailer)) if sluice != flowmailer => {
            return Err(ApiError::field(
                "tlsRequired",
                "invalidValue",
                "requireTls and tlsRequired are one setting and must agree",
                Some(serde_json::json!(flowmailer)),
            ));
        }
        (Some(require_tls), _) | (None, Some(require_tls)) => source.require_tls = require_tls,
        (None, None) => {}
    }
    if let Some(allow_plain_auth) = input.allow_plain_auth {
        source.allow_plain_auth = allow_plain_auth;
    }
    Ok(source)
}

/// The body of `POST /{account}/sources/{id}/credentials`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCredential {
    /// `smtp` or `api`.
    kind: CredentialKind,
    /// The SMTP username or API client id.
    username: String,
}

/// The answer: the secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCredential {
    kind: CredentialKind,
    username: String,
    secret: String,
}

/// `POST /{account}/sources/{id}/credentials`: makes a credential with a random secret.
#[utoipa::path(
    post,
    path = "/{account}/sources/{source}/credentials",
    tags = ["Sluice extensions", "Sources"],
    request_body = NewCredential,
    responses((status = 201, description = "The credential, with its secret shown this once", body = IssuedCredential), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create_credential(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<IssuedCredential>), ApiError> {
    caller.require(account_id)?;
    let request: NewCredential = parse_json(&body)?;
    let source = state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    if request.username.trim().is_empty() || request.username.contains(char::is_whitespace) {
        return Err(ApiError::field(
            "username",
            "invalidValue",
            "username must be non-empty, without spaces",
            Some(request.username.into()),
        ));
    }
    let mut secret = [0u8; 18];
    getrandom::fill(&mut secret).map_err(|error| ApiError::internal(error.to_string()))?;
    let secret = hex::encode(secret);
    state
        .store
        .add_credential(&source, request.kind, &request.username, &secret)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredential {
            kind: request.kind,
            username: request.username,
            secret,
        }),
    ))
}

/// The answer to a plugin upload.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Plugin)]
#[serde(rename_all = "camelCase")]
pub struct PluginView {
    sha256: String,
    imports: Vec<String>,
    /// flowstep, or bounce-classifier.
    kind: &'static str,
}

/// `POST /{account}/plugins`: the body is a component (`application/wasm`). It is compiled and
/// checked like any plugin, with no privileges; a refusal says exactly why.
#[utoipa::path(
    post,
    path = "/{account}/plugins",
    tags = ["Sluice extensions"],
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "A WebAssembly component of the flowstep world"),
    responses((status = 201, description = "The plugin", body = PluginView))
)]
pub async fn upload_plugin(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    caller.require(account_id)?;
    let view = checked_upload(&state, account_id, body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Compiles and checks an uploaded component like any plugin, with no privileges, and keeps
/// it for the account; shared with the dashboard's upload form.
pub(crate) async fn checked_upload(
    state: &ApiState,
    account_id: u64,
    bytes: Vec<u8>,
) -> Result<PluginView, ApiError> {
    let sha256 = crate::plugin::hex_sha256(&bytes);
    // Before compiling: an account that keeps all it may costs no CPU.
    if !state.store.owns_plugin(account_id, &sha256)? {
        state.store.check_room(account_id, Kept::Plugins)?;
    }
    let invalid = |error: crate::plugin::LoadError| {
        ApiError::field("body", "invalidPlugin", error.to_string(), None)
    };
    let view = match Arc::clone(&state.runtime)
        .load_async(sha256.clone(), bytes.clone(), Grants::none())
        .await
    {
        Ok(plugin) => PluginView {
            sha256: sha256.clone(),
            imports: plugin.imports().to_vec(),
            kind: "flowstep",
        },
        // Not a Flowstep: it may be the other kind of component an account uploads.
        Err(crate::plugin::LoadError::WrongShape(why)) => {
            let runtime = Arc::clone(&state.runtime);
            let candidate = bytes.clone();
            tokio::task::spawn_blocking(move || runtime.load_classifier(&candidate))
                .await
                .map_err(ApiError::internal)?
                .map_err(|_| invalid(crate::plugin::LoadError::WrongShape(why)))?;
            PluginView {
                sha256: sha256.clone(),
                imports: Vec::new(),
                kind: "bounce-classifier",
            }
        }
        Err(error) => return Err(invalid(error)),
    };
    state.store.put_plugin(account_id, &sha256, bytes).await?;
    Ok(view)
}
