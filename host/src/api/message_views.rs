//! Messages and their events as the API shows them: Flowmailer's `Message` and `MessageEvent`
//! models (field for field as its SDK names them), plus Sluice's extensions (`dmarc`,
//! `statusReason`), which Flowmailer's clients ignore.

use serde::Serialize;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use crate::store::{Event, EventKind, MessageRecord, MessageStatus};
use crate::timestamp::iso8601;

/// What a message read adds to the message itself (Flowmailer's `add…` query parameters).
#[derive(Clone, Copy, Debug, Default)]
pub struct Additions {
    /// `addevents`: its events, newest first.
    pub events: bool,
    /// `addheaders`: the headers of the copy, and its From and To addresses.
    pub headers: bool,
    /// `addonlinelink`: the 'view online' link, while the message is archived.
    pub online_link: bool,
}

/// An address with its display name (Flowmailer's `Address`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Address)]
pub struct AddressView {
    name: Option<String>,
    address: String,
}

/// A header field (Flowmailer's `Header`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Header)]
pub struct HeaderView {
    name: String,
    value: String,
}

/// An event as the API shows it (Flowmailer's `MessageEvent`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MessageEvent)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `MESSAGEID-N`: the message and the event's place among its events.
    id: String,
    message_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// Sluice's own name of an event Flowmailer has no type for.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_type: Option<&'static str>,
    /// When it happened.
    received: String,
    /// When it was recorded: the same moment in Sluice.
    inserted: String,
    /// The remote server's reply, the step's reason, or what the recipient's client sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    snippet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_tags: Option<Vec<String>>,
    /// The receiving mail server: the MX a delivery or a refusal came from, or the
    /// reporting MTA a bounce notice names.
    #[serde(skip_serializing_if = "Option::is_none")]
    mta: Option<String>,
    /// The address an open or click came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_addr: Option<String>,
    /// The User-Agent an open or click was made with.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent_string: Option<String>,
    /// The URL a click went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    link_target: Option<String>,
    /// Everything Sluice recorded with the event (the remote's reply, TLS, a bounce's
    /// classification, ...), as an object; `snippet` holds the same as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The event detail as an object, when Sluice recorded one (older and step events may hold
/// plain text).
fn detail_object(event: &Event) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(event.detail.as_deref()?) {
        Ok(serde_json::Value::Object(members)) => Some(members),
        _ => None,
    }
}

/// The type Flowmailer writes for an event of this kind, and Sluice's name when Flowmailer has
/// none of its own (its SDK refuses a type outside its `EventType` enum).
fn flowmailer_type(kind: EventKind) -> (&'static str, Option<&'static str>) {
    match kind {
        EventKind::Discarded => ("DISCARD", None),
        EventKind::AutoReply => ("REPLY", Some("AUTOREPLY")),
        EventKind::Redirected => ("CUSTOM", Some("REDIRECTED")),
        EventKind::Delayed => ("CUSTOM", Some("DELAYED")),
        other => (other.as_str(), None),
    }
}

impl EventView {
    /// The `seq`th event of message `message_id`.
    pub fn new(message_id: &str, seq: usize, event: &Event) -> Self {
        let (kind, sub_type) = flowmailer_type(event.kind);
        let extra_data = detail_object(event);
        let text = |names: &[&str]| {
            let members = extra_data.as_ref()?;
            names
                .iter()
                .find_map(|name| members.get(*name)?.as_str())
                .map(str::to_string)
        };
        let is_engagement = matches!(event.kind, EventKind::Opened | EventKind::Clicked);
        Self {
            mta: text(&["mx", "remoteMta"]).filter(|_| !is_engagement),
            remote_addr: text(&["ip"]).filter(|_| is_engagement),
            user_agent_string: text(&["userAgent"])
                .filter(|agent| is_engagement && !agent.is_empty()),
            link_target: text(&["url"]).filter(|_| event.kind == EventKind::Clicked),
            id: format!("{message_id}-{seq}"),
            message_id: message_id.to_string(),
            kind,
            sub_type,
            received: iso8601(event.at),
            inserted: iso8601(event.at),
            snippet: event.detail.clone(),
            message_tags: None,
            extra_data,
        }
    }

