//! The API's `Range` paging, by position (`items=FIRST-LAST`) and by reference
//! (`items=REFERENCE:COUNT`), on any header value and list length: never a panic, and a page
//! that is what the `Content-Range` (and `Next-Range`) it answers with say.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use sluice::api::Order;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the list's length, the rest is the header value as sent.
    let (total, value) = match data {
        [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low]) % 4096), rest),
        _ => return,
    };
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, value);
    let items: Vec<usize> = (0..total).collect();
    let key = |n: &usize| format!("{n:05}");
    let Ok(requested) = sluice::api::requested(&headers) else {
        return;
    };
    let Ok((answer, page)) = sluice::api::page(&requested, items, Order::Ascending, key) else {
        return;
    };
    assert!(page.len() <= 1000, "a page holds at most 1000 items");
    let range = answer
        .get(header::CONTENT_RANGE)
        .expect("a page names its range")
        .to_str()
        .expect("ASCII");
    let (span, of) = range
        .strip_prefix("items ")
        .and_then(|rest| rest.split_once('/'))
        .expect("items SPAN/TOTAL");
    if of == "*" {
        // By reference: the span names the page's first and last items, and a next range
        // follows while items remain.
        let (first, last) = span.split_once(':').expect("FIRST:LAST");
        let named = |hex: &str| -> Option<usize> {
            String::from_utf8(hex::decode(hex).ok()?).ok()?.parse().ok()
        };
        match (page.first(), page.last()) {
            (Some(low), Some(high)) => {
                assert_eq!(named(first), Some(*low), "{range}");
                assert_eq!(named(last), Some(*high), "{range}");
                assert_eq!(page, (*low..=*high).collect::<Vec<_>>(), "{range}");
                assert_eq!(
                    answer.get("next-range").is_some(),
                    *high + 1 < total,
                    "{range}"
                );
            }
            _ => assert!(answer.get("next-range").is_none()),
        }
        return;
    }
    assert_eq!(of, total.to_string());
    let (first, last) = span.split_once('-').expect("FIRST-LAST");
    let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
    if page.is_empty() {
        // An empty page names its first position twice, at or past the end (Flowmailer's
        // SDK cannot split HTTP's `*/TOTAL`).
        assert!(first == last && first >= total, "{range}");
        return;
    }
    assert!(first <= last && last < total, "{range}");
    assert_eq!(page, (first..=last).collect::<Vec<_>>(), "{range}");
});
