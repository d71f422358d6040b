//! The OpenAPI document of the API, served at `/openapi.json`, generated from the code: each
//! handler carries a `#[utoipa::path]` annotation (method, path, query parameters, request and
//! answer types) and is registered with `utoipa_axum::routes!`, which routes it and enters it in
//! the document in one call, so no route can exist without its entry. The models derive their
//! schemas from the types the API serialises. What every call has in common (the account's
//! bearer token, the error answers, paging, matrix parameters, identifiers written as strings)
//! is added here once, in [`finish`], rather than repeated on every handler.
//!
//! A new route needs: `#[utoipa::path(METHOD, path = "...", tags = [...], params(...),
//! request_body = T, responses((status = 200, body = T), ...))]` on its handler (the path
//! exactly as routed; `params` only for query types deriving `IntoParams` and [`ItemsRange`] on
//! a list, path parameters are described here by name in `path_parameter`; `extensions(("x-
//! matrix-parameters" = json!([...])))` for the matrix parameters it reads; a 409/422 it can
//! answer listed, without a body); `ToSchema` derived on its request and answer types (with
//! `#[schema(as = FlowmailerName)]`); and `.routes(routes!(module::handler, ...))` in
//! `api::documented_routes`, handlers of one path in one `routes!`. Sluice's own calls carry the
//! tag `Sluice extensions`; a Flowmailer call not served is one line of `unsupported_routes`.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use serde_json::{Value, json};

/// The tag of Sluice's own calls, which Flowmailer does not have; their operations also carry
/// `x-sluice-extension: true`.
pub const EXTENSION_TAG: &str = "Sluice extensions";

/// The tag of Flowmailer's calls that Sluice answers with 501.
pub const NOT_SUPPORTED_TAG: &str = "Not supported";

/// The finished document, built once when the router is and handed to [`document`] as a
/// request extension.
#[derive(Clone)]
pub struct Document(pub Arc<Value>);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tags = ["Sluice extensions"],
    responses((status = 200, description = "The OpenAPI document of this API", content_type = "application/json", body = Object))
)]
pub async fn document(Extension(document): Extension<Document>) -> Json<Value> {
    Json(document.0.as_ref().clone())
}

/// `routes` registered again at another path, with `from` replaced by `to` in its paths and
/// its operations tagged as Sluice's extension (Sluice's names beside Flowmailer's).
pub fn aliased<S>(
    routes: utoipa_axum::router::UtoipaMethodRouter<S>,
    from: &str,
    to: &str,
) -> utoipa_axum::router::UtoipaMethodRouter<S> {
    let (schemas, paths, method_router) = routes;
    let mut renamed = utoipa::openapi::path::Paths::new();
    for (path, mut item) in paths.paths {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            operation.tags = Some(vec![EXTENSION_TAG.to_string()]);
        }
        renamed.paths.insert(path.replacen(from, to, 1), item);
    }
    (schemas, renamed, method_router)
}

/// The `Range` header of a list call, as Flowmailer's clients send it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ItemsRange {
    /// `items=REFERENCE:COUNT`: COUNT items after a reference (`items=:COUNT` for the first
    /// page), as every Flowmailer SDK list call sends it; or `items=FIRST-LAST` by position. At
    /// most 1000 items a page. The answer's `Content-Range` says what the page holds and, while
    /// items follow, `Next-Range` is the `Range` to send for the next page.
    #[param(rename = "Range", example = "items=:100")]
    #[allow(
        dead_code,
        reason = "describes the header in the document; `paging` reads it"
    )]
    pub range: Option<String>,
}

