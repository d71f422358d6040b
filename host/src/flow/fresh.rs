//! Copies of messages this node just spooled, kept for their flows: a flow that starts while
//! its message's copy is here starts from it instead of reading the record and body back
//! from the store (a statement on PostgreSQL, and unpacking the body, on either backend).
//!
//! A copy is the record and body exactly as spooled, so a flow that starts from one sees
//! what it would have read. Whatever changes a spooled message before its flow finishes is
//! settled where the flow's outcome is recorded (the record is locked there and the spool
//! entry must still be there), as it is for a flow that read the store. The copies are
//! bounded by their bytes, the oldest let go first: a message whose copy is gone is read
//! from the store as before.

use std::collections::{BTreeMap, HashMap};

use crate::store::MessageRecord;

/// The most bytes of bodies kept.
pub const FRESH_COPIES_BYTES: usize = 16 * 1024 * 1024;

/// A spooled message's record and body, as spooled.
pub type FreshCopy = (MessageRecord, Vec<u8>);

/// The copies, by message id, with the order they came in.
#[derive(Debug)]
pub struct FreshCopies {
    budget: usize,
    bytes: usize,
    next: u64,
    by_id: HashMap<String, (u64, FreshCopy)>,
    by_age: BTreeMap<u64, String>,
}

impl FreshCopies {
    /// No copies, at most `budget` bytes of bodies.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            bytes: 0,
            next: 0,
            by_id: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Keeps a copy, letting the oldest go while the bodies are over the budget (a body
    /// larger than the whole budget is not kept).
    pub fn keep(&mut self, record: MessageRecord, body: Vec<u8>) {
        if body.len() > self.budget {
            return;
        }
        self.take(&record.id);
        while self.bytes + body.len() > self.budget {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some((_, (_, body))) = self.by_id.remove(&oldest) {
                self.bytes -= body.len();
            }
        }
        let age = self.next;
        self.next += 1;
        self.bytes += body.len();
        self.by_age.insert(age, record.id.clone());
        self.by_id.insert(record.id.clone(), (age, (record, body)));
    }

    /// Takes the copy of message `id`, if it is still kept.
    pub fn take(&mut self, id: &str) -> Option<FreshCopy> {
        let (age, copy) = self.by_id.remove(id)?;
        self.by_age.remove(&age);
        self.bytes -= copy.1.len();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageStatus;

    fn record(id: &str) -> MessageRecord {
        MessageRecord {
            id: id.into(),
            account_id: 1,
            source_id: 1,
            submitted_over: "api".into(),
            sender: "app@example.com".into(),
            recipient: "ann@example.net".into(),
            submitted_at: 0,
            data: None,
            flow_selector: None,
            flow_id: None,
            status: MessageStatus::Submitted,
            status_reason: None,
            subject: None,
            tags: Vec::new(),
            schedule_at: None,
            dmarc: None,
            header_message_id: None,
            resent_from: None,
            steps: Vec::new(),
            next_event: Some(1),
        }
    }

    #[test]
    fn copies_are_taken_once_and_the_oldest_go_first_over_the_budget() {
        let mut copies = FreshCopies::new(10);
        copies.keep(record("a"), vec![b'a'; 4]);
        copies.keep(record("b"), vec![b'b'; 4]);
        assert_eq!(copies.bytes, 8);
        // c does not fit beside a and b: a, the oldest, goes.
        copies.keep(record("c"), vec![b'c'; 4]);
        assert_eq!(copies.bytes, 8);
        assert!(copies.take("a").is_none());
        let (kept, body) = copies.take("b").unwrap();
        assert_eq!((kept.id.as_str(), body), ("b", vec![b'b'; 4]));
        assert!(copies.take("b").is_none(), "a copy is taken once");
        assert_eq!(copies.bytes, 4);
        // Larger than the whole budget: not kept, and nothing else let go for it.
        copies.keep(record("d"), vec![b'd'; 11]);
        assert!(copies.take("d").is_none());
        assert_eq!(copies.take("c").unwrap().1, vec![b'c'; 4]);
        assert_eq!(copies.bytes, 0);
        assert!(copies.by_age.is_empty() && copies.by_id.is_empty());
    }

    #[test]
    fn a_copy_kept_again_replaces_the_first() {
        let mut copies = FreshCopies::new(10);
        copies.keep(record("a"), vec![b'1'; 4]);
        copies.keep(record("a"), vec![b'2'; 6]);
        assert_eq!(copies.bytes, 6);
        assert_eq!(copies.take("a").unwrap().1, vec![b'2'; 6]);
        assert!(copies.by_age.is_empty());
    }
}
