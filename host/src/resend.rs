//! Sending a message again: a new message (its own id, events and status) made from the
//! original's submitted copy, with the same source, flow selector, data and tags, to the
//! original recipient or another one. It is submitted like any other mail (the size limit,
//! the pipeline's fair share per account, the flow's steps, the filter list, delivery's rate
//! limits), so its template, tracking links and DKIM signature are made for it, not reused.
//! The API's `POST /{account}/messages/{id}/resend` and the dashboard's Resend button share it.

use crate::flow::PipelineHandle;
use crate::message::{Envelope, Message, is_address};
use crate::store::{Store, StoreError, SubmittedCopy};
use crate::submit::{self, Submission, SubmitError};

/// How the new message says it came in.
const RESENT_OVER: &str = "resend";

/// Why a message could not be sent again. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// No message of this account has the id (another account's looks the same).
    #[error("no such message")]
    NotFound,
    /// The given recipient is not a plain `local@domain`.
    #[error("{0:?} is not an e-mail address")]
    InvalidRecipient(String),
    /// The message has not been through its flow yet.
    #[error("the message is still waiting for its flow; resend it once it has been processed")]
    NotYetProcessed,
    /// Its submitted copy is gone: retention ended, or it was stored before copies were kept.
    #[error(
        "the message's submitted copy is not kept (its retention ended, or it was stored \
         before Sluice kept submitted copies); submit it again instead"
    )]
    NotKept,
    /// The source that submitted it no longer exists.
    #[error("the source that submitted the message no longer exists")]
    SourceGone,
    /// Refused as a submission would be (too large for the source, malformed).
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends message `id` of account `account_id` again, to `recipient` or to whom it was
/// submitted to; returns the new message's id once it is durable.
pub async fn resend(
    store: &Store,
    pipeline: &PipelineHandle,
    account_id: u64,
    id: &str,
    recipient: Option<&str>,
) -> Result<String, ResendError> {
    let record = store
        .message(id)?
        .filter(|record| record.account_id == account_id)
        .ok_or(ResendError::NotFound)?;
    let recipient = match recipient.map(str::trim).filter(|given| !given.is_empty()) {
        Some(given) if is_address(given) => Some(given.to_string()),
        Some(given) => return Err(ResendError::InvalidRecipient(given.to_string())),
        None => None,
    };
    let (body, submitted_to) = match store.submitted_copy(id)? {
        SubmittedCopy::Kept { body, recipient } => (body, recipient),
        SubmittedCopy::NotYetProcessed => return Err(ResendError::NotYetProcessed),
        SubmittedCopy::NotKept => return Err(ResendError::NotKept),
    };
    let source = store
        .source(record.source_id)?
        .filter(|source| source.account_id == account_id)
        .ok_or(ResendError::SourceGone)?;
    let recipient = recipient.unwrap_or(submitted_to);
    let content = with_fresh_message_id(body, &record.sender, &recipient);
    let submission = Submission {
        source,
        over: RESENT_OVER,
        sender: record.sender.clone(),
        recipients: vec![recipient],
        content,
        data: record.data.clone(),
        flow_selector: record.flow_selector.clone(),
        tags: record.tags.clone(),
        // Sent now: the original's schedule was for the original.
        schedule_at: None,
    };
    let ids = submit::accept_as(store, pipeline, submission, Some(record.id.clone())).await?;
    Ok(ids.into_iter().next().unwrap_or_default())
}

/// The submitted copy with a new Message-ID when it has one: receivers (Gmail among them)
/// drop a message whose Message-ID they already have, and a resend is a new message. Left as
/// it is when it has none or cannot be read (the submission then says why).
fn with_fresh_message_id(body: Vec<u8>, sender: &str, recipient: &str) -> Vec<u8> {
    let envelope = Envelope {
        sender: sender.to_string(),
        recipient: recipient.to_string(),
    };
    let Ok(mut message) = Message::parse(body.clone(), envelope) else {
        return body;
    };
    let Some(old) = message.message_id() else {
        return body;
    };
    let domain = old
        .rsplit_once('@')
        .map_or("sluice.invalid", |(_, domain)| domain);
    let fresh = format!("<resent.{}@{domain}>", crate::store::new_message_id());
    match message.set_header("Message-ID", &fresh) {
        Ok(()) => message.to_bytes(),
        Err(_) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resent_copy_gets_a_message_id_of_its_own_on_the_same_domain() {
        let original = b"From: a@example.com\r\nMessage-ID: <abc@mail.example.com>\r\n\
            Subject: hi\r\n\r\nbody\r\n"
            .to_vec();
        let resent = with_fresh_message_id(original.clone(), "a@example.com", "b@example.net");
        let text = String::from_utf8(resent).unwrap();
        assert!(!text.contains("<abc@mail.example.com>"), "{text}");
        assert!(text.contains("Message-ID: <resent."), "{text}");
        assert!(text.contains("@mail.example.com>\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nbody\r\n"),
            "the body is left as it was"
        );
        let without = b"From: a@example.com\r\n\r\nbody\r\n".to_vec();
        assert_eq!(
            with_fresh_message_id(without.clone(), "a@example.com", "b@example.net"),
            without
        );
    }
}
