//! Flows and flow rules: each flow's steps with their configuration, and the rules in the
//! order they are tried, ending with the default flow. Editors and up change them here; every
//! change goes through the API's own checks (`api::checked_steps` runs each step on a probe
//! message, `api::condition_from` and `api::check_owned` read a condition), so a page never
//! stores what the API would refuse.
//!
//! Steps and rules are changed by position, so each form that does so carries the edition
//! (a digest) of the flow or of the rules as its page showed them: a stale page, or a second
//! editor who saved first, gets "changed since you opened the page" instead of moving,
//! removing or overwriting the wrong one. Every write is also made only while the stored
//! record is still the one read (`Store::update_flow_unchanged`, `set_routing_unchanged`).

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::DashboardState;
use super::pages::{error_lines, path_choice, render_form_page};
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

/// The edition of a flow or of an account's rules: a digest of it, which the forms that
/// change it by position send back.
fn edition<T: Serialize>(value: &T) -> String {
    let encoded = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(&encoded)[..8])
}

/// Refuses a change made from a page that showed another edition of `value`.
fn check_edition<T: Serialize>(value: &T, seen: &str) -> Result<(), Refusal> {
    if edition(value) == seen.trim() {
        Ok(())
    } else {
        Err(Refusal::Changed)
    }
}

