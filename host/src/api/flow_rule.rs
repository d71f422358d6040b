//! One flow's rule (`/{account}/flows/{id}/rule`), as Flowmailer's `FlowRuleSimple`:
//! `{flowId, sourceId, flowSelector, sender, headers: [{name, value}], dataExpressions:
//! [{expression, value}]}`, all of which must hold.
//!
//! Sluice keeps an account's rules as one ordered list (`/flow_rules`); a flow's rule is the
//! list's rule for that flow. Writing it replaces the flow's rule where it stood (a new one
//! goes after the others, before the default flow); writing one without conditions removes it,
//! since a rule without conditions would take every message. A data expression is a JSON
//! pointer into the submitted data (`/order/type`): Sluice has no expression language.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::flows::{check_owned, own_flow};
use super::messages::parse_json;
use super::representation::flexible_id;
use crate::flow::rules::{Condition, FlowRule, Routing};
use crate::store::StoreError;

/// Times a flow's rule is written over freshly read rules before the caller is asked to
/// send it again.
const ROUTING_ATTEMPTS: usize = 5;

/// A header that must have this value (Flowmailer's `Header`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

/// A value of the submitted data (Flowmailer's `DataExpression`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataExpression {
    /// A JSON pointer into the submitted data.
    expression: String,
    /// The value as JSON text, or a plain string.
    value: String,
}

/// Flowmailer's `FlowRuleSimple`.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowRuleSimple {
    /// Shown; the path names the flow, so a different one is refused.
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    flow_id: Option<u64>,
    #[serde(
        default,
        deserialize_with = "optional_id",
        skip_serializing_if = "Option::is_none"
    )]
    source_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    data_expressions: Vec<DataExpression>,
}

/// An id given as a string or a number, or not at all.
fn optional_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    flexible_id(deserializer).map(Some)
}

/// The simple form of a rule's conditions, or the first condition it cannot show.
fn simple_of(flow_id: u64, conditions: &[Condition]) -> Result<FlowRuleSimple, &Condition> {
    let mut simple = FlowRuleSimple {
        flow_id: Some(flow_id),
        ..FlowRuleSimple::default()
    };
    for condition in conditions {
        match condition {
            Condition::Source { source_id } if simple.source_id.is_none() => {
                simple.source_id = Some(*source_id);
            }
            Condition::FlowSelector { equals } if simple.flow_selector.is_none() => {
                simple.flow_selector = Some(equals.clone());
            }
            Condition::Sender { pattern } if simple.sender.is_none() => {
                simple.sender = Some(pattern.clone());
            }
            Condition::Header {
                name,
                equals,
                contains: None,
            } => simple.headers.push(HeaderMatch {
                name: name.clone(),
                value: equals.clone(),
            }),
            Condition::Data { pointer, equals } => simple.data_expressions.push(DataExpression {
                expression: pointer.clone(),
                value: match equals {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                },
            }),
            other => return Err(other),
        }
    }
    Ok(simple)
}

/// The conditions of a simple rule, or the errors of the fields that do not make one.
fn conditions_of(simple: FlowRuleSimple) -> Result<Vec<Condition>, Vec<FieldError>> {
    let mut conditions = Vec::new();
    let mut errors = Vec::new();
    if let Some(source_id) = simple.source_id {
        conditions.push(Condition::Source { source_id });
    }
    if let Some(equals) = simple.flow_selector.filter(|text| !text.is_empty()) {
        conditions.push(Condition::FlowSelector { equals });
    }
    if let Some(pattern) = simple.sender.filter(|text| !text.is_empty()) {
        conditions.push(Condition::Sender { pattern });
    }
    for (index, header) in simple.headers.into_iter().enumerate() {
        if header.name.trim().is_empty() {
            errors.push(FieldError {
                code: "required".into(),
                default_message: "a header condition names its header".into(),
                field: Some(format!("headers[{index}].name")),
                object_name: Some("flowRule".into()),
                rejected_value: None,
            });
            continue;
        }
        conditions.push(Condition::Header {
            name: header.name,
            equals: header.value,
            contains: None,
        });
    }
    for (index, data) in simple.data_expressions.into_iter().enumerate() {
        if !data.expression.starts_with('/') {
            errors.push(FieldError {
                code: "notSupported".into(),
                default_message: "Sluice has no expression language: give a JSON pointer into \
                                  the submitted data, such as /order/type"
                    .into(),
                field: Some(format!("dataExpressions[{index}].expression")),
                object_name: Some("flowRule".into()),
                rejected_value: Some(data.expression.into()),
            });
            continue;
        }
        // A value that is not JSON text is a string, as in the rules' data conditions.
        let equals =
            serde_json::from_str(&data.value).unwrap_or(serde_json::Value::String(data.value));
        conditions.push(Condition::Data {
            pointer: data.expression,
            equals,
        });
    }
    match errors.is_empty() {
        true => Ok(conditions),
        false => Err(errors),
    }
}

fn routing_of(state: &ApiState, account_id: u64) -> Result<Routing, ApiError> {
    state
        .store
        .routing(account_id)?
        .ok_or_else(|| ApiError::not_found("flow rules"))
}

