//! Amazon SES event notifications mailed as JSON (through SNS email subscriptions): bounce,
//! complaint and delivery events in one documented shape.

use serde_json::Value;

use super::Finding;
use crate::Kind;

/// Reads an SES notification, if the notice is one.
pub fn read(notice: &str) -> Option<(Kind, Vec<Finding>)> {
    let json = notice.trim_start();
    if !json.starts_with('{')
        || !json.contains("\"notificationType\"") && !json.contains("\"eventType\"")
    {
        return None;
    }
    // The JSON is followed by SNS's footer text: read the first value only.
    let value: Value = serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .next()?
        .ok()?;
    let kind = value
        .get("notificationType")
        .or_else(|| value.get("eventType"))?
        .as_str()?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    match kind {
        "Bounce" => {
            let bounce = value.get("bounce")?;
            let findings = list(bounce, "bouncedRecipients")
                .map(|r| Finding {
                    recipient: text(r, "emailAddress").map(|a| a.to_ascii_lowercase()),
                    original_recipient: None,
                    forwarded_to: None,
                    action: text(r, "action"),
                    status: text(r, "status"),
                    reply_code: text(r, "diagnosticCode")
                        .as_deref()
                        .and_then(super::find_reply_code),
                    diagnostic: text(r, "diagnosticCode"),
                    notice_text: None,
                    remote_mta: text(bounce, "reportingMTA"),
                    command: None,
                    decided_locally: false,
                })
                .collect();
            Some((Kind::Bounce, findings))
        }
        "Complaint" => {
            let complaint = value.get("complaint")?;
            let findings = list(complaint, "complainedRecipients")
                .map(|r| Finding {
                    recipient: text(r, "emailAddress").map(|a| a.to_ascii_lowercase()),
                    ..Finding::default()
                })
                .collect();
            Some((Kind::Complaint, findings))
        }
        "Delivery" => {
            let delivery = value.get("delivery")?;
            let response = text(delivery, "smtpResponse");
            let findings = list(delivery, "recipients")
                .filter_map(Value::as_str)
                .map(|r| Finding {
                    recipient: Some(r.to_ascii_lowercase()),
                    original_recipient: None,
                    forwarded_to: None,
                    action: Some("delivered".into()),
                    status: response.as_deref().and_then(super::find_enhanced_status),
                    reply_code: response.as_deref().and_then(super::find_reply_code),
                    diagnostic: response.clone(),
                    notice_text: None,
                    remote_mta: text(delivery, "reportingMTA"),
                    command: None,
                    decided_locally: false,
                })
                .collect();
            Some((Kind::DeliveryReport, findings))
        }
        _ => None,
    }
}

fn list<'v>(value: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}
