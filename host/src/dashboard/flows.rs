//! Flows: each flow's steps with their configuration, and the flow rules in the order they
//! are tried, ending with the default flow. Read here; changed through the API for now.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use super::DashboardState;
use super::pages::render_page;
use super::session::{Viewer, internal};
use crate::access::Action;

/// `GET /flows`.
pub(super) async fn list(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let (flows, routing) = match (
        state.store.flows_of(account_id),
        state.store.routing(account_id),
    ) {
        (Ok(flows), Ok(routing)) => (flows, routing),
        (Err(error), _) | (_, Err(error)) => return internal(error),
    };
    let name_of = |id: u64| {
        flows
            .iter()
            .find(|flow| flow.id == id)
            .map_or_else(|| format!("flow {id}"), |flow| flow.name.clone())
    };
    let pretty = |value: &serde_json::Value| {
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    };
    render_page(
        &state,
        &viewer,
        "flows.html",
        "flows",
        context! {
            flows => flows.iter().map(|flow| context! {
                id => flow.id,
                name => &flow.name,
                expiry_hours => flow.expiry_hours,
                steps => flow.steps.iter().map(|step| context! {
                    plugin => &step.plugin,
                    config => pretty(&step.config),
                    enabled_when => step.enabled_when.as_ref().map(|condition| {
                        serde_json::to_string(condition).unwrap_or_default()
                    }),
                }).collect::<Vec<_>>(),
            }).collect::<Vec<_>>(),
            rules => routing.as_ref().map(|routing| routing.rules.iter().map(|rule| context! {
                flow => name_of(rule.flow_id),
                conditions => rule.conditions.iter()
                    .map(|condition| serde_json::to_string(condition).unwrap_or_default())
                    .collect::<Vec<_>>(),
            }).collect::<Vec<_>>()),
            default_flow => routing.as_ref().map(|routing| name_of(routing.default_flow_id)),
        },
    )
}