/// `GET /{account}/flows/{id}/rule`: the flow's rule; only `flowId` when it has none.
#[utoipa::path(
    get,
    path = "/{account}/flows/{flow}/rule",
    tags = ["Flows"],
    responses((status = 200, description = "The flow's rule", body = FlowRuleSimple), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
) -> Result<Json<FlowRuleSimple>, ApiError> {
    caller.require(account_id)?;
    own_flow(&state, account_id, flow_id)?;
    let routing = routing_of(&state, account_id)?;
    let mut rules = routing.rules.iter().filter(|rule| rule.flow_id == flow_id);
    let (Some(rule), None) = (rules.next(), rules.next()) else {
        let has_none = routing.rules.iter().all(|rule| rule.flow_id != flow_id);
        return match has_none {
            true => Ok(Json(FlowRuleSimple {
                flow_id: Some(flow_id),
                ..FlowRuleSimple::default()
            })),
            false => Err(not_simple(
                "this flow has several rules: read them at /flow_rules",
            )),
        };
    };
    simple_of(flow_id, &rule.conditions)
        .map(Json)
        .map_err(|condition| {
            not_simple(&format!(
                "this flow's rule has a condition the simple form cannot show \
                 ({condition:?}): read it at /flow_rules"
            ))
        })
}

/// 409: the flow's rules are more than `FlowRuleSimple` can hold.
fn not_simple(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "notSimple", message)
}

/// `PUT /{account}/flows/{id}/rule`: replaces the flow's rule where it stood; a rule without
/// conditions removes it. Answers the rule as `GET` shows it.
#[utoipa::path(
    put,
    path = "/{account}/flows/{flow}/rule",
    tags = ["Flows"],
    request_body = FlowRuleSimple,
    responses((status = 200, description = "The flow's rule", body = FlowRuleSimple), (status = 409, description = "In conflict with what the account has: allErrors says what"))
)]
pub async fn put(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<FlowRuleSimple>, ApiError> {
    caller.require(account_id)?;
    own_flow(&state, account_id, flow_id)?;
    let simple: FlowRuleSimple = parse_json(&body)?;
    if simple.flow_id.is_some_and(|given| given != flow_id) {
        return Err(ApiError::field(
            "flowId",
            "invalidValue",
            "the rule of this flow names another flow",
            simple.flow_id.map(|id| id.to_string().into()),
        ));
    }
    let conditions = conditions_of(simple).map_err(ApiError::fields)?;
    let mut errors = Vec::new();
    for condition in &conditions {
        if let Some(error) = check_owned(&state, account_id, condition, "sourceId")? {
            errors.push(error);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    // Conditions made from the simple form always read back as it.
    let written = simple_of(flow_id, &conditions)
        .map_err(|condition| ApiError::internal(format!("not simple: {condition:?}")))?;
    // Only this flow's rule changes: written over the rules as they were read, and read
    // again when another change came between, so a rule written beside it is not lost.
    for _ in 0..ROUTING_ATTEMPTS {
        let read = state.store.routing(account_id)?;
        let mut routing = read
            .clone()
            .ok_or_else(|| ApiError::not_found("flow rules"))?;
        let place = routing
            .rules
            .iter()
            .position(|rule| rule.flow_id == flow_id)
            .unwrap_or(routing.rules.len());
        routing.rules.retain(|rule| rule.flow_id != flow_id);
        if !conditions.is_empty() {
            routing.rules.insert(
                place.min(routing.rules.len()),
                FlowRule {
                    flow_id,
                    conditions: conditions.clone(),
                },
            );
        }
        match state
            .store
            .set_routing_unchanged(account_id, routing, read)
            .await
        {
            Ok(()) => return Ok(Json(written)),
            Err(StoreError::Changed(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "changed",
        "the flow rules kept changing while this rule was written; send it again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_rule_reads_back_as_it_was_written() {
        let written: FlowRuleSimple = serde_json::from_value(serde_json::json!({
            "flowId": "7",
            "sourceId": "2",
            "flowSelector": "invoice",
            "sender": "*@shop.example",
            "headers": [{"name": "X-Kind", "value": "order"}, {"name": "X-Flag"}],
            "dataExpressions": [
                {"expression": "/order/type", "value": "gift"},
                {"expression": "/order/count", "value": "3"},
            ],
        }))
        .unwrap();
        let expected = serde_json::to_value(&written).unwrap();
        let conditions = conditions_of(written).unwrap();
        assert_eq!(conditions.len(), 7);
        let read = simple_of(7, &conditions).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), expected);
    }

    #[test]
    fn what_the_simple_form_cannot_hold_is_named() {
        let contains = Condition::Header {
            name: "Subject".into(),
            equals: None,
            contains: Some("sale".into()),
        };
        assert_eq!(
            simple_of(1, std::slice::from_ref(&contains)),
            Err(&contains)
        );
        let two_sources = [
            Condition::Source { source_id: 1 },
            Condition::Source { source_id: 2 },
        ];
        assert_eq!(simple_of(1, &two_sources), Err(&two_sources[1]));
        let expression: FlowRuleSimple = serde_json::from_value(serde_json::json!({
            "dataExpressions": [{"expression": "${data.order.type}", "value": "gift"}],
        }))
        .unwrap();
        let errors = conditions_of(expression).unwrap_err();
        assert_eq!(errors[0].code, "notSupported");
    }
}
