//! Simulate: a message typed in (or taken from one the account sent) is sorted by the
//! account's flow rules and run through the chosen flow's steps exactly as the API's
//! `messages/simulate` runs it (`PipelineHandle::simulate`); nothing is sent or stored. The
//! page shows which rule matched, the flow and its steps, and what the steps did.

use axum::extract::{Form, Query, State};
use axum::response::Response;
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use minijinja::{Value, context};
use serde::Deserialize;

use super::DashboardState;
use super::pages::{quoted, render_form_page};
use super::session::{Refusal, Viewer};
use crate::access::Action;
use crate::flow::rules::MessageFacts;
use crate::message::{Envelope, ForbiddenInHeader, Message, describe_control, forbidden_in_header};
use crate::store::{MessageRecord, MessageStatus, now_millis};

/// The largest body or data a simulation takes, in bytes.
const MAX_PART_BYTES: usize = 256 << 10;
/// The most extra header lines.
const MAX_HEADERS: usize = 50;

/// What the form holds.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct SimulateForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    subject: String,
    /// Extra header lines, `Name: value` each.
    #[serde(default)]
    headers: String,
    #[serde(default)]
    flow_selector: String,
    /// Submitted data as JSON.
    #[serde(default)]
    data: String,
    #[serde(default)]
    text: String,
    /// Missing counts as wrong: refused with the CSRF answer, not a parse error.
    #[serde(default)]
    csrf: String,
}

/// `?message=` takes a stored message's envelope, subject and data as the starting point.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FromMessage {
    #[serde(default)]
    message: String,
}

/// `GET /flows/simulate`.
pub(super) async fn form(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Query(from): Query<FromMessage>,
) -> Result<Response, Refusal> {
    let account_id = viewer.account_for(Action::Read)?;
    let mut form = SimulateForm {
        text: "A simulated message.".into(),
        ..SimulateForm::default()
    };
    if !from.message.is_empty() {
        let record = match state.store.message(&from.message) {
            Ok(Some(record)) if record.account_id == account_id => record,
            Ok(_) => return Err(Refusal::NotFound("No such message.")),
            Err(error) => return Err(Refusal::store(error)),
        };
        form.source = record.source_id.to_string();
        form.sender = record.sender;
        form.recipient = record.recipient;
        form.subject = record.subject.unwrap_or_default();
        form.flow_selector = record.flow_selector.unwrap_or_default();
        form.data = record
            .data
            .map(|data| serde_json::to_string_pretty(&data).unwrap_or_default())
            .unwrap_or_default();
    }
    Ok(page(&state, &viewer, account_id, &form, Vec::new(), None))
}

fn page(
    state: &DashboardState,
    viewer: &Viewer,
    account_id: u64,
    form: &SimulateForm,
    errors: Vec<String>,
    result: Option<Value>,
) -> Response {
    let sources = state.store.sources_of(account_id).unwrap_or_default();
    render_form_page(
        state,
        viewer,
        "simulate.html",
        "flows",
        errors,
        context! {
            sources => sources.iter().map(|source| context! { id => source.id.to_string(), name => &source.name }).collect::<Vec<_>>(),
            form => context! {
                source => &form.source, sender => &form.sender, recipient => &form.recipient,
                subject => &form.subject, headers => &form.headers,
                flow_selector => &form.flow_selector, data => &form.data, text => &form.text,
            },
            result => result,
        },
    )
}

