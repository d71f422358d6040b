//! Statistics over time, as Flowmailer's `DataSets`: `{list: [{name, samples: [{timestamp,
//! value}]}]}`, one data set per kind of event, counted per interval within the date range.
//! `GET /{account}/messagestats` (`;flow_ids=`, `?interval=`), `GET /{account}/flows/{id}/stats`
//! and `GET /{account}/sources/{id}/stats` (`;interval=`).
//!
//! The messages counted are those submitted within the range; their events are counted in the
//! interval they happened in, when that lies within the range too.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::flows::own_flow;
use super::messages::matrix_date_range;
use super::parameters::{Matrix, id_list};
use crate::store::{EventKind, MessageSelection, PageStart};
use crate::timestamp::iso8601;

/// The most intervals one answer may have.
const MAX_SAMPLES: u64 = 1000;
/// The most messages one answer may count; a longer range is refused, not cut short.
const MAX_MESSAGES: usize = 100_000;
/// The interval when none is given: a day (whole days more for a range of over 1000 days).
const DEFAULT_INTERVAL_SECS: u64 = 86_400;

/// The kinds of event counted, and the name of each data set.
const COUNTED: [(EventKind, &str); 8] = [
    (EventKind::Processed, "processed"),
    (EventKind::Delivered, "delivered"),
    (EventKind::SoftBounce, "softbounce"),
    (EventKind::HardBounce, "hardbounce"),
    (EventKind::Reject, "reject"),
    (EventKind::Opened, "opened"),
    (EventKind::Clicked, "clicked"),
    (EventKind::Complaint, "complaint"),
];

/// One count (Flowmailer's `Sample`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sample {
    timestamp: String,
    value: u64,
}

/// One kind of event over time (Flowmailer's `DataSet`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DataSet {
    name: &'static str,
    samples: Vec<Sample>,
}

/// Flowmailer's `DataSets`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DataSets {
    list: Vec<DataSet>,
}

/// `?interval=SECONDS` of `messagestats`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntervalQuery {
    #[serde(default)]
    interval: Option<u64>,
}

