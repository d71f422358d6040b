//! Request parameters as Flowmailer's clients send them: matrix parameters in the path
//! (`/123/messages;daterange=2026-01-01T00:00:00Z,2026-02-01T00:00:00Z;sortorder=ASC`),
//! booleans as PHP writes them (`?addevents=1`), and date ranges.

use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::request::Parts;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use crate::timestamp::parse_iso8601;

/// The most matrix parameters one request may carry.
const MAX_MATRIX_PARAMETERS: usize = 16;

/// The matrix parameters of a request, taken out of its path before routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix(Vec<(String, String)>);

impl Matrix {
    /// The value of a parameter, if the request gave it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(given, _)| given.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Matrix {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Matrix>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Takes the matrix parameters out of a request's path, so routes match the path alone; the
/// handlers read them with the [`Matrix`] extractor. A path with more parameters than a
/// client needs keeps them, and fails to match any route.
pub fn split_matrix<B>(request: &mut axum::http::Request<B>) {
    let uri = request.uri();
    if !uri.path().contains(';') {
        return;
    }
    let mut path = String::with_capacity(uri.path().len());
    let mut parameters = Vec::new();
    for (position, segment) in uri.path().split('/').enumerate() {
        if position > 0 {
            path.push('/');
        }
        let mut pieces = segment.split(';');
        path.push_str(pieces.next().unwrap_or(""));
        for piece in pieces.filter(|piece| !piece.is_empty()) {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            parameters.push((percent_decode(name), percent_decode(value)));
        }
    }
    if parameters.len() > MAX_MATRIX_PARAMETERS {
        return;
    }
    let rebuilt = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let Ok(path_and_query) = rebuilt.parse() else {
        return;
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(Matrix(parameters));
    }
}

/// Percent-decoding of a path piece; `+` stays a plus (it is one in a path).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|byte| (*byte as char).to_digit(16))
                .map(|digit| digit as u8)
        };
        match (bytes[position], hex(position + 1), hex(position + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high << 4 | low);
                position += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                position += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A boolean query parameter as any client writes it: `true`/`false`, or PHP's `1`/`0`.
pub fn flexible_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "{other:?} is not a boolean (true, false, 1 or 0)"
        ))),
    }
}

/// A time range `START,END` (each ISO 8601 with its offset), as milliseconds: from START,
/// before END.
pub fn date_range(name: &str, text: &str) -> Result<(u64, u64), ApiError> {
    let invalid = |why: &str| {
        ApiError::field(
            name,
            "invalidDateRange",
            format!(
                "{why}; use START,END in ISO 8601, e.g. 2026-01-01T00:00:00Z,2026-02-01T00:00:00Z"
            ),
            Some(text.into()),
        )
    };
    let (start, end) = text
        .split_once(',')
        .ok_or_else(|| invalid("two times are needed"))?;
    let start = parse_iso8601(start).ok_or_else(|| invalid("the start is not a date-time"))?;
    let end = parse_iso8601(end).ok_or_else(|| invalid("the end is not a date-time"))?;
    if end < start {
        return Err(invalid("the end is before the start"));
    }
    Ok((start, end))
}

/// The order a list was asked for with `sortorder`: newest first unless `ASC`.
pub fn oldest_first(sortorder: Option<&str>) -> Result<bool, ApiError> {
    match sortorder.map(str::to_ascii_uppercase).as_deref() {
        None | Some("DESC") | Some("") => Ok(false),
        Some("ASC") => Ok(true),
        Some(_) => Err(ApiError::field(
            "sortorder",
            "invalidSortOrder",
            "sortorder is ASC or DESC",
            sortorder.map(Into::into),
        )),
    }
}

/// A list of ids in a matrix parameter (`flow_ids=1,2`).
pub fn id_list(matrix: &Matrix, name: &str) -> Result<Option<Vec<u64>>, ApiError> {
    let Some(text) = matrix.get(name) else {
        return Ok(None);
    };
    text.split(',')
        .filter(|id| !id.trim().is_empty())
        .map(|id| id.trim().parse::<u64>())
        .collect::<Result<Vec<u64>, _>>()
        .map(Some)
        .map_err(|_| {
            ApiError::field(
                name,
                "invalidIdList",
                "a comma-separated list of ids",
                Some(text.into()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(uri: &str) -> (String, Matrix) {
        let mut request = axum::http::Request::builder().uri(uri).body(()).unwrap();
        split_matrix(&mut request);
        let matrix = request
            .extensions()
            .get::<Matrix>()
            .cloned()
            .unwrap_or_default();
        (request.uri().to_string(), matrix)
    }

    #[test]
    fn matrix_parameters_leave_the_path_and_are_kept_for_the_handler() {
        let (uri, matrix) = split(
            "/7/messages;daterange=2026-01-01T00:00:00+0000,2026-02-01T00:00:00%2B0000;sortorder=ASC?addevents=1",
        );
        assert_eq!(uri, "/7/messages?addevents=1");
        assert_eq!(
            matrix.get("daterange"),
            Some("2026-01-01T00:00:00+0000,2026-02-01T00:00:00+0000")
        );
        assert_eq!(matrix.get("SORTORDER"), Some("ASC"));
        assert_eq!(split("/7/messages").0, "/7/messages");
        // More parameters than any client sends: left in the path, where no route matches.
        let many = format!("/7/messages{}", ";a=1".repeat(MAX_MATRIX_PARAMETERS + 1));
        assert_eq!(split(&many).0, many);
    }

    #[test]
    fn date_ranges_take_the_shapes_clients_send() {
        assert_eq!(
            date_range("daterange", "2026-01-01T00:00:00Z,2026-01-01T00:00:01+0000").unwrap(),
            (1_767_225_600_000, 1_767_225_601_000)
        );
        for bad in [
            "",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z,2026-01-01T00:00:00Z",
        ] {
            assert!(date_range("daterange", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn booleans_are_read_as_php_and_everyone_else_writes_them() {
        #[derive(Deserialize)]
        struct Query {
            #[serde(deserialize_with = "flexible_bool")]
            flag: bool,
        }
        for (text, value) in [("1", true), ("0", false), ("true", true), ("FALSE", false)] {
            let query: Query = serde_urlencoded_like(text);
            assert_eq!(query.flag, value, "{text}");
        }
        fn serde_urlencoded_like(text: &str) -> Query {
            serde_json::from_value(serde_json::json!({ "flag": text })).unwrap()
        }
        assert!(serde_json::from_value::<Query>(serde_json::json!({"flag": "yes"})).is_err());
    }
}