    /// The same event with its message's tags (`addmessagetags`).
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.message_tags = Some(tags);
        self
    }
}

/// A message as the API shows it (Flowmailer's `Message`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Message)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    id: String,
    submitted: String,
    /// When its flow was done with it; none before.
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_done: Option<String>,
    message_type: &'static str,
    sender_address: String,
    recipient_address: String,
    subject: Option<String>,
    status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    #[schema(value_type = super::flows::Described)]
    source: serde_json::Value,
    #[schema(value_type = Option<super::flows::Described>)]
    flow: Option<serde_json::Value>,
    tags: Vec<String>,
    /// The Message-ID of the copy as sent, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id_header: Option<String>,
    /// The From header's address (with `addheaders`, and on a read by id).
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_address: Option<AddressView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_address_list: Option<Vec<AddressView>>,
    /// The headers of the copy as it goes out (as it was submitted, before its flow ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    headers_out: Option<Vec<HeaderView>>,
    /// The headers as submitted, while the message waits for its flow; Sluice keeps only the
    /// processed copy afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    headers_in: Option<Vec<HeaderView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventView>>,
    /// Whether DMARC would pass by alignment, once signed (Sluice's extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    dmarc: Option<crate::dkim::DmarcReport>,
    /// The 'view online' link, while the message is archived.
    #[serde(skip_serializing_if = "Option::is_none")]
    online_link: Option<String>,
    /// The message this one was resent from (Sluice's extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    resent_from: Option<String>,
}

/// The kinds of event that end a flow's work on a message.
fn ends_processing(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Processed | EventKind::Held | EventKind::Discarded | EventKind::Error
    )
}

/// `{id, description}` of a source or flow (Flowmailer's `ObjectDescription`), with the name
/// when it still exists.
fn description(id: u64, name: Option<String>) -> serde_json::Value {
    json!({"id": id, "description": name})
}

