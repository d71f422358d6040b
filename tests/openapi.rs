//! The OpenAPI document at `/openapi.json`: it names every route the server answers, it is
//! structurally valid OpenAPI 3, and real answers of the server match its schemas.

use std::collections::{BTreeSet, HashSet};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::{Api, TestServer, email, id_of};

/// Sluice's own calls (docs/flowmailer-compatibility.md, "Extensions"), which the compatibility
/// table of Flowmailer's calls does not list, and the unauthenticated ones beside the API.
const SLUICE_CALLS: &[(&str, &str)] = &[
    ("GET", "/openapi.json"),
    ("GET", "/c/{token}"),
    ("GET", "/o/{token}"),
    ("GET", "/v/{token}"),
    ("POST", "/{account}/messages/simulate"),
    ("GET", "/{account}/messages/{id}/error_archive"),
    ("POST", "/{account}/messages/{id}/resend"),
    ("GET", "/{account}/webhooks"),
    ("POST", "/{account}/webhooks"),
    ("GET", "/{account}/webhooks/{id}"),
    ("PUT", "/{account}/webhooks/{id}"),
    ("DELETE", "/{account}/webhooks/{id}"),
    ("GET", "/{account}/webhooks/{id}/dead_letters"),
    (
        "DELETE",
        "/{account}/webhooks/{id}/dead_letters/{dead_letter}",
    ),
    (
        "POST",
        "/{account}/webhooks/{id}/dead_letters/{dead_letter}/redeliver",
    ),
    ("POST", "/{account}/plugins"),
    ("GET", "/{account}/plugins/{plugin}"),
    ("DELETE", "/{account}/plugins/{plugin}"),
    ("POST", "/{account}/plugins/{plugin}/enable"),
    ("GET", "/{account}/bounce_classifier"),
    ("PUT", "/{account}/bounce_classifier"),
    ("DELETE", "/{account}/bounce_classifier"),
    ("GET", "/{account}/sender_identities"),
    ("POST", "/{account}/sender_identities"),
    ("GET", "/{account}/sender_identities/{id}"),
    ("DELETE", "/{account}/sender_identities/{id}"),
    ("POST", "/{account}/sender_identities/{id}/validate"),
    ("POST", "/{account}/sender_identities/validate"),
    ("GET", "/{account}/sender_identities/by_domain/{domain}"),
    ("POST", "/{account}/sources/{source}/credentials"),
    ("POST", "/{account}/templates/preview"),
];

fn fetch_document(server: &TestServer) -> Value {
    if let Ok(dump) = std::env::var("DUMP_OPENAPI") {
        let text =
            reqwest::blocking::get(format!("http://{}/openapi.json", server.server.api_addr))
                .unwrap()
                .text()
                .unwrap();
        std::fs::write(dump, text).unwrap();
    }
    let response =
        reqwest::blocking::get(format!("http://{}/openapi.json", server.server.api_addr)).unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().unwrap()
}

/// A path template with its parameters' names left out (`/{account}/filters/{}`): the table
/// and the router may name a parameter differently.
fn shape(path: &str) -> String {
    let mut shaped = String::new();
    let mut inside = false;
    for character in path.chars() {
        match character {
            '{' => {
                inside = true;
                shaped.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            _ => shaped.push(character),
        }
    }
    shaped
}

/// The (METHOD, shaped path) pairs of the document.
fn documented_calls(document: &Value) -> BTreeSet<(String, String)> {
    let mut calls = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            calls.insert((method.to_uppercase(), shape(path)));
        }
    }
    calls
}

