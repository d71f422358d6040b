//! Sending settings: the account's sender identities with the DNS records to publish and
//! whether they were found, and its webhooks with their queued calls and dead letters
//! (redeliver or discard). Admins and owners make and remove identities and webhooks, and ask
//! for an identity's records to be looked up now, through the API's own functions and checks.

use std::collections::HashMap;

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::{error_lines, path_choice, render_form_page};
use super::session::{CsrfOnly, Refusal, Viewer, internal};
use crate::access::Action;
use crate::api::{WebhookInput, make_identity, make_webhook, own_identity, validated_identity};
use crate::dkim::{KeyAlgorithm, expected_records};
use crate::store::{EventKind, StoreError};

/// Dead letters shown per endpoint, oldest first.
const DEAD_LETTERS_SHOWN: usize = 100;

/// `GET /sending`.
pub(super) async fn page(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    match viewer.account_for(Action::Read) {
        Ok(account_id) => render(&state, &viewer, account_id, Vec::new()),
        Err(refusal) => refusal.into_response(),
    }
}

/// The page, with the errors of the form just sent (answered 400 when there are some).
fn render(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    errors: Vec<String>,
) -> Response {
    let may_configure = viewer.may(Action::Configure);
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
                id => identity.id,
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
            // The key that signs its calls: the API shows it on every read too.
            secret => may_configure.then_some(&endpoint.secret),
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
    render_form_page(
        state,
        viewer,
        "sending.html",
        "sending",
        errors,
        context! {
            identities => identities,
            endpoints => endpoints,
            may_configure => may_configure,
            event_kinds => EventKind::ALL.iter().map(|kind| kind.as_str()).collect::<Vec<_>>(),
        },
    )
}

/// The identity form.
#[derive(Deserialize)]
pub(super) struct IdentityForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    algorithm: String,
}

/// `POST /sending/identities`: a new identity with its own key; the page then shows the
/// records to publish.
pub(super) async fn create_identity(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<IdentityForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    let algorithm = match form.algorithm.as_str() {
        "" | "rsa-2048" => KeyAlgorithm::Rsa2048,
        "ed25519" => KeyAlgorithm::Ed25519,
        _ => {
            let errors = vec!["algorithm: rsa-2048 or ed25519".to_string()];
            return Ok(render(&state, &viewer, account_id, errors));
        }
    };
    match make_identity(&state.api, account_id, &form.domain, algorithm).await {
        Ok(identity) => {
            Ok(Redirect::to(&format!("/sending#identity-{}", identity.domain)).into_response())
        }
        Err(error) => Ok(render(&state, &viewer, account_id, error_lines(&error))),
    }
}

/// What an identity's forms ask for.
#[derive(Clone, Copy)]
enum IdentityChange {
    /// Look its records up in DNS now.
    Check,
    /// Remove it: the domain's mail is then signed with the platform's key only.
    Delete,
}

/// `POST /sending/identities/{id}/check` looks the identity's records up in DNS now;
/// `POST /sending/identities/{id}/delete` removes it.
pub(super) async fn change_identity(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, change)): Path<(u64, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let change = path_choice(
        &change,
        &[
            ("check", IdentityChange::Check),
            ("delete", IdentityChange::Delete),
        ],
    )?;
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    let identity = own_identity(&state.api, account_id, id)
        .map_err(|_| Refusal::NotFound("No such sender identity."))?;
    match change {
        IdentityChange::Check => {
            let anchor = format!("/sending#identity-{}", identity.domain);
            match validated_identity(&state.api, identity).await {
                Ok(_) => Ok(Redirect::to(&anchor).into_response()),
                Err(error) => Ok(render(&state, &viewer, account_id, error_lines(&error))),
            }
        }
        IdentityChange::Delete => {
            state
                .store
                .delete_identity(identity)
                .await
                .map_err(Refusal::store)?;
            Ok(Redirect::to("/sending").into_response())
        }
    }
}

/// The webhook form: the URL, a description and a box per event type (`event-DELIVERED`...);
/// none ticked means every event.
#[derive(Deserialize)]
pub(super) struct WebhookForm {
    #[serde(flatten)]
    fields: HashMap<String, String>,
}

impl WebhookForm {
    fn field(&self, name: &str) -> String {
        self.fields.get(name).cloned().unwrap_or_default()
    }
}

/// `POST /sending/webhooks`: registers an endpoint (its URL checked as the API checks it).
pub(super) async fn create_webhook(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<WebhookForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.field("csrf"))?;
    let event_types: Vec<String> = EventKind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .filter(|name| form.fields.contains_key(&format!("event-{name}")))
        .map(str::to_string)
        .collect();
    let description = Some(form.field("description")).filter(|text| !text.trim().is_empty());
    let input = WebhookInput::new(form.field("url"), event_types, description);
    match make_webhook(&state.api, account_id, &input).await {
        Ok(endpoint) => {
            Ok(Redirect::to(&format!("/sending#webhook-{}", endpoint.id)).into_response())
        }
        Err(error) => Ok(render(&state, &viewer, account_id, error_lines(&error))),
    }
}

/// `POST /sending/webhooks/{id}/delete`: no more calls to it; its queue and dead letters go.
pub(super) async fn delete_webhook(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    match state.store.delete_webhook(account_id, id).await {
        Ok(()) => Ok(Redirect::to("/sending").into_response()),
        Err(StoreError::NotFound(_)) => Err(Refusal::NotFound("No such webhook.")),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// What a dead letter's forms ask for.
#[derive(Clone, Copy)]
enum DeadLetterChange {
    /// Queue the call again.
    Redeliver,
    /// Drop it.
    Discard,
}

/// `POST /sending/webhooks/{endpoint}/dead/{id}/redeliver` or `.../discard`.
pub(super) async fn change_dead_letter(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((endpoint_id, id, change)): Path<(u64, u64, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let change = path_choice(
        &change,
        &[
            ("redeliver", DeadLetterChange::Redeliver),
            ("discard", DeadLetterChange::Discard),
        ],
    )?;
    let account_id = viewer.form_account(Action::Configure, &form.csrf)?;
    match state.store.webhook(endpoint_id) {
        Ok(Some(endpoint)) if endpoint.account_id == account_id => {}
        Ok(_) => return Err(Refusal::NotFound("No such webhook.")),
        Err(error) => return Err(Refusal::store(error)),
    }
    let store = &state.store;
    let result = match change {
        DeadLetterChange::Redeliver => store.redeliver_webhook_dead_letter(endpoint_id, id).await,
        DeadLetterChange::Discard => store.discard_webhook_dead_letter(endpoint_id, id).await,
    };
    match result {
        Ok(()) => Ok(Redirect::to("/sending").into_response()),
        Err(StoreError::NotFound(_)) => Err(Refusal::NotFound("No such dead letter.")),
        Err(error) => Err(Refusal::store(error)),
    }
}
