//! Sender identities (`/{account}/sender_identities`, also as Flowmailer's `sender_domains`):
//! a domain the account sends from, its DKIM key made by the host, the DNS records to publish
//! and a check of them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::messages::parse_json;
use super::representation::created;
use crate::dkim::{KeyAlgorithm, expected_records};
use crate::store::{Kept, RecordCheck, SenderIdentity, StoreError};
use crate::timestamp::iso8601;

/// What adding an identity takes.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SenderDomainInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityInput {
    /// The domain mail is sent From.
    #[serde(alias = "senderDomain")]
    domain: String,
    /// `rsa-2048` (the default) or `ed25519`.
    #[serde(default)]
    algorithm: KeyAlgorithm,
}

/// An identity as the API shows it; never the private key.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SenderDomain)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    id: u64,
    /// The domain (Sluice's name).
    domain: String,
    /// The same domain (Flowmailer's name).
    sender_domain: String,
    /// The domain its tracking and online links use, once published.
    #[serde(skip_serializing_if = "Option::is_none")]
    web_domain: Option<String>,
    selector: String,
    algorithm: KeyAlgorithm,
    created_on: String,
    /// The records to publish, with what DNS answered at the last check.
    dns_records: Vec<DnsRecordView>,
    /// All required records were found at the last check.
    validated: bool,
    /// When the records were last checked.
    validated_on: Option<String>,
    /// The envelope-sender domain mail from this domain uses now.
    return_path_domain: String,
}

pub(super) fn view(state: &ApiState, identity: SenderIdentity) -> IdentityView {
    let config = state.dkim.config();
    let return_path_domain = state.dkim.return_path_domain(Some(&identity));
    let (dns_records, validated, validated_on) = match &identity.validation {
        Some(validation) => (
            validation.records.clone(),
            validation.valid,
            Some(iso8601(validation.checked_at)),
        ),
        None => (expected_records(config, &identity), false, None),
    };
    let checked = identity.validation.is_some();
    let web_domain = dns_records
        .iter()
        .find(|record| record.purpose == "web-domain")
        .map(|record| record.name.clone());
    IdentityView {
        id: identity.id,
        sender_domain: identity.domain.clone(),
        web_domain,
        domain: identity.domain,
        selector: identity.selector,
        algorithm: identity.algorithm,
        created_on: iso8601(identity.created_at),
        dns_records: dns_records
            .into_iter()
            .map(|record| record_view(record, checked))
            .collect(),
        validated,
        validated_on,
        return_path_domain,
    }
}

/// A record to publish (Flowmailer's `DnsRecord`: `type`, `name`, `value`, `status`,
/// `errorMessages`), with Sluice's `purpose`, `required`, `found` and `ok`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DnsRecord)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecordView {
    #[serde(flatten)]
    check: RecordCheck,
    /// UNKNOWN before a check, OK or ERROR after.
    status: &'static str,
    error_messages: Vec<String>,
}

fn record_view(check: RecordCheck, checked: bool) -> DnsRecordView {
    let (status, error_messages) = match (checked, check.ok) {
        (false, _) => ("UNKNOWN", Vec::new()),
        (true, true) => ("OK", Vec::new()),
        (true, false) if check.found.is_empty() => (
            "ERROR",
            vec![format!("no {} record found at {}", check.kind, check.name)],
        ),
        (true, false) => (
            "ERROR",
            vec![format!(
                "{} has {} instead of the expected value",
                check.name,
                check.found.join(", ")
            )],
        ),
    };
    DnsRecordView {
        check,
        status,
        error_messages,
    }
}

/// A domain name as DNS allows it, lower case, without a trailing dot.
fn checked_domain(domain: &str) -> Result<String, ApiError> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(label_ok) {
        return Err(ApiError::field(
            "domain",
            "invalidDomain",
            "a domain name such as example.com (ASCII; IDNs in their xn-- form)",
            Some(domain.into()),
        ));
    }
    Ok(domain)
}

fn new_selector() -> Result<String, ApiError> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(format!("sl{}", hex::encode(bytes)))
}

/// The account's identity by id; another account's is not found.
pub(crate) fn own_identity(
    state: &ApiState,
    account_id: u64,
    identity_id: u64,
) -> Result<SenderIdentity, ApiError> {
    state
        .store
        .identity(identity_id)?
        .filter(|identity| identity.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("sender identity"))
}