/// Counts the events of the messages `selection` chooses (its date range set from `matrix`),
/// in the scan pool the dashboard shares (see `crate::scans`): a tenant asking for many
/// statistics at once waits for its own, not the others'.
async fn count(
    state: &ApiState,
    account_id: u64,
    matrix: &Matrix,
    interval_secs: Option<u64>,
    mut selection: MessageSelection,
) -> Result<DataSets, ApiError> {
    let (Some(since), Some(before)) = matrix_date_range(matrix, "daterange")? else {
        return Err(ApiError::field(
            "daterange",
            "required",
            "statistics need a date range: ;daterange=FROM,TO",
            None,
        ));
    };
    // Without an interval: a day, or as many days as keep a long range within the bound.
    let interval_secs = interval_secs.unwrap_or_else(|| {
        let range_secs = before.saturating_sub(since).div_ceil(1000);
        let days = range_secs
            .div_ceil(DEFAULT_INTERVAL_SECS * MAX_SAMPLES)
            .max(1);
        DEFAULT_INTERVAL_SECS * days
    });
    let interval = interval_secs.saturating_mul(1000);
    let samples = (before.saturating_sub(since)).div_ceil(interval.max(1));
    if interval == 0 || samples > MAX_SAMPLES {
        return Err(ApiError::field(
            "interval",
            "invalidValue",
            format!(
                "the interval must be at least a second and cut the range into at most {MAX_SAMPLES} parts"
            ),
            Some(interval_secs.into()),
        ));
    }
    selection.since_millis = Some(since);
    selection.before_millis = Some(before);
    selection.oldest_first = true;
    let counted = state
        .scans
        .run(account_id, move |store| {
            let listed =
                store.message_list(account_id, &selection, PageStart::After(None), MAX_MESSAGES)?;
            if listed.more {
                return Ok(None);
            }
            let mut counts = vec![vec![0u64; samples as usize]; COUNTED.len()];
            for record in &listed.records {
                for event in store.events(&record.id)? {
                    if event.at < since || event.at >= before {
                        continue;
                    }
                    if let Some(set) = COUNTED.iter().position(|(kind, _)| *kind == event.kind) {
                        counts[set][((event.at - since) / interval) as usize] += 1;
                    }
                }
            }
            Ok(Some(counts))
        })
        .await?;
    let Some(counts) = counted else {
        return Err(ApiError::field(
            "daterange",
            "tooLarge",
            format!("the range holds more than {MAX_MESSAGES} messages: ask for a shorter one"),
            None,
        ));
    };
    Ok(DataSets {
        list: COUNTED
            .iter()
            .zip(counts)
            .map(|((_, name), values)| DataSet {
                name,
                samples: values
                    .into_iter()
                    .enumerate()
                    .map(|(index, value)| Sample {
                        timestamp: iso8601(since + index as u64 * interval),
                        value,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// The `interval` matrix parameter of the per-flow and per-source statistics.
fn matrix_interval(matrix: &Matrix) -> Result<Option<u64>, ApiError> {
    matrix
        .get("interval")
        .map(|text| {
            text.trim().parse().map_err(|_| {
                ApiError::field(
                    "interval",
                    "invalidValue",
                    "the interval is a number of seconds",
                    Some(text.into()),
                )
            })
        })
        .transpose()
}

/// `GET /{account}/messagestats`.
#[utoipa::path(
    get,
    path = "/{account}/messagestats",
    tags = ["Statistics"],
    params(IntervalQuery),
    responses((status = 200, description = "Counts of the account's message events", body = DataSets)),
    extensions(("x-matrix-parameters" = json!(["daterange", "flow_ids"])))
)]
pub async fn account(
    State(state): State<ApiState>,
    Path(account_id): Path<u64>,
    Query(query): Query<IntervalQuery>,
    matrix: Matrix,
    caller: Caller,
) -> Result<Json<DataSets>, ApiError> {
    caller.require(account_id)?;
    let selection = MessageSelection {
        flow_ids: id_list(&matrix, "flow_ids")?,
        ..MessageSelection::default()
    };
    Ok(Json(
        count(&state, account_id, &matrix, query.interval, selection).await?,
    ))
}

/// `GET /{account}/flows/{id}/stats`.
#[utoipa::path(
    get,
    path = "/{account}/flows/{flow}/stats",
    tags = ["Statistics"],
    responses((status = 200, description = "Counts of the flow's message events", body = DataSets)),
    extensions(("x-matrix-parameters" = json!(["daterange", "interval"])))
)]
pub async fn flow(
    State(state): State<ApiState>,
    Path((account_id, flow_id)): Path<(u64, u64)>,
    matrix: Matrix,
    caller: Caller,
) -> Result<Json<DataSets>, ApiError> {
    caller.require(account_id)?;
    own_flow(&state, account_id, flow_id)?;
    let selection = MessageSelection {
        flow_ids: Some(vec![flow_id]),
        ..MessageSelection::default()
    };
    let interval = matrix_interval(&matrix)?;
    Ok(Json(
        count(&state, account_id, &matrix, interval, selection).await?,
    ))
}

/// `GET /{account}/sources/{id}/stats`.
#[utoipa::path(
    get,
    path = "/{account}/sources/{source}/stats",
    tags = ["Statistics"],
    responses((status = 200, description = "Counts of the source's message events", body = DataSets)),
    extensions(("x-matrix-parameters" = json!(["daterange", "interval"])))
)]
pub async fn source(
    State(state): State<ApiState>,
    Path((account_id, source_id)): Path<(u64, u64)>,
    matrix: Matrix,
    caller: Caller,
) -> Result<Json<DataSets>, ApiError> {
    caller.require(account_id)?;
    state
        .store
        .source(source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("source"))?;
    let selection = MessageSelection {
        source_ids: Some(vec![source_id]),
        ..MessageSelection::default()
    };
    let interval = matrix_interval(&matrix)?;
    Ok(Json(
        count(&state, account_id, &matrix, interval, selection).await?,
    ))
}
