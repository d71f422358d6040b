//! The JSON body of a webhook call: one event with its message's fields, named as Flowmailer
//! names them in its message events (camelCase, like the rest of the API).

use serde::Serialize;
use serde_json::Value;

use crate::store::{EventKind, WebhookCallKey, WebhookJob};
use crate::timestamp::iso8601;

/// One event as a webhook receives it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPayload {
    /// The event's stable id (`<messageId>-<sequence>`), the same on every attempt.
    pub id: String,
    /// SUBMITTED, PROCESSED, DELIVERED, HARDBOUNCE, OPENED, CLICKED, ...
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The event's position among its message's events, from 0: what to order by.
    pub sequence: u32,
    /// When it happened (ISO 8601, UTC).
    pub inserted: String,
    /// The message.
    pub message_id: String,
    /// Always EMAIL.
    pub message_type: &'static str,
    /// The account.
    pub account_id: u64,
    /// The source that submitted the message.
    pub source_id: u64,
    /// The flow the message was sorted into, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<u64>,
    /// The envelope sender.
    pub sender_address: String,
    /// The envelope recipient.
    pub recipient_address: String,
    /// The Subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Tags given at submission.
    pub tags: Vec<String>,
    /// The event's detail for people: the remote server's reply, a reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    /// The remote host that answered a delivery attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mta: Option<String>,
    /// The URL a CLICKED event followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// The address an OPENED or CLICKED request came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// The User-Agent of an OPENED or CLICKED request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent_string: Option<String>,
    /// The event's structured detail, when it has one (reply, mx, tls, url...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl EventPayload {
    /// The payload of a queued call.
    pub fn new(key: &WebhookCallKey, job: &WebhookJob) -> Self {
        let (message, event) = (&job.message, &job.event);
        // Delivery and tracking events keep JSON details; others keep a sentence.
        let data = event
            .detail
            .as_deref()
            .and_then(|detail| serde_json::from_str::<Value>(detail).ok())
            .filter(Value::is_object);
        let field = |name: &str| {
            data.as_ref()
                .and_then(|data| data.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let snippet = match &data {
            Some(_) => field("reply"),
            None => event.detail.clone(),
        };
        Self {
            id: key.event_id(),
            kind: event.kind,
            sequence: key.seq,
            inserted: iso8601(event.at),
            message_id: message.id.clone(),
            message_type: "EMAIL",
            account_id: message.account_id,
            source_id: message.source_id,
            flow_id: message.flow_id,
            sender_address: message.sender.clone(),
            recipient_address: message.recipient.clone(),
            subject: message.subject.clone(),
            tags: message.tags.clone(),
            snippet,
            mta: field("mx"),
            link_target: field("url"),
            remote_addr: field("ip"),
            user_agent_string: field("userAgent"),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Event, MessageRecord, MessageStatus, WebhookCallState, WebhookEndpoint};

    fn job(kind: EventKind, detail: Option<&str>) -> WebhookJob {
        WebhookJob {
            endpoint: WebhookEndpoint {
                id: 1,
                account_id: 7,
                url: "https://hooks.example/".into(),
                event_types: Vec::new(),
                description: None,
                secret: "whsec_x".into(),
                created_at: 0,
                updated_at: 0,
            },
            message: MessageRecord {
                id: "m1".into(),
                account_id: 7,
                source_id: 3,
                submitted_over: "REST".into(),
                sender: "app@shop.example".into(),
                recipient: "ann@example.net".into(),
                submitted_at: 0,
                data: None,
                flow_selector: None,
                flow_id: Some(4),
                status: MessageStatus::Delivered,
                status_reason: None,
                subject: Some("Order 42".into()),
                tags: vec!["order".into()],
                schedule_at: None,
                dmarc: None,
                header_message_id: None,
                resent_from: None,
                steps: Vec::new(),
                next_event: None,
            },
            event: Event {
                kind,
                at: 1_700_000_000_123,
                detail: detail.map(str::to_string),
            },
            state: WebhookCallState {
                attempts: 0,
                queued_at: 0,
                due_at: 0,
                last_status: None,
                last_error: None,
                lease: None,
            },
        }
    }

    fn key() -> WebhookCallKey {
        WebhookCallKey {
            endpoint_id: 1,
            message_id: "m1".into(),
            seq: 5,
        }
    }

    #[test]
    fn a_delivery_carries_the_reply_and_the_mx() {
        let job = job(
            EventKind::Delivered,
            Some(r#"{"reply":"250 2.0.0 Ok: queued","mx":"mx.example.net [192.0.2.1]"}"#),
        );
        let payload = serde_json::to_value(EventPayload::new(&key(), &job)).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "id": "m1-5",
                "type": "DELIVERED",
                "sequence": 5,
                "inserted": "2023-11-14T22:13:20.123Z",
                "messageId": "m1",
                "messageType": "EMAIL",
                "accountId": 7,
                "sourceId": 3,
                "flowId": 4,
                "senderAddress": "app@shop.example",
                "recipientAddress": "ann@example.net",
                "subject": "Order 42",
                "tags": ["order"],
                "snippet": "250 2.0.0 Ok: queued",
                "mta": "mx.example.net [192.0.2.1]",
                "data": {"reply": "250 2.0.0 Ok: queued", "mx": "mx.example.net [192.0.2.1]"}
            })
        );
    }

    #[test]
    fn a_click_carries_its_link_and_requester() {
        let job = job(
            EventKind::Clicked,
            Some(
                r#"{"url":"https://shop.example/o/42","linkIndex":0,"ip":"198.51.100.7","userAgent":"Mail/1.0"}"#,
            ),
        );
        let payload = serde_json::to_value(EventPayload::new(&key(), &job)).unwrap();
        assert_eq!(payload["linkTarget"], "https://shop.example/o/42");
        assert_eq!(payload["remoteAddr"], "198.51.100.7");
        assert_eq!(payload["userAgentString"], "Mail/1.0");
        assert!(payload.get("snippet").is_none());
    }

    #[test]
    fn a_plain_detail_is_the_snippet() {
        let job = job(EventKind::Held, Some("step 1 held it: missing variable"));
        let payload = serde_json::to_value(EventPayload::new(&key(), &job)).unwrap();
        assert_eq!(payload["snippet"], "step 1 held it: missing variable");
        assert!(payload.get("data").is_none());
    }
}
