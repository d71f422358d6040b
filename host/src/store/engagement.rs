//! Opens and clicks: each one is counted, but only the first few of a message (opens) and of
//! each of its links (clicks) are kept as events. Anyone holding a tracking URL can fetch it
//! in a loop; that must not grow the message's record, its views or its webhook calls
//! without end.

use std::sync::Arc;

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::{Store, StoreError, append_events, record_in};
use crate::store::Event;

/// Counts per message and counter (`open`, `click:INDEX`).
pub(super) const ENGAGEMENT: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("engagement");

/// Opens kept as events per message, and clicks per link; later ones are only counted.
pub const MAX_KEPT_ENGAGEMENTS: u64 = 20;

/// What recording an open or a click came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engagement {
    /// Kept as an event; this many in all under its counter.
    Kept(u64),
    /// Counted only; this many in all under its counter.
    Counted(u64),
}

/// Removes a message's counts, in the caller's transaction (the message's purge).
pub(super) fn forget_counts(txn: &WriteTransaction, id: &str) -> Result<(), StoreError> {
    let mut counts = txn.open_table(ENGAGEMENT)?;
    let counters: Vec<String> = counts
        .range((id, "")..)?
        .map_while(|entry| match entry {
            Ok((key, _)) => {
                let (message, counter) = key;
                (message == id).then(|| Ok(counter.to_string()))
            }
            Err(error) => Some(Err(error)),
        })
        .collect::<Result<_, _>>()?;
    for counter in &counters {
        counts.delete((id, counter.as_str()))?;
    }
    Ok(())
}

impl Store {
    /// Counts an open or a click of a message under `counter` and keeps it as an event while
    /// fewer than [`MAX_KEPT_ENGAGEMENTS`] are. `NotFound` when the message does not exist.
    pub async fn record_engagement(
        &self,
        id: &str,
        counter: &str,
        event: Event,
    ) -> Result<Engagement, StoreError> {
        let key = id.to_string();
        let counter = counter.to_string();
        let hooks = Arc::clone(&self.webhooks);
        // A missing message is an answer, not a failure: an error would roll back the
        // transaction this writer shares with others.
        let recorded = self
            .write_row_locking(move |txn| {
                let Some(mut message) = record_in(txn, &key)? else {
                    return Ok(None);
                };
                let mut counts = txn.open_table(ENGAGEMENT)?;
                let seen = counts
                    .get((key.as_str(), counter.as_str()))?
                    .map_or(0, |count| count)
                    + 1;
                counts.insert((key.as_str(), counter.as_str()), seen)?;
                drop(counts);
                if seen > MAX_KEPT_ENGAGEMENTS {
                    return Ok(Some(Engagement::Counted(seen)));
                }
                append_events(txn, &hooks, &mut message, std::slice::from_ref(&event))?;
                Ok(Some(Engagement::Kept(seen)))
            })
            .await?;
        recorded.ok_or_else(|| StoreError::NotFound(format!("message {id}")))
    }

    /// A message's open and click counts by counter (`open`, `click:INDEX`).
    pub fn engagement_counts(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENGAGEMENT)?;
        table
            .range((id, "")..)?
            .map_while(|entry| match entry {
                Ok((key, count)) => {
                    let (message, counter) = key;
                    (message == id).then(|| Ok((counter.to_string(), count)))
                }
                Err(error) => Some(Err(error)),
            })
            .collect()
    }

    /// The events of a message, for tests of the caps.
    #[cfg(test)]
    fn event_count(&self, id: &str) -> usize {
        let txn = self.db.begin_read().unwrap();
        let table = txn.open_table(super::EVENTS).unwrap();
        table.range((id, 0)..=(id, u32::MAX)).unwrap().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventKind;
    use crate::store::NewMessage;
    use crate::store::backends::{TestPlace, on_both_backends};

    async fn spooled_message(store: &Store) -> String {
        let record = crate::store::tests::record(1, "hi");
        let id = record.id.clone();
        let body = b"Subject: hi\r\n\r\nhello\r\n".to_vec();
        store
            .spool(vec![NewMessage { record, body }])
            .await
            .unwrap();
        id
    }

    on_both_backends!(opens_past_the_cap_are_counted_not_kept);
    async fn opens_past_the_cap_are_counted_not_kept(place: TestPlace) {
        let store = place.open();
        let id = spooled_message(&store).await;
        let open = || Event {
            kind: EventKind::Opened,
            at: 1,
            detail: None,
        };
        for _ in 0..MAX_KEPT_ENGAGEMENTS {
            let recorded = store.record_engagement(&id, "open", open()).await.unwrap();
            assert!(matches!(recorded, Engagement::Kept(_)));
        }
        let before = store.event_count(&id);
        let recorded = store.record_engagement(&id, "open", open()).await.unwrap();
        assert_eq!(recorded, Engagement::Counted(MAX_KEPT_ENGAGEMENTS + 1));
        assert_eq!(store.event_count(&id), before);
        // Each link has a count of its own.
        let click = store
            .record_engagement(&id, "click:0", open())
            .await
            .unwrap();
        assert_eq!(click, Engagement::Kept(1));
        let counts = store.engagement_counts(&id).unwrap();
        assert_eq!(
            counts,
            vec![
                ("click:0".to_string(), 1),
                ("open".to_string(), MAX_KEPT_ENGAGEMENTS + 1)
            ]
        );
    }

    on_both_backends!(a_missing_message_is_not_found);
    async fn a_missing_message_is_not_found(place: TestPlace) {
        let store = place.open();
        let event = Event {
            kind: EventKind::Opened,
            at: 1,
            detail: None,
        };
        let error = store.record_engagement("nope", "open", event).await;
        assert!(matches!(error, Err(StoreError::NotFound(_))));
    }
}
