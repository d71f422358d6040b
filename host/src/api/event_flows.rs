//! Flowmailer's event flows and event flow rules (`/{account}/event_flows…`,
//! `/{account}/event_flow_rules…`), served by Sluice's webhooks: one store holds both, so an
//! event flow is a webhook endpoint (the same id, listed at `/webhooks` too, called signed,
//! queued, retried and dead-lettered as every endpoint is) and every endpoint is an event flow.
//!
//! | Flowmailer | Sluice |
//! |---|---|
//! | event flow `description` | the endpoint's description |
//! | its one step, `type: "externalData"` with `externalData.urlTemplate` | the endpoint's URL |
//! | its rule's `eventType` | the endpoint's one event type (none: every event) |
//! | `secret` (an extension) | the key of `Sluice-Signature` |
//!
//! Flowmailer's SDK has no step type named for webhooks; `externalData`, the step that calls a
//! URL, is the one that says what Sluice does. Whatever else Flowmailer's event flows can do
//! (other step types, parent flows, a call's template body or headers, rules on the message's
//! flow, headers, data or links) Sluice cannot, and it is refused by name (`notSupported`)
//! rather than stored and ignored.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::messages::parse_json;
use super::representation::created;
use super::webhooks::{WebhookInput, event_kinds, make_webhook, own_endpoint, replace_webhook};
use crate::store::{EventKind, WebhookEndpoint};

/// The largest body an event flow or its rule is sent in: a URL of 2048 bytes and a
/// description of 1024 with room to spare.
pub(super) const MAX_EVENT_FLOW_BYTES: usize = 64 << 10;

/// The one step type an event flow may have: Flowmailer's step that calls a URL.
const WEBHOOK_STEP: &str = "externalData";

/// The URL call of an event flow's step (Flowmailer's `FlowStepExternalData`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCall {
    url_template: String,
    request_method: &'static str,
}

/// An event flow's step (Flowmailer's `FlowStep`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventFlowStep {
    #[serde(rename = "type")]
    kind: &'static str,
    external_data: WebhookCall,
}

/// An event flow (Flowmailer's `EventFlow`), with Sluice's signing key beside it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EventFlow)]
#[serde(rename_all = "camelCase")]
pub struct EventFlowView {
    id: u64,
    description: String,
    steps: Vec<EventFlowStep>,
    /// Extension: the HMAC-SHA256 key of `Sluice-Signature` (as `/webhooks` shows it).
    secret: String,
}

fn event_flow_view(endpoint: WebhookEndpoint) -> EventFlowView {
    EventFlowView {
        id: endpoint.id,
        description: endpoint.description.unwrap_or_default(),
        steps: vec![EventFlowStep {
            kind: WEBHOOK_STEP,
            external_data: WebhookCall {
                url_template: endpoint.url,
                request_method: "POST",
            },
        }],
        secret: endpoint.secret,
    }
}

/// What creating or replacing an event flow takes: Flowmailer's `EventFlow` as its SDK writes
/// it, and what [`EventFlowView`] answers.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFlowInput {
    /// Accepted and ignored: the path names the event flow.
    #[serde(default, rename = "id")]
    #[schema(value_type = Option<String>)]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parent_id: Option<Value>,
    #[serde(default)]
    steps: Option<Vec<Value>>,
    /// Taken back as `GET` shows it; Sluice makes the key, so another one is refused.
    #[serde(default)]
    secret: Option<String>,
}

/// A refusal of something Flowmailer's event flows can do and Sluice's cannot.
fn not_supported(field: &str, message: impl Into<String>, rejected: Option<Value>) -> FieldError {
    FieldError {
        code: "notSupported".into(),
        default_message: message.into(),
        field: Some(field.into()),
        object_name: None,
        rejected_value: rejected,
    }
}