#[test]
fn every_route_the_server_answers_is_in_the_document() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let document = fetch_document(&server);
    let documented = documented_calls(&document);
    let table = crate::flowmailer_api::compatibility_table();
    assert_eq!(table.len(), 73);
    let expected: Vec<(String, String)> = table
        .iter()
        .map(|row| (row.method.to_string(), row.path.clone()))
        .chain(
            SLUICE_CALLS
                .iter()
                .map(|(method, path)| (method.to_string(), path.to_string())),
        )
        .collect();
    let missing: Vec<&(String, String)> = expected
        .iter()
        .filter(|(method, path)| !documented.contains(&(method.clone(), shape(path))))
        .collect();
    assert!(missing.is_empty(), "not in the document: {missing:?}");

    // And the other way: each documented call is routed (no 404 for a missing route, no 405).
    for (method, path) in &documented {
        let concrete = path
            .replacen("{}", &api.account.to_string(), 1)
            .replace("{}", "1");
        let url = format!("{}{}", api.base, concrete);
        let request = api
            .http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(&api.token);
        let response = request.send().unwrap();
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if response.status() == StatusCode::NOT_FOUND {
            // A 404 of a routed call names what was not found, in allErrors.
            let body: Value = response.json().unwrap_or(Value::Null);
            assert!(
                body["allErrors"][0]["code"].is_string()
                    || path.starts_with("/c/")
                    || path.starts_with("/o/")
                    || path.starts_with("/v/"),
                "{method} {path} is not routed"
            );
        }
    }
}

/// The schema a `$ref` names.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` under `value`, with where it was found.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                if key == "$ref" {
                    found.push((at.to_string(), member.as_str().unwrap_or("").to_string()));
                } else {
                    references(member, &format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                references(item, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_structurally_valid_openapi_3() {
    let server = TestServer::start(|_| {});
    let document = fetch_document(&server);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());

    let mut found = Vec::new();
    references(&document, "", &mut found);
    assert!(
        found.len() > 50,
        "the document names its models by reference"
    );
    for (at, reference) in &found {
        assert!(
            resolve(&document, reference).is_some(),
            "{at}: {reference} does not resolve"
        );
    }

    let flows = &document["components"]["securitySchemes"]["oauth2"]["flows"];
    assert_eq!(flows["clientCredentials"]["tokenUrl"], "/oauth/token");

    let mut operation_ids = HashSet::new();
    let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
    for (path, item) in document["paths"].as_object().unwrap() {
        let in_template: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|piece| piece.split_once('}').map(|(name, _)| name))
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            assert!(methods.contains(&method.as_str()), "{path}: {method}");
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|parameter| parameter["in"] == "path")
                .map(|parameter| {
                    assert_eq!(parameter["required"], true, "{method} {path}");
                    parameter["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(declared, in_template, "{method} {path}: path parameters");
            let id = operation["operationId"].as_str().unwrap();
            assert!(
                operation_ids.insert(id.to_string()),
                "operationId {id} twice"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{status}"
                );
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}"
                );
            }
            if path.starts_with("/{account}/") {
                assert_eq!(operation["security"], json!([{"oauth2": ["api"]}]));
                let unauthorized = &responses["401"];
                assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
                assert_eq!(
                    unauthorized["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Errors"
                );
            }
            let tags = operation["tags"].as_array().cloned().unwrap_or_default();
            assert_eq!(
                tags.contains(&json!("Sluice extensions")),
                operation["x-sluice-extension"] == true,
                "{method} {path}"
            );
        }
    }
}

/// A Python with openapi-spec-validator (PyPI), if any.
fn python_with_openapi_spec_validator() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import openapi_spec_validator"])
            .output()
            .is_ok_and(|output| output.status.success())
    })
}

/// What openapi-spec-validator says of `document`: whether it passed, and its output.
fn independently_validated(python: &str, document: &Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let output = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success() && said.trim_end().ends_with("OK"),
        said,
    )
}

#[test]
fn an_independent_validator_accepts_the_document() {
    use std::io::Write as _;
    let Some(python) = python_with_openapi_spec_validator() else {
        // Straight to the process's stderr, past the test harness's capture: a skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED an_independent_validator_accepts_the_document: openapi-spec-validator is \
             not installed (python3 -m pip install openapi-spec-validator)"
        );
        return;
    };
    let server = TestServer::start(|_| {});
    let document = fetch_document(&server);
    let (valid, said) = independently_validated(python, &document);
    assert!(valid, "openapi-spec-validator: {said}");

    // It is a real check: a path parameter left undeclared is refused.
    let mut broken = document.clone();
    broken["paths"]["/{account}/flows/{flow}"]["get"]["parameters"] = json!([]);
    let (valid, said) = independently_validated(python, &broken);
    assert!(
        !valid,
        "openapi-spec-validator took a broken document: {said}"
    );
}

