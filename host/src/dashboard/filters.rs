//! The filter list: addresses later mail is not sent to (hard bounces, complaints, added by
//! hand). Search it, add to it, and remove an address so mail to it is sent again.

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::render_page;
use super::session::{CsrfOnly, Refusal, Viewer, internal};
use crate::access::Action;

/// Entries shown at most; a search narrows the list.
const SHOWN: usize = 500;

/// The search.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FilterSearch {
    #[serde(default)]
    search: String,
}

/// `GET /filters`.
pub(super) async fn list(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Query(query): Query<FilterSearch>,
) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let search = query.search.trim();
    let entries = match state
        .store
        .filters_of(account_id, (!search.is_empty()).then_some(search))
    {
        Ok(entries) => entries,
        Err(error) => return internal(error),
    };
    let total = entries.len();
    render_page(
        &state,
        &viewer,
        "filters.html",
        "filters",
        context! {
            search => search,
            total => total,
            shown => SHOWN.min(total),
            entries => entries.into_iter().take(SHOWN).map(|entry| context! {
                id => entry.id, address => entry.address, reason => entry.reason,
                message_id => entry.message_id, detail => entry.detail, created_at => entry.created_at,
            }).collect::<Vec<_>>(),
        },
    )
}

/// The add form.
#[derive(Deserialize)]
pub(super) struct AddFilter {
    address: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `POST /filters`: puts an address on the list by hand.
pub(super) async fn add(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<AddFilter>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let address = form.address.trim();
    if address.is_empty()
        || address.len() > 254
        || !address.contains('@')
        || address.chars().any(char::is_control)
    {
        return Ok((
            axum::http::StatusCode::BAD_REQUEST,
            "An e-mail address is needed (at most 254 bytes).",
        )
            .into_response());
    }
    let detail = format!("added in the dashboard by {}", viewer.user.email);
    Ok(
        match state
            .store
            .add_filter(account_id, address, "manual", None, Some(detail))
            .await
        {
            Ok(_) => Redirect::to("/filters").into_response(),
            Err(error) => internal(error),
        },
    )
}

/// `POST /filters/{id}/remove`: later mail to the address is sent again.
pub(super) async fn remove(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    Ok(match state.store.remove_filter(account_id, id).await {
        Ok(()) => Redirect::to("/filters").into_response(),
        Err(crate::store::StoreError::NotFound(_)) => {
            (axum::http::StatusCode::NOT_FOUND, "No such entry.").into_response()
        }
        Err(error) => internal(error),
    })
}
