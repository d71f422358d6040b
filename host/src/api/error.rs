//! API errors in Flowmailer's shape: `{"allErrors": [{"code", "defaultMessage", "field",
//! "objectName", "rejectedValue"}]}`; a 401 also carries RFC 6750's challenge and RFC 6749's
//! `error`/`error_description`, which OAuth clients read.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One error of a request.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// Machine-readable code.
    pub code: String,
    /// For people.
    pub default_message: String,
    /// The JSON field at fault, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The object the field belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
    /// The value that was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_value: Option<serde_json::Value>,
}

/// A failed request: a status and its errors.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<FieldError>,
    /// For a 401 on a resource: the RFC 6750 error code (`invalid_token`), or none when the
    /// request carried no token at all.
    bearer_error: Option<&'static str>,
}

/// The body of every error answer, Flowmailer's `Errors` (with RFC 6750's members on a 401).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Errors)]
pub(super) struct ErrorBody<'a> {
    #[serde(rename = "allErrors")]
    #[schema(value_type = Vec<FieldError>)]
    all_errors: &'a [FieldError],
    /// RFC 6749's error code, for OAuth clients that read a 401's body that way.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl ApiError {
    /// An error with one entry.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![FieldError {
                code: code.into(),
                default_message: message.into(),
                field: None,
                object_name: None,
                rejected_value: None,
            }],
            bearer_error: None,
        }
    }

    /// 400 for one field of the request.
    pub fn field(
        field: &str,
        code: &str,
        message: impl Into<String>,
        rejected: Option<serde_json::Value>,
    ) -> Self {
        Self::fields(vec![FieldError {
            code: code.into(),
            default_message: message.into(),
            field: Some(field.into()),
            object_name: None,
            rejected_value: rejected,
        }])
    }

    /// 400 with several field errors.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors,
            bearer_error: None,
        }
    }

    /// The same error with field `from` named `to`: for a check shared by calls whose bodies
    /// name the same value differently.
    pub fn renaming_field(mut self, from: &str, to: &str) -> Self {
        for error in &mut self.errors {
            if error.field.as_deref() == Some(from) {
                error.field = Some(to.to_string());
            }
        }
        self
    }

    /// The errors it answers with.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// 401: a token that is invalid, expired, or of a source that is gone.
    pub fn unauthorized(message: &str) -> Self {
        Self {
            bearer_error: Some("invalid_token"),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// 401: no token, or another scheme than Bearer.
    pub fn no_token(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: credentials of another account.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "these credentials do not give access to this account",
        )
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("{what} not found"),
        )
    }

    /// 500, logged; the client learns nothing internal.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internalError",
            "the request could not be completed; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let description = self
            .errors
            .first()
            .map(|error| error.default_message.as_str());
        let body = Json(ErrorBody {
            all_errors: &self.errors,
            error: unauthorized.then_some(self.bearer_error.unwrap_or("invalid_request")),
            error_description: description.filter(|_| unauthorized),
        });
        let mut response = (self.status, body).into_response();
        if unauthorized {
            // RFC 6750 section 3: the challenge names the scheme, and the error when a token
            // was given; the description is quoted, so it must not hold a quote itself.
            let challenge = match (self.bearer_error, description) {
                (Some(error), Some(description)) => format!(
                    "Bearer realm=\"sluice\", error=\"{error}\", error_description=\"{}\"",
                    description.replace(['"', '\\'], "'")
                ),
                _ => "Bearer realm=\"sluice\"".to_string(),
            };
            if let Ok(value) = axum::http::HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::NotFound(what) => ApiError::not_found(&what),
            crate::store::StoreError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            crate::store::StoreError::TooLarge(why) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "tooLarge", why)
            }
            crate::store::StoreError::InUse(why) => {
                ApiError::new(StatusCode::CONFLICT, "inUse", why)
            }
            crate::store::StoreError::Full(why) => {
                ApiError::new(StatusCode::CONFLICT, "tooMany", why)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::scans::ScanError> for ApiError {
    fn from(error: crate::scans::ScanError) -> Self {
        match error {
            crate::scans::ScanError::Store(error) => error.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::flow::FlowError> for ApiError {
    fn from(error: crate::flow::FlowError) -> Self {
        match error {
            crate::flow::FlowError::Store(error) => error.into(),
            crate::flow::FlowError::Busy(reason) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("the flow could not run now, try again: {reason}"),
            ),
        }
    }
}