/// What each path parameter of the API's templates is, by name.
fn path_parameter(name: &str) -> (Value, &'static str) {
    let integer = json!({"type": "integer", "format": "int64", "minimum": 0});
    let string = json!({"type": "string"});
    match name {
        "account" => (integer, "The account's id"),
        "id" => (
            string,
            "The object's id (a message id is a string, the others are numbers written as strings)",
        ),
        "flow" => (integer, "The flow's id"),
        "source" => (integer, "The source's id"),
        "client" => (string, "The API client id"),
        "plugin" => (string, "The plugin's sha256, or its name"),
        "address" => (string, "An email address"),
        "tag" => (string, "A message tag"),
        "domain" => (string, "The sender domain"),
        "dead_letter" => (integer, "The dead letter's id"),
        "user" => (string, "The SMTP username"),
        "step" => (string, "The archiving flow step's id"),
        "content" => (string, "The attachment's content id"),
        "token" => (string, "The signed token of the link"),
        other => panic!("path parameter {{{other}}} has no description in api::openapi"),
    }
}

/// What the matrix parameters (`/path;name=value`) mean, by name.
fn matrix_parameter(name: &str) -> &'static str {
    match name {
        "daterange" => {
            "FROM,TO in ISO 8601 (`2026-01-01T00:00:00Z,2026-02-01T00:00:00Z`): only what \
             falls within it"
        }
        "receivedrange" => "as daterange, by the time the event was received",
        "flow_ids" => "comma-separated flow ids: only these flows",
        "source_ids" => "comma-separated source ids: only these sources",
        "sortorder" => "ASC or DESC",
        "interval" => "seconds per sample; the date range holds at most 1000 samples",
        other => panic!("matrix parameter ;{other}= has no description in api::openapi"),
    }
}

/// The generated document completed with what every call has in common.
pub fn finish(generated: utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(&generated).expect("a document serialises");
    document["info"] = json!({
        "title": "Sluice API",
        "version": "1",
        "description": "Flowmailer's REST API v1, as Sluice answers it (docs/flowmailer-compatibility.md), \
                        and Sluice's own extensions (tag `Sluice extensions`, \
                        `x-sluice-extension: true`). Generated from the server's code.",
    });
    let components = document["components"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"] = json!({"oauth2": {
        "type": "oauth2",
        "description": "OAuth2 client credentials (RFC 6749 section 4.4) of an API credential; \
                        send the token as `Authorization: Bearer`",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {"api": "the account's API"}}},
    }});
    if let Some(schemas) = components["schemas"].as_object_mut() {
        schemas.values_mut().for_each(identifiers_as_strings);
    }
    document["components"] = components;
    document["tags"] = json!([
        {"name": EXTENSION_TAG, "description": "Sluice's own calls, which Flowmailer does not have"},
        {"name": NOT_SUPPORTED_TAG, "description": "Flowmailer's calls that Sluice answers with 501 notSupported, saying what to use instead"},
    ]);
    if let Some(paths) = document["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                complete_operation(path, method, operation);
            }
        }
    }
    document
}

