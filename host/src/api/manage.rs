//! Managing an account: sources and their credentials, flows, flow rules and plugins.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::parse_json;
use crate::flow::rules::{Condition, FlowRule, Routing};
use crate::plugin::Grants;
use crate::store::{CredentialKind, Flow, Flowstep, Source};

/// A source as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    id: u64,
    description: String,
    /// `null`: any address may use the source; `[]`: none may.
    allowed_networks: Option<Vec<IpNet>>,
    max_message_size: usize,
    require_tls: bool,
    allow_plain_auth: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback_address: Option<String>,
}

/// A source as the API takes it. On `POST` a field left out takes its default; on `PUT` it
/// keeps its value, so a client may send only what it changes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceInput {
    /// Ignored: the path names the source (accepted so a view can be sent back as it is).
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    description: Option<String>,
    /// Left out or `null` on `POST`: no restriction. `null` on `PUT` lifts the restriction;
    /// `[]` admits nobody.
    #[serde(default, deserialize_with = "crate::store::present")]
    allowed_networks: Option<Option<Vec<IpNet>>>,
    #[serde(default)]
    max_message_size: Option<usize>,
    #[serde(default)]
    require_tls: Option<bool>,
    #[serde(default)]
    allow_plain_auth: Option<bool>,
    /// `null` on `PUT` removes it.
    #[serde(default, deserialize_with = "crate::store::present")]
    feedback_address: Option<Option<String>>,
}

fn default_max_size() -> usize {
    25 << 20
}

impl From<Source> for SourceView {
    fn from(source: Source) -> Self {
        Self {
            id: source.id,
            description: source.name,
            allowed_networks: source.allowed_networks,
            max_message_size: source.max_message_bytes,
            require_tls: source.require_tls,
            allow_plain_auth: source.allow_plain_auth,
            feedback_address: source.feedback_address,
        }
    }
}

/// `GET /{account}/sources`.
pub async fn list_sources(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    caller.require(account_id)?;
    let sources = state.store.sources_of(account_id)?;
    Ok(Json(sources.into_iter().map(SourceView::from).collect()))
}

/// `POST /{account}/sources`.
pub async fn create_source(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SourceView>), ApiError> {
    caller.require(account_id)?;
    let defaults = Source {
        id: 0,
        account_id,
        name: String::new(),
        allowed_networks: None,
        max_message_bytes: default_max_size(),
        require_tls: false,
        allow_plain_auth: false,
        feedback_address: None,
    };
    let source = state
        .store
        .create_source(source_from(defaults, parse_json(&body)?)?)
        .await?;
    Ok((StatusCode::CREATED, Json(source.into())))
}

/// `PUT /{account}/sources/{id}`: changes the settings given and keeps the others; its
/// credentials stay.
pub async fn update_source(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<SourceView>, ApiError> {
    caller.require(account_id)?;
    let input: SourceInput = parse_json(&body)?;
    let current = state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    let source = source_from(current, input)?;
    state.store.update_source(source.clone()).await?;
    Ok(Json(source.into()))
}

/// `source` with the input's fields applied, checked.
fn source_from(mut source: Source, input: SourceInput) -> Result<Source, ApiError> {
    if let Some(description) = input.description {
        source.name = description;
    }
    if source.name.trim().is_empty() {
        return Err(ApiError::field(
            "description",
            "required",
            "description is required",
            None,
        ));
    }
    if let Some(address) = input.feedback_address {
        source.feedback_address = address;
    }
    if let Some(address) = &source.feedback_address
        && (!address.contains('@') || address.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ApiError::field(
            "feedbackAddress",
            "invalid",
            "feedbackAddress must be one e-mail address",
            Some(serde_json::json!(address)),
        ));
    }
    if let Some(networks) = input.allowed_networks {
        source.allowed_networks = networks;
    }
    if let Some(size) = input.max_message_size {
        source.max_message_bytes = size;
    }
    if let Some(require_tls) = input.require_tls {
        source.require_tls = require_tls;
    }
    if let Some(allow_plain_auth) = input.allow_plain_auth {
        source.allow_plain_auth = allow_plain_auth;
    }
    Ok(source)
}

/// The body of `POST /{account}/sources/{id}/credentials`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCredential {
    /// `smtp` or `api`.
    kind: CredentialKind,
    /// The SMTP username or API client id.
    username: String,
}

/// The answer: the secret, shown this once.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCredential {
    kind: CredentialKind,
    username: String,
    secret: String,
}

