//! The bounce and complaint parser and classifier on any bytes the MX for returned mail may
//! receive: it must never panic, and its verdict must not depend on anything but the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let report = sluice::bounce::classify_message(raw);
    // The report is what the settling code stores as JSON.
    let json = serde_json::to_string(&report).expect("a report serialises");
    let again = serde_json::to_string(&sluice::bounce::classify_message(raw)).unwrap();
    assert_eq!(json, again, "the same bytes gave two verdicts");
});
