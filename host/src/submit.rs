//! Accepting a submitted mail: the path SMTP and REST share. A mail with N recipients becomes
//! N messages, spooled in one durable transaction before the client is told they were taken.

use crate::flow::PipelineHandle;
use crate::message::{Envelope, Message, MessageError};
use crate::store::{
    MessageRecord, MessageStatus, NewMessage, Source, Store, StoreError, now_millis,
};

/// Header a client may set to choose a flow over SMTP; taken off before the mail goes on.
pub const FLOW_SELECTOR_HEADER: &str = "X-Flow-Selector";

/// One submitted mail.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The source it came from, already authenticated.
    pub source: Source,
    /// `smtp` or `api`.
    pub over: &'static str,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipients: one message each.
    pub recipients: Vec<String>,
    /// The RFC 5322 content.
    pub content: Vec<u8>,
    /// JSON data submitted with it.
    pub data: Option<serde_json::Value>,
    /// The flow selector, if given apart from the content.
    pub flow_selector: Option<String>,
    /// Tags for finding the messages later.
    pub tags: Vec<String>,
    /// When to send, if not at once (ISO 8601).
    pub schedule_at: Option<String>,
}

/// Why a submission was refused. Nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The content is not an RFC 5322 message.
    #[error("the message is malformed: {0}")]
    Malformed(MessageError),
    /// The content exceeds the source's limit.
    #[error("the message is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The source's limit.
        limit: usize,
    },
    /// No recipient was given.
    #[error("the message has no recipient")]
    NoRecipients,
    /// The store failed; the client should try again.
    #[error("the message could not be stored: {0}")]
    Store(#[from] StoreError),
}

/// Validates and spools a submission; returns the new message ids, one per recipient, once
/// they are durable, and hands them to the pipeline.
pub async fn accept(
    store: &Store,
    pipeline: &PipelineHandle,
    submission: Submission,
) -> Result<Vec<String>, SubmitError> {
    accept_as(store, pipeline, submission, None).await
}

/// [`accept`] for a submission that sends message `resent_from` again: the new messages
/// name it, and it gets a RESENT event in the transaction that spools them.
pub async fn accept_as(
    store: &Store,
    pipeline: &PipelineHandle,
    submission: Submission,
    resent_from: Option<String>,
) -> Result<Vec<String>, SubmitError> {
    let limit = submission.source.max_message_bytes;
    if submission.content.len() > limit {
        return Err(SubmitError::TooLarge {
            size: submission.content.len(),
            limit,
        });
    }
    if submission.recipients.is_empty() {
        return Err(SubmitError::NoRecipients);
    }
    let envelope = Envelope {
        sender: submission.sender.clone(),
        recipient: submission.recipients[0].clone(),
    };
    let mut message =
        Message::parse(submission.content, envelope).map_err(SubmitError::Malformed)?;
    let mut flow_selector = submission.flow_selector;
    if let Some(selector) = message.header(FLOW_SELECTOR_HEADER) {
        flow_selector.get_or_insert(selector.trim().to_string());
        message.remove_header(FLOW_SELECTOR_HEADER);
    }
    let subject = message.header("Subject");
    let body = message.to_bytes();
    let submitted_at = now_millis();

    let messages: Vec<NewMessage> = submission
        .recipients
        .iter()
        .map(|recipient| NewMessage {
            record: MessageRecord {
                id: crate::store::new_message_id(),
                account_id: submission.source.account_id,
                source_id: submission.source.id,
                submitted_over: submission.over.to_string(),
                sender: submission.sender.clone(),
                recipient: recipient.clone(),
                submitted_at,
                data: submission.data.clone(),
                flow_selector: flow_selector.clone(),
                flow_id: None,
                status: MessageStatus::Submitted,
                status_reason: None,
                subject: subject.clone(),
                tags: submission.tags.clone(),
                schedule_at: submission.schedule_at.clone(),
                dmarc: None,
                header_message_id: None,
                resent_from: resent_from.clone(),
                steps: Vec::new(),
                next_event: None,
            },
            body: body.clone(),
        })
        .collect();
    let ids: Vec<String> = messages.iter().map(|m| m.record.id.clone()).collect();
    // The flows start from these copies instead of reading each message back.
    let bodies: Vec<Vec<u8>> = messages.iter().map(|m| m.body.clone()).collect();
    let kept = store.spool(messages).await?;
    for (record, body) in kept.into_iter().zip(bodies) {
        pipeline.notify_spooled(record, body);
    }
    Ok(ids)
}