/// `POST /{account}/sources/{id}/credentials`: makes a credential with a random secret.
pub async fn create_credential(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<IssuedCredential>), ApiError> {
    caller.require(account_id)?;
    let request: NewCredential = parse_json(&body)?;
    let source = state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    if request.username.trim().is_empty() || request.username.contains(char::is_whitespace) {
        return Err(ApiError::field(
            "username",
            "invalidValue",
            "username must be non-empty, without spaces",
            Some(request.username.into()),
        ));
    }
    let mut secret = [0u8; 18];
    getrandom::fill(&mut secret).map_err(|error| ApiError::internal(error.to_string()))?;
    let secret = hex::encode(secret);
    state
        .store
        .add_credential(&source, request.kind, &request.username, &secret)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredential {
            kind: request.kind,
            username: request.username,
            secret,
        }),
    ))
}

/// A flow as the API takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowInput {
    description: String,
    #[serde(default)]
    steps: Vec<StepInput>,
    /// Hours a message may keep failing temporarily before it soft-bounces.
    #[serde(default)]
    expiry_hours: Option<u64>,
}

/// A flow step as the API takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepInput {
    /// The sha256 of an uploaded plugin, or the name of an operator's plugin.
    plugin: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    enabled_when: Option<Condition>,
}

/// A flow as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowView {
    id: u64,
    description: String,
    steps: Vec<Flowstep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_hours: Option<u64>,
}

impl From<Flow> for FlowView {
    fn from(flow: Flow) -> Self {
        Self {
            id: flow.id,
            description: flow.name,
            steps: flow.steps,
            expiry_hours: flow.expiry_hours,
        }
    }
}

/// Checks that every step names a plugin this account may use and that the step accepts its
/// configuration: a bad configuration is refused here, not discovered when mail flows.
async fn checked_steps(
    state: &ApiState,
    account_id: u64,
    steps: Vec<StepInput>,
) -> Result<Vec<Flowstep>, ApiError> {
    let mut errors = Vec::new();
    let mut checked = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        let config = step.config.unwrap_or_else(|| serde_json::json!({}));
        let usable = state.plugins.get(&step.plugin).is_some()
            || state.store.owns_plugin(account_id, &step.plugin)?;
        if !usable {
            errors.push(FieldError {
                code: "unknownPlugin".into(),
                default_message:
                    "no plugin of this account or the operator has this sha256 or name".into(),
                field: Some(format!("steps[{index}].plugin")),
                object_name: Some("flow".into()),
                rejected_value: Some(step.plugin.clone().into()),
            });
        } else if let Err(reason) = state
            .pipeline
            .check_step(account_id, &step.plugin, &config)
            .await
        {
            errors.push(FieldError {
                code: "invalidConfig".into(),
                default_message: reason,
                field: Some(format!("steps[{index}].config")),
                object_name: Some("flow".into()),
                rejected_value: Some(config.clone()),
            });
        }
        checked.push(Flowstep {
            plugin: step.plugin,
            config,
            enabled_when: step.enabled_when,
        });
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(ApiError::fields(errors))
    }
}

/// The longest a flow may let its messages keep failing: 30 days.
const MAX_EXPIRY_HOURS: u64 = 30 * 24;

fn check_expiry(hours: Option<u64>) -> Result<(), ApiError> {
    match hours {
        Some(hours) if hours == 0 || hours > MAX_EXPIRY_HOURS => Err(ApiError::field(
            "expiryHours",
            "invalidExpiry",
            format!("1 to {MAX_EXPIRY_HOURS} hours"),
            Some(hours.into()),
        )),
        _ => Ok(()),
    }
}

/// `GET /{account}/flows`.
pub async fn list_flows(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<FlowView>>, ApiError> {
    caller.require(account_id)?;
    let flows = state.store.flows_of(account_id)?;
    Ok(Json(flows.into_iter().map(FlowView::from).collect()))
}

/// `POST /{account}/flows`.
pub async fn create_flow(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<FlowView>), ApiError> {
    caller.require(account_id)?;
    let input: FlowInput = parse_json(&body)?;
    check_expiry(input.expiry_hours)?;
    let steps = checked_steps(&state, account_id, input.steps).await?;
    let flow = state
        .store
        .create_flow(Flow {
            id: 0,
            account_id,
            name: input.description,
            steps,
            expiry_hours: input.expiry_hours,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(flow.into())))
}

fn own_flow(state: &ApiState, account_id: u64, flow_id: u64) -> Result<Flow, ApiError> {
    state
        .store
        .flow(flow_id)?
        .filter(|flow| flow.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("flow"))
}

/// `GET /{account}/flows/{id}`.
pub async fn get_flow(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<FlowView>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(own_flow(&state, account_id, flow_id)?.into()))
}

