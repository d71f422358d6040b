//! Flows and flow rules in Flowmailer's shapes: a flow's steps carry Flowmailer's step `type`
//! (and its typed settings) where a Sluice built-in does that job, beside Sluice's `plugin` and
//! `config`; conditions are Flowmailer's `{type, matchType, name, value}` everywhere (flow
//! rules and a step's `enabledWhen`). Whatever a read answers, a write takes back unchanged.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::parse_json;
use super::representation::created;
use super::representation::flexible_id;
use crate::flow::rules::{Condition, FlowRule, Routing};
use crate::store::{Flow, Flowstep};

/// The most flow rules of an account.
pub(crate) const MAX_RULES: usize = 1000;
/// The most conditions of one rule.
pub(crate) const MAX_CONDITIONS: usize = 32;

/// One condition as Flowmailer writes it (its `FlowCondition`).
///
/// | Sluice condition | `type` | `matchType` | `name` | `value` |
/// |---|---|---|---|---|
/// | submitted by a source | `source` | `equals` | | the source's id |
/// | flow selector | `flowSelector` | `equals` | | the selector |
/// | envelope sender | `sender` | `pattern` | | `user@x`, `*@x` or `x` |
/// | header present / equal / containing | `header` | `exists` / `equals` / `contains` | the header | the text |
/// | submitted data | `data` | `equals` | a JSON pointer | the value as JSON text |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = FlowCondition)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionView {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    match_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// Flowmailer's expression conditions; Sluice has no expression language and refuses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expression: Option<String>,
}

impl ConditionView {
    fn new(kind: &str, match_type: &str, name: Option<&str>, value: Option<String>) -> Self {
        Self {
            kind: kind.into(),
            match_type: Some(match_type.into()),
            name: name.map(str::to_string),
            value,
            expression: None,
        }
    }
}

/// A condition in Flowmailer's shape; a header condition with both a value and a text to
/// contain becomes two, which hold together exactly when it holds.
pub(crate) fn condition_views(condition: &Condition) -> Vec<ConditionView> {
    match condition {
        Condition::Source { source_id } => vec![ConditionView::new(
            "source",
            "equals",
            None,
            Some(source_id.to_string()),
        )],
        Condition::FlowSelector { equals } => vec![ConditionView::new(
            "flowSelector",
            "equals",
            None,
            Some(equals.clone()),
        )],
        Condition::Sender { pattern } => vec![ConditionView::new(
            "sender",
            "pattern",
            None,
            Some(pattern.clone()),
        )],
        Condition::Header {
            name,
            equals,
            contains,
        } => {
            let mut views = Vec::new();
            if let Some(equals) = equals {
                views.push(ConditionView::new(
                    "header",
                    "equals",
                    Some(name),
                    Some(equals.clone()),
                ));
            }
            if let Some(contains) = contains {
                views.push(ConditionView::new(
                    "header",
                    "contains",
                    Some(name),
                    Some(contains.clone()),
                ));
            }
            if views.is_empty() {
                views.push(ConditionView::new("header", "exists", Some(name), None));
            }
            views
        }
        Condition::Data { pointer, equals } => vec![ConditionView::new(
            "data",
            "equals",
            Some(pointer),
            Some(equals.to_string()),
        )],
    }
}

/// The longest name or value of a condition, in bytes (a header line's limit, RFC 5322).
const MAX_CONDITION_TEXT_BYTES: usize = 998;

/// Flows an account may have.
pub(crate) const MAX_FLOWS: usize = 1000;

/// Refuses one more flow when the account has [`MAX_FLOWS`] already.
pub(crate) fn check_flow_count(state: &ApiState, account_id: u64) -> Result<(), ApiError> {
    if state.store.flows_of(account_id)?.len() >= MAX_FLOWS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tooMany",
            format!("an account has at most {MAX_FLOWS} flows"),
        ));
    }
    Ok(())
}