#[test]
fn the_document_describes_paging_matrix_parameters_and_extensions() {
    let server = TestServer::start(|_| {});
    let document = fetch_document(&server);
    let list = &document["paths"]["/{account}/messages"]["get"];
    let range = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "Range")
        .expect("the list takes a Range header");
    assert_eq!(range["in"], "header");
    assert!(
        range["description"]
            .as_str()
            .unwrap()
            .contains("items=REFERENCE:COUNT")
    );
    assert!(
        range["description"]
            .as_str()
            .unwrap()
            .contains("items=FIRST-LAST")
    );
    let headers = &list["responses"]["200"]["headers"];
    assert!(headers["Content-Range"].is_object() && headers["Next-Range"].is_object());
    let events = &document["paths"]["/{account}/message_events"]["get"];
    let matrix: Vec<&str> = events["x-matrix-parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    for name in ["daterange", "flow_ids", "source_ids"] {
        assert!(matrix.contains(&name), "{name}");
        assert!(
            events["description"]
                .as_str()
                .unwrap()
                .contains(&format!(";{name}="))
        );
    }
    for path in ["/{account}/webhooks", "/{account}/sender_identities"] {
        assert_eq!(
            document["paths"][path]["get"]["x-sluice-extension"], true,
            "{path}"
        );
    }
    assert!(document["paths"]["/{account}/sender_domains"]["get"]["x-sluice-extension"].is_null());
    // Flowmailer's models under their own names.
    let schemas = &document["components"]["schemas"];
    for model in [
        "Message",
        "MessageEvent",
        "Flow",
        "FlowStep",
        "FlowRuleItem",
        "Source",
        "Credentials",
        "SenderDomain",
        "Template",
        "Filter",
        "EventFlow",
        "MessageArchive",
        "DataSets",
        "Errors",
    ] {
        assert!(schemas[model].is_object(), "{model}");
    }
    // Identifiers are strings, as the API writes them.
    assert_eq!(schemas["Message"]["properties"]["id"]["type"], "string");
    assert_eq!(
        schemas["ObjectDescription"]["properties"]["id"]["type"],
        "string"
    );
    assert_eq!(
        schemas["Message"]["properties"]["flow"]["oneOf"][0]["$ref"],
        "#/components/schemas/ObjectDescription"
    );
}

/// Why `value` does not match `schema` (within `document`), if it does not: types, required
/// members, no member the schema does not name, array items, `allOf`, and any of
/// `oneOf`/`anyOf`.
fn mismatch(document: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    checked(document, schema, value, at, true)
}

/// The names of the members a schema declares, with those of its `allOf` parts.
fn declared_members(document: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        return resolve(document, reference)
            .map(|target| declared_members(document, target))
            .unwrap_or_default();
    }
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(declared_members(document, part));
    }
    names
}

