//! Paging as Flowmailer's lists do it, in both of its forms:
//!
//! - `Range: items=FIRST-LAST`, positions, answered with `Content-Range: items FIRST-LAST/TOTAL`;
//! - `Range: items=REFERENCE:COUNT`, the `COUNT` items after the one `REFERENCE` names (from the
//!   start when it is empty), answered with `Content-Range: items FIRST:LAST/*` (the references
//!   of the page's first and last items) and, while more items follow, `Next-Range:
//!   items=LAST:COUNT`, which a client sends back as it is for the next page.
//!
//! A reference names an item, not a position: paging by reference neither skips nor repeats an
//! item when others are added or removed meanwhile.

use axum::http::{HeaderMap, HeaderValue};

use super::error::ApiError;

/// Items per page when the request names no range.
const DEFAULT_PAGE: usize = 100;
/// The most items one page may hold.
pub const MAX_PAGE: usize = 1000;
/// The longest reference taken from a client.
const MAX_REFERENCE_BYTES: usize = 256;

/// The `Next-Range` response header.
pub const NEXT_RANGE: &str = "next-range";

/// What a list request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// `items=FIRST-LAST`: `count` items from position `first`.
    Items {
        /// The first position, from 0.
        first: usize,
        /// How many.
        count: usize,
    },
    /// `items=REFERENCE:COUNT`: `count` items after the one `reference` names.
    After {
        /// The reference of the item before the page; none for the first page.
        reference: Option<String>,
        /// How many.
        count: usize,
    },
}

impl Requested {
    /// How many items the page may hold.
    pub fn count(&self) -> usize {
        match self {
            Requested::Items { count, .. } | Requested::After { count, .. } => *count,
        }
    }
}

/// The order of a list by its items' references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest reference first.
    Ascending,
    /// Largest reference first.
    Descending,
}

impl Order {
    /// Whether `key` comes after `reference` in this order.
    fn follows(self, key: &str, reference: &str) -> bool {
        match self {
            Order::Ascending => key > reference,
            Order::Descending => key < reference,
        }
    }
}

/// The range a request asks for: its `Range` header, or the first page when it names none;
/// never more than a page's worth.
pub fn requested(headers: &HeaderMap) -> Result<Requested, ApiError> {
    match headers.get(axum::http::header::RANGE) {
        None => Ok(Requested::Items {
            first: 0,
            count: DEFAULT_PAGE,
        }),
        Some(value) => parse_range(value.to_str().unwrap_or("")),
    }
}

/// The headers of a page by position: `len` items from `first`, out of `total`. An empty page
/// names its first position twice (`items 4-4/4`): HTTP's `*/4` would be truer, but
/// Flowmailer's PHP SDK splits the range at `-` and fails on it; `total` tells it is empty.
pub fn content_range(first: usize, len: usize, total: usize) -> HeaderMap {
    let range = if len == 0 {
        format!("items {first}-{first}/{total}")
    } else {
        format!("items {first}-{}/{total}", first + (len - 1))
    };
    header_map(&[(axum::http::header::CONTENT_RANGE.as_str(), range)])
}

/// The headers of a page by reference: the references of its first and last items, and where
/// the next page starts when `more` items follow.
pub fn reference_range(
    asked: Option<&str>,
    first: Option<&str>,
    last: Option<&str>,
    count: usize,
    more: bool,
) -> HeaderMap {
    // An empty page names the reference it was asked after at both ends, so a client that
    // splits the header on ':' always finds two references.
    let asked = asked.unwrap_or("");
    let range = format!(
        "items {}:{}/*",
        first.unwrap_or(asked),
        last.unwrap_or(asked)
    );
    let mut headers = vec![(axum::http::header::CONTENT_RANGE.as_str(), range)];
    if let (true, Some(last)) = (more, last) {
        headers.push((NEXT_RANGE, format!("items={last}:{count}")));
    }
    header_map(&headers)
}

fn header_map(headers: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(*name),
            HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    map
}

/// Cuts one page out of `items`, which are in `order` of the references `key` gives them, and
/// names it in the response headers. References go on the wire hex-encoded, so any key works.
pub fn page<T>(
    requested: &Requested,
    items: Vec<T>,
    order: Order,
    key: impl Fn(&T) -> String,
) -> Result<(HeaderMap, Vec<T>), ApiError> {
    Ok(match requested {
        Requested::Items { first, count } => {
            let total = items.len();
            let page: Vec<T> = items.into_iter().skip(*first).take(*count).collect();
            (content_range(*first, page.len(), total), page)
        }
        Requested::After { reference, count } => {
            let after = match reference {
                Some(hex) => Some(decode_reference(hex)?),
                None => None,
            };
            let mut rest = items
                .into_iter()
                .skip_while(|item| {
                    after
                        .as_deref()
                        .is_some_and(|r| !order.follows(&key(item), r))
                })
                .peekable();
            let page: Vec<T> = rest.by_ref().take(*count).collect();
            let more = rest.peek().is_some();
            let wire = |item: &T| hex::encode(key(item));
            let headers = reference_range(
                reference.as_deref(),
                page.first().map(wire).as_deref(),
                page.last().map(wire).as_deref(),
                *count,
                more,
            );
            (headers, page)
        }
    })
}

