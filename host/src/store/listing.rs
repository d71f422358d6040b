//! Listing an account's messages for the API: by position or after a reference (a message's
//! id), oldest or newest first, within a date range, of some flows. Message ids begin with the
//! time they were made, so a date range is a range of ids: only the records of the page (and,
//! when the flows are chosen, the records looked at) are read.

use std::ops::Bound;

use super::kv::ReadableTable;

use super::{
    ACCOUNT_MESSAGES, MESSAGES, MessageRecord, MessageStatus, Store, StoreError, read_indexed,
};

/// Which of an account's messages a list shows, and in what order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSelection {
    /// Oldest first (`sortorder=ASC`) rather than newest first.
    pub oldest_first: bool,
    /// Only messages made at or after this time (milliseconds since the Unix epoch).
    pub since_millis: Option<u64>,
    /// Only messages made before this time.
    pub before_millis: Option<u64>,
    /// Only messages that went through one of these flows.
    pub flow_ids: Option<Vec<u64>>,
    /// Only messages submitted by one of these sources.
    pub source_ids: Option<Vec<u64>>,
    /// Only messages to this recipient (compared without regard to case).
    pub recipient: Option<String>,
    /// Only messages from this envelope sender (compared without regard to case).
    pub sender: Option<String>,
    /// Only messages with this tag.
    pub tag: Option<String>,
    /// Only messages in one of these states.
    pub statuses: Option<Vec<MessageStatus>>,
}

impl MessageSelection {
    /// Whether the selection looks at records, not only at ids.
    fn reads_records(&self) -> bool {
        self.flow_ids.is_some()
            || self.source_ids.is_some()
            || self.recipient.is_some()
            || self.sender.is_some()
            || self.tag.is_some()
            || self.statuses.is_some()
    }

    /// Whether a record is one the selection shows (its time and account aside).
    fn chooses(&self, record: &MessageRecord) -> bool {
        let among = |ids: &Option<Vec<u64>>, id: Option<u64>| {
            ids.as_ref()
                .is_none_or(|ids| id.is_some_and(|id| ids.contains(&id)))
        };
        among(&self.flow_ids, record.flow_id)
            && among(&self.source_ids, Some(record.source_id))
            && self
                .recipient
                .as_ref()
                .is_none_or(|address| address.eq_ignore_ascii_case(&record.recipient))
            && self
                .sender
                .as_ref()
                .is_none_or(|address| address.eq_ignore_ascii_case(&record.sender))
            && self
                .tag
                .as_ref()
                .is_none_or(|tag| record.tags.contains(tag))
            && self
                .statuses
                .as_ref()
                .is_none_or(|statuses| statuses.contains(&record.status))
    }
}

/// Where a page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageStart<'a> {
    /// At this position of the selection.
    Position(usize),
    /// Right after the message with this id (from the start when none), whether or not that
    /// message still exists.
    After(Option<&'a str>),
}

/// One page of messages.
#[derive(Debug, PartialEq)]
pub struct MessagePage {
    /// The messages, in the selection's order.
    pub records: Vec<MessageRecord>,
    /// How many messages the selection holds in all; counted for pages by position only.
    pub total: Option<usize>,
    /// Whether more messages follow this page.
    pub more: bool,
}

/// The first id a message made at `millis` can have: ids begin with the microseconds in hex.
fn id_floor(millis: u64) -> String {
    format!("{:014x}", millis.saturating_mul(1000))
}

