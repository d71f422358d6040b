//! The synchronous-reply classifier, as delivery will call it.

use super::*;

#[test]
fn an_unknown_mailbox_is_hard() {
    let verdict = classify_reply(550, Some("5.1.1"), "5.1.1 <ann@example.net>: User unknown");
    assert_eq!(verdict.reason, Reason::UserUnknown);
    assert_eq!(verdict.class, Class::Hard);
}

#[test]
fn a_temporary_reply_is_never_hard() {
    let verdict = classify_reply(
        450,
        Some("4.1.1"),
        "4.1.1 <ann@example.net>: Recipient address rejected: User unknown",
    );
    assert_eq!(verdict.class, Class::Soft);
}
