//! The operator's page: the platform's live nodes, every account with its users, the delivery
//! queue by destination,
//! the plugins in service (built in or hot-loaded from the folder) with their state, and the
//! mail the demo capture kept, which only the operator may purge.

use std::collections::BTreeMap;

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use super::DashboardState;
use super::pages::render_page;
use super::session::{CsrfOnly, Refusal, Viewer, internal};
use crate::access::Action;
use crate::store::now_millis;

/// Queued messages counted at most; past it, the page says the counts are a lower bound.
const MAX_COUNTED: usize = 100_000;
/// Destinations listed, busiest first.
const DESTINATIONS_SHOWN: usize = 50;
/// Captured copies counted at most; past it, the page says the count is a lower bound.
const MAX_CAPTURED_COUNTED: usize = 100_000;

/// `GET /operator`.
pub(super) async fn page(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    if !viewer.may(Action::Operate) {
        return Refusal::Role.into_response();
    }
    // The platform's own key in the pool: an operator's reload waits for its earlier one.
    let counted = state.scan(u64::MAX, move |store| {
        let queued = store.due_deliveries(u64::MAX, MAX_COUNTED, |_| false)?;
        let due_now = store.due_deliveries(now_millis(), MAX_COUNTED, |_| false)?;
        let mut by_domain: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (_, domain) in &queued {
            by_domain.entry(domain.clone()).or_default().0 += 1;
        }
        for (_, domain) in &due_now {
            by_domain.entry(domain.clone()).or_default().1 += 1;
        }
        let mut rows: Vec<_> = by_domain.into_iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
        Ok((queued.len(), rows))
    });
    let (queued, destinations) = match counted.await {
        Ok(counted) => counted,
        Err(refusal) => return refusal,
    };
    let accounts = match state.store.accounts() {
        Ok(accounts) => accounts,
        Err(error) => return internal(error),
    };
    let platform = state.store.platform_record("system-account").ok().flatten();
    // Gone nodes' rows are removed by the live nodes' heartbeats: what is left is alive.
    let mut nodes = match state.store.live_nodes(0) {
        Ok(nodes) => nodes,
        Err(error) => return internal(error),
    };
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let now = now_millis();
    let captured = match state.capture.clone() {
        Some(capture) => tokio::task::spawn_blocking(move || capture.count(MAX_CAPTURED_COUNTED))
            .await
            .ok(),
        None => None,
    };
    let plugins: Vec<_> = state
        .plugins
        .names()
        .into_iter()
        .filter_map(|name| state.plugins.get(&name))
        .map(|plugin| {
            context! {
                name => plugin.name(),
                contract => plugin.contract_version(),
                disabled => plugin.is_disabled(),
                imports => plugin.imports().len(),
            }
        })
        .collect();
    render_page(
        &state,
        &viewer,
        "operator.html",
        "operator",
        context! {
            accounts => accounts.iter().map(|account| context! {
                id => account.id,
                name => &account.name,
                users => state.store.users_of(Some(account.id)).map(|users| users.len()).unwrap_or(0),
                platform => Some(account.id) == platform,
                classifier => account.bounce_classifier.is_some(),
            }).collect::<Vec<_>>(),
            queued => queued,
            capped => queued >= MAX_COUNTED,
            destinations => destinations.iter().take(DESTINATIONS_SHOWN).map(|(domain, (all, due))| context! {
                domain => domain, queued => all, due => due,
            }).collect::<Vec<_>>(),
            plugins => plugins,
            nodes => nodes.iter().map(|node| context! {
                name => &node.name,
                version => &node.version,
                up_secs => now.saturating_sub(node.started_at) / 1000,
                seen_secs => now.saturating_sub(node.last_seen) / 1000,
            }).collect::<Vec<_>>(),
            captured => captured,
            captured_capped => captured.is_some_and(|count| count >= MAX_CAPTURED_COUNTED),
        },
    )
}

/// `POST /operator/capture/purge`: removes every copy the demo capture kept (the messages'
/// records and events stay, DELIVERED to the capture). The operator's only: the copies hold
/// every account's mail to example domains.
pub(super) async fn purge_capture(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    viewer.check_csrf(&form.csrf)?;
    if !viewer.may(Action::Operate) {
        return Err(Refusal::Role);
    }
    let Some(capture) = state.capture.clone() else {
        return Err(Refusal::NotFound("There is no capture folder."));
    };
    let removed = tokio::task::spawn_blocking(move || capture.purge())
        .await
        .map_err(Refusal::store)?
        .map_err(Refusal::store)?;
    tracing::info!(removed, "operator purged the captured demo mail");
    Ok(Redirect::to("/operator#captured").into_response())
}