/// A condition from Flowmailer's shape, checked; `field` names it in an error.
pub(crate) fn condition_from(
    view: &ConditionView,
    field: &str,
) -> Result<Condition, Box<FieldError>> {
    let refuse = |code: &str, message: String| {
        Box::new(FieldError {
            code: code.into(),
            default_message: message,
            field: Some(field.into()),
            object_name: Some("flowCondition".into()),
            rejected_value: serde_json::to_value(view).ok(),
        })
    };
    let longest = [&view.name, &view.value]
        .into_iter()
        .flatten()
        .map(String::len)
        .max()
        .unwrap_or(0);
    if longest > MAX_CONDITION_TEXT_BYTES {
        return Err(refuse(
            "tooLong",
            format!("a condition's name and value take at most {MAX_CONDITION_TEXT_BYTES} bytes"),
        ));
    }
    if view.expression.is_some() {
        return Err(refuse(
            "notSupported",
            "expression conditions are not supported: Sluice has no expression language; use \
             a source, flowSelector, sender, header or data condition"
                .into(),
        ));
    }
    let match_type = view.match_type.as_deref().unwrap_or("equals");
    let value = || {
        view.value
            .clone()
            .ok_or_else(|| refuse("required", "value is required".into()))
    };
    let name = || {
        view.name
            .clone()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| refuse("required", "name is required".into()))
    };
    let wrong_match = || {
        refuse(
            "invalidValue",
            format!(
                "matchType {match_type:?} does not apply to a {} condition",
                view.kind
            ),
        )
    };
    match (view.kind.as_str(), match_type) {
        ("source", "equals") => value()?
            .trim()
            .parse()
            .map(|source_id| Condition::Source { source_id })
            .map_err(|_| refuse("invalidValue", "value must be a source's id".into())),
        ("flowSelector", "equals") => Ok(Condition::FlowSelector { equals: value()? }),
        ("sender", "pattern" | "equals") => Ok(Condition::Sender { pattern: value()? }),
        ("header", "exists") => Ok(Condition::Header {
            name: name()?,
            equals: None,
            contains: None,
        }),
        ("header", "equals") => Ok(Condition::Header {
            name: name()?,
            equals: Some(value()?),
            contains: None,
        }),
        ("header", "contains") => Ok(Condition::Header {
            name: name()?,
            equals: None,
            contains: Some(value()?),
        }),
        ("data", "equals") => {
            let pointer = name()?;
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(refuse(
                    "invalidValue",
                    "name must be a JSON pointer such as /order/type".into(),
                ));
            }
            let text = value()?;
            // A value that is not JSON text is a string.
            let equals = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            Ok(Condition::Data { pointer, equals })
        }
        ("source" | "flowSelector" | "sender" | "header" | "data", _) => Err(wrong_match()),
        (other, _) => Err(refuse(
            "invalidValue",
            format!(
                "condition type {other:?} is not one Sluice has: source, flowSelector, sender, \
                 header or data"
            ),
        )),
    }
}

/// Checks that a condition names only the account's own things.
pub(crate) fn check_owned(
    state: &ApiState,
    account_id: u64,
    condition: &Condition,
    field: &str,
) -> Result<Option<FieldError>, ApiError> {
    if let Condition::Source { source_id } = condition
        && state
            .store
            .source(*source_id)?
            .is_none_or(|source| source.account_id != account_id)
    {
        return Ok(Some(FieldError {
            code: "unknownSource".into(),
            default_message: "this account has no source with this id".into(),
            field: Some(field.into()),
            object_name: Some("flowCondition".into()),
            rejected_value: Some(json!(source_id.to_string())),
        }));
    }
    Ok(None)
}

/// Flowmailer's `ObjectDescription`: `{id, description}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ObjectDescription)]
pub struct Described {
    #[serde(deserialize_with = "flexible_id")]
    id: u64,
    #[serde(default)]
    description: Option<String>,
}

/// Flowmailer's `FlowStepArchive`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention: Option<String>,
    /// Sluice's archive step always makes the online link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    online_link: Option<bool>,
}