/// `PUT /{account}/flows/{id}`.
pub async fn update_flow(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<FlowView>, ApiError> {
    caller.require(account_id)?;
    own_flow(&state, account_id, flow_id)?;
    let input: FlowInput = parse_json(&body)?;
    check_expiry(input.expiry_hours)?;
    let flow = Flow {
        id: flow_id,
        account_id,
        name: input.description,
        steps: checked_steps(&state, account_id, input.steps).await?,
        expiry_hours: input.expiry_hours,
    };
    state.store.update_flow(flow.clone()).await?;
    Ok(Json(flow.into()))
}

/// Flow rules as the API shows and takes them.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingView {
    rules: Vec<RuleView>,
    default_flow_id: u64,
}

/// One rule.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleView {
    flow_id: u64,
    #[serde(default)]
    conditions: Vec<Condition>,
}

/// `GET /{account}/flow_rules`.
pub async fn get_rules(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<RoutingView>, ApiError> {
    caller.require(account_id)?;
    let routing = state
        .store
        .routing(account_id)?
        .ok_or_else(|| ApiError::not_found("flow rules"))?;
    Ok(Json(RoutingView {
        rules: routing
            .rules
            .into_iter()
            .map(|rule| RuleView {
                flow_id: rule.flow_id,
                conditions: rule.conditions,
            })
            .collect(),
        default_flow_id: routing.default_flow_id,
    }))
}

/// `PUT /{account}/flow_rules`: replaces the rules; every flow must be the account's own.
pub async fn put_rules(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<RoutingView>, ApiError> {
    caller.require(account_id)?;
    let view: RoutingView = parse_json(&body)?;
    let mut errors = Vec::new();
    let mut check = |field: String, flow_id: u64| {
        if own_flow(&state, account_id, flow_id).is_err() {
            errors.push(FieldError {
                code: "unknownFlow".into(),
                default_message: "this account has no flow with this id".into(),
                field: Some(field),
                object_name: Some("flowRules".into()),
                rejected_value: Some(flow_id.into()),
            });
        }
    };
    check("defaultFlowId".into(), view.default_flow_id);
    for (index, rule) in view.rules.iter().enumerate() {
        check(format!("rules[{index}].flowId"), rule.flow_id);
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let routing = Routing {
        rules: view
            .rules
            .iter()
            .map(|rule| FlowRule {
                flow_id: rule.flow_id,
                conditions: rule.conditions.clone(),
            })
            .collect(),
        default_flow_id: view.default_flow_id,
    };
    state.store.set_routing(account_id, routing).await?;
    Ok(Json(view))
}

/// The answer to a plugin upload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginView {
    sha256: String,
    imports: Vec<String>,
    /// flowstep, or bounce-classifier.
    kind: &'static str,
}

/// `POST /{account}/plugins`: the body is a component (`application/wasm`). It is compiled and
/// checked like any plugin, with no privileges; a refusal says exactly why.
pub async fn upload_plugin(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    caller.require(account_id)?;
    let bytes = body.to_vec();
    let sha256 = crate::plugin::hex_sha256(&bytes);
    let invalid = |error: crate::plugin::LoadError| {
        ApiError::field("body", "invalidPlugin", error.to_string(), None)
    };
    let view = match Arc::clone(&state.runtime)
        .load_async(sha256.clone(), bytes.clone(), Grants::none())
        .await
    {
        Ok(plugin) => PluginView {
            sha256: sha256.clone(),
            imports: plugin.imports().to_vec(),
            kind: "flowstep",
        },
        // Not a Flowstep: it may be the other kind of component an account uploads.
        Err(crate::plugin::LoadError::WrongShape(why)) => {
            let runtime = Arc::clone(&state.runtime);
            let candidate = bytes.clone();
            tokio::task::spawn_blocking(move || runtime.load_classifier(&candidate))
                .await
                .map_err(ApiError::internal)?
                .map_err(|_| invalid(crate::plugin::LoadError::WrongShape(why)))?;
            PluginView {
                sha256: sha256.clone(),
                imports: Vec::new(),
                kind: "bounce-classifier",
            }
        }
        Err(error) => return Err(invalid(error)),
    };
    state.store.put_plugin(account_id, &sha256, bytes).await?;
    Ok((StatusCode::CREATED, Json(view)))
}
