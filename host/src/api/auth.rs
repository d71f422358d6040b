//! OAuth2 client credentials (RFC 6749 section 4.4), as Flowmailer's API does it: an API
//! credential of a Source is exchanged for a short-lived bearer token. Tokens are signed by
//! the host (HMAC-SHA256) and name the credential they were issued for, by client id and a
//! digest of its secret's hash: a credential rotated or revoked ends its tokens at once (one
//! store read per request, beside the source's allowlist).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::ApiState;
use super::error::ApiError;
use crate::access::{self, Action, Principal};
use crate::store::{Credential, CredentialKind, now_millis, verify_credential};

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks bearer tokens with the host's key.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

/// Who a valid token speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub account_id: u64,
    /// The source whose credential was used.
    pub source_id: u64,
}

impl TokenSigner {
    /// A signer with this key; tokens live `lifetime_secs`.
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Self {
        Self { key, lifetime_secs }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(payload.as_bytes());
        mac
    }

    /// Issues a token for the holder of an API credential.
    pub fn issue(&self, credential: &Credential) -> String {
        let expires = now_millis() / 1000 + self.lifetime_secs;
        let payload = format!(
            "{}.{}.{expires}.{}.{}",
            credential.account_id,
            credential.source_id,
            URL_SAFE_NO_PAD.encode(&credential.username),
            generation(credential)
        );
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Checks a token's signature and expiry: who it speaks for, and the credential it was
    /// issued for (client id, generation) to look up.
    pub fn verify(&self, token: &str) -> Option<(Caller, String, String)> {
        let (payload, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(payload).verify_slice(&tag).ok()?;
        let mut parts = payload.split('.');
        let account_id = parts.next()?.parse().ok()?;
        let source_id = parts.next()?.parse().ok()?;
        let expires: u64 = parts.next()?.parse().ok()?;
        let client_id = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let generation = parts.next()?.to_string();
        let caller = Caller {
            account_id,
            source_id,
        };
        (expires > now_millis() / 1000).then_some((caller, client_id, generation))
    }
}

/// What changes when a credential's secret does: the first bytes of a digest of its hash
/// (which holds a fresh salt each time), in hex.
fn generation(credential: &Credential) -> String {
    use sha2::Digest;
    hex::encode(&Sha256::digest(credential.secret_hash.as_bytes())[..8])
}

/// Refuses a token whose credential was revoked, rotated or moved since it was issued.
fn check_credential(
    state: &ApiState,
    caller: &Caller,
    client_id: &str,
    issued_generation: &str,
) -> Result<(), ApiError> {
    let current = state
        .store
        .credential_still(caller.account_id, client_id, |credential| {
            credential.kind == CredentialKind::Api
                && credential.source_id == caller.source_id
                && generation(credential) == issued_generation
        })?;
    if current {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "the token's credential was rotated or revoked: ask for a new token",
        ))
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::no_token("an Authorization: Bearer token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::no_token("use the Bearer scheme"))?;
        let (caller, client_id, generation) = state
            .tokens
            .verify(token.trim())
            .ok_or_else(|| ApiError::unauthorized("the token is invalid or expired"))?;
        check_credential(state, &caller, &client_id, &generation)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        check_allowlist(state, caller.source_id, peer)?;
        Ok(caller)
    }
}

/// Refuses a request from outside the source's IP allowlist (a token is no way around it).
fn check_allowlist(
    state: &ApiState,
    source_id: u64,
    peer: Option<SocketAddr>,
) -> Result<(), ApiError> {
    let source = state
        .store
        .source(source_id)?
        .ok_or_else(|| ApiError::unauthorized("the source of this credential no longer exists"))?;
    // No allowlist admits anybody; an empty one nobody.
    let allowed = match peer {
        Some(peer) => source.admits(peer.ip()),
        None => source.allowed_networks.is_none(),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "addressNotAllowed",
            "this source may not be used from your address",
        ))
    }
}

