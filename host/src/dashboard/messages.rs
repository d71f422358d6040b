//! Messages: a search over the account's messages (recipient, sender, subject, tag, flow,
//! status, dates), and a message's page with its event timeline, its DMARC alignment and the
//! archived copy shown in a sandbox that runs no script and loads nothing (so looking at a
//! message never fetches its tracking pixel).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

use super::DashboardState;
use super::pages::render_page;
use super::session::{Refusal, Viewer, internal};
use crate::access::Action;
use crate::store::{MessageRecord, MessageSelection, MessageStatus, PageStart, StepResultOutcome};

/// Messages shown per page.
const PAGE_SIZE: usize = 50;
/// Messages examined for one page of a search at most; the page then offers to go on.
const MAX_EXAMINED: usize = 20_000;

/// The search form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    flow: String,
    #[serde(default)]
    status: String,
    /// `YYYY-MM-DD`, from the start of that day (UTC).
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD`, to the end of that day (UTC).
    #[serde(default)]
    to: String,
    /// Continue after this message id.
    #[serde(default)]
    after: String,
}

const STATUSES: [MessageStatus; 8] = [
    MessageStatus::Submitted,
    MessageStatus::Processed,
    MessageStatus::Held,
    MessageStatus::Discarded,
    MessageStatus::Delivered,
    MessageStatus::SoftBounce,
    MessageStatus::HardBounce,
    MessageStatus::Rejected,
];

fn status_name(status: &MessageStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn day_start(date: &str) -> Option<u64> {
    crate::timestamp::parse_iso8601(&format!("{}T00:00:00Z", date.trim()))
}

impl Search {
    fn matches(&self, record: &MessageRecord) -> bool {
        let contains = |field: &str, needle: &str| {
            needle.trim().is_empty() || field.to_lowercase().contains(&needle.trim().to_lowercase())
        };
        contains(&record.recipient, &self.recipient)
            && contains(&record.sender, &self.sender)
            && contains(record.subject.as_deref().unwrap_or(""), &self.subject)
            && (self.tag.trim().is_empty() || record.tags.iter().any(|tag| tag == self.tag.trim()))
            && (self.status.is_empty() || status_name(&record.status) == self.status)
    }

    fn selection(&self) -> MessageSelection {
        MessageSelection {
            oldest_first: false,
            since_millis: day_start(&self.from),
            before_millis: day_start(&self.to).map(|start| start + 86_400_000),
            flow_ids: self.flow.trim().parse::<u64>().ok().map(|id| vec![id]),
            ..MessageSelection::default()
        }
    }
}

/// `GET /messages`.
pub(super) async fn list(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Query(search): Query<Search>,
) -> Response {
    let account_id = match viewer.account_for(Action::Read) {
        Ok(account) => account,
        Err(refusal) => return refusal.into_response(),
    };
    let search = std::sync::Arc::new(search);
    let searching = std::sync::Arc::clone(&search);
    let found = state.scan(account_id, move |store| {
        let selection = searching.selection();
        let mut shown = Vec::new();
        let mut examined = 0;
        let mut after = (!searching.after.is_empty()).then(|| searching.after.clone());
        let mut more = false;
        'pages: loop {
            let page = store.message_list(
                account_id,
                &selection,
                PageStart::After(after.as_deref()),
                500,
            )?;
            for record in page.records.iter() {
                examined += 1;
                after = Some(record.id.clone());
                if searching.matches(record) {
                    shown.push(record.clone());
                    if shown.len() == PAGE_SIZE {
                        more = true;
                        break 'pages;
                    }
                }
                if examined >= MAX_EXAMINED {
                    more = true;
                    break 'pages;
                }
            }
            if !page.more {
                break;
            }
        }
        Ok((shown, examined, more.then_some(after).flatten()))
    });
    let (shown, examined, next) = match found.await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let flows = state.store.flows_of(account_id).unwrap_or_default();
    let rows: Vec<_> = shown
        .into_iter()
        .map(|record| {
            context! {
                id => record.id,
                submitted_at => record.submitted_at,
                recipient => record.recipient,
                sender => record.sender,
                subject => record.subject,
                status => status_name(&record.status),
                flow => record.flow_id.and_then(|id| flows.iter().find(|flow| flow.id == id)).map(|flow| flow.name.clone()),
                tags => record.tags,
            }
        })
        .collect();
    let next_query = next.map(|after| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("recipient", &search.recipient),
            ("sender", &search.sender),
            ("subject", &search.subject),
            ("tag", &search.tag),
            ("flow", &search.flow),
            ("status", &search.status),
            ("from", &search.from),
            ("to", &search.to),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        query.append_pair("after", &after);
        query.finish()
    });
    render_page(
        &state,
        &viewer,
        "messages.html",
        "messages",
        context! {
            messages => rows,
            search => context! {
                recipient => &search.recipient, sender => &search.sender, subject => &search.subject,
                tag => &search.tag, flow => &search.flow, status => &search.status,
                from => &search.from, to => &search.to,
            },
            statuses => STATUSES.iter().map(status_name).collect::<Vec<_>>(),
            flows => flows.iter().map(|flow| context! { id => flow.id.to_string(), name => flow.name.clone() }).collect::<Vec<_>>(),
            examined => examined,
            next_query => next_query,
        },
    )
}

/// The message `id` when it belongs to the account the viewer may read.
fn readable(state: &DashboardState, viewer: &Viewer, id: &str) -> Result<MessageRecord, Refusal> {
    let account_id = viewer.account_for(Action::Read)?;
    match state.store.message(id) {
        Ok(Some(record)) if record.account_id == account_id => Ok(record),
        // Another account's message looks exactly like one that does not exist.
        Ok(_) => Err(Refusal::NotFound("No such message.")),
        Err(error) => Err(Refusal::store(error)),
    }
}

/// `GET /messages/{id}`.
pub(super) async fn detail(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let record = match readable(&state, &viewer, &id) {
        Ok(record) => record,
        Err(refusal) => return refusal.into_response(),
    };
    let events = match state.store.events(&id) {
        Ok(events) => events,
        Err(error) => return internal(error),
    };
    let archived = matches!(state.store.archive_entry(&id), Ok(Some(_)));
    let flow = record
        .flow_id
        .and_then(|flow_id| state.store.flow(flow_id).ok().flatten())
        .map(|flow| flow.name);
    let filtered = state
        .store
        .filtered(record.account_id, &record.recipient)
        .ok()
        .flatten()
        .map(|entry| context! { id => entry.id, reason => entry.reason });
    render_page(
        &state,
        &viewer,
        "message.html",
        "messages",
        context! {
            message => context! {
                id => record.id,
                submitted_at => record.submitted_at,
                submitted_over => record.submitted_over,
                recipient => record.recipient,
                sender => record.sender,
                subject => record.subject,
                status => status_name(&record.status),
                status_reason => record.status_reason,
                tags => record.tags,
                flow => flow,
                message_id_header => record.header_message_id,
            },
            dmarc => minijinja::Value::from(minijinja::value::Serde(&record.dmarc)),
            events => events.iter().map(|event| context! {
                kind => event.kind.as_str(), at => event.at, detail => &event.detail,
            }).collect::<Vec<_>>(),
            archived => archived,
            filtered => filtered,
            steps => record.steps.iter().map(|step| context! {
                number => step.number,
                plugin => &step.plugin,
                // A stored plugin's sha256 is told apart by its first characters.
                plugin_short => step.plugin.get(..16).filter(|_| step.plugin.len() > 20)
                    .map_or_else(|| step.plugin.clone(), |start| format!("{start}…")),
                outcome => step.outcome.describe(),
                failed => matches!(step.outcome, StepResultOutcome::Failed(_)),
                ran => step.outcome != StepResultOutcome::Skipped,
                time => duration_text(step.micros),
                fuel => step.fuel,
            }).collect::<Vec<_>>(),
        },
    )
}

/// `GET /messages/{id}/archive`: the archived copy's HTML (or text) part, for the message
/// page's sandboxed frame.
pub(super) async fn archived_copy(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = readable(&state, &viewer, &id) {
        return refusal.into_response();
    }
    let body = match state.store.archive(&id) {
        Ok(Some((_, body))) => body,
        Ok(None) => return (StatusCode::NOT_FOUND, "No archived copy.").into_response(),
        Err(error) => return internal(error),
    };
    let html = match mail_parser::MessageParser::default().parse(&body) {
        Some(parsed) => match parsed.body_html(0) {
            Some(html) => html.into_owned(),
            None => format!(
                "<pre>{}</pre>",
                escape(&parsed.body_text(0).unwrap_or_default())
            ),
        },
        None => "<p>The archived copy could not be read.</p>".into(),
    };
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    // A unique origin without script, loading nothing: not even the tracking pixel.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
             frame-ancestors 'self'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    response
}

/// A step's wall time for people: microseconds below a millisecond, then milliseconds.
fn duration_text(micros: u64) -> String {
    if micros < 1000 {
        format!("{micros} µs")
    } else {
        format!("{}.{:03} ms", micros / 1000, micros % 1000)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn step_times_read_in_microseconds_then_milliseconds() {
        assert_eq!(duration_text(0), "0 µs");
        assert_eq!(duration_text(999), "999 µs");
        assert_eq!(duration_text(1000), "1.000 ms");
        assert_eq!(duration_text(12_345), "12.345 ms");
    }
}
