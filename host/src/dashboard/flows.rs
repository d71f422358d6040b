//! Flows and flow rules: each flow's steps with their configuration, and the rules in the
//! order they are tried, ending with the default flow. Editors and up change them here; every
//! change goes through the API's own checks (`api::checked_steps` runs each step on a probe
//! message, `api::condition_from` and `api::check_owned` read a condition), so a page never
//! stores what the API would refuse.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};

use super::DashboardState;
use super::pages::{error_lines, render_page};
use super::session::{CsrfOnly, Refusal, Viewer, internal};
use crate::access::Action;
use crate::api::{
    ConditionView, MAX_CONDITIONS, MAX_RULES, StepView, check_flow_count, check_owned,
    checked_steps, condition_from, condition_views, step_view,
};
use crate::flow::rules::{Condition, FlowRule, Routing};
use crate::store::{Flow, StoreError};

/// The longest flow name, in bytes.
const MAX_NAME_BYTES: usize = 200;
/// The largest step configuration a page accepts, in bytes.
const MAX_CONFIG_BYTES: usize = 64 << 10;
/// Condition rows of the "add a rule" form.
pub(super) const CONDITION_ROWS: usize = 3;

/// A condition as people read it: Flowmailer's `{type, matchType, name, value}` as JSON.
fn condition_text(condition: &Condition) -> String {
    condition_views(condition)
        .iter()
        .map(|view| serde_json::to_string(view).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A step's condition as its form holds it: the one Flowmailer condition the API shows for it.
fn step_condition_text(condition: &Condition) -> String {
    condition_views(condition)
        .first()
        .map(|view| serde_json::to_string(view).unwrap_or_default())
        .unwrap_or_default()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The name of flow `id` among `flows`.
fn name_of(flows: &[Flow], id: u64) -> String {
    flows
        .iter()
        .find(|flow| flow.id == id)
        .map_or_else(|| format!("flow {id}"), |flow| flow.name.clone())
}

/// `GET /flows`.
pub(super) async fn list(State(state): State<DashboardState>, viewer: Viewer) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    list_page(&state, &viewer, account_id, Vec::new(), StatusCode::OK)
}

fn list_page(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let (flows, routing) = match (
        state.store.flows_of(account_id),
        state.store.routing(account_id),
    ) {
        (Ok(flows), Ok(routing)) => (flows, routing),
        (Err(error), _) | (_, Err(error)) => return internal(error),
    };
    let sources = state.store.sources_of(account_id).unwrap_or_default();
    let rule_count = routing.as_ref().map_or(0, |routing| routing.rules.len());
    let mut page = render_page(
        state,
        viewer,
        "flows.html",
        "flows",
        context! {
            errors => errors,
            flows => flows.iter().map(|flow| context! {
                id => flow.id,
                name => &flow.name,
                expiry_hours => flow.expiry_hours,
                steps => flow.steps.iter().map(|step| context! {
                    plugin => &step.plugin,
                    config => pretty(&step.config),
                    enabled_when => step.enabled_when.as_ref().map(condition_text),
                }).collect::<Vec<_>>(),
            }).collect::<Vec<_>>(),
            rules => routing.as_ref().map(|routing| routing.rules.iter().enumerate().map(|(index, rule)| context! {
                index => index,
                last => index + 1 == rule_count,
                flow => name_of(&flows, rule.flow_id),
                conditions => rule.conditions.iter().map(condition_text).collect::<Vec<_>>(),
            }).collect::<Vec<_>>()),
            default_flow => routing.as_ref().map(|routing| name_of(&flows, routing.default_flow_id)),
            default_flow_id => routing.as_ref().map(|routing| routing.default_flow_id),
            sources => sources.iter().map(|source| context! { id => source.id, name => &source.name }).collect::<Vec<_>>(),
            condition_rows => (0..CONDITION_ROWS).collect::<Vec<_>>(),
        },
    );
    *page.status_mut() = status;
    page
}

/// The form naming a flow.
#[derive(Deserialize)]
pub(super) struct NameForm {
    #[serde(default)]
    name: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

fn checked_name(name: &str) -> Result<String, Refusal> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(Refusal::BadRequest(
            "A flow needs a name of at most 200 bytes, on one line.",
        ));
    }
    Ok(name.to_string())
}

/// `POST /flows`: a new flow without steps (messages go out as submitted until steps are
/// added), then its page.
pub(super) async fn create(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<NameForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let name = checked_name(&form.name)?;
    if check_flow_count(&state.api, account_id).is_err() {
        return Err(Refusal::BadRequest("An account has at most 1000 flows."));
    }
    let flow = state
        .store
        .create_flow(Flow {
            id: 0,
            account_id,
            name,
            steps: Vec::new(),
            expiry_hours: None,
        })
        .await
        .map_err(Refusal::store)?;
    Ok(Redirect::to(&format!("/flows/{}", flow.id)).into_response())
}

/// The account's flow `id`; another account's looks missing.
fn own_flow(state: &DashboardState, account_id: u64, id: u64) -> Result<Flow, Refusal> {
    match state.store.flow(id) {
        Ok(Some(flow)) if flow.account_id == account_id => Ok(flow),
        Ok(_) => Err(Refusal::NotFound("No such flow.")),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// A step form sent back with what it held, shown again with the errors it caused.
#[derive(Default)]
struct Draft {
    /// The step it edits; none for the "add a step" form.
    index: Option<usize>,
    plugin: String,
    config: String,
    enabled_when: String,
}

/// The plugins a step may name: the built-in steps, the operator's folder plugins, then the
/// account's uploads (by sha256).
fn plugin_choices(state: &DashboardState, account_id: u64) -> Vec<String> {
    let mut names: Vec<String> = crate::plugin::builtin::BUILTINS
        .iter()
        .map(|builtin| builtin.name.to_string())
        .filter(|name| state.plugins.get(name).is_some())
        .collect();
    for name in state.plugins.names() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.extend(state.store.plugins_owned_by(account_id).unwrap_or_default());
    names
}

/// `GET /flows/{id}`.
pub(super) async fn show(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
) -> Result<Response, Refusal> {
    let account_id = viewer.account_for(Action::Read)?;
    let flow = own_flow(&state, account_id, id)?;
    Ok(flow_page(
        &state,
        &viewer,
        &flow,
        Vec::new(),
        Draft::default(),
    ))
}

fn flow_page(
    state: &DashboardState,
    viewer: &Viewer,
    flow: &Flow,
    errors: Vec<String>,
    draft: Draft,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let count = flow.steps.len();
    let mut page = render_page(
        state,
        viewer,
        "flow.html",
        "flows",
        context! {
            flow => context! { id => flow.id, name => &flow.name, expiry_hours => flow.expiry_hours },
            errors => errors,
            plugins => plugin_choices(state, flow.account_id),
            steps => flow.steps.iter().enumerate().map(|(index, step)| {
                let drafted = draft.index == Some(index);
                context! {
                    index => index,
                    number => index + 1,
                    last => index + 1 == count,
                    plugin => if drafted { draft.plugin.clone() } else { step.plugin.clone() },
                    config => if drafted { draft.config.clone() } else { pretty(&step.config) },
                    enabled_when => if drafted {
                        draft.enabled_when.clone()
                    } else {
                        step.enabled_when.as_ref().map(step_condition_text).unwrap_or_default()
                    },
                }
            }).collect::<Vec<_>>(),
            new_step => if draft.index.is_none() {
                context! { plugin => &draft.plugin, config => &draft.config, enabled_when => &draft.enabled_when }
            } else {
                context! { plugin => "", config => "", enabled_when => "" }
            },
        },
    );
    *page.status_mut() = status;
    page
}

/// `POST /flows/{id}/name`.
pub(super) async fn rename(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<NameForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let mut flow = own_flow(&state, account_id, id)?;
    flow.name = checked_name(&form.name)?;
    state
        .store
        .update_flow(flow)
        .await
        .map_err(Refusal::store)?;
    Ok(Redirect::to(&format!("/flows/{id}")).into_response())
}

/// A step's form: its plugin, its configuration as JSON, and an optional condition as JSON
/// in Flowmailer's shape.
#[derive(Deserialize)]
pub(super) struct StepForm {
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    config: String,
    #[serde(default)]
    enabled_when: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// The step as the API takes it, or what is wrong with the form.
fn step_from_form(form: &StepForm, number: usize) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let plugin = form.plugin.trim();
    if plugin.is_empty() {
        errors.push(format!("Step {number}: choose a plugin."));
    }
    let config = if form.config.trim().is_empty() {
        json!({})
    } else if form.config.len() > MAX_CONFIG_BYTES {
        errors.push(format!("Step {number}: the configuration is too large."));
        Value::Null
    } else {
        serde_json::from_str(&form.config).unwrap_or_else(|error| {
            errors.push(format!(
                "Step {number}: the configuration is not JSON ({error})."
            ));
            Value::Null
        })
    };
    let mut step = json!({ "plugin": plugin, "config": config });
    if !form.enabled_when.trim().is_empty() {
        match serde_json::from_str::<Value>(&form.enabled_when) {
            Ok(condition) => step["enabledWhen"] = condition,
            Err(error) => errors.push(format!(
                "Step {number}: \"run only when\" is not JSON ({error})."
            )),
        }
    }
    if errors.is_empty() {
        Ok(step)
    } else {
        Err(errors)
    }
}

/// A change to a flow's list of steps, as the API's own representation of each step.
enum StepChange {
    Add(Value),
    Replace(usize, Value),
    Remove(usize),
    /// Moves step `.0` one place up (`true`) or down.
    Move(usize, bool),
}

/// Applies `change` to the flow's steps and stores them when the API's checks accept every
/// step; otherwise the flow's page with the errors.
async fn change_steps(
    state: &DashboardState,
    viewer: &Viewer,
    mut flow: Flow,
    change: StepChange,
    draft: Draft,
) -> Result<Response, Refusal> {
    let api = &state.api;
    let mut steps: Vec<Value> = Vec::with_capacity(flow.steps.len() + 1);
    for step in &flow.steps {
        let view = step_view(api, flow.account_id, step)
            .map_err(|error| Refusal::store(format!("{error:?}")))?;
        steps.push(serde_json::to_value(view).map_err(Refusal::store)?);
    }
    let missing = || Refusal::NotFound("No such step.");
    match change {
        StepChange::Add(step) => steps.push(step),
        StepChange::Replace(index, step) => *steps.get_mut(index).ok_or_else(missing)? = step,
        StepChange::Remove(index) => {
            if index >= steps.len() {
                return Err(missing());
            }
            steps.remove(index);
        }
        StepChange::Move(index, up) => {
            let other = if up {
                index.checked_sub(1)
            } else {
                Some(index + 1)
            };
            match other {
                Some(other) if index < steps.len() && other < steps.len() => {
                    steps.swap(index, other)
                }
                _ => return Err(missing()),
            }
        }
    }
    let views: Vec<StepView> = match serde_json::from_value(Value::Array(steps)) {
        Ok(views) => views,
        Err(error) => {
            let errors = vec![format!("The step is not one a flow can hold: {error}.")];
            return Ok(flow_page(state, viewer, &flow, errors, draft));
        }
    };
    match checked_steps(api, flow.account_id, views).await {
        Ok(checked) => {
            flow.steps = checked;
            let id = flow.id;
            state
                .store
                .update_flow(flow)
                .await
                .map_err(Refusal::store)?;
            Ok(Redirect::to(&format!("/flows/{id}")).into_response())
        }
        Err(error) => Ok(flow_page(state, viewer, &flow, error_lines(&error), draft)),
    }
}

fn draft_of(form: StepForm, index: Option<usize>) -> Draft {
    Draft {
        index,
        plugin: form.plugin,
        config: form.config,
        enabled_when: form.enabled_when,
    }
}

/// `POST /flows/{id}/steps`: adds a step at the end.
pub(super) async fn add_step(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<StepForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    match step_from_form(&form, flow.steps.len() + 1) {
        Ok(step) => {
            change_steps(
                &state,
                &viewer,
                flow,
                StepChange::Add(step),
                draft_of(form, None),
            )
            .await
        }
        Err(errors) => Ok(flow_page(
            &state,
            &viewer,
            &flow,
            errors,
            draft_of(form, None),
        )),
    }
}

/// `POST /flows/{id}/steps/{index}`: changes a step's plugin, configuration or condition.
pub(super) async fn save_step(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, index)): Path<(u64, usize)>,
    Form(form): Form<StepForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    if index >= flow.steps.len() {
        return Err(Refusal::NotFound("No such step."));
    }
    match step_from_form(&form, index + 1) {
        Ok(step) => {
            change_steps(
                &state,
                &viewer,
                flow,
                StepChange::Replace(index, step),
                draft_of(form, Some(index)),
            )
            .await
        }
        Err(errors) => Ok(flow_page(
            &state,
            &viewer,
            &flow,
            errors,
            draft_of(form, Some(index)),
        )),
    }
}

/// `POST /flows/{id}/steps/{index}/remove`.
pub(super) async fn remove_step(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, index)): Path<(u64, usize)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    change_steps(
        &state,
        &viewer,
        flow,
        StepChange::Remove(index),
        Draft::default(),
    )
    .await
}

