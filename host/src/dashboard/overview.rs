//! The overview: for a chosen period, per flow and in total, how many messages were
//! submitted, delivered, bounced (hard and soft), complained about, opened and clicked, how
//! long delivery took, and the same over time as charts.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::DashboardState;
use super::chart::{Series, line_chart};
use super::pages::render_page;
use super::session::Viewer;
use crate::access::Action;
use crate::store::{EventKind, MessageSelection, PageStart, Store, StoreError, now_millis};

/// Messages read for one overview at most: a period with more shows its newest ones and
/// says so (the store has no running totals yet).
const MAX_SCANNED: usize = 50_000;

/// The periods offered, in days, with how many buckets their charts have.
const PERIODS: [(u64, usize); 3] = [(1, 24), (7, 28), (30, 30)];

/// The query: the period in days.
#[derive(Debug, Default, Deserialize)]
pub(super) struct OverviewQuery {
    days: Option<u64>,
}

/// Counts for a flow or the total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Counts {
    submitted: u64,
    delivered: u64,
    hard_bounced: u64,
    soft_bounced: u64,
    complaints: u64,
    opened: u64,
    clicked: u64,
}

/// What the overview shows.
#[derive(Debug, Default)]
pub(super) struct Statistics {
    total: Counts,
    by_flow: BTreeMap<Option<u64>, Counts>,
    submitted_over_time: Vec<u64>,
    delivered_over_time: Vec<u64>,
    bounced_over_time: Vec<u64>,
    latencies_millis: Vec<u64>,
    truncated: bool,
}

/// Counts an account's messages made in `[since, until)` into `buckets` equal slices.
pub(super) fn statistics(
    store: &Store,
    account_id: u64,
    since: u64,
    until: u64,
    buckets: usize,
) -> Result<Statistics, StoreError> {
    let mut stats = Statistics {
        submitted_over_time: vec![0; buckets],
        delivered_over_time: vec![0; buckets],
        bounced_over_time: vec![0; buckets],
        ..Statistics::default()
    };
    let width = (until - since).div_ceil(buckets as u64).max(1);
    let bucket = |at: u64| ((at.saturating_sub(since) / width) as usize).min(buckets - 1);
    let selection = MessageSelection {
        oldest_first: false,
        since_millis: Some(since),
        before_millis: Some(until),
        flow_ids: None,
        ..MessageSelection::default()
    };
    let mut after: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = store.message_list(
            account_id,
            &selection,
            PageStart::After(after.as_deref()),
            500,
        )?;
        for record in &page.records {
            scanned += 1;
            stats.submitted_over_time[bucket(record.submitted_at)] += 1;
            let mut seen = Counts::default();
            for event in store.events(&record.id)? {
                let tally = match event.kind {
                    EventKind::Delivered => {
                        if seen.delivered == 0 {
                            stats.delivered_over_time[bucket(event.at)] += 1;
                            stats
                                .latencies_millis
                                .push(event.at.saturating_sub(record.submitted_at));
                        }
                        &mut seen.delivered
                    }
                    EventKind::HardBounce => {
                        stats.bounced_over_time[bucket(event.at)] += 1;
                        &mut seen.hard_bounced
                    }
                    EventKind::SoftBounce => {
                        stats.bounced_over_time[bucket(event.at)] += 1;
                        &mut seen.soft_bounced
                    }
                    EventKind::Complaint => &mut seen.complaints,
                    EventKind::Opened => &mut seen.opened,
                    EventKind::Clicked => &mut seen.clicked,
                    _ => continue,
                };
                *tally = 1;
            }
            let counts = stats.by_flow.entry(record.flow_id).or_default();
            for target in [counts, &mut stats.total] {
                target.submitted += 1;
                target.delivered += seen.delivered;
                target.hard_bounced += seen.hard_bounced;
                target.soft_bounced += seen.soft_bounced;
                target.complaints += seen.complaints;
                target.opened += seen.opened;
                target.clicked += seen.clicked;
            }
        }
        if scanned >= MAX_SCANNED {
            stats.truncated = page.more;
            break;
        }
        match page.records.last() {
            Some(last) if page.more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(stats)
}

/// The `q`-quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[index])
}

fn seconds(millis: Option<u64>) -> Option<String> {
    millis.map(|millis| format!("{:.1} s", millis as f64 / 1000.0))
}

/// `GET /`.
pub(super) async fn page(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Query(query): Query<OverviewQuery>,
) -> Response {
    let Some(account_id) = viewer.account_id else {
        return render_page(&state, &viewer, "overview.html", "overview", context! {});
    };
    if let Err(refusal) = viewer.account_for(Action::Read) {
        return refusal.into_response();
    }
    let (days, buckets) = PERIODS
        .into_iter()
        .find(|(days, _)| Some(*days) == query.days)
        .unwrap_or(PERIODS[1]);
    let until = now_millis();
    let since = until.saturating_sub(days * 86_400_000);
    let mut stats = match state
        .scan(account_id, move |store| {
            statistics(store, account_id, since, until, buckets)
        })
        .await
    {
        Ok(stats) => stats,
        Err(refusal) => return refusal,
    };
    stats.latencies_millis.sort_unstable();
    let width = (until - since) / buckets as u64;
    let labels: Vec<String> = (0..buckets)
        .map(|bucket| {
            let at = crate::timestamp::iso8601(since + width * bucket as u64);
            if days == 1 {
                at[11..16].to_string()
            } else {
                at[5..10].to_string()
            }
        })
        .collect();
    let chart = line_chart(
        "Messages over time",
        &labels,
        &[
            Series {
                name: "submitted",
                colour: "#3366cc",
                values: stats.submitted_over_time,
            },
            Series {
                name: "delivered",
                colour: "#2e8b57",
                values: stats.delivered_over_time,
            },
            Series {
                name: "bounced",
                colour: "#cc3333",
                values: stats.bounced_over_time,
            },
        ],
    );
    let flows = state.store.flows_of(account_id).unwrap_or_default();
    let flow_rows: Vec<_> = stats
        .by_flow
        .iter()
        .map(|(flow_id, counts)| {
            let name = match flow_id {
                Some(id) => flows
                    .iter()
                    .find(|flow| flow.id == *id)
                    .map_or_else(|| format!("flow {id}"), |flow| flow.name.clone()),
                None => "not yet sorted".to_string(),
            };
            context! { name => name, counts => minijinja::Value::from(minijinja::value::Serde(counts)) }
        })
        .collect();
    render_page(
        &state,
        &viewer,
        "overview.html",
        "overview",
        context! {
            days => days,
            periods => PERIODS.iter().map(|(days, _)| *days).collect::<Vec<_>>(),
            total => minijinja::Value::from(minijinja::value::Serde(&stats.total)),
            flows => flow_rows,
            chart => minijinja::Value::from_safe_string(chart),
            latency_median => seconds(quantile(&stats.latencies_millis, 0.5)),
            latency_p95 => seconds(quantile(&stats.latencies_millis, 0.95)),
            truncated => stats.truncated,
            max_scanned => MAX_SCANNED,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_of_sorted_values() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.95), Some(7));
        assert_eq!(quantile(&[1, 2, 3, 4, 5], 0.5), Some(3));
        assert_eq!(quantile(&(1..=100).collect::<Vec<_>>(), 0.95), Some(95));
    }
}
