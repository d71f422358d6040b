//! Sending settings: the account's sender identities with the DNS records to publish and
//! whether they were found, and its webhooks with their queued calls and dead letters
//! (redeliver or discard). Identities and webhooks are made through the API for now.

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use super::DashboardState;
use super::pages::render_page;
use super::session::{CsrfOnly, Refusal, Viewer, internal};
use crate::access::Action;
use crate::dkim::expected_records;
use crate::store::StoreError;

/// Dead letters shown per endpoint, oldest first.
const DEAD_LETTERS_SHOWN: usize = 100;

/// `GET /sending`.
pub(super) async fn page(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let (identities, webhooks) = match (
        state.store.identities_of(account_id),
        state.store.webhooks_of(account_id),
    ) {
        (Ok(identities), Ok(webhooks)) => (identities, webhooks),
        (Err(error), _) | (_, Err(error)) => return internal(error),
    };
    let identities: Vec<_> = identities
        .iter()
        .map(|identity| {
            let records = match &identity.validation {
                Some(validation) => validation.records.clone(),
                None => expected_records(state.dkim.config(), identity),
            };
            context! {
                domain => &identity.domain,
                selector => &identity.selector,
                checked_at => identity.validation.as_ref().map(|validation| validation.checked_at),
                valid => identity.validation.as_ref().is_some_and(|validation| validation.valid),
                records => records.iter().map(|record| context! {
                    purpose => &record.purpose, kind => &record.kind, name => &record.name,
                    value => &record.value, required => record.required, ok => record.ok,
                    found => record.found.join(" | "),
                }).collect::<Vec<_>>(),
            }
        })
        .collect();
    let mut endpoints = Vec::new();
    for endpoint in &webhooks {
        let queued = state.store.webhook_calls_queued(endpoint.id).unwrap_or(0);
        let dead = match state.store.webhook_dead_letters(endpoint.id) {
            Ok(dead) => dead,
            Err(error) => return internal(error),
        };
        endpoints.push(context! {
            id => endpoint.id,
            url => &endpoint.url,
            description => &endpoint.description,
            events => if endpoint.event_types.is_empty() {
                "every event".to_string()
            } else {
                endpoint.event_types.iter().map(|kind| kind.as_str()).collect::<Vec<_>>().join(", ")
            },
            queued => queued,
            dead_total => dead.len(),
            dead => dead.iter().take(DEAD_LETTERS_SHOWN).map(|letter| context! {
                id => letter.id, message_id => &letter.message_id, event_type => &letter.event_type,
                attempts => letter.attempts, dead_at => letter.dead_at, last_status => letter.last_status,
            }).collect::<Vec<_>>(),
        });
    }
    render_page(
        &state,
        &viewer,
        "sending.html",
        "sending",
        context! {
            identities => identities,
            endpoints => endpoints,
            may_configure => viewer.may(Action::Configure),
        },
    )
}

async fn dead_letter(
    state: &DashboardState,
    viewer: &Viewer,
    endpoint_id: u64,
    csrf: &str,
) -> Result<(), Refusal> {
    let account_id = viewer.form_account(Action::Configure, csrf)?;
    match state.store.webhook(endpoint_id) {
        Ok(Some(endpoint)) if endpoint.account_id == account_id => Ok(()),
        Ok(_) => Err(Refusal::NotFound("No such webhook.")),
        Err(error) => Err(Refusal::store(error)),
    }
}

fn answered(result: Result<(), StoreError>) -> Response {
    match result {
        Ok(()) => Redirect::to("/sending").into_response(),
        Err(StoreError::NotFound(_)) => Refusal::NotFound("No such dead letter.").into_response(),
        Err(error) => internal(error),
    }
}

/// `POST /sending/webhooks/{endpoint}/dead/{id}/redeliver`.
pub(super) async fn redeliver(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((endpoint_id, id)): Path<(u64, u64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(refusal) = dead_letter(&state, &viewer, endpoint_id, &form.csrf).await {
        return refusal.into_response();
    }
    answered(
        state
            .store
            .redeliver_webhook_dead_letter(endpoint_id, id)
            .await,
    )
}

/// `POST /sending/webhooks/{endpoint}/dead/{id}/discard`.
pub(super) async fn discard(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((endpoint_id, id)): Path<(u64, u64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(refusal) = dead_letter(&state, &viewer, endpoint_id, &form.csrf).await {
        return refusal.into_response();
    }
    answered(
        state
            .store
            .discard_webhook_dead_letter(endpoint_id, id)
            .await,
    )
}