/// `POST /flows/{id}/steps/{index}/up`.
pub(super) async fn step_up(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, index)): Path<(u64, usize)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    change_steps(
        &state,
        &viewer,
        flow,
        StepChange::Move(index, true),
        Draft::default(),
    )
    .await
}

/// `POST /flows/{id}/steps/{index}/down`.
pub(super) async fn step_down(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, index)): Path<(u64, usize)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    change_steps(
        &state,
        &viewer,
        flow,
        StepChange::Move(index, false),
        Draft::default(),
    )
    .await
}

// ---- flow rules

/// The account's rules; an account made before rules existed has none yet.
fn routing_of(state: &DashboardState, account_id: u64) -> Result<Routing, Refusal> {
    match state.store.routing(account_id) {
        Ok(Some(routing)) => Ok(routing),
        Ok(None) => Err(Refusal::BadRequest(
            "This account has no default flow yet: choose one first.",
        )),
        Err(error) => Err(Refusal::store(error)),
    }
}

async fn store_routing(
    state: &DashboardState,
    account_id: u64,
    routing: Routing,
) -> Result<Response, Refusal> {
    match state.store.set_routing(account_id, routing).await {
        Ok(()) => Ok(Redirect::to("/flows#rules").into_response()),
        Err(StoreError::TooLarge(_)) => Err(Refusal::BadRequest(
            "The account's flow rules would take more than the 256 KiB kept of them.",
        )),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// The "add a rule" form: a flow and up to [`CONDITION_ROWS`] conditions, each row
/// Flowmailer's `type`, `matchType`, `name` and `value`; a row without a type is empty.
/// Read as pairs because the rows are numbered (`type0`, `value0`, ...).
pub(super) async fn add_rule(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Refusal> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_default()
    };
    let account_id = viewer.form_account(Action::Edit, &field("csrf"))?;
    let mut routing = routing_of(&state, account_id)?;
    let flow_id: u64 = field("flow")
        .parse()
        .map_err(|_| Refusal::BadRequest("Choose a flow."))?;
    own_flow(&state, account_id, flow_id)?;
    if routing.rules.len() >= MAX_RULES {
        return Err(Refusal::BadRequest(
            "An account has at most 1000 flow rules.",
        ));
    }
    let mut errors = Vec::new();
    let mut conditions = Vec::new();
    for row in 0..CONDITION_ROWS.min(MAX_CONDITIONS) {
        let kind = field(&format!("type{row}"));
        if kind.is_empty() {
            continue;
        }
        let text = |name: &str| Some(field(&format!("{name}{row}"))).filter(|v| !v.is_empty());
        let view: ConditionView = match serde_json::from_value(json!({
            "type": kind, "matchType": text("match"), "name": text("name"), "value": text("value"),
        })) {
            Ok(view) => view,
            Err(error) => {
                errors.push(format!("Condition {}: {error}", row + 1));
                continue;
            }
        };
        let name = format!("condition {}", row + 1);
        match condition_from(&view, &name) {
            Ok(condition) => {
                match check_owned(&state.api, account_id, &condition, &name) {
                    Ok(Some(error)) => {
                        errors.push(format!("{name}: {}", error.default_message));
                    }
                    Ok(None) => {}
                    Err(error) => return Err(Refusal::store(format!("{error:?}"))),
                }
                conditions.push(condition);
            }
            Err(error) => errors.push(format!("{name}: {}", error.default_message)),
        }
    }
    if !errors.is_empty() {
        return Ok(list_page(
            &state,
            &viewer,
            account_id,
            errors,
            StatusCode::BAD_REQUEST,
        ));
    }
    routing.rules.push(FlowRule {
        flow_id,
        conditions,
    });
    store_routing(&state, account_id, routing).await
}

/// `POST /flows/rules/{index}/remove`.
pub(super) async fn remove_rule(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(index): Path<usize>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let mut routing = routing_of(&state, account_id)?;
    if index >= routing.rules.len() {
        return Err(Refusal::NotFound("No such rule."));
    }
    routing.rules.remove(index);
    store_routing(&state, account_id, routing).await
}

/// `POST /flows/rules/{index}/up`: the rule is tried one place earlier.
pub(super) async fn rule_up(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(index): Path<usize>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let mut routing = routing_of(&state, account_id)?;
    if index == 0 || index >= routing.rules.len() {
        return Err(Refusal::NotFound("No such rule."));
    }
    routing.rules.swap(index - 1, index);
    store_routing(&state, account_id, routing).await
}

/// `POST /flows/rules/{index}/down`: the rule is tried one place later.
pub(super) async fn rule_down(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(index): Path<usize>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let mut routing = routing_of(&state, account_id)?;
    if index + 1 >= routing.rules.len() {
        return Err(Refusal::NotFound("No such rule."));
    }
    routing.rules.swap(index, index + 1);
    store_routing(&state, account_id, routing).await
}

/// The default-flow form.
#[derive(Deserialize)]
pub(super) struct DefaultFlowForm {
    #[serde(default)]
    flow: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `POST /flows/default`: the flow of messages no rule matches.
pub(super) async fn set_default(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<DefaultFlowForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow_id: u64 = form
        .flow
        .trim()
        .parse()
        .map_err(|_| Refusal::BadRequest("Choose a flow."))?;
    own_flow(&state, account_id, flow_id)?;
    let routing = match state.store.routing(account_id) {
        Ok(Some(routing)) => Routing {
            default_flow_id: flow_id,
            ..routing
        },
        Ok(None) => Routing {
            rules: Vec::new(),
            default_flow_id: flow_id,
        },
        Err(error) => return Err(Refusal::store(error)),
    };
    store_routing(&state, account_id, routing).await
}
