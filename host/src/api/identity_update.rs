//! `PUT /{account}/sender_domains/{id}` (Flowmailer's `updateSenderDomain`): takes back what
//! `GET` answers. Nothing of a sender domain is changed in place in Sluice: the domain and its
//! DKIM key (`selector`, `algorithm`) make the identity, and the return-path and web domains
//! follow from the server's configuration. A body that asks for another value of any of them
//! is refused, each field by name (`notSupported`), never silently ignored; the results of
//! the DNS checks (`dnsRecords`, `validated`, `validatedOn`, `warnings`) and `createdOn` are
//! the server's to write and are not compared, so an answer read before a check is taken back.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, FieldError};
use super::identities::{IdentityView, own_identity, view};
use super::messages::parse_json;

/// Members a client may send back as it read them but never sets.
const SERVER_WRITTEN: [&str; 5] = [
    "dnsRecords",
    "validated",
    "validatedOn",
    "warnings",
    "createdOn",
];

/// Why a member cannot be changed, by member.
fn why_fixed(member: &str) -> Option<&'static str> {
    Some(match member {
        "id" => "the path names the sender domain; a body naming another is refused",
        "senderDomain" | "domain" => {
            "a sender domain is not renamed: add the new domain (POST sender_domains) and delete \
             this one"
        }
        "returnPathDomain" => {
            "the return-path domain is the server's configured label under the sender domain \
             (used once its CNAME and DKIM key validate, the platform's domain until then); it \
             is not chosen per sender domain"
        }
        "webDomain" => {
            "the web (tracking and online-view) domain is the server's configured label under \
             the sender domain; it is not chosen per sender domain"
        }
        "selector" | "algorithm" => {
            "the DKIM key is made with the sender domain: for another key, add the domain again \
             after deleting this one"
        }
        _ => return None,
    })
}

/// Whether `given` says the same as `current` for `member` (identifiers and domains compared
/// as Flowmailer's clients write them: an id as a string, a domain in any case).
fn same(member: &str, given: &Value, current: &Value) -> bool {
    let text = |value: &Value| match value {
        Value::String(text) => Some(text.trim().trim_end_matches('.').to_ascii_lowercase()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    match member {
        "id" | "senderDomain" | "domain" | "returnPathDomain" | "webDomain" => {
            text(given).is_some() && text(given) == text(current)
        }
        _ => given == current,
    }
}

/// Each member of `body` that asks for something other than `current` holds, refused.
fn refusals(body: &serde_json::Map<String, Value>, current: &Value) -> Vec<FieldError> {
    let mut refused = Vec::new();
    for (member, given) in body {
        if given.is_null() || SERVER_WRITTEN.contains(&member.as_str()) {
            continue;
        }
        let message = match why_fixed(member) {
            Some(_) if same(member, given, &current[member.as_str()]) => continue,
            Some(why) => why,
            None => "not a member of a sender domain that Sluice keeps",
        };
        refused.push(FieldError {
            code: "notSupported".into(),
            default_message: message.into(),
            field: Some(member.clone()),
            object_name: Some("senderDomain".into()),
            rejected_value: Some(given.clone()),
        });
    }
    refused
}

/// `PUT /{account}/sender_domains/{id}`: answers the sender domain as `GET` does when the body
/// asks for nothing it does not already hold; otherwise 400 naming each member it cannot take.
#[utoipa::path(
    put,
    path = "/{account}/sender_domains/{id}",
    tags = ["Sender domains"],
    request_body = super::identities::IdentityView,
    responses((status = 200, description = "The sender domain, unchanged: what GET answers is taken back; any change is refused by name", body = super::identities::IdentityView))
)]
pub async fn update(
    State(state): State<ApiState>,
    Path((account_id, identity_id)): Path<(u64, u64)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<IdentityView>, ApiError> {
    caller.require(account_id)?;
    let identity = own_identity(&state, account_id, identity_id)?;
    let body: serde_json::Map<String, Value> = parse_json(&body)?;
    let shown = view(&state, identity);
    let current = serde_json::to_value(&shown).map_err(ApiError::internal)?;
    let refused = refusals(&body, &current);
    if !refused.is_empty() {
        return Err(ApiError::fields(refused));
    }
    Ok(Json(shown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn current() -> Value {
        json!({"id": 7, "domain": "shop.example", "senderDomain": "shop.example",
               "returnPathDomain": "bounce.sluice.example", "selector": "sl1",
               "algorithm": "rsa-2048", "validated": false, "dnsRecords": []})
    }

    fn refused_fields(body: Value) -> Vec<String> {
        let Value::Object(body) = body else {
            unreachable!()
        };
        let mut fields: Vec<String> = refusals(&body, &current())
            .into_iter()
            .filter_map(|error| error.field)
            .collect();
        fields.sort();
        fields
    }

    #[test]
    fn what_a_read_answers_is_taken_back_and_every_change_is_named() {
        // As the SDK sends it back: the id as a string, the checks' results outdated.
        assert!(
            refused_fields(json!({"id": "7", "senderDomain": "Shop.Example.",
                "returnPathDomain": "bounce.sluice.example", "webDomain": null,
                "validated": true, "dnsRecords": [{"type": "TXT"}], "warnings": []}))
            .is_empty()
        );
        assert_eq!(
            refused_fields(json!({"senderDomain": "other.example",
                "returnPathDomain": "rp.shop.example", "webDomain": "links.shop.example",
                "selector": "mine", "id": "8", "colour": "blue"})),
            [
                "colour",
                "id",
                "returnPathDomain",
                "selector",
                "senderDomain",
                "webDomain"
            ]
        );
    }
}