/// `GET /{account}/sender_identities`.
#[utoipa::path(
    get,
    path = "/{account}/sender_domains",
    tags = ["Sender domains"],
    responses((status = 200, description = "The sender domains with their DNS records", body = Vec<IdentityView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<IdentityView>>, ApiError> {
    caller.require(account_id)?;
    let identities = state.store.identities_of(account_id)?;
    Ok(Json(
        identities
            .into_iter()
            .map(|identity| view(&state, identity))
            .collect(),
    ))
}

/// `POST /{account}/sender_identities`: makes the key and answers with the records to publish.
#[utoipa::path(
    post,
    path = "/{account}/sender_domains",
    tags = ["Sender domains"],
    request_body = IdentityInput,
    responses((status = 201, description = "The sender domain with the DNS records to publish", body = IdentityView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let input: IdentityInput = parse_json(&body)?;
    let identity = make_identity(&state, account_id, &input.domain, input.algorithm).await?;
    created(
        format!("/{account_id}/sender_domains/{}", identity.id),
        view(&state, identity),
    )
}

/// Makes the account's sender identity for `domain` with a new key (the API's create and the
/// dashboard's form): one per domain and account.
pub(crate) async fn make_identity(
    state: &ApiState,
    account_id: u64,
    domain: &str,
    algorithm: KeyAlgorithm,
) -> Result<SenderIdentity, ApiError> {
    let domain = checked_domain(domain)?;
    if state
        .store
        .identity_for_domain(account_id, &domain)?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the account already has a sender identity for {domain}"),
        ));
    }
    // Before the key is made: an account that keeps all it may costs no CPU.
    state.store.check_room(account_id, Kept::Identities)?;
    let selector = new_selector()?;
    let dkim = std::sync::Arc::clone(&state.dkim);
    let slot = state
        .key_making
        .acquire(account_id)
        .await
        .map_err(|_| ApiError::internal("the server is shutting down"))?;
    let identity = tokio::task::spawn_blocking(move || {
        // Given back when the key is made, even if the caller stopped waiting.
        let _slot = slot;
        dkim.new_identity(account_id, &domain, algorithm, &selector)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(state.store.create_identity(identity).await?)
}

/// `GET /{account}/sender_identities/{id}`.
#[utoipa::path(
    get,
    path = "/{account}/sender_domains/{id}",
    tags = ["Sender domains"],
    responses((status = 200, description = "The sender domain", body = IdentityView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, identity_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<IdentityView>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(view(
        &state,
        own_identity(&state, account_id, identity_id)?,
    )))
}

/// `POST /{account}/sender_identities/{id}/validate`: looks the records up in DNS now.
#[utoipa::path(
    post,
    path = "/{account}/sender_domains/{id}/validate",
    tags = ["Sender domains"],
    responses((status = 200, description = "The sender domain with what DNS answered per record", body = IdentityView))
)]
pub async fn validate(
    State(state): State<ApiState>,
    Path((account_id, identity_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<IdentityView>, ApiError> {
    caller.require(account_id)?;
    let identity = own_identity(&state, account_id, identity_id)?;
    Ok(Json(validated(&state, identity).await?))
}

/// `DELETE /{account}/sender_identities/{id}`.
#[utoipa::path(
    delete,
    path = "/{account}/sender_domains/{id}",
    tags = ["Sender domains"],
    responses((status = 204, description = "Done"), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, identity_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    let identity = own_identity(&state, account_id, identity_id)?;
    state.store.delete_identity(identity).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query options of a sender domain read.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainQuery {
    /// Look the records up in DNS now, as `validate` does.
    #[serde(default, deserialize_with = "super::parameters::flexible_bool")]
    validate: bool,
}

/// Checks an identity's records in DNS now and keeps the result.
pub(crate) async fn validated(
    state: &ApiState,
    mut identity: SenderIdentity,
) -> Result<IdentityView, ApiError> {
    let validation = crate::dkim::validate(state.dkim.config(), &identity, &state.resolver).await;
    identity.validation = Some(validation);
    match state.store.update_identity(identity.clone()).await {
        Ok(()) => Ok(view(state, identity)),
        Err(StoreError::Conflict(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "domainTaken",
            format!(
                "{} is already validated by another account, and a domain signs for one \
                 account only: this identity stays unvalidated and its key signs nothing",
                identity.domain
            ),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `GET /{account}/sender_domains/by_domain/{domain}` (`?validate=true` checks DNS first).
#[utoipa::path(
    get,
    path = "/{account}/sender_domains/by_domain/{domain}",
    tags = ["Sender domains"],
    params(DomainQuery),
    responses((status = 200, description = "The sender domain", body = IdentityView))
)]
pub async fn by_domain(
    State(state): State<ApiState>,
    Path((account_id, domain)): Path<(u64, String)>,
    axum::extract::Query(query): axum::extract::Query<DomainQuery>,
    caller: Caller,
) -> Result<Json<IdentityView>, ApiError> {
    caller.require(account_id)?;
    let domain = checked_domain(&domain)?;
    let identity = state
        .store
        .identity_for_domain(account_id, &domain)?
        .ok_or_else(|| ApiError::not_found("sender domain"))?;
    if query.validate {
        return Ok(Json(validated(&state, identity).await?));
    }
    Ok(Json(view(&state, identity)))
}

/// The body of `POST /{account}/sender_domains/validate` (Flowmailer's `SenderDomain`; only
/// `senderDomain` is read: Sluice chooses the return-path and web domains itself).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateInput {
    #[serde(alias = "domain")]
    sender_domain: String,
}

/// `POST /{account}/sender_domains/validate`: checks the DNS records of the account's identity
/// for `senderDomain`. Flowmailer also checks a domain it has no identity for; Sluice makes the
/// DKIM key when the identity is added, so there is nothing to check before that (404).
#[utoipa::path(
    post,
    path = "/{account}/sender_domains/validate",
    tags = ["Sender domains"],
    request_body = ValidateInput,
    responses((status = 200, description = "The records a domain would need, checked in DNS", body = IdentityView))
)]
pub async fn validate_domain(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<IdentityView>, ApiError> {
    caller.require(account_id)?;
    let input: ValidateInput = parse_json(&body)?;
    let domain = checked_domain(&input.sender_domain)?;
    let identity = state
        .store
        .identity_for_domain(account_id, &domain)?
        .ok_or_else(|| ApiError::not_found("sender domain (add it first: POST sender_domains)"))?;
    Ok(Json(validated(&state, identity).await?))
}