/// The addresses of a header field of the copy.
fn addresses(field: Option<&mail_parser::Address<'_>>) -> Vec<AddressView> {
    field
        .map(|address| {
            address
                .iter()
                .filter_map(|addr| {
                    Some(AddressView {
                        name: addr.name().map(str::to_string),
                        address: addr.address()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A message record as the API shows it, with what `add` asks for.
pub fn view(
    state: &ApiState,
    record: MessageRecord,
    add: Additions,
) -> Result<MessageView, ApiError> {
    // Events are small and kept beside the record: read for when processing ended.
    let stored_events = state.store.events(&record.id)?;
    let backend_done = stored_events
        .iter()
        .find(|event| ends_processing(event.kind))
        .map(|event| iso8601(event.at));
    let events = add.events.then(|| {
        let mut views: Vec<EventView> = stored_events
            .iter()
            .enumerate()
            .map(|(seq, event)| EventView::new(&record.id, seq, event))
            .collect();
        // Flowmailer lists a message's events newest first.
        views.reverse();
        views
    });
    let online_link = if add.online_link && state.store.archive_entry(&record.id)?.is_some() {
        Some(state.links.online_url(&record.id))
    } else {
        None
    };
    let mut view = MessageView {
        submitted: iso8601(record.submitted_at),
        backend_done,
        message_type: "EMAIL",
        sender_address: record.sender.clone(),
        recipient_address: record.recipient.clone(),
        subject: record.subject.clone(),
        status: record.status,
        status_reason: record.status_reason.clone(),
        source: description(
            record.source_id,
            state
                .store
                .source(record.source_id)?
                .map(|source| source.name),
        ),
        flow: match record.flow_id {
            Some(id) => Some(description(id, state.store.flow(id)?.map(|flow| flow.name))),
            None => None,
        },
        tags: record.tags.clone(),
        message_id_header: record.header_message_id.clone(),
        from: None,
        from_address: None,
        to_address_list: None,
        headers_out: None,
        headers_in: None,
        events,
        dmarc: record.dmarc.clone(),
        online_link,
        resent_from: record.resent_from.clone(),
        id: record.id.clone(),
    };
    if add.headers
        && let Some(body) = state.store.body(&record.id)?
        && let Some(parsed) = mail_parser::MessageParser::new().parse_headers(&body[..])
    {
        let from = addresses(parsed.from()).into_iter().next();
        view.from = from.as_ref().map(|from| from.address.clone());
        view.from_address = from;
        view.to_address_list = Some(addresses(parsed.to()));
        let headers: Vec<HeaderView> = crate::message::Message::parse(
            body.clone(),
            crate::message::Envelope {
                sender: record.sender.clone(),
                recipient: record.recipient.clone(),
            },
        )
        .map(|message| {
            message
                .headers()
                .into_iter()
                .map(|(name, value)| HeaderView { name, value })
                .collect()
        })
        .unwrap_or_default();
        if view.message_id_header.is_none() {
            view.message_id_header = parsed.message_id().map(str::to_string);
        }
        // The stored copy is the submitted one until the flow has run, the processed one after.
        if record.status == MessageStatus::Submitted {
            view.headers_in = Some(headers);
        } else {
            view.headers_out = Some(headers);
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_mta_its_reader_and_its_recorded_data_as_the_sdk_model_does() {
        let event = |kind, detail: serde_json::Value| Event {
            kind,
            at: 1,
            detail: Some(detail.to_string()),
        };
        let delivered = EventView::new(
            "m",
            0,
            &event(
                EventKind::Delivered,
                json!({"reply": "250 ok", "mx": "mx1.example.net", "tls": {"version": "TLSv1.3"}}),
            ),
        );
        let shown = serde_json::to_value(&delivered).unwrap();
        assert_eq!(shown["mta"], "mx1.example.net");
        assert_eq!(shown["extraData"]["tls"]["version"], "TLSv1.3");
        assert!(shown.get("remoteAddr").is_none() && shown.get("linkTarget").is_none());
        let bounced = EventView::new(
            "m",
            1,
            &event(
                EventKind::HardBounce,
                json!({"reason": "unknownUser", "remoteMta": "dns; mx2.example.net"}),
            ),
        );
        assert_eq!(bounced.mta.as_deref(), Some("dns; mx2.example.net"));
        let clicked = serde_json::to_value(EventView::new(
            "m",
            2,
            &event(
                EventKind::Clicked,
                json!({"userAgent": "Mail/1.0", "ip": "192.0.2.9", "url": "https://shop.example/a", "linkIndex": 0}),
            ),
        ))
        .unwrap();
        assert_eq!(clicked["remoteAddr"], "192.0.2.9");
        assert_eq!(clicked["userAgentString"], "Mail/1.0");
        assert_eq!(clicked["linkTarget"], "https://shop.example/a");
        assert!(clicked.get("mta").is_none());
        // A detail in plain text (a step's reason) stays the snippet only.
        let held = EventView::new(
            "m",
            3,
            &Event {
                kind: EventKind::Held,
                at: 1,
                detail: Some("step 2 held it".into()),
            },
        );
        assert!(held.extra_data.is_none() && held.mta.is_none());
        assert_eq!(held.snippet.as_deref(), Some("step 2 held it"));
    }

    #[test]
    fn every_event_kind_has_a_type_flowmailers_clients_know() {
        // The SDK's EventType enum, src/Enum/EventType.php.
        let known = [
            "SOFTBOUNCE",
            "HARDBOUNCE",
            "COMPLAINT",
            "UNSUBSCRIBE",
            "REJECT",
            "DISCARD",
            "DELIVERED",
            "POSTED",
            "ATTEMPT",
            "QUEUEATTEMPT",
            "SUBMITTED",
            "PROCESSED",
            "INSERTED",
            "OPENED",
            "CLICKED",
            "HELD",
            "CUSTOM",
            "REPLY",
            "RESENT",
            "SUSPENDED",
            "RESUBMITTED",
            "ERROR",
            "RESUMED",
        ];
        for kind in EventKind::ALL {
            let (name, sub_type) = flowmailer_type(kind);
            assert!(known.contains(&name), "{kind}: {name}");
            // Sluice's own name is kept where the type alone would lose it.
            if name != kind.as_str() && kind != EventKind::Discarded {
                assert_eq!(sub_type, Some(kind.as_str()));
            }
        }
    }
}
