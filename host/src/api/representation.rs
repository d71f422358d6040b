//! Flowmailer's representation, the only one the API answers in (whatever media type the client
//! asks for, so that a client sending plain `application/json` reads the same shapes as one of
//! Flowmailer's SDKs):
//!
//! - identifiers are JSON strings (the SDK's models type every `id` and `…Id` as a string and
//!   refuse a number); request bodies may give them as strings or numbers;
//! - event types Flowmailer does not have are written as the nearest of its own, with Sluice's
//!   name in `subType` (see `message_views`);
//! - the archive of a message is a list (one entry per archiving step).
//!
//! Sluice's extensions are extra fields and paths, which Flowmailer's clients ignore.

use axum::Json;
use axum::http::header::{ACCEPT, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Marks a `201 Created` whose `Location` names what was made: Flowmailer answers those with
/// an empty body, and its PHP SDK reads the new id from `Location` only when the body is empty
/// (`Content-Length: 0`). Answered so to a client asking for Flowmailer's media type; another
/// client also gets what was made as the body (an extension).
#[derive(Clone, Copy, Debug)]
pub struct LocationNamesIt;

/// `201 Created` with `Location: path` (relative, as HTTP allows) and what was made.
pub fn created<T: serde::Serialize>(path: String, made: T) -> Result<Response, super::ApiError> {
    let location = HeaderValue::from_str(&path).map_err(super::ApiError::internal)?;
    let mut response = (StatusCode::CREATED, Json(made)).into_response();
    response.headers_mut().insert(LOCATION, location);
    response.extensions_mut().insert(LocationNamesIt);
    Ok(response)
}

/// The Flowmailer media type the `Accept` header names, if any
/// (`application/vnd.flowmailer.v1.12+json`).
pub fn vendor_media_type(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .and_then(|accept| {
            accept
                .split(',')
                .map(|range| range.split(';').next().unwrap_or("").trim())
                .find(|range| {
                    range.starts_with("application/vnd.flowmailer.") && range.ends_with("+json")
                })
                .and_then(|range| HeaderValue::from_str(range).ok())
        })
}

/// Whether a JSON member of this name holds an identifier: `id`, or a camelCase name ending in
/// `Id` (`flowId`, `sourceId`, `accountId`, `messageId`, ...).
pub(super) fn names_an_identifier(key: &str) -> bool {
    key == "id" || (key.len() > 2 && key.ends_with("Id"))
}

/// Writes every identifier that is a JSON number as a string, at any depth, as Flowmailer does.
pub fn identifiers_as_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                match member {
                    serde_json::Value::Number(number) if names_an_identifier(key) => {
                        *member = serde_json::Value::String(number.to_string());
                    }
                    serde_json::Value::Array(items) if key.ends_with("Ids") => {
                        for item in items.iter_mut() {
                            if let serde_json::Value::Number(number) = item {
                                *item = serde_json::Value::String(number.to_string());
                            }
                        }
                    }
                    _ => identifiers_as_strings(member),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(identifiers_as_strings),
        _ => {}
    }
}

/// An identifier given in a request body as a string (Flowmailer) or a number (Sluice).
pub fn flexible_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Given {
        Number(u64),
        Text(String),
    }
    match <Given as serde::Deserialize>::deserialize(deserializer)? {
        Given::Number(number) => Ok(number),
        Given::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an id"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_become_strings_and_nothing_else_changes() {
        let mut value = json!({
            "id": 7, "flowId": 3, "size": 12, "valid": true,
            "flow": {"id": 2, "description": "d"},
            "list": [{"sourceId": 4, "hold": 1}],
            "flowIds": [1, 2], "paid": 5,
            "messageId": "0a1b",
        });
        identifiers_as_strings(&mut value);
        assert_eq!(
            value,
            json!({
                "id": "7", "flowId": "3", "size": 12, "valid": true,
                "flow": {"id": "2", "description": "d"},
                "list": [{"sourceId": "4", "hold": 1}],
                "flowIds": ["1", "2"], "paid": 5,
                "messageId": "0a1b",
            })
        );
    }

    #[test]
    fn the_vendor_media_type_is_found_among_others() {
        let mut headers = HeaderMap::new();
        assert_eq!(vendor_media_type(&headers), None);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert_eq!(vendor_media_type(&headers), None);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html, application/vnd.flowmailer.v1.12+json;q=0.9"),
        );
        assert_eq!(
            vendor_media_type(&headers),
            Some(HeaderValue::from_static(
                "application/vnd.flowmailer.v1.12+json"
            ))
        );
    }
}
