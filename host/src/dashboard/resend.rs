//! The Resend form of a message's page: sends the message again as a new message made from
//! its submitted copy (the same code as the API's resend, see [`crate::resend`]), to its
//! recipient or another one, and shows where the new message is.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::render_page;
use super::session::{Refusal, Viewer};
use crate::access::Action;
use crate::resend::{ResendError, resend};
use crate::submit::SubmitError;

/// The Resend form.
#[derive(Deserialize)]
pub(super) struct ResendForm {
    /// Another recipient; empty for the original one.
    #[serde(default)]
    recipient: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// The status a refused resend is answered with.
fn refused_status(error: &ResendError) -> StatusCode {
    match error {
        ResendError::NotFound => StatusCode::NOT_FOUND,
        ResendError::InvalidRecipient(_) | ResendError::Submit(SubmitError::Malformed(_)) => {
            StatusCode::BAD_REQUEST
        }
        ResendError::Submit(SubmitError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        ResendError::NotKept => StatusCode::GONE,
        ResendError::NotYetProcessed | ResendError::SourceGone => StatusCode::CONFLICT,
        ResendError::Submit(_) | ResendError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /messages/{id}/resend`.
pub(super) async fn send_again(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<ResendForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Send, &form.csrf)?;
    let recipient = Some(form.recipient.trim()).filter(|given| !given.is_empty());
    let outcome = resend(&state.store, &state.pipeline, account_id, &id, recipient).await;
    let (status, page) = match outcome {
        Ok(new_id) => (
            StatusCode::CREATED,
            context! { original => &id, new_id => new_id },
        ),
        Err(ResendError::NotFound) => return Err(Refusal::NotFound("No such message.")),
        Err(error) => {
            if matches!(
                error,
                ResendError::Store(_) | ResendError::Submit(SubmitError::Store(_))
            ) {
                tracing::warn!(%error, message = %id, "dashboard: resend failed");
            }
            (
                refused_status(&error),
                context! { original => &id, error => error.to_string() },
            )
        }
    };
    let mut response = render_page(&state, &viewer, "resent.html", "messages", page);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    Ok(response.into_response())
}
