//! Listing an account's messages (`GET /{account}/messages`, first page of 100) while another
//! account holds many large records: the per-account index makes the list read only its own
//! account's entries and decode only the records it shows.
//!
//! Prints median, p90 and p99 of one page read straight from the store, for the small
//! account and for the large one, and of reading every record, which each list did before.
//!
//!     cargo bench --bench list [-- OTHER_MESSAGES OWN_MESSAGES]

use std::time::{Duration, Instant};

use sluice::store::{
    MessageRecord, MessageSelection, MessageStatus, NewMessage, PageStart, Store, new_message_id,
    now_millis,
};

/// Spools `count` messages of an account, each record carrying `data_bytes` of JSON data.
async fn spool(store: &Store, account_id: u64, count: usize, data_bytes: usize) {
    let data = serde_json::json!({ "blob": "x".repeat(data_bytes) });
    let mut left = count;
    while left > 0 {
        let batch: Vec<NewMessage> = (0..left.min(500))
            .map(|n| NewMessage {
                record: MessageRecord {
                    id: new_message_id(),
                    account_id,
                    source_id: account_id,
                    submitted_over: "api".into(),
                    sender: "app@example.com".into(),
                    recipient: format!("r{n}@example.net"),
                    submitted_at: now_millis(),
                    data: Some(data.clone()),
                    flow_selector: None,
                    flow_id: None,
                    status: MessageStatus::Submitted,
                    status_reason: None,
                    subject: Some(format!("message {n}")),
                    tags: Vec::new(),
                    schedule_at: None,
                    dmarc: None,
                    header_message_id: None,
                    resent_from: None,
                    steps: Vec::new(),
                    next_event: None,
                },
                body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            })
            .collect();
        left -= batch.len();
        store.spool(batch).await.expect("spooled");
    }
}

fn percentiles(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!(
        "median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    )
}

fn time_page(store: &Store, account_id: u64, runs: usize) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            let page = store
                .message_list(
                    account_id,
                    &MessageSelection::default(),
                    PageStart::Position(0),
                    100,
                )
                .expect("listed");
            std::hint::black_box(page);
            started.elapsed()
        })
        .collect()
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let other = numbers.first().copied().unwrap_or(20_000);
    let own = numbers.get(1).copied().unwrap_or(200);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("store.redb")).expect("store opens");
    runtime.block_on(async {
        spool(&store, 1, other, 2048).await;
        spool(&store, 2, own, 256).await;
    });
    println!(
        "account 2 ({own} messages) beside account 1 ({other} messages of ~2 KB): {}",
        percentiles(time_page(&store, 2, 200))
    );
    println!(
        "account 1, first page of 100 of {other}: {}",
        percentiles(time_page(&store, 1, 50))
    );
    // What every list cost before the index: reading and decoding every record of every
    // account (approximated by reading both accounts' records in full).
    let scans = (0..20)
        .map(|_| {
            let started = Instant::now();
            let all = (
                store.messages_of(1).expect("read"),
                store.messages_of(2).expect("read"),
            );
            std::hint::black_box(all);
            started.elapsed()
        })
        .collect();
    println!(
        "reading and decoding all {} records, as each list did before: {}",
        other + own,
        percentiles(scans)
    );
}
