//! The account's API credentials (`/{account}/api_credentials`), as Flowmailer's `Credentials`
//! model shows them: `clientId`, `sourceId` and, once, when made, `clientSecret`. Each is a
//! source's API credential (the same store as `POST /sources/{id}/credentials` with
//! `{"kind": "api"}`): a client logs in as its source, so the source's `allowedNetworks` is the
//! credential's `allowedAddresses`, shown but set on the source. Sluice keeps the secret's
//! argon2 hash (never the secret) and the account's `description`; no roles.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::parse_json;
use super::representation::flexible_id;
use crate::store::{Credential, CredentialKind, Source};

/// The longest client id taken.
const MAX_CLIENT_ID_CHARS: usize = 256;
/// The longest description taken.
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// An API credential as the API shows it (Flowmailer's `Credentials`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Credentials)]
#[serde(rename_all = "camelCase")]
pub struct ApiCredentialView {
    /// The client id: it names the credential in paths.
    id: String,
    client_id: String,
    source_id: u64,
    /// The source's allowlist of client addresses, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_addresses: Option<Vec<String>>,
    /// Only in the answer that made the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    /// What the account wrote about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

fn view(credential: Credential, source: &Source, secret: Option<String>) -> ApiCredentialView {
    ApiCredentialView {
        id: credential.username.clone(),
        client_id: credential.username,
        source_id: credential.source_id,
        description: credential.description,
        allowed_addresses: source
            .allowed_networks
            .as_ref()
            .map(|networks| networks.iter().map(ToString::to_string).collect()),
        client_secret: secret,
    }
}

/// The body of `POST /{account}/api_credentials`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewApiCredential {
    /// The source the client logs in as.
    #[serde(deserialize_with = "flexible_id")]
    source_id: u64,
    /// Made up when left out.
    #[serde(default)]
    client_id: Option<String>,
    /// Refused: Sluice chooses the secret.
    #[serde(default)]
    client_secret: Option<String>,
    /// Refused: set on the source (`allowedNetworks`).
    #[serde(default)]
    allowed_addresses: Option<serde_json::Value>,
    /// Refused: a credential has its source's rights, no roles of its own.
    #[serde(default)]
    roles: Option<serde_json::Value>,
    /// What the account writes about it.
    #[serde(default)]
    description: Option<String>,
}

/// A description as given: at most [`MAX_DESCRIPTION_CHARS`] characters, no control
/// characters; an empty one is none.
fn checked_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(description) = description.filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        return Err(ApiError::field(
            "description",
            "invalidValue",
            format!("at most {MAX_DESCRIPTION_CHARS} characters, no control characters"),
            None,
        ));
    }
    Ok(Some(description))
}

fn own_source(state: &ApiState, account_id: u64, source_id: u64) -> Result<Source, ApiError> {
    state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| {
            ApiError::field(
                "sourceId",
                "unknownSource",
                "this account has no source with this id",
                Some(source_id.to_string().into()),
            )
        })
}

/// The account's API credential by client id, with its source.
fn own_credential(
    state: &ApiState,
    account_id: u64,
    client_id: &str,
) -> Result<(Credential, Source), ApiError> {
    let credential = state
        .store
        .credential(client_id)?
        .filter(|credential| {
            credential.account_id == account_id && credential.kind == CredentialKind::Api
        })
        .ok_or_else(|| ApiError::not_found("API credential"))?;
    let source = state
        .store
        .source(credential.source_id)?
        .ok_or_else(|| ApiError::not_found("source of this credential"))?;
    Ok((credential, source))
}

