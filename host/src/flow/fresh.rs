//! Copies of messages this node just spooled, kept for their flows: a flow that starts while
//! its message's copy is here starts from it instead of reading the record and body back
//! from the store (a statement on PostgreSQL, and unpacking the body, on either backend).
//!
//! A copy is the record and body exactly as spooled, so a flow that starts from one sees
//! what it would have read. Whatever changes a spooled message before its flow finishes is
//! settled where the flow's outcome is recorded (the record is locked there and the spool
//! entry must still be there), as it is for a flow that read the store. The copies are
//! bounded by their bytes. When they are full a new copy is not kept: the flows waiting
//! longest start first, so letting the oldest copies go would make every flow miss its copy
//! as long as a backlog lasts. Copies older than [`FRESH_COPY_AGE`] go first (a flow that
//! never took its copy). A message without its copy is read from the store as before.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::store::MessageRecord;

/// The most bytes of bodies kept.
pub const FRESH_COPIES_BYTES: usize = 16 * 1024 * 1024;

/// How long a copy is kept at most.
pub const FRESH_COPY_AGE: Duration = Duration::from_secs(60);

/// A spooled message's record and body, as spooled.
pub type FreshCopy = (MessageRecord, Vec<u8>);

/// The copies, by message id, with the order they came in.
#[derive(Debug)]
pub struct FreshCopies {
    budget: usize,
    max_age: Duration,
    bytes: usize,
    next: u64,
    by_id: HashMap<String, (u64, FreshCopy)>,
    by_age: BTreeMap<u64, (Instant, String)>,
}

impl FreshCopies {
    /// No copies, at most `budget` bytes of bodies, each kept at most `max_age`.
    pub fn new(budget: usize, max_age: Duration) -> Self {
        Self {
            budget,
            max_age,
            bytes: 0,
            next: 0,
            by_id: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Keeps a copy unless the bodies kept and it would be over the budget, after letting
    /// the copies older than the most age go.
    pub fn keep(&mut self, record: MessageRecord, body: Vec<u8>) {
        self.keep_at(record, body, Instant::now());
    }

    fn keep_at(&mut self, record: MessageRecord, body: Vec<u8>, now: Instant) {
        self.take(&record.id);
        while let Some(entry) = self.by_age.first_entry() {
            if now.saturating_duration_since(entry.get().0) < self.max_age {
                break;
            }
            let (_, id) = entry.remove();
            if let Some((_, (_, body))) = self.by_id.remove(&id) {
                self.bytes -= body.len();
            }
        }
        if self.bytes + body.len() > self.budget {
            return;
        }
        let age = self.next;
        self.next += 1;
        self.bytes += body.len();
        self.by_age.insert(age, (now, record.id.clone()));
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

    fn record(id: &str) -> MessageRecord {
        MessageRecord {
            id: id.into(),
            ..crate::store::tests::record(1, "fresh")
        }
    }

    #[test]
    fn copies_are_taken_once_and_new_ones_wait_for_room_or_for_old_ones_to_age() {
        let start = Instant::now();
        let mut copies = FreshCopies::new(10, Duration::from_secs(60));
        copies.keep_at(record("a"), vec![b'a'; 4], start);
        copies.keep_at(record("b"), vec![b'b'; 4], start);
        assert_eq!(copies.bytes, 8);
        // c does not fit beside a and b: not kept; a and b, whose flows come first, stay.
        copies.keep_at(record("c"), vec![b'c'; 4], start);
        assert!(copies.take("c").is_none());
        let (kept, body) = copies.take("b").unwrap();
        assert_eq!((kept.id.as_str(), body), ("b", vec![b'b'; 4]));
        assert!(copies.take("b").is_none(), "a copy is taken once");
        assert_eq!(copies.bytes, 4);
        // Larger than the whole budget: not kept.
        copies.keep_at(record("d"), vec![b'd'; 11], start);
        assert!(copies.take("d").is_none());
        // a, never taken, goes once it is older than the most age, making room.
        copies.keep_at(record("e"), vec![b'e'; 8], start + Duration::from_secs(59));
        assert!(copies.take("e").is_none(), "no room while a is young");
        copies.keep_at(record("e"), vec![b'e'; 8], start + Duration::from_secs(60));
        assert!(copies.take("a").is_none());
        assert_eq!(copies.take("e").unwrap().1, vec![b'e'; 8]);
        assert_eq!(copies.bytes, 0);
        assert!(copies.by_age.is_empty() && copies.by_id.is_empty());
    }

    #[test]
    fn a_copy_kept_again_replaces_the_first() {
        let mut copies = FreshCopies::new(10, Duration::from_secs(60));
        copies.keep(record("a"), vec![b'1'; 4]);
        copies.keep(record("a"), vec![b'2'; 6]);
        assert_eq!(copies.bytes, 6);
        assert_eq!(copies.take("a").unwrap().1, vec![b'2'; 6]);
        assert!(copies.by_age.is_empty());
    }
}