/// Whether a member the SDK may send says nothing: absent, null, false, empty.
fn says_nothing(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// The webhook URL of an event flow's one step; every setting Sluice cannot honour is named.
fn webhook_url(steps: &[Value]) -> Result<String, ApiError> {
    let mut errors = Vec::new();
    let mut url = None;
    if steps.is_empty() {
        return Err(ApiError::field(
            "steps",
            "required",
            "an event flow calls one webhook: give one step of type externalData with its \
             externalData.urlTemplate",
            None,
        ));
    }
    for (index, step) in steps.iter().enumerate() {
        let at = format!("steps[{index}]");
        if index > 0 {
            errors.push(not_supported(
                &at,
                "a Sluice event flow has one step, the webhook it calls; make another event \
                 flow for another URL",
                None,
            ));
            break;
        }
        let Some(members) = step.as_object() else {
            errors.push(not_supported(
                &at,
                "a step is an object",
                Some(step.clone()),
            ));
            break;
        };
        match members.get("type").and_then(Value::as_str) {
            Some(WEBHOOK_STEP) => {}
            other => {
                errors.push(not_supported(
                    &format!("{at}.type"),
                    "a Sluice event flow calls a webhook: its step is of type externalData \
                     (POST to externalData.urlTemplate); no other step type is supported",
                    other.map(Value::from),
                ));
                continue;
            }
        }
        for (key, value) in members {
            if !matches!(key.as_str(), "type" | "id" | "externalData") && !says_nothing(value) {
                errors.push(not_supported(
                    &format!("{at}.{key}"),
                    format!("Sluice's webhook step has no {key}"),
                    Some(value.clone()),
                ));
            }
        }
        match members
            .get("externalData")
            .map(|call| (call, call.as_object()))
        {
            Some((_, Some(call))) => url = webhook_call_url(call, &at, &mut errors),
            other => errors.push(FieldError {
                code: "required".into(),
                default_message: "the webhook's URL, as externalData.urlTemplate".into(),
                field: Some(format!("{at}.externalData")),
                object_name: None,
                rejected_value: other.map(|(value, _)| value.clone()),
            }),
        }
    }
    match url {
        Some(url) if errors.is_empty() => Ok(url),
        _ => Err(ApiError::fields(errors)),
    }
}

/// The URL of a step's `externalData`; what Sluice's call cannot do is added to `errors`.
fn webhook_call_url(
    call: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let at = format!("{at}.externalData");
    for (key, value) in call {
        match key.as_str() {
            "requestMethod" if !value.is_null() && value.as_str() != Some("POST") => {
                errors.push(not_supported(
                    &format!("{at}.requestMethod"),
                    "Sluice POSTs each event to a webhook",
                    Some(value.clone()),
                ));
            }
            "urlTemplate" | "requestMethod" => {}
            other if !says_nothing(value) => errors.push(not_supported(
                &format!("{at}.{other}"),
                "Sluice sends its own signed event body to a webhook, with its own headers, \
                 and keeps nothing of the answer but its status",
                Some(value.clone()),
            )),
            _ => {}
        }
    }
    let Some(url) = call.get("urlTemplate").and_then(Value::as_str) else {
        errors.push(FieldError {
            code: "required".into(),
            default_message: "the webhook's URL".into(),
            field: Some(format!("{at}.urlTemplate")),
            object_name: None,
            rejected_value: call.get("urlTemplate").cloned(),
        });
        return None;
    };
    // A Freemarker placeholder would be called as written, braces and all.
    if url.contains("${") || url.contains("{{") {
        errors.push(not_supported(
            &format!("{at}.urlTemplate"),
            "Sluice calls the URL as written: it has no template variables",
            Some(url.into()),
        ));
        return None;
    }
    Some(url.to_string())
}

/// The field an event flow names the webhook URL with, for errors of the URL's check.
const URL_FIELD: &str = "steps[0].externalData.urlTemplate";

/// The input checked as far as it can be without the store: the webhook's URL and the
/// description. The URL itself is checked by the webhooks' own check.
fn checked_input(input: &EventFlowInput, secret: Option<&str>) -> Result<String, ApiError> {
    let mut errors = Vec::new();
    if let Some(parent) = input.parent_id.as_ref().filter(|id| !says_nothing(id)) {
        errors.push(not_supported(
            "parentId",
            "Sluice's event flows have no parents: each webhook takes the events its rule \
             selects",
            Some(parent.clone()),
        ));
    }
    if let Some(given) = input.secret.as_deref()
        && secret != Some(given)
    {
        errors.push(not_supported(
            "secret",
            "Sluice makes a webhook's signing key; a new one is made with PUT \
             /{account}/webhooks/{id} and rotateSecret",
            None,
        ));
    }
    let url = webhook_url(input.steps.as_deref().unwrap_or_default());
    match url {
        Ok(url) if errors.is_empty() => Ok(url),
        Ok(_) => Err(ApiError::fields(errors)),
        Err(error) => {
            errors.extend(error.errors().iter().cloned());
            Err(ApiError::fields(errors))
        }
    }
}

/// `GET /{account}/event_flows`: every webhook of the account, oldest first.
#[utoipa::path(
    get,
    path = "/{account}/event_flows",
    tags = ["Event flows"],
    responses((status = 200, description = "The event flows (the account's webhooks)", body = Vec<EventFlowView>))
)]
pub async fn list(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<EventFlowView>>, ApiError> {
    caller.require(account_id)?;
    let endpoints = state.store.webhooks_of(account_id)?;
    Ok(Json(endpoints.into_iter().map(event_flow_view).collect()))
}

/// `POST /{account}/event_flows`: a webhook; it takes every event until its rule says which.
#[utoipa::path(
    post,
    path = "/{account}/event_flows",
    tags = ["Event flows"],
    request_body = EventFlowInput,
    responses((status = 201, description = "The event flow", body = EventFlowView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn create(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(account_id)?;
    let input: EventFlowInput = parse_json(&body)?;
    let url = checked_input(&input, None)?;
    let webhook = WebhookInput::new(url, Vec::new(), input.description);
    let endpoint = make_webhook(&state, account_id, &webhook)
        .await
        .map_err(|error| error.renaming_field("url", URL_FIELD))?;
    created(
        format!("/{account_id}/event_flows/{}", endpoint.id),
        event_flow_view(endpoint),
    )
}

/// `GET /{account}/event_flows/{id}`.
#[utoipa::path(
    get,
    path = "/{account}/event_flows/{id}",
    tags = ["Event flows"],
    responses((status = 200, description = "The event flow", body = EventFlowView))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<EventFlowView>, ApiError> {
    caller.require(account_id)?;
    let endpoint = own_event_flow(&state, account_id, id)?;
    Ok(Json(event_flow_view(endpoint)))
}

/// The account's webhook with this id, named as an event flow when missing.
fn own_event_flow(state: &ApiState, account_id: u64, id: u64) -> Result<WebhookEndpoint, ApiError> {
    own_endpoint(state, account_id, id).map_err(|_| ApiError::not_found("event flow"))
}

/// `PUT /{account}/event_flows/{id}`: replaces the URL and description; its rule stays.
#[utoipa::path(
    put,
    path = "/{account}/event_flows/{id}",
    tags = ["Event flows"],
    request_body = EventFlowInput,
    responses((status = 200, description = "The event flow", body = EventFlowView))
)]
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<EventFlowView>, ApiError> {
    caller.require(account_id)?;
    let endpoint = own_event_flow(&state, account_id, id)?;
    let input: EventFlowInput = parse_json(&body)?;
    let url = checked_input(&input, Some(&endpoint.secret))?;
    let webhook = WebhookInput::new(url, Vec::new(), input.description);
    let endpoint = replace_webhook(&state, endpoint, &webhook, true)
        .await
        .map_err(|error| error.renaming_field("url", URL_FIELD))?;
    Ok(Json(event_flow_view(endpoint)))
}

/// `DELETE /{account}/event_flows/{id}`: the webhook, with its queued calls and dead letters.
#[utoipa::path(
    delete,
    path = "/{account}/event_flows/{id}",
    tags = ["Event flows"],
    responses((status = 204, description = "Done"))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(account_id)?;
    own_event_flow(&state, account_id, id)?;
    state.store.delete_webhook(account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn type_names(kinds: &[EventKind]) -> Vec<String> {
    kinds.iter().map(|kind| kind.as_str().to_string()).collect()
}

/// An event flow's rule as the SDK reads it (`EventFlowRuleSimple`): the event type it takes,
/// or none for every event.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EventFlowRuleSimple)]
#[serde(rename_all = "camelCase")]
pub struct EventFlowRuleView {
    event_flow_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<&'static str>,
}

/// An event flow's rule as the SDK writes it (`EventFlowRuleSimple`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFlowRuleInput {
    #[serde(default)]
    event_flow_id: Option<Value>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    message_flow_id: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    data_expressions: Option<Value>,
    #[serde(default)]
    link_name: Option<Value>,
    #[serde(default)]
    link_target: Option<Value>,
}

/// Flowmailer's names for event types Sluice names otherwise.
fn sluice_event_name(name: &str) -> &str {
    match name.trim() {
        "DISCARD" => "DISCARDED",
        "REPLY" => "AUTOREPLY",
        other => other,
    }
}

/// The event types a rule selects; what Sluice's webhooks cannot select on is named.
fn rule_event_types(rule: &EventFlowRuleInput, id: u64) -> Result<Vec<EventKind>, ApiError> {
    let mut errors = Vec::new();
    let given_id = rule.event_flow_id.as_ref().filter(|given| !given.is_null());
    let names_another = given_id.is_some_and(|given| match given {
        Value::String(text) => text.trim() != id.to_string(),
        Value::Number(number) => number.as_u64() != Some(id),
        _ => true,
    });
    if names_another {
        errors.push(FieldError {
            code: "invalidValue".into(),
            default_message: "the rule belongs to the event flow of the path".into(),
            field: Some("eventFlowId".into()),
            object_name: None,
            rejected_value: given_id.cloned(),
        });
    }
    let unsupported = [
        (
            "messageFlowId",
            &rule.message_flow_id,
            "a Sluice webhook takes the events of every flow's messages",
        ),
        (
            "headers",
            &rule.headers,
            "a Sluice webhook does not select events by the message's headers",
        ),
        (
            "dataExpressions",
            &rule.data_expressions,
            "a Sluice webhook does not select events by the message's data",
        ),
        (
            "linkName",
            &rule.link_name,
            "a Sluice webhook does not select click events by link",
        ),
        (
            "linkTarget",
            &rule.link_target,
            "a Sluice webhook does not select click events by link",
        ),
    ];
    for (field, value, message) in unsupported {
        if let Some(value) = value.as_ref().filter(|value| !says_nothing(value)) {
            errors.push(not_supported(field, message, Some(value.clone())));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    match rule.event_type.as_deref().map(str::trim) {
        None | Some("") => Ok(Vec::new()),
        Some("CUSTOM") => Err(ApiError::field(
            "eventType",
            "invalidEventType",
            "Sluice's own event types stand for CUSTOM: name one (REDIRECTED or DELAYED)",
            Some("CUSTOM".into()),
        )),
        Some(name) => event_kinds(&[sluice_event_name(name).to_string()], "eventType"),
    }
}

/// 409: a webhook made at `/webhooks` with several event types, which `EventFlowRuleSimple`
/// (one `eventType`) cannot show.
fn not_simple(id: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "notSimple",
        format!(
            "this webhook takes several event types, more than one eventType can show: see \
             GET /{{account}}/webhooks/{id} or /{{account}}/event_flow_rules"
        ),
    )
}

fn rule_view(endpoint: &WebhookEndpoint) -> Result<EventFlowRuleView, ApiError> {
    let event_type = match endpoint.event_types.as_slice() {
        [] => None,
        [kind] => Some(kind.as_str()),
        _ => return Err(not_simple(endpoint.id)),
    };
    Ok(EventFlowRuleView {
        event_flow_id: endpoint.id,
        event_type,
    })
}

/// `GET /{account}/event_flows/{id}/rule`.
#[utoipa::path(
    get,
    path = "/{account}/event_flows/{id}/rule",
    tags = ["Event flows"],
    responses((status = 200, description = "The rule", body = EventFlowRuleView), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn get_rule(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<EventFlowRuleView>, ApiError> {
    caller.require(account_id)?;
    let endpoint = own_event_flow(&state, account_id, id)?;
    Ok(Json(rule_view(&endpoint)?))
}

/// `PUT /{account}/event_flows/{id}/rule`: the event type the webhook takes from now on (none:
/// every event). Answers the rule as `GET` shows it.
#[utoipa::path(
    put,
    path = "/{account}/event_flows/{id}/rule",
    tags = ["Event flows"],
    request_body = EventFlowRuleInput,
    responses((status = 200, description = "The rule", body = EventFlowRuleView))
)]
pub async fn put_rule(
    State(state): State<ApiState>,
    Path((account_id, id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<EventFlowRuleView>, ApiError> {
    caller.require(account_id)?;
    own_event_flow(&state, account_id, id)?;
    let rule: EventFlowRuleInput = parse_json(&body)?;
    let event_types = rule_event_types(&rule, id)?;
    let updated_at = crate::store::now_millis();
    // Only the rule: the rest of the endpoint (its secret, rotated meanwhile perhaps) stays
    // as the store holds it.
    let endpoint = state
        .store
        .update_webhook(account_id, id, move |endpoint| {
            endpoint.event_types.clone_from(&event_types);
            endpoint.updated_at = updated_at;
        })
        .await?;
    Ok(Json(rule_view(&endpoint)?))
}

/// Flowmailer's `ObjectDescription` of an event flow.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventFlowReference {
    id: u64,
    description: String,
}

/// A condition of an event flow rule (Flowmailer's `FlowCondition`): the event's type.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeCondition {
    #[serde(rename = "type")]
    kind: &'static str,
    /// `equals` for one type; `oneOf` (an extension) for a webhook made at `/webhooks` with
    /// several, `value` then listing them with commas.
    match_type: &'static str,
    value: String,
}

/// One event flow rule (Flowmailer's `FlowRuleItem`, and `FlowRuleHierarchyItem` with its
/// `nodes`: Sluice's event flows have no parents, so the hierarchy is one level).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventFlowRuleItem {
    flow: EventFlowReference,
    conditions: Vec<EventTypeCondition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    nodes: Option<Vec<EventFlowRuleItem>>,
}

fn rule_item(endpoint: WebhookEndpoint, hierarchy: bool) -> EventFlowRuleItem {
    let names = type_names(&endpoint.event_types);
    let conditions = match names.len() {
        0 => Vec::new(),
        1 => vec![EventTypeCondition {
            kind: "eventType",
            match_type: "equals",
            value: names.join(","),
        }],
        _ => vec![EventTypeCondition {
            kind: "eventType",
            match_type: "oneOf",
            value: names.join(","),
        }],
    };
    EventFlowRuleItem {
        flow: EventFlowReference {
            id: endpoint.id,
            description: endpoint.description.unwrap_or_default(),
        },
        conditions,
        nodes: hierarchy.then(Vec::new),
    }
}

/// `GET /{account}/event_flow_rules`: each webhook with the event types it takes. Every
/// webhook whose rule holds gets the event (Sluice does not stop at the first).
#[utoipa::path(
    get,
    path = "/{account}/event_flow_rules",
    tags = ["Event flows"],
    responses((status = 200, description = "One rule per event flow", body = Vec<EventFlowRuleItem>))
)]
pub async fn list_rules(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<EventFlowRuleItem>>, ApiError> {
    caller.require(account_id)?;
    let endpoints = state.store.webhooks_of(account_id)?;
    Ok(Json(
        endpoints.into_iter().map(|e| rule_item(e, false)).collect(),
    ))
}

/// `GET /{account}/event_flow_rules/hierarchy`: as the list, each with no child rules.
#[utoipa::path(
    get,
    path = "/{account}/event_flow_rules/hierarchy",
    tags = ["Event flows"],
    responses((status = 200, description = "The rules, each with its (empty) nodes", body = Vec<EventFlowRuleItem>))
)]
pub async fn rule_hierarchy(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    caller: Caller,
) -> Result<Json<Vec<EventFlowRuleItem>>, ApiError> {
    caller.require(account_id)?;
    let endpoints = state.store.webhooks_of(account_id)?;
    Ok(Json(
        endpoints.into_iter().map(|e| rule_item(e, true)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(error: &ApiError) -> Vec<(String, String)> {
        error
            .errors()
            .iter()
            .map(|e| (e.field.clone().unwrap_or_default(), e.code.clone()))
            .collect()
    }

    #[test]
    fn one_webhook_step_gives_its_url_and_anything_else_is_named() {
        let step = json!({"type": "externalData", "externalData": {
            "urlTemplate": "https://hooks.example/in", "requestMethod": "POST",
            "requestHeaders": [], "fullResponseInVariable": false}});
        assert_eq!(
            webhook_url(std::slice::from_ref(&step)).unwrap(),
            "https://hooks.example/in"
        );

        let refused = webhook_url(&[
            json!({"type": "externalData", "to": "ops@example.net", "externalData": {
                "urlTemplate": "https://hooks.example/in", "requestMethod": "GET",
                "requestBodyTemplate": "${message}"}}),
            step.clone(),
        ])
        .unwrap_err();
        assert_eq!(
            fields(&refused),
            [
                ("steps[0].to".to_string(), "notSupported".to_string()),
                (
                    "steps[0].externalData.requestMethod".into(),
                    "notSupported".into()
                ),
                (
                    "steps[0].externalData.requestBodyTemplate".into(),
                    "notSupported".into()
                ),
                ("steps[1]".into(), "notSupported".into()),
            ]
        );

        let other_type = webhook_url(&[json!({"type": "archive"})]).unwrap_err();
        assert_eq!(
            fields(&other_type),
            [("steps[0].type".to_string(), "notSupported".to_string())]
        );
        let templated = webhook_url(&[json!({"type": "externalData",
            "externalData": {"urlTemplate": "https://x.example/${messageId}"}})])
        .unwrap_err();
        assert_eq!(
            fields(&templated),
            [(
                "steps[0].externalData.urlTemplate".to_string(),
                "notSupported".to_string()
            )]
        );
        assert_eq!(
            fields(&webhook_url(&[]).unwrap_err()),
            [("steps".to_string(), "required".to_string())]
        );
    }

    fn rule(value: Value) -> EventFlowRuleInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_rule_selects_one_event_type_and_names_what_it_cannot_select_on() {
        assert_eq!(
            rule_event_types(
                &rule(json!({"eventFlowId": "4", "eventType": "DELIVERED"})),
                4
            )
            .unwrap(),
            [EventKind::Delivered]
        );
        assert_eq!(
            rule_event_types(&rule(json!({"eventType": "DISCARD"})), 4).unwrap(),
            [EventKind::Discarded]
        );
        assert!(
            rule_event_types(&rule(json!({"headers": []})), 4)
                .unwrap()
                .is_empty()
        );
        let refused = rule_event_types(
            &rule(json!({"eventFlowId": 5, "messageFlowId": "2",
                "headers": [{"name": "X-Kind", "value": "order"}], "linkName": "buy"})),
            4,
        )
        .unwrap_err();
        assert_eq!(
            fields(&refused),
            [
                ("eventFlowId".to_string(), "invalidValue".to_string()),
                ("messageFlowId".into(), "notSupported".into()),
                ("headers".into(), "notSupported".into()),
                ("linkName".into(), "notSupported".into()),
            ]
        );
        for unknown in ["CUSTOM", "BOUNCED"] {
            let refused = rule_event_types(&rule(json!({"eventType": unknown})), 4).unwrap_err();
            assert_eq!(
                fields(&refused),
                [("eventType".to_string(), "invalidEventType".to_string())]
            );
        }
    }
}
