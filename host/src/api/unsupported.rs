//! The calls of Flowmailer's API that Sluice does not serve. Each still checks the caller as
//! every call does (401 without a token, 403 for another account), then answers `501 Not
//! Implemented` with `allErrors` saying why and what to use instead: a client learns at once
//! that the call is not there, never a made-up answer. `docs/flowmailer-compatibility.md` lists
//! them, and a test checks that list against these answers.

use std::collections::HashMap;

use axum::extract::Path;
use axum::http::StatusCode;

use super::auth::Caller;
use super::error::ApiError;

/// Why Sluice does not serve a call, and what serves the need instead.
#[derive(Clone, Copy, Debug)]
pub enum Unsupported {
    /// `POST /accounts`.
    Accounts,
    /// `POST /users`.
    Users,
}

impl Unsupported {
    /// What the client is told.
    fn reason(self) -> &'static str {
        match self {
            Unsupported::Accounts => {
                "accounts are made by the operator of this Sluice server, not over the API"
            }
            Unsupported::Users => {
                "API credentials read an account's users (GET /{account}/users) but do not add \
                 or change them: owners and admins do, on the dashboard's users page"
            }
        }
    }

    /// The answer, after the caller's account was checked.
    pub fn answer(
        self,
        path: &HashMap<String, String>,
        caller: Caller,
    ) -> Result<std::convert::Infallible, ApiError> {
        let account = path
            .get("account")
            .and_then(|account| account.parse::<u64>().ok());
        if let Some(account) = account {
            caller.require(account)?;
        }
        Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "notSupported",
            self.reason(),
        ))
    }
}

/// A handler that answers that `what` is not supported.
pub fn handler(
    what: Unsupported,
) -> impl Fn(Path<HashMap<String, String>>, Caller) -> std::future::Ready<Result<(), ApiError>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |Path(path), caller| {
        std::future::ready(what.answer(&path, caller).map(|never| match never {}))
    }
}

/// The route of an unsupported call at `path` with its entry in the OpenAPI document: one
/// operation, tagged `Not supported`, whose 501 answer says why.
pub fn answered(
    method: utoipa::openapi::HttpMethod,
    path: &str,
    what: Unsupported,
) -> utoipa_axum::router::UtoipaMethodRouter<super::ApiState> {
    use utoipa::openapi::path::{OperationBuilder, Paths};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    use utoipa_axum::PathItemExt;
    let method_router = axum::routing::on(method.to_method_filter(), handler(what));
    let not_implemented = ResponseBuilder::new()
        .description(format!("Not supported: {}", what.reason()))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Errors")))
                .build(),
        )
        .build();
    let operation = OperationBuilder::new()
        .summary(Some(format!("Not supported: {}", what.reason())))
        .tag(super::openapi::NOT_SUPPORTED_TAG)
        .response("501", not_implemented)
        .build();
    let mut paths = Paths::new();
    paths.add_path_operation(path, vec![method], operation);
    (Vec::new(), paths, method_router)
}

/// `POST /accounts`: refused for every caller with a valid token.
#[utoipa::path(
    post,
    path = "/accounts",
    tags = ["Not supported"],
    security(("oauth2" = ["api"])),
    responses(
        (status = 401, description = "No valid bearer token", body = super::error::ErrorBody),
        (status = 501, description = "Accounts are made by the operator of the server", body = super::error::ErrorBody)
    )
)]
pub async fn accounts(_caller: Caller) -> Result<(), ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "notSupported",
        Unsupported::Accounts.reason(),
    ))
}
