//! Paging with `Range: items=FIRST-LAST` and `Content-Range: items FIRST-LAST/TOTAL`, as
//! Flowmailer's lists do; and timestamps in ISO 8601.

use axum::http::{HeaderMap, HeaderValue};

use super::error::ApiError;

/// Items per page when the request names no range.
const DEFAULT_PAGE: usize = 100;
/// The most items one page may hold.
const MAX_PAGE: usize = 1000;

/// The items a request asks for, as (first position, how many): its `Range` header, or the
/// first page when it names none; never more than a page's worth.
pub fn requested(headers: &HeaderMap) -> Result<(usize, usize), ApiError> {
    let (first, last) = match headers.get(axum::http::header::RANGE) {
        None => (0, DEFAULT_PAGE - 1),
        Some(value) => parse_range(value.to_str().unwrap_or(""))?,
    };
    let last = last.min(first.saturating_add(MAX_PAGE - 1));
    Ok((first, last - first + 1))
}

/// The `Content-Range` header of a page of `len` items from position `first`, out of `total`.
pub fn content_range(first: usize, len: usize, total: usize) -> HeaderMap {
    let range = if len == 0 {
        format!("items */{total}")
    } else {
        format!("items {first}-{}/{total}", first + (len - 1))
    };
    let mut answer = HeaderMap::new();
    answer.insert(
        axum::http::header::CONTENT_RANGE,
        HeaderValue::from_str(&range).expect("ASCII"),
    );
    answer
}

/// Cuts one page out of `items` and names it in a `Content-Range` header.
pub fn page<T>(headers: &HeaderMap, items: Vec<T>) -> Result<(HeaderMap, Vec<T>), ApiError> {
    let (first, count) = requested(headers)?;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(first).take(count).collect();
    Ok((content_range(first, page.len(), total), page))
}

fn parse_range(value: &str) -> Result<(usize, usize), ApiError> {
    let invalid = || {
        ApiError::field(
            "Range",
            "invalidRange",
            "use Range: items=FIRST-LAST, e.g. items=0-9",
            Some(value.into()),
        )
    };
    let spec = value.trim().strip_prefix("items=").ok_or_else(invalid)?;
    let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
    let first: usize = first.trim().parse().map_err(|_| invalid())?;
    let last: usize = last.trim().parse().map_err(|_| invalid())?;
    if last < first {
        return Err(invalid());
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("items=0-9").unwrap(), (0, 9));
        assert!(parse_range("items=9-0").is_err());
        assert!(parse_range("bytes=0-9").is_err());
        let mut headers = HeaderMap::new();
        headers.insert("range", HeaderValue::from_static("items=2-3"));
        let (answer, page) = page(&headers, vec![1, 2, 3, 4, 5]).unwrap();
        assert_eq!(page, [3, 4]);
        assert_eq!(answer["content-range"], "items 2-3/5");
        let mut headers = HeaderMap::new();
        let huge = format!("items={0}-{0}", usize::MAX);
        headers.insert("range", HeaderValue::from_str(&huge).unwrap());
        let (answer, page) = super::page(&headers, vec![1]).unwrap();
        assert!(page.is_empty());
        assert_eq!(answer["content-range"], "items */1");
    }
}