/// A reference as this list wrote it, decoded.
fn decode_reference(hex: &str) -> Result<String, ApiError> {
    hex::decode(hex)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            ApiError::field(
                "Range",
                "invalidRange",
                "the reference is not one this list gave out; start again with items=:COUNT",
                Some(hex.into()),
            )
        })
}

fn parse_range(value: &str) -> Result<Requested, ApiError> {
    let invalid = || {
        ApiError::field(
            "Range",
            "invalidRange",
            "use Range: items=FIRST-LAST (e.g. items=0-9) or items=REFERENCE:COUNT (e.g. \
             items=:10, then the Next-Range of each answer)",
            Some(value.into()),
        )
    };
    let spec = value.trim().strip_prefix("items=").ok_or_else(invalid)?;
    if let Some((reference, count)) = spec.rsplit_once(':') {
        let count: usize = count.trim().parse().map_err(|_| invalid())?;
        let reference = reference.trim();
        if count == 0
            || reference.len() > MAX_REFERENCE_BYTES
            || !reference.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(invalid());
        }
        return Ok(Requested::After {
            reference: (!reference.is_empty()).then(|| reference.to_string()),
            count: count.min(MAX_PAGE),
        });
    }
    let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
    let first: usize = first.trim().parse().map_err(|_| invalid())?;
    let last: usize = last.trim().parse().map_err(|_| invalid())?;
    if last < first {
        return Err(invalid());
    }
    let last = last.min(first.saturating_add(MAX_PAGE - 1));
    Ok(Requested::Items {
        first,
        count: last - first + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(range: &str) -> Requested {
        let mut headers = HeaderMap::new();
        headers.insert("range", HeaderValue::from_str(range).unwrap());
        requested(&headers).unwrap()
    }

    fn page_of_one(requested: &Requested) -> Result<(HeaderMap, Vec<u32>), ApiError> {
        page(requested, vec![1], Order::Ascending, |n| n.to_string())
    }

    #[test]
    fn both_forms_of_range_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_range("items=0-9").unwrap(),
            Requested::Items {
                first: 0,
                count: 10
            }
        );
        assert_eq!(
            parse_range("items=:10").unwrap(),
            Requested::After {
                reference: None,
                count: 10
            }
        );
        assert_eq!(
            parse_range("items=0a1b:5").unwrap(),
            Requested::After {
                reference: Some("0a1b".into()),
                count: 5
            }
        );
        for bad in [
            "items=9-0",
            "bytes=0-9",
            "items=:0",
            "items=a-b:x",
            "items=a;b:3",
            "items=5",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
        let huge = format!("items={0}-{0}", usize::MAX);
        let (answer, page) =
            page(&asked(&huge), vec![1], Order::Ascending, |n| n.to_string()).unwrap();
        assert!(page.is_empty());
        assert_eq!(
            answer["content-range"],
            format!("items {0}-{0}/1", usize::MAX)
        );
    }

    #[test]
    fn a_page_by_position_names_its_positions() {
        let (answer, page) = page(
            &asked("items=2-3"),
            vec![1, 2, 3, 4, 5],
            Order::Ascending,
            |n| n.to_string(),
        )
        .unwrap();
        assert_eq!(page, [3, 4]);
        assert_eq!(answer["content-range"], "items 2-3/5");
        assert!(answer.get(NEXT_RANGE).is_none());
    }

    #[test]
    fn paging_by_reference_walks_the_list_once_even_when_it_changes() {
        let key = |n: &u32| format!("{n:04}");
        let mut items: Vec<u32> = (1..=7).collect();
        let mut seen = Vec::new();
        let mut range = "items=:3".to_string();
        loop {
            let (answer, page) =
                page(&asked(&range), items.clone(), Order::Ascending, key).unwrap();
            let content = answer["content-range"].to_str().unwrap().to_string();
            assert!(
                content.starts_with("items ") && content.ends_with("/*"),
                "{content}"
            );
            seen.extend(page);
            // The item the last reference names goes away meanwhile: paging goes on after it.
            if seen.len() == 3 {
                items.retain(|n| *n != 3);
            }
            match answer.get(NEXT_RANGE) {
                Some(next) => range = next.to_str().unwrap().to_string(),
                None => break,
            }
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);

        let (answer, page) = page(
            &asked("items=:3"),
            Vec::<u32>::new(),
            Order::Descending,
            key,
        )
        .unwrap();
        assert!(page.is_empty());
        assert_eq!(answer["content-range"], "items :/*");
        assert!(answer.get(NEXT_RANGE).is_none());
        assert!(page_of_one(&asked("items=zz:3")).is_err());
    }
}