/// A step as the API shows and takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = FlowStep)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepView {
    /// Flowmailer's step type (see [`flowmailer_step_type`]): always one of its SDK's
    /// `FlowStepType` values, so a stock client reads every flow.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    /// Accepted and ignored: a step is named by its place in the flow.
    #[serde(default, skip_serializing)]
    id: Option<serde::de::IgnoredAny>,
    /// The sha256 of an uploaded plugin, or the name of an operator's or built-in plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Value>,
    /// Run the step only when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled_when: Option<ConditionView>,
    /// A `template` step's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<Described>,
    /// An `archive` step's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archive: Option<ArchiveSettings>,
}

/// A flow as the API shows and takes it (Flowmailer's `Flow`, with Sluice's `expiryHours`).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Flow)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowView {
    /// Shown; ignored when given (the path names the flow).
    #[serde(default, deserialize_with = "ignored_id")]
    id: u64,
    description: String,
    #[serde(default)]
    steps: Vec<StepView>,
    /// Hours a message may keep failing temporarily before it soft-bounces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiry_hours: Option<u64>,
    /// Flowmailer's flow template; Sluice has none and ignores it.
    #[serde(default, skip_serializing, rename = "templateId")]
    _template_id: Option<serde::de::IgnoredAny>,
}

/// Reads and drops an id a client sends back with a flow.
fn ignored_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    <serde::de::IgnoredAny as Deserialize>::deserialize(deserializer)?;
    Ok(0)
}

/// The Flowmailer step type a stored step is shown with. Flowmailer's SDK reads `type` into
/// its closed `FlowStepType` enum, so every step gets one of its values:
///
/// | Sluice plugin | `type` | why |
/// |---|---|---|
/// | `template` | `template` | the same job |
/// | `archive` | `archive` | the same job |
/// | `tracking` | `openTracking`, or `clickTracking` when it tracks no opens | the same job |
/// | `dkim` | `selectSenderIdentity` | Flowmailer signs as the sender identity this step picks; Sluice's step signs with the account's identity of the From domain |
/// | any other | `externalData` | processing by code outside Flowmailer's built-ins; Flowmailer's step of that kind (its URL settings stay empty) |
///
/// The plugin itself is in the extension members `plugin` and `config`, which a write takes
/// back.
pub(crate) fn flowmailer_step_type(plugin: &str, config: &serde_json::Value) -> &'static str {
    match plugin {
        "template" => "template",
        "archive" => "archive",
        "tracking" if config.get("opens").and_then(|v| v.as_bool()) == Some(false) => {
            "clickTracking"
        }
        "tracking" => "openTracking",
        "dkim" => "selectSenderIdentity",
        _ => "externalData",
    }
}

/// The step type Sluice answered before every step had a Flowmailer type; still taken back.
const LEGACY_PLUGIN_TYPE: &str = "plugin";

/// A stored step as the API shows it.
pub(crate) fn step_view(
    state: &ApiState,
    account_id: u64,
    step: &Flowstep,
) -> Result<StepView, ApiError> {
    let mut view = StepView {
        kind: Some(flowmailer_step_type(&step.plugin, &step.config).into()),
        id: None,
        plugin: Some(step.plugin.clone()),
        config: Some(step.config.clone()),
        enabled_when: step
            .enabled_when
            .as_ref()
            .and_then(|condition| condition_views(condition).into_iter().next()),
        template: None,
        archive: None,
    };
    match step.plugin.as_str() {
        "template" => {
            if let Some(name) = step.config.get("template").and_then(|name| name.as_str())
                && let Some(template) = state.store.template_named(account_id, name)?
            {
                view.template = Some(Described {
                    id: template.id,
                    description: Some(template.name),
                });
            }
        }
        "archive" => {
            view.archive = Some(ArchiveSettings {
                retention: Some(
                    step.config
                        .get("retention")
                        .and_then(|retention| retention.as_str())
                        .unwrap_or("P3M")
                        .to_string(),
                ),
                online_link: Some(true),
            });
        }
        _ => {}
    }
    Ok(view)
}