impl Caller {
    /// Refuses a caller that may not use the API in `account_id`. Every API call reads,
    /// sends, edits or configures; `crate::access` grants a credential all four in its own
    /// account and nothing elsewhere (users and operator pages are the dashboard's).
    pub fn require(&self, account_id: u64) -> Result<(), ApiError> {
        let caller = Principal::Credential {
            account_id: self.account_id,
        };
        if access::may(caller, Action::Configure, account_id) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// An error of the token endpoint, shaped as RFC 6749 section 5.2 says:
/// `{"error": "invalid_client", "error_description": "…"}`.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    /// 400 with one of the RFC's error codes.
    fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    /// 401 `invalid_client`: unknown client, wrong secret, or no client authentication.
    fn invalid_client(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
        }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "token request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the request could not be completed; try again".into(),
        }
    }
}

/// An error answer of the token endpoint (RFC 6749 section 5.2).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
struct OAuthErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(OAuthErrorBody {
            error: self.error,
            error_description: &self.description,
        });
        let mut response = (self.status, no_store(), body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sluice\""),
            );
        }
        response
    }
}

/// Token answers, good or bad, must not be cached (RFC 6749 section 5.1).
fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// The parameters of a token request, from its form and its `Authorization: Basic` header.
#[derive(Debug, Default, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = TokenRequest)]
struct TokenRequest {
    /// The API client id; or given with HTTP Basic.
    #[schema(required = false)]
    client_id: String,
    /// The client's secret; or given with HTTP Basic.
    #[schema(required = false)]
    client_secret: String,
    /// `client_credentials`.
    #[schema(example = "client_credentials")]
    grant_type: String,
    /// `api`, or none.
    scope: Option<String>,
}

impl TokenRequest {
    /// Reads the form and the client authentication; a parameter given twice, or the client
    /// authenticated in both the header and the body, is refused (RFC 6749 sections 2.3 and 3.2).
    fn read(headers: &HeaderMap, form: &[u8]) -> Result<Self, OAuthError> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(form) {
            if fields.iter().any(|(seen, _)| *seen == name) {
                return Err(OAuthError::bad(
                    "invalid_request",
                    format!("{name} is given more than once"),
                ));
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(seen, _)| seen == name)
                .map(|(_, value)| value.clone())
        };
        let basic = basic_credentials(headers)?;
        let in_body = (field("client_id"), field("client_secret"));
        let (client_id, client_secret) = match (basic, in_body) {
            (Some(_), (Some(_), _) | (_, Some(_))) => {
                return Err(OAuthError::bad(
                    "invalid_request",
                    "authenticate the client in the Authorization header or in the body, not both",
                ));
            }
            (Some(basic), _) => basic,
            (None, (Some(id), Some(secret))) => (id, secret),
            (None, _) => {
                return Err(OAuthError::invalid_client(
                    "client_id and client_secret are required (in the body or with HTTP Basic)",
                ));
            }
        };
        let grant_type = field("grant_type")
            .ok_or_else(|| OAuthError::bad("invalid_request", "grant_type is required"))?;
        Ok(Self {
            client_id,
            client_secret,
            grant_type,
            scope: field("scope"),
        })
    }
}