/// One operation completed: its id, path parameters, the account's token and error answers,
/// paging headers, matrix parameters and extension mark.
fn complete_operation(path: &str, method: &str, operation: &mut Value) {
    operation["operationId"] = Value::String(operation_id(method, path));
    let declared: Vec<String> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|parameter| parameter["in"] == "path")
        .filter_map(|parameter| parameter["name"].as_str().map(str::to_string))
        .collect();
    let mut parameters: Vec<Value> = template_parameters(path)
        .filter(|name| !declared.iter().any(|given| given == name))
        .map(|name| {
            let (schema, description) = path_parameter(name);
            json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
        })
        .collect();
    parameters.extend(
        operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let paged = parameters
        .iter()
        .any(|parameter| parameter["in"] == "header" && parameter["name"] == "Range");
    operation["parameters"] = Value::Array(parameters);

    let has_body = operation.get("requestBody").is_some();
    let tags = operation["tags"].as_array().cloned().unwrap_or_default();
    // An unsupported call answers 501 once the caller is checked, whatever else it is sent.
    let unsupported = tags.iter().any(|tag| tag == NOT_SUPPORTED_TAG);
    let errors = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}});
    let responses = operation["responses"]
        .as_object_mut()
        .expect("every operation declares its answers");
    if paged {
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2') {
                response["headers"] = json!({
                    "Content-Range": {"description": "What the page holds: `items FIRST-LAST/TOTAL` by position, `items FIRSTREF:LASTREF/*` by reference, `items */0` when empty", "schema": {"type": "string"}},
                    "Next-Range": {"description": "While items follow: the `Range` to send for the next page (`items=LASTREF:COUNT`)", "schema": {"type": "string"}},
                });
            }
        }
    }
    if path.starts_with("/{account}") {
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status)
                .or_insert_with(|| json!({"description": description}));
        };
        if !unsupported {
            add(
                "400",
                "The request is invalid: `allErrors` says which field and why",
            );
        }
        add(
            "401",
            "No valid bearer token; `WWW-Authenticate: Bearer`, and RFC 6750's `error` and \
             `error_description` beside `allErrors`",
        );
        add("403", "The token belongs to another account");
        if template_parameters(path).count() > 1 && !unsupported {
            add("404", "No such object in this account");
        }
        if has_body && !unsupported {
            add("413", "The body is larger than the server takes");
        }
        operation["security"] = json!([{"oauth2": ["api"]}]);
    }
    let responses = operation["responses"].as_object_mut().expect("an object");
    for (status, response) in responses.iter_mut() {
        let failure = status.starts_with('4') || status.starts_with('5');
        if failure && response.get("content").is_none() && path != "/oauth/token" {
            response["content"] = errors.clone();
        }
        if status == "401" && path != "/oauth/token" {
            response["headers"] = json!({"WWW-Authenticate": {
                "description": "`Bearer realm=\"sluice\"`, with `error` and `error_description` when a token was given",
                "schema": {"type": "string"},
            }});
        }
    }
    if let Some(names) = operation
        .as_object_mut()
        .and_then(|operation| operation.remove("x-matrix-parameters"))
    {
        let described: Vec<Value> = names
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|name| json!({"name": name, "description": matrix_parameter(name)}))
            .collect();
        let sentence = described
            .iter()
            .map(|parameter| {
                format!(
                    "`;{}=`: {}",
                    parameter["name"].as_str().unwrap_or(""),
                    parameter["description"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let before = operation["description"].as_str().unwrap_or("").to_string();
        operation["description"] = Value::String(format!(
            "{before}\n\nMatrix parameters, written after the last path segment \
             (`{path};daterange=FROM,TO`): {sentence}."
        ));
        operation["x-matrix-parameters"] = Value::Array(described);
    }
    if tags.iter().any(|tag| tag == EXTENSION_TAG) {
        operation["x-sluice-extension"] = Value::Bool(true);
    }
}

/// The names of a path template's parameters, in order (`/{account}/flows/{flow}`: account, flow).
pub fn template_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('{')
        .skip(1)
        .filter_map(|piece| piece.split_once('}').map(|(name, _)| name))
}

/// An operation id from its method and path, unique as they are: `GET /{account}/flows/{flow}`
/// is `getFlowsByFlow`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    let mut upper;
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        if segment == "{account}" {
            continue;
        }
        if let Some(name) = segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            id.push_str("By");
            upper = true;
            push_camel(&mut id, name, &mut upper);
        } else {
            upper = true;
            push_camel(&mut id, segment, &mut upper);
        }
    }
    id
}

/// Appends `word` in camel case (`dead_letters` → `DeadLetters`, `openapi.json` → `OpenapiJson`).
fn push_camel(id: &mut String, word: &str, upper: &mut bool) {
    for character in word.chars() {
        if character.is_ascii_alphanumeric() {
            if *upper {
                id.push(character.to_ascii_uppercase());
            } else {
                id.push(character);
            }
            *upper = false;
        } else {
            *upper = true;
        }
    }
}

/// Types every identifier member of a schema as a string, at any depth, as the API writes them
/// (see `representation::identifiers_as_strings`, which this mirrors for the schemas).
fn identifiers_as_strings(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        if let Some(items) = schema.as_array_mut() {
            items.iter_mut().for_each(identifiers_as_strings);
        }
        return;
    };
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if super::representation::names_an_identifier(name) {
                integer_as_string(property);
            } else if name.ends_with("Ids")
                && let Some(items) = property.get_mut("items")
            {
                integer_as_string(items);
            }
        }
    }
    for (_, member) in object.iter_mut() {
        identifiers_as_strings(member);
    }
}