/// A step as given, as the plugin and configuration to store: Sluice's `plugin` and `config`
/// when given, else the built-in that does the Flowmailer step type's job.
fn step_input(
    state: &ApiState,
    account_id: u64,
    step: StepView,
    field: &str,
) -> Result<(String, serde_json::Value, Option<ConditionView>), Box<FieldError>> {
    let refuse = |code: &str, message: String| {
        Box::new(FieldError {
            code: code.into(),
            default_message: message,
            field: Some(field.into()),
            object_name: Some("flowStep".into()),
            rejected_value: step.kind.clone().map(Into::into),
        })
    };
    if let Some(plugin) = step.plugin {
        let config = step.config.unwrap_or_else(|| json!({}));
        // A type beside the plugin must be the one a read shows for it: a client that changed
        // the type meant another step, and is told so rather than silently given this one.
        let shown = flowmailer_step_type(&plugin, &config);
        if let Some(kind) = step.kind.as_deref()
            && kind != shown
            && kind != LEGACY_PLUGIN_TYPE
        {
            return Err(refuse(
                "invalidValue",
                format!(
                    "type {kind:?} does not fit plugin {plugin:?}, shown as {shown:?}: give the \
                     type a read answers, or leave out plugin and config to choose a built-in \
                     by its Flowmailer type"
                ),
            ));
        }
        return Ok((plugin, config, step.enabled_when));
    }
    let (plugin, config) = match step.kind.as_deref() {
        Some("template") => {
            let described = step
                .template
                .as_ref()
                .ok_or_else(|| refuse("required", "a template step names its template".into()))?;
            let template = state
                .store
                .template(described.id)
                .ok()
                .flatten()
                .filter(|template| template.account_id == account_id)
                .ok_or_else(|| {
                    refuse(
                        "unknownTemplate",
                        "this account has no template with this id".into(),
                    )
                })?;
            ("template", json!({"template": template.name}))
        }
        Some("archive") => {
            let retention = step
                .archive
                .as_ref()
                .and_then(|archive| archive.retention.clone())
                .unwrap_or_else(|| "P3M".into());
            ("archive", json!({"retention": retention}))
        }
        Some("openTracking") => ("tracking", json!({})),
        Some("clickTracking") => ("tracking", json!({"opens": false})),
        Some("selectSenderIdentity") => ("dkim", json!({})),
        Some("externalData") => {
            return Err(refuse(
                "notSupported",
                "an externalData step is a Sluice plugin step here: name the plugin (and its \
                 config); Sluice does not call URLs from a flow (event flows call webhooks)"
                    .into(),
            ));
        }
        Some(other) => {
            return Err(refuse(
                "notSupported",
                format!(
                    "Flowmailer step type {other:?} has no Sluice built-in (Sluice has template, \
                     archive, openTracking, clickTracking and selectSenderIdentity, its DKIM \
                     signing); give a plugin instead"
                ),
            ));
        }
        None => {
            return Err(refuse("required", "a step has a type or a plugin".into()));
        }
    };
    Ok((plugin.to_string(), config, step.enabled_when))
}

/// A flow as the API shows it.
fn flow_view(state: &ApiState, flow: Flow) -> Result<FlowView, ApiError> {
    Ok(FlowView {
        id: flow.id,
        description: flow.name,
        steps: flow
            .steps
            .iter()
            .map(|step| step_view(state, flow.account_id, step))
            .collect::<Result<_, _>>()?,
        expiry_hours: flow.expiry_hours,
        _template_id: None,
    })
}