impl Store {
    /// One page of an account's messages as `selection` chooses and orders them.
    pub fn message_list(
        &self,
        account_id: u64,
        selection: &MessageSelection,
        start: PageStart<'_>,
        count: usize,
    ) -> Result<MessagePage, StoreError> {
        let since = selection.since_millis.map(id_floor);
        let before = selection.before_millis.map(id_floor);
        let mut lower = match &since {
            Some(id) => Bound::Included((account_id, id.as_str())),
            None => Bound::Included((account_id, "")),
        };
        let mut upper = match (&before, account_id.checked_add(1)) {
            (Some(id), _) => Bound::Excluded((account_id, id.as_str())),
            (None, Some(next)) => Bound::Excluded((next, "")),
            (None, None) => Bound::Unbounded,
        };
        if let PageStart::After(Some(reference)) = start {
            let after = (account_id, reference);
            // The reference narrows the range only where it lies inside it.
            if selection.oldest_first {
                if bound_below(&lower, &after) {
                    lower = Bound::Excluded(after);
                }
            } else if bound_above(&upper, &after) {
                upper = Bound::Excluded(after);
            }
        }

        let txn = self.db.begin_read()?;
        let index = txn.open_table(ACCOUNT_MESSAGES)?;
        let records = txn.open_table(MESSAGES)?;
        let range = index.range::<(u64, &str)>((lower, upper))?;
        let ids: Box<dyn Iterator<Item = _>> = if selection.oldest_first {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let skip = match start {
            PageStart::Position(first) => first,
            PageStart::After(_) => 0,
        };
        let mut seen = 0;
        let mut page = Vec::new();
        let mut more = false;
        for entry in ids {
            let (key, _) = entry?;
            let id = key.1;
            let record = if selection.reads_records() {
                // Choosing by a record's fields reads every record looked at.
                let record = read_indexed(&records, &id)?;
                if !selection.chooses(&record) {
                    continue;
                }
                Some(record)
            } else {
                None
            };
            if seen >= skip {
                if page.len() == count {
                    more = true;
                    if matches!(start, PageStart::After(_)) {
                        break;
                    }
                } else {
                    page.push(match record {
                        Some(record) => record,
                        None => read_indexed(&records, &id)?,
                    });
                }
            }
            seen += 1;
        }
        Ok(MessagePage {
            records: page,
            total: matches!(start, PageStart::Position(_)).then_some(seen),
            more,
        })
    }
}

/// Whether `key` lies at or above the lower bound, so excluding from it narrows the range.
fn bound_below(lower: &Bound<(u64, &str)>, key: &(u64, &str)) -> bool {
    match lower {
        Bound::Included(bound) | Bound::Excluded(bound) => key >= bound,
        Bound::Unbounded => true,
    }
}

/// Whether `key` lies at or below the upper bound.
fn bound_above(upper: &Bound<(u64, &str)>, key: &(u64, &str)) -> bool {
    match upper {
        Bound::Included(bound) | Bound::Excluded(bound) => key <= bound,
        Bound::Unbounded => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;
    use crate::store::backends::{TestPlace, on_both_backends};
    use crate::store::tests::record;

    /// Spools messages of account 2 made at the given times (ids carry the time); returns
    /// their ids oldest first.
    async fn spool_at(store: &Store, times: &[(u64, Option<u64>)]) -> Vec<String> {
        let mut ids = Vec::new();
        for (n, (millis, flow)) in times.iter().enumerate() {
            let mut message = record(2, &format!("m{n}"));
            message.id = format!("{:014x}{:012x}", millis * 1000, n);
            message.flow_id = *flow;
            message.recipient = format!("m{n}@example.net");
            ids.push(message.id.clone());
            let body = b"Subject: x\r\n\r\nbody\r\n".to_vec();
            store
                .spool(vec![NewMessage {
                    record: message,
                    body,
                }])
                .await
                .unwrap();
        }
        ids
    }

    fn ids(page: &MessagePage) -> Vec<&str> {
        page.records
            .iter()
            .map(|record| record.id.as_str())
            .collect()
    }

    on_both_backends!(paging_after_a_reference_walks_each_order_once);
    async fn paging_after_a_reference_walks_each_order_once(place: TestPlace) {
        let store = place.open();
        let times: Vec<(u64, Option<u64>)> = (1..=7).map(|n| (n * 1000, None)).collect();
        let made = spool_at(&store, &times).await;
        for oldest_first in [true, false] {
            let selection = MessageSelection {
                oldest_first,
                ..MessageSelection::default()
            };
            let mut seen: Vec<String> = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .message_list(2, &selection, PageStart::After(after.as_deref()), 3)
                    .unwrap();
                assert_eq!(page.total, None);
                seen.extend(ids(&page).into_iter().map(str::to_string));
                if !page.more {
                    break;
                }
                after = seen.last().cloned();
            }
            let mut expected = made.clone();
            if !oldest_first {
                expected.reverse();
            }
            assert_eq!(seen, expected, "oldest first: {oldest_first}");
        }
        // A reference whose message is gone still marks a place.
        let gone = format!("{:014x}{:012x}", 3500 * 1000, 0);
        let page = store
            .message_list(
                2,
                &MessageSelection::default(),
                PageStart::After(Some(&gone)),
                10,
            )
            .unwrap();
        assert_eq!(ids(&page), [&made[2], &made[1], &made[0]]);
    }

    on_both_backends!(a_date_range_and_flows_choose_the_messages);
    async fn a_date_range_and_flows_choose_the_messages(place: TestPlace) {
        let store = place.open();
        let made = spool_at(
            &store,
            &[
                (1000, Some(1)),
                (2000, Some(2)),
                (3000, Some(1)),
                (4000, None),
            ],
        )
        .await;
        let within = MessageSelection {
            oldest_first: true,
            since_millis: Some(2000),
            before_millis: Some(4000),
            ..MessageSelection::default()
        };
        let page = store
            .message_list(2, &within, PageStart::Position(0), 10)
            .unwrap();
        assert_eq!(ids(&page), [&made[1], &made[2]]);
        assert_eq!((page.total, page.more), (Some(2), false));

        let of_flow_one = MessageSelection {
            flow_ids: Some(vec![1]),
            ..MessageSelection::default()
        };
        let page = store
            .message_list(2, &of_flow_one, PageStart::Position(0), 1)
            .unwrap();
        assert_eq!(ids(&page), [&made[2]]);
        assert_eq!((page.total, page.more), (Some(2), true));
        let to_m2_held = MessageSelection {
            recipient: Some("M2@Example.NET".into()),
            statuses: Some(vec![MessageStatus::Submitted]),
            ..MessageSelection::default()
        };
        let page = store
            .message_list(2, &to_m2_held, PageStart::Position(0), 10)
            .unwrap();
        assert_eq!(ids(&page), [&made[2]]);
        let held = MessageSelection {
            statuses: Some(vec![MessageStatus::Held]),
            ..MessageSelection::default()
        };
        let page = store
            .message_list(2, &held, PageStart::After(None), 10)
            .unwrap();
        assert!(page.records.is_empty());
        // Another account sees none of them.
        let other = store
            .message_list(1, &MessageSelection::default(), PageStart::Position(0), 10)
            .unwrap();
        assert!(other.records.is_empty());
    }
}