/// An integer schema (or a nullable one: `["integer", "null"]`) made a string schema.
fn integer_as_string(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let retyped = match object.get("type") {
        Some(Value::String(kind)) if kind == "integer" => Some(json!("string")),
        Some(Value::Array(kinds)) if kinds.iter().any(|kind| kind == "integer") => {
            Some(Value::Array(
                kinds
                    .iter()
                    .map(|kind| {
                        if kind == "integer" {
                            json!("string")
                        } else {
                            kind.clone()
                        }
                    })
                    .collect(),
            ))
        }
        _ => None,
    };
    if let Some(kind) = retyped {
        object.insert("type".into(), kind);
        object.remove("format");
        object.remove("minimum");
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(choices)) = object.get_mut(key) {
            choices.iter_mut().for_each(integer_as_string);
        }
    }
}

/// A finished document as a map (for the tests in this module).
#[cfg(test)]
fn paths_of(document: &Value) -> &serde_json::Map<String, Value> {
    document["paths"].as_object().expect("paths")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_method_and_path() {
        assert_eq!(
            operation_id("get", "/{account}/flows/{flow}"),
            "getFlowsByFlow"
        );
        assert_eq!(
            operation_id(
                "delete",
                "/{account}/webhooks/{id}/dead_letters/{dead_letter}"
            ),
            "deleteWebhooksByIdDeadLettersByDeadLetter"
        );
        assert_eq!(operation_id("get", "/openapi.json"), "getOpenapiJson");
    }

    #[test]
    fn template_parameters_are_read_in_order() {
        assert_eq!(
            template_parameters("/{account}/sources/{source}/users/{user}").collect::<Vec<_>>(),
            ["account", "source", "user"]
        );
        assert_eq!(template_parameters("/oauth/token").count(), 0);
    }

    #[test]
    fn identifier_members_become_strings_in_schemas() {
        let mut schema = json!({"type": "object", "properties": {
            "id": {"type": "integer", "format": "int64", "minimum": 0},
            "flowId": {"type": ["integer", "null"]},
            "size": {"type": "integer"},
            "flowIds": {"type": "array", "items": {"type": "integer"}},
            "flow": {"type": "object", "properties": {"id": {"type": "integer"}}},
        }});
        identifiers_as_strings(&mut schema);
        let properties = &schema["properties"];
        assert_eq!(properties["id"]["type"], "string");
        assert_eq!(properties["flowId"]["type"], json!(["string", "null"]));
        assert_eq!(properties["size"]["type"], "integer");
        assert_eq!(properties["flowIds"]["items"]["type"], "string");
        assert_eq!(properties["flow"]["properties"]["id"]["type"], "string");
    }

    #[test]
    fn an_account_call_gets_the_token_errors_and_paging() {
        let mut openapi = utoipa::openapi::OpenApi::default();
        openapi.paths = serde_json::from_value(json!({
            "/{account}/messages": {"get": {
                "tags": [EXTENSION_TAG],
                "parameters": [{"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "a page"}},
                "x-matrix-parameters": ["daterange"],
            }}
        }))
        .expect("paths");
        let document = finish(openapi);
        let operation = &paths_of(&document)["/{account}/messages"]["get"];
        assert_eq!(operation["security"], json!([{"oauth2": ["api"]}]));
        assert_eq!(operation["parameters"][0]["name"], "account");
        assert!(operation["responses"]["200"]["headers"]["Next-Range"].is_object());
        assert!(operation["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
        assert_eq!(
            operation["responses"]["403"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Errors"
        );
        assert!(operation["responses"].get("404").is_none());
        assert_eq!(operation["x-matrix-parameters"][0]["name"], "daterange");
        assert!(
            operation["description"]
                .as_str()
                .unwrap()
                .contains(";daterange=")
        );
        assert_eq!(operation["x-sluice-extension"], true);
    }
}
