//! `GET /{account}/recipient/{address}`: what the account knows of one recipient, as
//! Flowmailer's `Recipient` model has it: the `address`, its `filters` (the account's filter
//! list entry for it, when there is one) and, when the request gives a `;daterange=`, a
//! `messageSummary` of the account's messages to it submitted within that range (Flowmailer
//! gives the summary only with a range, too).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::filters::FilterView;
use super::messages::matrix_date_range;
use super::parameters::Matrix;
use crate::store::{EventKind, MessageSelection, PageStart, filter_key};

/// The most messages one summary counts; a range holding more is refused, not cut short
/// (the same bound as the statistics calls).
const MAX_SUMMARY_MESSAGES: usize = 100_000;
/// The longest address taken from the path.
const MAX_ADDRESS_BYTES: usize = 320;

/// Flowmailer's `MessageSummary` of one recipient's messages.
#[derive(Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummary {
    /// Messages through their flow (a PROCESSED event).
    processed: u64,
    /// Messages handed to the recipient's server: a delivery attempt was made.
    sent: u64,
    /// Messages the recipient's server accepted.
    delivered: u64,
    /// Opens, every one counted.
    opened: u64,
    /// Messages opened at least once.
    unique_opened: u64,
    /// Clicks, every one counted.
    clicked: u64,
    /// Messages with at least one click.
    unique_clicked: u64,
    /// From submission to the first DELIVERED event, averaged over the delivered messages;
    /// absent when none was delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    average_deliver_time_millis: Option<u64>,
}

/// Flowmailer's `Recipient`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Recipient)]
#[serde(rename_all = "camelCase")]
pub struct RecipientView {
    address: String,
    /// The account's filter list entry for the address (none or one: the list holds an
    /// address once).
    filters: Vec<FilterView>,
    /// Only with `;daterange=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    message_summary: Option<MessageSummary>,
}

/// `GET /{account}/recipient/{address}` (`;daterange=FROM,TO` adds the message summary).
#[utoipa::path(
    get,
    path = "/{account}/recipient/{address}",
    tags = ["Messages"],
    responses((status = 200, description = "What the account knows of the address: its filter list entry and, with ;daterange=, a summary of its messages", body = RecipientView)),
    extensions(("x-matrix-parameters" = json!(["daterange"])))
)]
pub async fn get(
    State(state): State<ApiState>,
    Path((account_id, address)): Path<(u64, String)>,
    matrix: Matrix,
    caller: Caller,
) -> Result<Json<RecipientView>, ApiError> {
    caller.require(account_id)?;
    let address = address.trim().to_string();
    if address.is_empty() || address.len() > MAX_ADDRESS_BYTES {
        return Err(ApiError::field(
            "recipient",
            "invalidValue",
            format!("an address of 1 to {MAX_ADDRESS_BYTES} bytes"),
            None,
        ));
    }
    let range = matrix_date_range(&matrix, "daterange")?;
    let key = filter_key(&address);
    let filters = state
        .store
        .filters_of(account_id, Some(key.as_str()))?
        .into_iter()
        .filter(|entry| filter_key(&entry.address) == key)
        .map(FilterView::from)
        .collect();
    let message_summary = match range {
        (Some(since), Some(before)) => {
            Some(summary(&state, account_id, &address, since, before).await?)
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::field(
                "daterange",
                "invalidValue",
                "a message summary needs both ends of the range: ;daterange=FROM,TO",
                None,
            ));
        }
    };
    Ok(Json(RecipientView {
        address,
        filters,
        message_summary,
    }))
}