/// The client's id and secret from `Authorization: Basic`, form-decoded as RFC 6749 section
/// 2.3.1 asks.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::invalid_client("the Authorization header is not valid Basic");
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |text: &str| -> String {
        form_urlencoded::parse(format!("v={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// The answer to a token request.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OAuthTokenResponse)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    scope: &'static str,
}

/// 429 with `Retry-After` for an address that sent too many wrong client secrets.
fn too_many_failures(state: &ApiState) -> Response {
    let wait = state.auth_failures.backoff().as_secs();
    let refusal = OAuthError {
        status: StatusCode::TOO_MANY_REQUESTS,
        error: "invalid_client",
        description: format!(
            "too many wrong client secrets from this address; try again in {wait} seconds"
        ),
    };
    let mut response = refusal.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

/// `POST /oauth/token`: client credentials in the form body or with HTTP Basic.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tags = ["OAuth"],
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded", description = "Client credentials in the form or with HTTP Basic (RFC 6749 section 2.3)"),
    responses((status = 200, description = "A bearer token", body = TokenResponse), (status = 400, description = "error: invalid_request, unsupported_grant_type or invalid_scope", body = OAuthErrorBody), (status = 401, description = "error: invalid_client; WWW-Authenticate: Basic", body = OAuthErrorBody, headers(("WWW-Authenticate" = String, description = "Basic realm=\"sluice\""))), (status = 403, description = "error: unauthorized_client: the source may not be used from this address", body = OAuthErrorBody), (status = 429, description = "Too many wrong secrets from this address: it waits before asking again", body = OAuthErrorBody))
)]
pub async fn token(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Bytes,
) -> Result<Response, OAuthError> {
    let request = TokenRequest::read(&headers, &form)?;
    if request.grant_type != "client_credentials" {
        return Err(OAuthError::bad(
            "unsupported_grant_type",
            "only client_credentials is supported",
        ));
    }
    if request.scope.as_deref().is_some_and(|scope| scope != "api") {
        return Err(OAuthError::bad("invalid_scope", "the only scope is api"));
    }
    // Before any hashing: an address that keeps sending wrong secrets waits, and costs
    // nothing while it does. Checked again in the address's turn, since the checks it waited
    // behind may have been the failures that block it.
    if state.auth_failures.is_blocked(peer.ip()) {
        return Ok(too_many_failures(&state));
    }
    let _turn = state.auth_failures.turn(peer.ip()).await;
    if state.auth_failures.is_blocked(peer.ip()) {
        return Ok(too_many_failures(&state));
    }
    let credential = state
        .store
        .credential(&request.client_id)?
        .filter(|credential| credential.kind == CredentialKind::Api);
    let hash = credential
        .as_ref()
        .map(|credential| credential.secret_hash.clone());
    let valid = verify_credential(request.client_secret, hash).await;
    if !valid {
        state.auth_failures.record_failure(peer.ip());
    }
    let credential = credential
        .filter(|_| valid)
        .ok_or_else(|| OAuthError::invalid_client("client_id or client_secret is wrong"))?;
    state.auth_failures.record_success(peer.ip());
    if let Err(refused) = check_allowlist(&state, credential.source_id, Some(peer)) {
        let description = refused
            .errors()
            .first()
            .map(|error| error.default_message.clone())
            .unwrap_or_default();
        // 403 as on every other route: the client is known, its address is not allowed.
        return Err(OAuthError {
            status: StatusCode::FORBIDDEN,
            error: "unauthorized_client",
            description,
        });
    }
    let answer = TokenResponse {
        access_token: state.tokens.issue(&credential),
        token_type: "bearer",
        expires_in: state.tokens.lifetime_secs,
        scope: "api",
    };
    Ok((no_store(), Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    #[test]
    fn the_client_authenticates_in_the_body_or_with_basic_never_both() {
        let body = TokenRequest::read(
            &HeaderMap::new(),
            b"grant_type=client_credentials&client_id=app&client_secret=s%3Dx",
        )
        .unwrap();
        assert_eq!(
            (body.client_id.as_str(), body.client_secret.as_str()),
            ("app", "s=x")
        );

        // Basic credentials are form-encoded before base64.
        let header =
            TokenRequest::read(&basic("app", "s%3Ax"), b"grant_type=client_credentials").unwrap();
        assert_eq!(
            (header.client_id.as_str(), header.client_secret.as_str()),
            ("app", "s:x")
        );

        let both = TokenRequest::read(
            &basic("app", "s"),
            b"grant_type=client_credentials&client_id=app",
        )
        .unwrap_err();
        assert_eq!(both.error, "invalid_request");
        let none =
            TokenRequest::read(&HeaderMap::new(), b"grant_type=client_credentials").unwrap_err();
        assert_eq!(
            (none.status, none.error),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
    }

    #[test]
    fn a_parameter_given_twice_or_missing_is_an_invalid_request() {
        let twice = TokenRequest::read(
            &HeaderMap::new(),
            b"grant_type=client_credentials&client_id=a&client_id=b&client_secret=s",
        )
        .unwrap_err();
        assert_eq!(
            (twice.status, twice.error),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let no_grant =
            TokenRequest::read(&HeaderMap::new(), b"client_id=a&client_secret=s").unwrap_err();
        assert_eq!(no_grant.error, "invalid_request");
    }
}