/// The message the form describes, or what is wrong with it.
fn message_of(form: &SimulateForm) -> Result<(Message, Option<serde_json::Value>), Vec<String>> {
    let mut errors = Vec::new();
    let address = |label: &str, value: &str, errors: &mut Vec<String>| {
        let value = value.trim();
        let fine = value.len() <= 254
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && value
                .rsplit_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !fine {
            errors.push(format!("{label}: an e-mail address is needed."));
        }
        value.to_string()
    };
    let sender = address("Sender", &form.sender, &mut errors);
    let recipient = address("Recipient", &form.recipient, &mut errors);
    let header_problem = |label: &str, value: &str| {
        forbidden_in_header(value).map(|forbidden| match forbidden {
            ForbiddenInHeader::LineBreak => format!("{label}: one line only."),
            ForbiddenInHeader::Control(c) => {
                format!("{label}: {} is not allowed.", describe_control(c))
            }
        })
    };
    errors.extend(header_problem("Subject", &form.subject));
    let mut headers = Vec::new();
    let lines: Vec<&str> = form
        .headers
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    // Counted before any is checked or quoted back.
    if lines.len() > MAX_HEADERS {
        errors.push(format!("At most {MAX_HEADERS} extra headers."));
    } else {
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                errors.push(format!("Header {}: write it as Name: value.", quoted(line)));
                continue;
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                errors.push(format!("Header {}: not a header name.", quoted(name)));
                continue;
            }
            errors.extend(header_problem(name, value));
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }
    if form.text.len() > MAX_PART_BYTES || form.data.len() > MAX_PART_BYTES {
        errors.push("The text or the data is too large.".into());
    }
    let data: Option<serde_json::Value> = if form.data.trim().is_empty() {
        None
    } else {
        match serde_json::from_str(&form.data) {
            Ok(data) => Some(data),
            Err(error) => {
                errors.push(format!("Data: not JSON ({error})."));
                None
            }
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut builder = MessageBuilder::new()
        .from(sender.clone())
        .to(recipient.clone())
        .text_body(form.text.clone());
    if !form.subject.trim().is_empty() {
        builder = builder.subject(form.subject.trim().to_string());
    }
    for (name, value) in headers {
        builder = builder.header(name, Raw::new(value));
    }
    let content = builder
        .write_to_vec()
        .map_err(|error| vec![format!("The message could not be written: {error}.")])?;
    let message = Message::parse(content, Envelope { sender, recipient })
        .map_err(|error| vec![format!("The message is not valid: {error}.")])?
        .with_data(data.as_ref().map(|data| data.to_string()));
    Ok((message, data))
}

/// `POST /flows/simulate`: runs the message through the rules and the flow; sends nothing.
pub(super) async fn run(
    State(state): State<DashboardState>,
    viewer: Viewer,
    Form(form): Form<SimulateForm>,
) -> Result<Response, Refusal> {
    let account_id = viewer.form_account(Action::Send, &form.csrf)?;
    let source_id = match form.source.trim() {
        "" => 0,
        text => {
            let id: u64 = text
                .parse()
                .map_err(|_| Refusal::BadRequest("Choose a source."))?;
            match state.store.source(id) {
                Ok(Some(source)) if source.account_id == account_id => id,
                Ok(_) => return Err(Refusal::NotFound("No such source.")),
                Err(error) => return Err(Refusal::store(error)),
            }
        }
    };
    let (message, data) = match message_of(&form) {
        Ok(made) => made,
        Err(errors) => return Ok(page(&state, &viewer, account_id, &form, errors, None)),
    };
    let flow_selector = Some(form.flow_selector.trim().to_string()).filter(|s| !s.is_empty());
    let routing = state.store.routing(account_id).map_err(Refusal::store)?;
    let matched_rule = routing.as_ref().and_then(|routing| {
        routing.matching_rule(&MessageFacts {
            source_id,
            flow_selector: flow_selector.as_deref(),
            sender: &message.envelope().sender,
            message: &message,
            data: data.as_ref(),
        })
    });
    let record = MessageRecord {
        id: "simulation".into(),
        account_id,
        source_id,
        submitted_over: "dashboard".into(),
        sender: message.envelope().sender.clone(),
        recipient: message.envelope().recipient.clone(),
        submitted_at: now_millis(),
        data,
        flow_selector,
        flow_id: None,
        status: MessageStatus::Submitted,
        status_reason: None,
        subject: message.header("Subject"),
        tags: Vec::new(),
        schedule_at: None,
        dmarc: None,
        header_message_id: None,
        resent_from: None,
        steps: Vec::new(),
        next_event: None,
    };
    let run = match state.pipeline.simulate(&record, message).await {
        Ok(run) => run,
        Err(error) => {
            let errors = vec![format!("The simulation failed: {error}.")];
            return Ok(page(&state, &viewer, account_id, &form, errors, None));
        }
    };
    let flow = run
        .flow_id
        .and_then(|id| state.store.flow(id).ok().flatten());
    let rule = matched_rule.and_then(|index| {
        let rule = routing.as_ref()?.rules.get(index)?;
        Some(context! {
            number => index + 1,
            conditions => rule.conditions.iter()
                .flat_map(crate::api::condition_views)
                .map(|view| serde_json::to_string(&view).unwrap_or_default())
                .collect::<Vec<_>>(),
        })
    });
    let output = run.message.as_ref();
    let result = context! {
        rule => rule,
        flow => flow.as_ref().map(|flow| context! {
            id => flow.id,
            name => &flow.name,
            steps => flow.steps.iter().map(|step| step.plugin.clone()).collect::<Vec<_>>(),
        }),
        status => serde_json::to_value(run.status).ok().and_then(|v| v.as_str().map(str::to_string)),
        reason => run.reason,
        subject => output.and_then(|message| message.header("Subject")),
        text => output.and_then(Message::text),
        events => run.events.iter().map(|event| context! {
            kind => event.kind.as_str(), detail => &event.detail,
        }).collect::<Vec<_>>(),
    };
    Ok(page(
        &state,
        &viewer,
        account_id,
        &form,
        Vec::new(),
        Some(result),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(headers: &str) -> SimulateForm {
        SimulateForm {
            sender: "app@shop.example".into(),
            recipient: "someone@example.net".into(),
            subject: "Your order".into(),
            headers: headers.into(),
            text: "Hello".into(),
            ..SimulateForm::default()
        }
    }

    #[test]
    fn typed_headers_reach_the_message_the_rules_read() {
        let (message, data) = message_of(&form("X-Kind: invoice\nX-Other: b")).unwrap();
        assert_eq!(message.header("X-Kind").as_deref(), Some("invoice"));
        assert_eq!(message.header("Subject").as_deref(), Some("Your order"));
        assert_eq!(message.envelope().sender, "app@shop.example");
        assert!(data.is_none());
    }

    #[test]
    fn a_header_that_would_inject_lines_or_is_not_a_field_is_refused() {
        assert!(message_of(&form("no colon here")).is_err());
        assert!(message_of(&form("Bad Name: x")).is_err());
        let mut bad_subject = form("");
        bad_subject.subject = "a\u{0}b".into();
        let errors = message_of(&bad_subject).unwrap_err();
        assert!(errors[0].contains("NUL"), "{errors:?}");
        let mut bad_data = form("");
        bad_data.data = "{not json".into();
        assert!(message_of(&bad_data).unwrap_err()[0].starts_with("Data"));
    }
}