/// [`mismatch`]; `closed`: a member the schema does not declare is a mismatch (not so within
/// an `allOf` part, which declares only some of the members).
fn checked(
    document: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    closed: bool,
) -> Option<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let Some(target) = resolve(document, reference) else {
            return Some(format!("{at}: {reference} does not resolve"));
        };
        return checked(document, target, value, at, closed);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema[key].as_array() {
            let reasons: Vec<String> = choices
                .iter()
                .filter_map(|choice| checked(document, choice, value, at, closed))
                .collect();
            if reasons.len() == choices.len() {
                return Some(format!("{at}: matches none of {key}: {reasons:?}"));
            }
        }
    }
    if let Some(all) = schema["allOf"].as_array()
        && let Some(reason) = all
            .iter()
            .find_map(|part| checked(document, part, value, at, false))
    {
        return Some(reason);
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_u64() || number.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let integer_as_number = actual == "integer" && kinds.contains(&"number");
    if !(kinds.is_empty() || kinds.contains(&actual) || integer_as_number) {
        return Some(format!("{at}: {actual} where the schema says {kinds:?}"));
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {choices:?}"));
    }
    if let Value::Object(members) = value {
        let declared = declared_members(document, schema);
        let open = !closed || declared.is_empty() || schema["additionalProperties"] == true;
        if !open && let Some(name) = members.keys().find(|name| !declared.contains(*name)) {
            return Some(format!("{at}: member {name} is not in the schema"));
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or("");
            if !members.contains_key(name) {
                return Some(format!("{at}: required member {name} is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, member) in members {
                if let Some(property) = properties.get(name)
                    && let Some(reason) =
                        checked(document, property, member, &format!("{at}.{name}"), true)
                {
                    return Some(reason);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            if let Some(reason) =
                checked(document, item_schema, item, &format!("{at}[{index}]"), true)
            {
                return Some(reason);
            }
        }
    }
    None
}

#[test]
fn the_mismatch_check_finds_wrong_types_and_unknown_members() {
    let document = json!({"components": {"schemas": {"Thing": {
        "type": "object", "required": ["id"],
        "properties": {"id": {"type": "string"}, "tags": {"type": ["array", "null"], "items": {"type": "string"}}},
    }}}});
    let thing = json!({"$ref": "#/components/schemas/Thing"});
    assert_eq!(
        mismatch(&document, &thing, &json!({"id": "1", "tags": ["a"]}), "$"),
        None
    );
    assert_eq!(
        mismatch(&document, &thing, &json!({"id": "1", "tags": null}), "$"),
        None
    );
    assert!(mismatch(&document, &thing, &json!({"id": 1}), "$").is_some());
    assert!(mismatch(&document, &thing, &json!({"id": "1", "extra": 2}), "$").is_some());
    assert!(mismatch(&document, &thing, &json!({"tags": []}), "$").is_some());
    assert!(mismatch(&document, &thing, &json!({"id": "1", "tags": [3]}), "$").is_some());
    let more =
        json!({"allOf": [thing, {"type": "object", "properties": {"size": {"type": "integer"}}}]});
    assert_eq!(
        mismatch(&document, &more, &json!({"id": "1", "size": 3}), "$"),
        None
    );
    assert!(
        mismatch(
            &document,
            &more,
            &json!({"id": "1", "size": 3, "extra": 1}),
            "$"
        )
        .is_some()
    );
    assert!(mismatch(&document, &more, &json!({"size": 3}), "$").is_some());
}

#[test]
fn real_answers_match_the_documented_schemas() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let document = fetch_document(&server);
    let message = api.submit(email("described"));
    server.wait_until_done(&message);
    let created = api
        .post("sender_domains")
        .json(&json!({"senderDomain": "described.example"}))
        .send()
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let domain = id_of(&created.json::<Value>().unwrap()).to_string();
    let created = api
        .post("filters")
        .json(&json!({"address": "gone@example.net"}))
        .send()
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let calls = [
        ("/{account}/messages/{id}", format!("messages/{message}")),
        (
            "/{account}/messages",
            "messages?addevents=1&addheaders=1".to_string(),
        ),
        ("/{account}/message_events", "message_events".to_string()),
        ("/{account}/flows", "flows".to_string()),
        ("/{account}/flow_rules", "flow_rules".to_string()),
        ("/{account}/sources", "sources".to_string()),
        ("/{account}/api_credentials", "api_credentials".to_string()),
        (
            "/{account}/sender_domains/{id}",
            format!("sender_domains/{domain}"),
        ),
        ("/{account}/filters", "filters".to_string()),
        ("/{account}/templates", "templates".to_string()),
        ("/{account}/event_flows", "event_flows".to_string()),
        (
            "/{account}/messagestats",
            "messagestats;daterange=2020-01-01T00:00:00Z,2100-01-01T00:00:00Z?interval=31557601"
                .to_string(),
        ),
    ];
    let mut checked = 0;
    for (template, path) in calls {
        let response = api.get(&path).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let answer: Value = response.json().unwrap();
        let schema = &document["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert!(schema.is_object(), "{template}: no answer schema");
        if let Some(reason) = mismatch(&document, schema, &answer, template) {
            panic!("{reason}\nanswer: {answer:#}");
        }
        if answer.as_array().is_some_and(|items| items.is_empty()) {
            continue;
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} answers had items to check");

    // An error answer matches Errors.
    let response = api.get("messages/no-such-message").send().unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let answer: Value = response.json().unwrap();
    let errors = json!({"$ref": "#/components/schemas/Errors"});
    assert_eq!(mismatch(&document, &errors, &answer, "404"), None);
}
