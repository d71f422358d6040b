//! The API's `Range: items=FIRST-LAST` paging on any header value and list length: never a
//! panic, and a page that is what the `Content-Range` it answers with says.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

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
    let Ok((answer, page)) = sluice::api::page(&headers, items) else {
        return;
    };
    let range = answer
        .get(header::CONTENT_RANGE)
        .expect("a page names its range")
        .to_str()
        .expect("ASCII");
    let (span, of) = range
        .strip_prefix("items ")
        .and_then(|rest| rest.split_once('/'))
        .expect("items SPAN/TOTAL");
    assert_eq!(of, total.to_string());
    if span == "*" {
        assert!(page.is_empty());
        return;
    }
    let (first, last) = span.split_once('-').expect("FIRST-LAST");
    let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
    assert!(first <= last && last < total, "{range}");
    assert!(page.len() <= 1000, "a page holds at most 1000 items");
    assert_eq!(page, (first..=last).collect::<Vec<_>>(), "{range}");
});