/// Checks that every step names a plugin this account may use and that the step accepts its
/// configuration: a bad configuration is refused here, not discovered when mail flows.
pub(crate) async fn checked_steps(
    state: &ApiState,
    account_id: u64,
    steps: Vec<StepView>,
) -> Result<Vec<Flowstep>, ApiError> {
    if steps.len() > Flow::MAX_STEPS {
        return Err(ApiError::field(
            "steps",
            "tooMany",
            format!("a flow has at most {} steps", Flow::MAX_STEPS),
            None,
        ));
    }
    let mut errors = Vec::new();
    let mut checked = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        let field = format!("steps[{index}]");
        let (plugin, config, enabled_when) = match step_input(state, account_id, step, &field) {
            Ok(step) => step,
            Err(error) => {
                errors.push(*error);
                continue;
            }
        };
        let enabled_when = match enabled_when {
            Some(view) => match condition_from(&view, &format!("{field}.enabledWhen")) {
                Ok(condition) => Some(condition),
                Err(error) => {
                    errors.push(*error);
                    None
                }
            },
            None => None,
        };
        let usable =
            state.plugins.get(&plugin).is_some() || state.store.owns_plugin(account_id, &plugin)?;
        if !usable {
            errors.push(FieldError {
                code: "unknownPlugin".into(),
                default_message:
                    "no plugin of this account or the operator has this sha256 or name".into(),
                field: Some(format!("{field}.plugin")),
                object_name: Some("flow".into()),
                rejected_value: Some(plugin.clone().into()),
            });
        } else if let Err(reason) = state
            .pipeline
            .check_step(account_id, &plugin, &config)
            .await
        {
            errors.push(FieldError {
                code: "invalidConfig".into(),
                default_message: reason,
                field: Some(format!("{field}.config")),
                object_name: Some("flow".into()),
                rejected_value: Some(config.clone()),
            });
        }
        checked.push(Flowstep {
            plugin,
            config,
            enabled_when,
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
#[utoipa::path(
    get,
    path = "/{account}/flows",
    tags = ["Flows"],
    responses((status = 200, description = "The account's flows", body = Vec<FlowView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<FlowView>>, ApiError> {
    caller.require(account_id)?;
    let flows = state.store.flows_of(account_id)?;
    Ok(Json(
        flows
            .into_iter()
            .map(|flow| flow_view(&state, flow))
            .collect::<Result<_, _>>()?,
    ))
}

/// `POST /{account}/flows`.
#[utoipa::path(
    post,
    path = "/{account}/flows",
    tags = ["Flows"],
    request_body = FlowView,
    responses((status = 201, description = "The flow", body = FlowView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let input: FlowView = parse_json(&body)?;
    check_expiry(input.expiry_hours)?;
    check_flow_count(&state, account_id)?;
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
    created(
        format!("/{account_id}/flows/{}", flow.id),
        flow_view(&state, flow)?,
    )
}

/// The account's flow with this id; another account's is answered like a missing one.
pub(super) fn own_flow(state: &ApiState, account_id: u64, flow_id: u64) -> Result<Flow, ApiError> {
    state
        .store
        .flow(flow_id)?
        .filter(|flow| flow.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("flow"))
}

/// `GET /{account}/flows/{id}`.
#[utoipa::path(
    get,
    path = "/{account}/flows/{flow}",
    tags = ["Flows"],
    responses((status = 200, description = "The flow", body = FlowView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<FlowView>, ApiError> {
    caller.require(account_id)?;
    Ok(Json(flow_view(
        &state,
        own_flow(&state, account_id, flow_id)?,
    )?))
}

/// `PUT /{account}/flows/{id}`.
#[utoipa::path(
    put,
    path = "/{account}/flows/{flow}",
    tags = ["Flows"],
    request_body = FlowView,
    responses((status = 200, description = "The flow", body = FlowView))
)]
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<FlowView>, ApiError> {
    caller.require(account_id)?;
    own_flow(&state, account_id, flow_id)?;
    let input: FlowView = parse_json(&body)?;
    check_expiry(input.expiry_hours)?;
    let flow = Flow {
        id: flow_id,
        account_id,
        name: input.description,
        steps: checked_steps(&state, account_id, input.steps).await?,
        expiry_hours: input.expiry_hours,
    };
    state.store.update_flow(flow.clone()).await?;
    Ok(Json(flow_view(&state, flow)?))
}

/// One flow rule (Flowmailer's `FlowRuleItem`).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = FlowRuleItem)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleItem {
    flow: Described,
    #[serde(default)]
    conditions: Vec<ConditionView>,
}

/// One rule in Sluice's earlier shape, for `PUT` with `{rules, defaultFlowId}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleById {
    #[serde(deserialize_with = "flexible_id")]
    flow_id: u64,
    #[serde(default)]
    conditions: Vec<ConditionView>,
}

/// The body of `PUT /{account}/flow_rules`: Flowmailer's list, whose last rule has no
/// conditions and names the default flow, or Sluice's `{rules, defaultFlowId}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum RulesInput {
    /// Flowmailer's list.
    List(Vec<RuleItem>),
    /// Sluice's object.
    Routing {
        /// Tried in order.
        #[serde(default)]
        rules: Vec<RuleById>,
        /// Where a message goes when no rule matches.
        #[serde(rename = "defaultFlowId", deserialize_with = "flexible_id")]
        default_flow_id: u64,
    },
}

/// The account's rules as Flowmailer lists them: in order, the default flow last with no
/// conditions.
fn rule_items(state: &ApiState, routing: &Routing) -> Result<Vec<RuleItem>, ApiError> {
    let describe = |flow_id: u64| -> Result<Described, ApiError> {
        Ok(Described {
            id: flow_id,
            description: state.store.flow(flow_id)?.map(|flow| flow.name),
        })
    };
    let mut items = Vec::new();
    for rule in &routing.rules {
        items.push(RuleItem {
            flow: describe(rule.flow_id)?,
            conditions: rule.conditions.iter().flat_map(condition_views).collect(),
        });
    }
    items.push(RuleItem {
        flow: describe(routing.default_flow_id)?,
        conditions: Vec::new(),
    });
    Ok(items)
}

/// `GET /{account}/flow_rules`.
#[utoipa::path(
    get,
    path = "/{account}/flow_rules",
    tags = ["Flows"],
    responses((status = 200, description = "The rules in order, the default flow last", body = Vec<RuleItem>))
)]
pub async fn get_rules(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<RuleItem>>, ApiError> {
    caller.require(account_id)?;
    let routing = state
        .store
        .routing(account_id)?
        .ok_or_else(|| ApiError::not_found("flow rules"))?;
    Ok(Json(rule_items(&state, &routing)?))
}

/// `PUT /{account}/flow_rules`: replaces the rules; every flow and source they name must be the
/// account's own. Answers the rules as `GET` shows them.
#[utoipa::path(
    put,
    path = "/{account}/flow_rules",
    tags = ["Flows"],
    request_body = RulesInput,
    responses((status = 200, description = "The rules in order, the default flow last", body = Vec<RuleItem>), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn put_rules(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Vec<RuleItem>>, ApiError> {
    caller.require(account_id)?;
    let (rules, default_flow_id): (Vec<(u64, Vec<ConditionView>)>, u64) =
        match parse_json::<RulesInput>(&body)? {
            RulesInput::List(mut items) => {
                let last = items.pop().ok_or_else(|| {
                    ApiError::field(
                        "flowRules",
                        "required",
                        "the list ends with the default flow's rule",
                        None,
                    )
                })?;
                if !last.conditions.is_empty() {
                    return Err(ApiError::field(
                        "flowRules",
                        "invalidValue",
                        "the last rule names the default flow and has no conditions",
                        None,
                    ));
                }
                let rules = items
                    .into_iter()
                    .map(|item| (item.flow.id, item.conditions))
                    .collect();
                (rules, last.flow.id)
            }
            RulesInput::Routing {
                rules,
                default_flow_id,
            } => (
                rules
                    .into_iter()
                    .map(|rule| (rule.flow_id, rule.conditions))
                    .collect(),
                default_flow_id,
            ),
        };
    if rules.len() > MAX_RULES {
        return Err(ApiError::field(
            "flowRules",
            "tooMany",
            format!("an account has at most {MAX_RULES} flow rules"),
            None,
        ));
    }
    let mut errors = Vec::new();
    let mut check_flow = |field: String, flow_id: u64| {
        if own_flow(&state, account_id, flow_id).is_err() {
            errors.push(FieldError {
                code: "unknownFlow".into(),
                default_message: "this account has no flow with this id".into(),
                field: Some(field),
                object_name: Some("flowRules".into()),
                rejected_value: Some(flow_id.to_string().into()),
            });
        }
    };
    check_flow("defaultFlow".into(), default_flow_id);
    for (index, (flow_id, _)) in rules.iter().enumerate() {
        check_flow(format!("[{index}].flow.id"), *flow_id);
    }
    let mut routing = Routing {
        rules: Vec::new(),
        default_flow_id,
    };
    for (index, (flow_id, views)) in rules.into_iter().enumerate() {
        if views.len() > MAX_CONDITIONS {
            errors.push(FieldError {
                code: "tooMany".into(),
                default_message: format!("a rule has at most {MAX_CONDITIONS} conditions"),
                field: Some(format!("[{index}].conditions")),
                object_name: Some("flowRules".into()),
                rejected_value: None,
            });
            continue;
        }
        let mut conditions = Vec::new();
        for (position, view) in views.iter().enumerate() {
            let field = format!("[{index}].conditions[{position}]");
            match condition_from(view, &field) {
                Ok(condition) => {
                    if let Some(error) = check_owned(&state, account_id, &condition, &field)? {
                        errors.push(error);
                    }
                    conditions.push(condition);
                }
                Err(error) => errors.push(*error),
            }
        }
        routing.rules.push(FlowRule {
            flow_id,
            conditions,
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    state.store.set_routing(account_id, routing.clone()).await?;
    Ok(Json(rule_items(&state, &routing)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_reads_back_as_it_was_written() {
        let conditions = [
            Condition::Source { source_id: 7 },
            Condition::FlowSelector {
                equals: "invoice".into(),
            },
            Condition::Sender {
                pattern: "*@shop.example".into(),
            },
            Condition::Header {
                name: "X-Kind".into(),
                equals: None,
                contains: None,
            },
            Condition::Header {
                name: "X-Kind".into(),
                equals: Some("a".into()),
                contains: None,
            },
            Condition::Header {
                name: "X-Kind".into(),
                equals: None,
                contains: Some("b".into()),
            },
            Condition::Data {
                pointer: "/order/total".into(),
                equals: json!(12),
            },
            Condition::Data {
                pointer: "/order/kind".into(),
                equals: json!("gift"),
            },
        ];
        for condition in conditions {
            let views = condition_views(&condition);
            assert_eq!(views.len(), 1, "{condition:?}");
            // Through JSON, as a client sends it back.
            let again: ConditionView =
                serde_json::from_value(serde_json::to_value(&views[0]).unwrap()).unwrap();
            assert_eq!(condition_from(&again, "c").unwrap(), condition);
        }
        let both = Condition::Header {
            name: "X".into(),
            equals: Some("a".into()),
            contains: Some("b".into()),
        };
        assert_eq!(condition_views(&both).len(), 2);
    }

    #[test]
    fn conditions_sluice_cannot_evaluate_are_refused_by_name() {
        let refused = |value: serde_json::Value| {
            let view: ConditionView = serde_json::from_value(value).unwrap();
            condition_from(&view, "c").unwrap_err().default_message
        };
        assert!(refused(json!({"type": "expression", "expression": "x"})).contains("expression"));
        assert!(refused(json!({"type": "recipient", "value": "x"})).contains("recipient"));
        assert!(
            refused(json!({"type": "sender", "matchType": "regex", "value": "x"}))
                .contains("regex")
        );
        assert!(refused(json!({"type": "source", "value": "seven"})).contains("source"));
    }
}