/// A store write refused because the record changed since it was read becomes the page's
/// "changed since you opened the page".
fn stored(result: Result<(), StoreError>) -> Result<(), Refusal> {
    match result {
        Ok(()) => Ok(()),
        Err(StoreError::Changed(_)) => Err(Refusal::Changed),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// A change to a step or a rule named by its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PositionChange {
    /// One place earlier.
    Up,
    /// One place later.
    Down,
    /// Taken out.
    Remove,
}

impl PositionChange {
    /// The change a form's path names.
    fn named(name: &str) -> Result<Self, Refusal> {
        path_choice(
            name,
            &[
                ("up", Self::Up),
                ("down", Self::Down),
                ("remove", Self::Remove),
            ],
        )
    }

    /// Applies the change to the item at `index` of `items`; false when there is no such
    /// item (or no place to move it to), and then `items` is left as it was.
    fn apply<T>(self, items: &mut Vec<T>, index: usize) -> bool {
        if index >= items.len() {
            return false;
        }
        match self {
            Self::Remove => {
                items.remove(index);
            }
            Self::Up if index > 0 => items.swap(index - 1, index),
            Self::Down if index + 1 < items.len() => items.swap(index, index + 1),
            Self::Up | Self::Down => return false,
        }
        true
    }
}

/// The form of a change by position: the session's token and the edition the page showed.
#[derive(Deserialize)]
pub(super) struct PositionForm {
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
    /// Missing counts as stale: the change is refused as made from an old page.
    #[serde(default)]
    edition: String,
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
    list_page(&state, &viewer, account_id, Vec::new())
}

fn list_page(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    errors: Vec<String>,
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
    render_form_page(
        state,
        viewer,
        "flows.html",
        "flows",
        errors,
        context! {
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
            rules_edition => edition(&routing),
            sources => sources.iter().map(|source| context! { id => source.id, name => &source.name }).collect::<Vec<_>>(),
            condition_rows => (0..CONDITION_ROWS).collect::<Vec<_>>(),
        },
    )
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
    let count = flow.steps.len();
    render_form_page(
        state,
        viewer,
        "flow.html",
        "flows",
        errors,
        context! {
            flow => context! {
                id => flow.id, name => &flow.name, expiry_hours => flow.expiry_hours,
                edition => edition(flow),
            },
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
    )
}

/// `POST /flows/{id}/name`.
pub(super) async fn rename(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<NameForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let read = own_flow(&state, account_id, id)?;
    let mut flow = read.clone();
    flow.name = checked_name(&form.name)?;
    stored(state.store.update_flow_unchanged(flow, read).await)?;
    Ok(Redirect::to(&format!("/flows/{id}")).into_response())
}

/// `POST /flows/{id}/delete`: as the API's `DELETE flows/{id}`, refused (and said why) while
/// the account's rules or default flow name it.
pub(super) async fn delete(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<u64>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    match crate::api::deletion::delete_flow(&state.api, account_id, id).await {
        Ok(()) => Ok(Redirect::to("/flows").into_response()),
        Err(error) => Ok(flow_page(
            &state,
            &viewer,
            &flow,
            error_lines(&error),
            Draft::default(),
        )),
    }
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
    /// The flow's edition as the page showed it; checked when the form changes a step by
    /// its position (adding one at the end needs none).
    #[serde(default)]
    edition: String,
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
    /// Moves or removes the step at `.0`.
    At(usize, PositionChange),
}

/// Applies `change` to the flow's steps and stores them when the API's checks accept every
/// step; otherwise the flow's page with the errors.
async fn change_steps(
    state: &DashboardState,
    viewer: &Viewer,
    read: Flow,
    change: StepChange,
    draft: Draft,
) -> Result<Response, Refusal> {
    let mut flow = read.clone();
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
        StepChange::At(index, change) => {
            if !change.apply(&mut steps, index) {
                return Err(missing());
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
            stored(state.store.update_flow_unchanged(flow, read).await)?;
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
    check_edition(&flow, &form.edition)?;
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

/// `POST /flows/{id}/steps/{index}/{change}`: moves the step up or down, or removes it.
pub(super) async fn change_step_at(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((id, index, change)): Path<(u64, usize, String)>,
    Form(form): Form<PositionForm>,
) -> Result<Response, Refusal> {
    let change = PositionChange::named(&change)?;
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let flow = own_flow(&state, account_id, id)?;
    check_edition(&flow, &form.edition)?;
    change_steps(
        &state,
        &viewer,
        flow,
        StepChange::At(index, change),
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

/// Stores the account's rules, made from `read`, while they are still as read.
async fn store_routing(
    state: &DashboardState,
    account_id: u64,
    routing: Routing,
    read: Option<Routing>,
) -> Result<Response, Refusal> {
    match state
        .store
        .set_routing_unchanged(account_id, routing, read)
        .await
    {
        Ok(()) => Ok(Redirect::to("/flows#rules").into_response()),
        Err(StoreError::TooLarge(_)) => Err(Refusal::BadRequest(
            "The account's flow rules would take more than the 256 KiB kept of them.",
        )),
        Err(StoreError::Changed(_)) => Err(Refusal::Changed),
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
    let read = routing_of(&state, account_id)?;
    let mut routing = read.clone();
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
        return Ok(list_page(&state, &viewer, account_id, errors));
    }
    routing.rules.push(FlowRule {
        flow_id,
        conditions,
    });
    store_routing(&state, account_id, routing, Some(read)).await
}

/// `POST /flows/rules/{index}/{change}`: the rule is tried one place earlier or later, or
/// not at all.
pub(super) async fn change_rule_at(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path((index, change)): Path<(usize, String)>,
    Form(form): Form<PositionForm>,
) -> Result<Response, Refusal> {
    let change = PositionChange::named(&change)?;
    let account_id = viewer.form_account(Action::Edit, &form.csrf)?;
    let read = routing_of(&state, account_id)?;
    check_edition(&Some(&read), &form.edition)?;
    let mut routing = read.clone();
    if !change.apply(&mut routing.rules, index) {
        return Err(Refusal::NotFound("No such rule."));
    }
    store_routing(&state, account_id, routing, Some(read)).await
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
    let read = state.store.routing(account_id).map_err(Refusal::store)?;
    let routing = match read.clone() {
        Some(routing) => Routing {
            default_flow_id: flow_id,
            ..routing
        },
        None => Routing {
            rules: Vec::new(),
            default_flow_id: flow_id,
        },
    };
    store_routing(&state, account_id, routing, read).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_by_position_moves_or_removes_that_item_or_leaves_the_list_alone() {
        let mut items = vec!['a', 'b', 'c'];
        assert!(PositionChange::Up.apply(&mut items, 2));
        assert_eq!(items, ['a', 'c', 'b']);
        assert!(PositionChange::Down.apply(&mut items, 0));
        assert_eq!(items, ['c', 'a', 'b']);
        for (change, index) in [
            (PositionChange::Up, 0),
            (PositionChange::Down, 2),
            (PositionChange::Remove, 3),
        ] {
            assert!(!change.apply(&mut items, index), "{change:?} {index}");
            assert_eq!(items, ['c', 'a', 'b']);
        }
        assert!(PositionChange::Remove.apply(&mut items, 1));
        assert_eq!(items, ['c', 'b']);
    }

    #[test]
    fn an_edition_changes_with_the_flow_and_a_stale_one_is_refused() {
        let flow = Flow {
            id: 1,
            account_id: 1,
            name: "f".into(),
            steps: Vec::new(),
            expiry_hours: None,
        };
        let seen = edition(&flow);
        assert!(check_edition(&flow, &seen).is_ok());
        let renamed = Flow {
            name: "g".into(),
            ..flow
        };
        assert!(matches!(
            check_edition(&renamed, &seen),
            Err(Refusal::Changed)
        ));
        assert!(matches!(check_edition(&renamed, ""), Err(Refusal::Changed)));
    }
}
