//! OAuth2 client credentials (RFC 6749 section 4.4), as Flowmailer's API does it: an API
//! credential of a Source is exchanged for a short-lived bearer token. Tokens are signed by
//! the host (HMAC-SHA256), so checking one needs no lookup.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::{Form, Json};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ApiState;
use super::error::ApiError;
use crate::store::{CredentialKind, now_millis, verify_credential};

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

    /// Issues a token for a caller.
    pub fn issue(&self, caller: Caller) -> String {
        let expires = now_millis() / 1000 + self.lifetime_secs;
        let payload = format!("{}.{}.{expires}", caller.account_id, caller.source_id);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Checks a token's signature and expiry.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        let (payload, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(payload).verify_slice(&tag).ok()?;
        let mut parts = payload.split('.');
        let account_id = parts.next()?.parse().ok()?;
        let source_id = parts.next()?.parse().ok()?;
        let expires: u64 = parts.next()?.parse().ok()?;
        (expires > now_millis() / 1000).then_some(Caller {
            account_id,
            source_id,
        })
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("use the Bearer scheme"))?;
        let caller = state
            .tokens
            .verify(token.trim())
            .ok_or_else(|| ApiError::unauthorized("the token is invalid or expired"))?;
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
    /// Refuses a caller that is not of `account_id`.
    pub fn require(&self, account_id: u64) -> Result<(), ApiError> {
        if self.account_id == account_id {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// The form of `POST /oauth/token`.
#[derive(Deserialize)]
pub struct TokenRequest {
    client_id: String,
    client_secret: String,
    grant_type: String,
}

/// The answer to a token request.
#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    scope: &'static str,
}

/// `POST /oauth/token`.
pub async fn token(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(request): Form<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    if request.grant_type != "client_credentials" {
        return Err(ApiError::field(
            "grant_type",
            "unsupportedGrantType",
            "only client_credentials is supported",
            Some(request.grant_type.into()),
        ));
    }
    let credential = state
        .store
        .credential(&request.client_id)?
        .filter(|credential| credential.kind == CredentialKind::Api);
    let hash = credential
        .as_ref()
        .map(|credential| credential.secret_hash.clone());
    let valid = verify_credential(request.client_secret, hash).await;
    let credential = credential
        .filter(|_| valid)
        .ok_or_else(|| ApiError::unauthorized("client_id or client_secret is wrong"))?;
    check_allowlist(&state, credential.source_id, Some(peer))?;
    Ok(Json(TokenResponse {
        access_token: state.tokens.issue(Caller {
            account_id: credential.account_id,
            source_id: credential.source_id,
        }),
        token_type: "bearer",
        expires_in: state.tokens.lifetime_secs,
        scope: "api",
    }))
}
