//! A source's SMTP users, as Flowmailer's `sources/{id}/users` shows them (its `Credentials`
//! model with `protocol: SMTP`). A password is shown once, when the user is made; Sluice keeps
//! only its argon2 hash.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::parse_json;
use crate::store::{Credential, CredentialKind, Source};

/// The shortest password a client may choose; a generated one is longer.
const MIN_PASSWORD_CHARS: usize = 12;
/// The longest username or password taken.
const MAX_FIELD_CHARS: usize = 256;

/// An SMTP user as the API shows it (Flowmailer's `Credentials`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SmtpUser)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// The username: it names the user in paths.
    id: String,
    username: String,
    protocol: &'static str,
    source_id: u64,
    /// Only in the answer that made the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

fn user_view(credential: Credential, password: Option<String>) -> UserView {
    UserView {
        id: credential.username.clone(),
        username: credential.username,
        protocol: "SMTP",
        source_id: credential.source_id,
        password,
    }
}

/// The body of `POST /{account}/sources/{id}/users`: every field may be left out.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewSmtpUser)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
}

fn own_source(state: &ApiState, account_id: u64, source_id: u64) -> Result<Source, ApiError> {
    state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))
}

fn own_user(state: &ApiState, source: &Source, username: &str) -> Result<Credential, ApiError> {
    state
        .store
        .credential(username)?
        .filter(|credential| {
            credential.source_id == source.id && credential.kind == CredentialKind::Smtp
        })
        .ok_or_else(|| ApiError::not_found("SMTP user of this source"))
}

/// Adds a credential to a source; a name another credential has (in any account) is a 409
/// saying `taken`.
pub(super) async fn add_unique(
    state: &ApiState,
    source: &Source,
    kind: CredentialKind,
    name: &str,
    secret: &str,
    taken: &'static str,
) -> Result<Credential, ApiError> {
    match state.store.add_credential(source, kind, name, secret).await {
        Err(crate::store::StoreError::Conflict(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "conflict", taken))
        }
        other => Ok(other?),
    }
}

/// A password a client chose, if long enough and not too long.
fn checked_password(password: String) -> Result<String, ApiError> {
    let length = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_FIELD_CHARS).contains(&length) {
        return Err(ApiError::field(
            "password",
            "invalidValue",
            format!(
                "{MIN_PASSWORD_CHARS} to {MAX_FIELD_CHARS} characters (leave it out to have one made)"
            ),
            None,
        ));
    }
    Ok(password)
}

/// `GET /{account}/sources/{id}/users`.
#[utoipa::path(
    get,
    path = "/{account}/sources/{source}/users",
    tags = ["Sources"],
    responses((status = 200, description = "The source's SMTP users", body = Vec<UserView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(account_id)?;
    let source = own_source(&state, account_id, source_id)?;
    let users = state
        .store
        .credentials_of_source(source.id, CredentialKind::Smtp)?;
    Ok(Json(
        users
            .into_iter()
            .map(|user| user_view(user, None))
            .collect(),
    ))
}

/// `POST /{account}/sources/{id}/users`: makes an SMTP user, with the username and password
/// given or generated ones; answers 201 with the password, shown this once.
#[utoipa::path(
    post,
    path = "/{account}/sources/{source}/users",
    tags = ["Sources"],
    request_body = NewUser,
    responses((status = 201, description = "The user, with its password shown this once", body = UserView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(account_id)?;
    let source = own_source(&state, account_id, source_id)?;
    let input: NewUser = parse_json(&body)?;
    if let Some(protocol) = input.protocol.as_deref()
        && protocol != "SMTP"
    {
        return Err(ApiError::field(
            "protocol",
            "notSupported",
            "a Sluice source's users log in over SMTP AUTH: protocol SMTP",
            Some(protocol.into()),
        ));
    }
    let username = match input.username {
        Some(username) => username,
        None => format!("source{}-{}", source.id, crate::store::random_hex(4)?),
    };
    if username.is_empty()
        || username.chars().count() > MAX_FIELD_CHARS
        || username
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::field(
            "username",
            "invalidValue",
            format!("1 to {MAX_FIELD_CHARS} characters, no spaces or control characters"),
            Some(username.into()),
        ));
    }
    let password = match input.password {
        Some(password) => checked_password(password)?,
        None => crate::store::random_hex(18)?,
    };
    let credential = add_unique(
        &state,
        &source,
        CredentialKind::Smtp,
        &username,
        &password,
        "this username is taken",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(user_view(credential, Some(password))),
    ))
}