/// Counts the account's messages to `address` submitted in `[since, before)`, in the scan pool
/// the statistics share, so a tenant asking for many waits behind its own scans only.
async fn summary(
    state: &ApiState,
    account_id: u64,
    address: &str,
    since: u64,
    before: u64,
) -> Result<MessageSummary, ApiError> {
    let selection = MessageSelection {
        recipient: Some(address.to_string()),
        since_millis: Some(since),
        before_millis: Some(before),
        oldest_first: true,
        ..MessageSelection::default()
    };
    let counted = state
        .scans
        .run(account_id, move |store| {
            let listed = store.message_list(
                account_id,
                &selection,
                PageStart::After(None),
                MAX_SUMMARY_MESSAGES,
            )?;
            if listed.more {
                return Ok(None);
            }
            let mut tally = Tally::default();
            for record in &listed.records {
                let events = store.events(&record.id)?;
                tally.add(record.submitted_at, events.iter().map(|e| (e.kind, e.at)));
            }
            Ok(Some(tally.summary()))
        })
        .await?;
    counted.ok_or_else(|| {
        ApiError::field(
            "daterange",
            "tooLarge",
            format!(
                "the range holds more than {MAX_SUMMARY_MESSAGES} messages to this address: ask \
                 for a shorter one"
            ),
            None,
        )
    })
}

/// The counts of a summary as messages are added to it.
#[derive(Default)]
struct Tally {
    summary: MessageSummary,
    deliver_millis_total: u64,
}

impl Tally {
    /// Adds one message submitted at `submitted_at` with its events (kind, time).
    fn add(&mut self, submitted_at: u64, events: impl Iterator<Item = (EventKind, u64)>) {
        let mut processed = false;
        let mut sent = false;
        let mut delivered_at = None;
        let mut opens = 0;
        let mut clicks = 0;
        for (kind, at) in events {
            match kind {
                EventKind::Processed => processed = true,
                EventKind::Attempt | EventKind::SoftBounce | EventKind::HardBounce => sent = true,
                EventKind::Delivered => {
                    sent = true;
                    delivered_at = Some(delivered_at.map_or(at, |first: u64| first.min(at)));
                }
                EventKind::Opened => opens += 1,
                EventKind::Clicked => clicks += 1,
                _ => {}
            }
        }
        let summary = &mut self.summary;
        summary.processed += u64::from(processed);
        summary.sent += u64::from(sent);
        summary.opened += opens;
        summary.unique_opened += u64::from(opens > 0);
        summary.clicked += clicks;
        summary.unique_clicked += u64::from(clicks > 0);
        if let Some(at) = delivered_at {
            summary.delivered += 1;
            self.deliver_millis_total += at.saturating_sub(submitted_at);
        }
    }

    fn summary(mut self) -> MessageSummary {
        self.summary.average_deliver_time_millis = (self.summary.delivered > 0)
            .then(|| self.deliver_millis_total / self.summary.delivered);
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_counts_messages_once_and_opens_and_clicks_each_time() {
        let mut tally = Tally::default();
        tally.add(
            1_000,
            [
                (EventKind::Submitted, 1_000),
                (EventKind::Processed, 1_100),
                (EventKind::Attempt, 1_200),
                (EventKind::Delivered, 3_000),
                (EventKind::Opened, 4_000),
                (EventKind::Opened, 5_000),
                (EventKind::Clicked, 5_500),
            ]
            .into_iter(),
        );
        tally.add(
            2_000,
            [(EventKind::Processed, 2_100), (EventKind::Delivered, 3_000)].into_iter(),
        );
        tally.add(
            2_000,
            [
                (EventKind::Processed, 2_100),
                (EventKind::HardBounce, 2_500),
            ]
            .into_iter(),
        );
        tally.add(2_000, [(EventKind::Held, 2_100)].into_iter());
        assert_eq!(
            tally.summary(),
            MessageSummary {
                processed: 3,
                sent: 3,
                delivered: 2,
                opened: 2,
                unique_opened: 1,
                clicked: 1,
                unique_clicked: 1,
                // (2000 + 1000) / 2
                average_deliver_time_millis: Some(1_500),
            }
        );
        assert_eq!(Tally::default().summary().average_deliver_time_millis, None);
    }
}