/// `GET /{account}/api_credentials`: every API credential of the account's sources.
#[utoipa::path(
    get,
    path = "/{account}/api_credentials",
    tags = ["API credentials"],
    responses((status = 200, description = "The account's API credentials", body = Vec<ApiCredentialView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<ApiCredentialView>>, ApiError> {
    caller.require(account_id)?;
    let mut views = Vec::new();
    for source in state.store.sources_of(account_id)? {
        for credential in state
            .store
            .credentials_of_source(source.id, CredentialKind::Api)?
        {
            views.push(view(credential, &source, None));
        }
    }
    Ok(Json(views))
}

/// `POST /{account}/api_credentials`: makes a credential for a source, with the client id
/// given or a made-up one; answers 201 with the secret, shown this once.
#[utoipa::path(
    post,
    path = "/{account}/api_credentials",
    tags = ["API credentials"],
    request_body = NewApiCredential,
    responses((status = 201, description = "The credential, with its secret shown this once", body = ApiCredentialView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ApiCredentialView>), ApiError> {
    caller.require(account_id)?;
    let input: NewApiCredential = parse_json(&body)?;
    let refusals = [
        (
            "clientSecret",
            input.client_secret.is_some(),
            "Sluice makes the secret and shows it once",
        ),
        (
            "allowedAddresses",
            input.allowed_addresses.is_some(),
            "the addresses a client may log in from are its source's: PUT /{account}/sources/{id} \
             with allowedNetworks",
        ),
        (
            "roles",
            input.roles.is_some(),
            "a credential has its source's rights; Sluice has no roles for API clients",
        ),
    ];
    if let Some((field, _, why)) = refusals.iter().find(|(_, given, _)| *given) {
        return Err(ApiError::field(field, "notSupported", *why, None));
    }
    let description = checked_description(input.description)?;
    let source = own_source(&state, account_id, input.source_id)?;
    let client_id = match input.client_id {
        Some(client_id) => client_id,
        None => format!("source{}-{}", source.id, crate::store::random_hex(6)?),
    };
    if client_id.is_empty()
        || client_id.chars().count() > MAX_CLIENT_ID_CHARS
        || client_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(ApiError::field(
            "clientId",
            "invalidValue",
            format!("1 to {MAX_CLIENT_ID_CHARS} characters, no spaces, '/' or control characters"),
            Some(client_id.into()),
        ));
    }
    let secret = crate::store::random_hex(18)?;
    let credential = match state
        .store
        .add_described_credential(
            &source,
            CredentialKind::Api,
            &client_id,
            &secret,
            description,
        )
        .await
    {
        Err(crate::store::StoreError::Conflict(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this client id is taken",
        )),
        other => Ok(other?),
    }?;
    Ok((
        StatusCode::CREATED,
        Json(view(credential, &source, Some(secret))),
    ))
}

/// `GET /{account}/api_credentials/{clientId}`.
#[utoipa::path(
    get,
    path = "/{account}/api_credentials/{client}",
    tags = ["API credentials"],
    responses((status = 200, description = "The credential", body = ApiCredentialView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, client_id)): Path<(u64, String)>,
    caller: Caller,
) -> Result<Json<ApiCredentialView>, ApiError> {
    caller.require(account_id)?;
    let (credential, source) = own_credential(&state, account_id, &client_id)?;
    Ok(Json(view(credential, &source, None)))
}

/// `DELETE /{account}/api_credentials/{clientId}`: the client can no longer get tokens.
#[utoipa::path(
    delete,
    path = "/{account}/api_credentials/{client}",
    tags = ["API credentials"],
    responses((status = 204, description = "Done"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, client_id)): Path<(u64, String)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let (credential, _) = own_credential(&state, account_id, &client_id)?;
    state.store.remove_credential(&credential.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `PUT /{account}/api_credentials/{clientId}`: Flowmailer's `Credentials`. What
/// `GET` answers is taken back unchanged; a `description` replaces the credential's (an empty
/// one removes it, a missing one leaves it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCredentialUpdate {
    #[serde(default)]
    description: Option<String>,
    /// Every other member of Flowmailer's `Credentials`, each taken only as it already is.
    #[serde(flatten)]
    others: serde_json::Map<String, serde_json::Value>,
}

/// Whether a member sent back says nothing (PHP's SDK leaves out nulls; other clients send
/// empty values for what they do not set).
pub(super) fn says_nothing(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::String(text) => text.is_empty(),
        serde_json::Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// What of an update Sluice cannot apply, each named: any member other than `description`
/// that asks for something other than what `GET` shows.
fn update_refusals(update: &ApiCredentialUpdate, shown: &serde_json::Value) -> Vec<FieldError> {
    let mut refusals = Vec::new();
    for (member, given) in &update.others {
        let why = match member.as_str() {
            "id" | "clientId" => {
                "a client id is not changed: make a new credential and delete this one"
            }
            "sourceId" => "a credential does not move to another source: make one for that source",
            "allowedAddresses" => {
                "the addresses a client may log in from are its source's: PUT \
                 /{account}/sources/{id} with allowedNetworks"
            }
            "clientSecret" => {
                "Sluice makes a client's secret and shows it once: make a new credential and \
                 delete this one"
            }
            "roles" => "a credential has its source's rights; Sluice has no roles for API clients",
            _ => "an API credential of Sluice has a client id, a source and a description only",
        };
        let as_shown = match (given, &shown[member.as_str()]) {
            // Identifiers as Flowmailer writes them (strings) or as numbers.
            (serde_json::Value::Number(number), serde_json::Value::String(text)) => {
                number.to_string() == *text
            }
            (serde_json::Value::String(text), serde_json::Value::Number(number)) => {
                number.to_string() == *text
            }
            (given, shown) => given == shown,
        };
        if !as_shown && !says_nothing(given) {
            refusals.push(FieldError {
                code: "notSupported".into(),
                default_message: why.into(),
                field: Some(member.clone()),
                object_name: Some("credentials".into()),
                rejected_value: Some(given.clone()),
            });
        }
    }
    refusals
}

#[utoipa::path(
    put,
    path = "/{account}/api_credentials/{client}",
    tags = ["API credentials"],
    request_body = ApiCredentialView,
    responses((status = 200, description = "The credential; only its description changes", body = ApiCredentialView))
)]
/// `PUT /{account}/api_credentials/{clientId}`: sets the credential's `description`; anything
/// else that differs from what `GET` shows is refused by name (`notSupported`). Answers the
/// credential as `GET` shows it.
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, client_id)): Path<(u64, String)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<ApiCredentialView>, ApiError> {
    caller.require(account_id)?;
    let (credential, source) = own_credential(&state, account_id, &client_id)?;
    let update: ApiCredentialUpdate = parse_json(&body)?;
    let shown = serde_json::to_value(view(credential.clone(), &source, None))
        .map_err(ApiError::internal)?;
    let refusals = update_refusals(&update, &shown);
    if !refusals.is_empty() {
        return Err(ApiError::fields(refusals));
    }
    // Left out (as PHP's SDK leaves out a null), the description stays; empty, it goes.
    let description = match update.description {
        Some(given) => checked_description(Some(given))?,
        None => credential.description.clone(),
    };
    let credential = if description == credential.description {
        credential
    } else {
        state
            .store
            .describe_credential(source.id, &credential.username, description)
            .await?
    };
    Ok(Json(view(credential, &source, None)))
}