/// `GET /{account}/sources/{id}/users/{username}`.
#[utoipa::path(
    get,
    path = "/{account}/sources/{source}/users/{user}",
    tags = ["Sources"],
    responses((status = 200, description = "The user", body = UserView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, source_id, username)): Path<(u64, u64, String)>,
    caller: Caller,
) -> Result<Json<UserView>, ApiError> {
    caller.require(account_id)?;
    let source = own_source(&state, account_id, source_id)?;
    Ok(Json(user_view(own_user(&state, &source, &username)?, None)))
}

/// `DELETE /{account}/sources/{id}/users/{username}`: the user can no longer log in.
#[utoipa::path(
    delete,
    path = "/{account}/sources/{source}/users/{user}",
    tags = ["Sources"],
    responses((status = 204, description = "Done"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, source_id, username)): Path<(u64, u64, String)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let source = own_source(&state, account_id, source_id)?;
    let user = own_user(&state, &source, &username)?;
    state.store.remove_credential(&user.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `PUT /{account}/sources/{id}/users/{username}`: Flowmailer's `Credentials`.
/// What `GET` answers is taken back unchanged; a `password` replaces the user's.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SmtpUserUpdate)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdate {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    /// A string (Flowmailer) or a number.
    #[serde(default)]
    source_id: Option<serde_json::Value>,
    /// The rest of Flowmailer's `Credentials`, none of which an SMTP user of Sluice has.
    #[serde(flatten)]
    others: serde_json::Map<String, serde_json::Value>,
}

/// What of an update Sluice cannot apply, each named.
fn update_refusals(update: &UserUpdate, user: &Credential) -> Vec<FieldError> {
    let refuse = |field: &str, message: &str, value: serde_json::Value| FieldError {
        code: "notSupported".into(),
        default_message: message.into(),
        field: Some(field.into()),
        object_name: None,
        rejected_value: Some(value),
    };
    let mut refusals = Vec::new();
    for (field, given) in [("id", &update.id), ("username", &update.username)] {
        if let Some(given) = given.as_deref().filter(|given| *given != user.username) {
            refusals.push(refuse(
                field,
                "an SMTP user is not renamed: make one with the new name and delete this one",
                given.into(),
            ));
        }
    }
    if let Some(protocol) = update.protocol.as_deref().filter(|p| *p != "SMTP") {
        refusals.push(refuse(
            "protocol",
            "a Sluice source's users log in over SMTP AUTH: protocol SMTP",
            protocol.into(),
        ));
    }
    let own_source = user.source_id.to_string();
    let names_another_source = |given: &serde_json::Value| match given {
        serde_json::Value::Null => false,
        serde_json::Value::String(text) => text.trim() != own_source,
        serde_json::Value::Number(number) => number.to_string() != own_source,
        _ => true,
    };
    if let Some(source_id) = update
        .source_id
        .as_ref()
        .filter(|id| names_another_source(id))
    {
        refusals.push(refuse(
            "sourceId",
            "an SMTP user does not move to another source",
            source_id.clone(),
        ));
    }
    for (field, value) in &update.others {
        if !super::api_credentials::says_nothing(value) {
            refusals.push(refuse(
                field,
                "a Sluice SMTP user has a username and a password only (its source keeps the \
                 allowed networks)",
                value.clone(),
            ));
        }
    }
    refusals
}

/// `PUT /{account}/sources/{id}/users/{username}`: a `password` replaces the user's in one
/// write, so the old one stops working as the new one starts (an SMTP session logged in with
/// it sends no more). Answers the user as `GET` shows it.
#[utoipa::path(
    put,
    path = "/{account}/sources/{source}/users/{user}",
    tags = ["Sources"],
    request_body = UserUpdate,
    responses((status = 200, description = "The user", body = UserView))
)]
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, source_id, username)): Path<(u64, u64, String)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<UserView>, ApiError> {
    caller.require(account_id)?;
    let source = own_source(&state, account_id, source_id)?;
    let user = own_user(&state, &source, &username)?;
    let update: UserUpdate = parse_json(&body)?;
    let refusals = update_refusals(&update, &user);
    if !refusals.is_empty() {
        return Err(ApiError::fields(refusals));
    }
    let user = match update.password {
        Some(password) => {
            let password = checked_password(password)?;
            state
                .store
                .rotate_credential(source.id, &user.username, &password)
                .await?
        }
        None => user,
    };
    Ok(Json(user_view(user, None)))
}
