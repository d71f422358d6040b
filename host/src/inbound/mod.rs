//! Returned mail: the MX that takes bounces, feedback reports and auto-replies for our
//! return-path and feedback-loop addresses, keeps each one, works out what it says about
//! which of our messages, and records that on them.
//!
//! The MX answers 250 once the message is stored; the analysis runs afterwards from the
//! store, so a restart resumes it and a report that cannot be read is kept and answered,
//! never a reason to drop the connection.
//!
//! Only a return-path address whose MAC verifies (the envelope recipient of a DSN, or the
//! `Return-Path` kept in the returned headers of a feedback report) lets a report change a
//! message's status or the filter list. A match through the returned Message-ID and the
//! recipient the report names adds the event, marked unverified, and nothing else; an
//! unmatched report is kept and changes nothing.

pub mod mapping;

use self::mapping::Match;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::bounce::{self, Class, Kind, RecipientVerdict, Report};
use crate::delivery::verp::ReturnPath;
use crate::flow::PipelineHandle;
use crate::net::proxy_protocol::TrustedProxies;
use crate::plugin::classifier::{AccountClassifiers, AccountVerdict, ReturnedRecipient};
use crate::smtp::SmtpConfig;
use crate::store::EventKind;
use crate::store::{
    Event, MessageRecord, MessageStatus, ReturnedEffect, ReturnedMail, Store, StoreError,
    filter_key, new_message_id, now_millis,
};
use crate::submit::{self, Submission};

/// The `[inbound]` section: the MX for returned mail.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// Run the MX at all.
    pub enabled: bool,
    /// Where it listens; port 25 on a public address in production.
    pub listen: SocketAddr,
    /// The name it greets with.
    pub hostname: String,
    /// The largest returned message taken (a bounce carries the original), in bytes.
    pub max_message_bytes: usize,
    /// Recipients taken in one transaction.
    pub max_recipients: usize,
    /// Domains that receive feedback-loop reports, besides the return-path domain.
    pub feedback_domains: Vec<String>,
    /// Seconds to wait for a command.
    pub command_timeout_secs: u64,
    /// Seconds to wait for each read while a message's DATA comes in.
    pub data_timeout_secs: u64,
    /// Seconds the whole DATA of one message may take, however its bytes trickle in.
    pub max_data_secs: u64,
    /// Days the content of returned mail is kept (its analysis stays).
    pub keep_days: u64,
    /// Connections open at once; more are told to come back later.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Load balancers (addresses or networks) whose connections start with a PROXY header
    /// naming the sending MTA; required from them, believed from no one else.
    pub proxy_protocol_from: TrustedProxies,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:2526".parse().expect("a valid address"),
            hostname: "localhost".into(),
            max_message_bytes: 10 << 20,
            max_recipients: 20,
            feedback_domains: Vec::new(),
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            max_data_secs: 600,
            keep_days: 30,
            max_connections: 200,
            max_connections_per_ip: 10,
            proxy_protocol_from: TrustedProxies::default(),
        }
    }
}

impl InboundConfig {
    /// The settings the shared SMTP session runs with.
    pub fn smtp(&self) -> SmtpConfig {
        SmtpConfig {
            listen: self.listen,
            hostname: self.hostname.clone(),
            max_recipients: self.max_recipients,
            max_message_bytes: self.max_message_bytes,
            command_timeout_secs: self.command_timeout_secs,
            data_timeout_secs: self.data_timeout_secs,
            max_data_secs: self.max_data_secs,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            proxy_protocol_from: self.proxy_protocol_from.clone(),
            ..SmtpConfig::default()
        }
    }
}

/// How often pending returned mail is looked at when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Returned messages being settled at once, those waiting for an account's classifier
/// included.
const MAX_IN_FLIGHT: usize = 256;
/// Returned messages parsed and matched at once.
const SETTLE_CONCURRENCY: usize = 32;
/// Failed analyses of one returned message before it is set aside with its error.
const MAX_SETTLE_TRIES: u32 = 5;
/// Bytes of a returned message kept.
const MAX_KEPT_BYTES: usize = 1 << 20;
/// The local parts of the return-path domain taken besides return-path addresses: where
/// providers send feedback reports and people write (RFC 2142).
const ROLE_ADDRESSES: [&str; 4] = ["postmaster", "abuse", "fbl", "feedback"];

/// The returned-mail service: what the MX may accept, and the worker that analyses it.
pub struct Inbound {
    store: Store,
    pipeline: PipelineHandle,
    classifiers: Arc<AccountClassifiers>,
    return_path: ReturnPath,
    /// The platform's return-path domain, which forwarded complaints come from.
    return_path_domain: String,
    /// Lower-case domains whose every address is ours.
    domains: Vec<String>,
    wake: Notify,
    parsing: Semaphore,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// The service for the platform's return-path domain and the configured feedback domains.
    pub fn new(
        store: Store,
        pipeline: PipelineHandle,
        classifiers: Arc<AccountClassifiers>,
        return_path: ReturnPath,
        return_path_domain: &str,
        config: &InboundConfig,
    ) -> Arc<Self> {
        let mut domains: Vec<String> = std::iter::once(return_path_domain)
            .chain(config.feedback_domains.iter().map(String::as_str))
            .map(|domain| domain.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        domains.sort();
        domains.dedup();
        Arc::new(Self {
            store,
            pipeline,
            classifiers,
            return_path,
            return_path_domain: return_path_domain
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            domains,
            wake: Notify::new(),
            parsing: Semaphore::new(SETTLE_CONCURRENCY),
        })
    }

    /// Whether the MX takes mail for this recipient: a genuine return-path address on any
    /// domain (a customer's `bounce.` name is a CNAME to ours), the role addresses of the
    /// return-path domain, and any address of a feedback domain (the ones registered with
    /// mailbox providers). Everything else would be relaying, or storage for anyone.
    pub fn accepts(&self, recipient: &str) -> bool {
        let address = recipient.trim().trim_matches(['<', '>']);
        let Some((local, domain)) = address.rsplit_once('@') else {
            return false;
        };
        if self.return_path.message_id(address).is_some() {
            return true;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain == self.return_path_domain {
            return ROLE_ADDRESSES
                .iter()
                .any(|role| role.eq_ignore_ascii_case(local));
        }
        self.domains.contains(&domain)
    }

    /// Stores a returned message and wakes the worker; returns its id once it is durable.
    pub async fn receive(
        &self,
        mail_from: String,
        recipients: Vec<String>,
        peer: SocketAddr,
        content: Vec<u8>,
    ) -> Result<String, StoreError> {
        // The classifier reads the first 256 KB; a bounce that returns a whole large message
        // need not be kept whole.
        let mut content = content;
        content.truncate(MAX_KEPT_BYTES);
        let mail = ReturnedMail {
            id: format!("r{}", new_message_id()),
            received_at: now_millis(),
            mail_from,
            recipients,
            peer: peer.ip().to_string(),
            analysis: None,
            matched: Vec::new(),
        };
        let stored = self.store.put_returned(mail, content).await?;
        self.wake.notify_one();
        Ok(stored.id)
    }

    /// Starts the worker that analyses returned mail, beginning with what a restart left.
    ///
    /// Returned messages are settled side by side as a stream, not in batches: one whose
    /// account's classifier is slow waits for that account's share of classifier calls while
    /// the others go on and new ones are taken up.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let inbound = Arc::clone(self);
        tokio::spawn(async move {
            let mut failures: HashMap<String, u32> = HashMap::new();
            let mut running = tokio::task::JoinSet::new();
            let mut in_flight: HashSet<String> = HashSet::new();
            let mut look = true;
            loop {
                // Reading the pending table costs a walk past what is already running, so
                // it is topped up when woken, or once half of what runs has finished.
                if look || in_flight.len() <= MAX_IN_FLIGHT / 2 {
                    look = false;
                    match inbound.store.pending_returned(MAX_IN_FLIGHT) {
                        Ok(pending) => {
                            for id in pending {
                                if in_flight.len() >= MAX_IN_FLIGHT {
                                    break;
                                }
                                if in_flight.insert(id.clone()) {
                                    let worker = Arc::clone(&inbound);
                                    running.spawn(async move {
                                        let result = worker.settle(&id).await;
                                        (id, result)
                                    });
                                }
                            }
                        }
                        Err(error) => tracing::error!(%error, "cannot read pending returned mail"),
                    }
                }
                if running.is_empty() {
                    tokio::select! {
                        () = inbound.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    look = true;
                    continue;
                }
                tokio::select! {
                    joined = running.join_next() => {
                        let Some(Ok((id, result))) = joined else { continue };
                        in_flight.remove(&id);
                        match result {
                            Ok(_) => {
                                failures.remove(&id);
                            }
                            Err(error) => inbound.note_failure(&mut failures, id, error).await,
                        }
                    }
                    () = inbound.wake.notified() => look = true,
                }
            }
        })
    }

    /// Counts a failed analysis; after too many, sets the returned mail aside with its
    /// error, kept for an operator and out of the worker's way.
    async fn note_failure(
        &self,
        failures: &mut HashMap<String, u32>,
        id: String,
        error: StoreError,
    ) {
        tracing::error!(returned = %id, %error, "returned mail not settled");
        let tries = failures.entry(id.clone()).or_default();
        *tries += 1;
        if *tries >= MAX_SETTLE_TRIES {
            let analysis = json!({ "error": error.to_string() });
            if self
                .store
                .settle_returned(&id, analysis, Vec::new())
                .await
                .is_ok()
            {
                failures.remove(&id);
            }
        }
    }

    /// Analyses one returned message and records what it means.
    pub async fn settle(&self, id: &str) -> Result<Vec<String>, StoreError> {
        // Parsing and matching share a bound; the wait for an account's classifier below
        // does not hold it, so a slow classifier delays only its own account's mail.
        let parsing = self
            .parsing
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let Some(mail) = self.store.returned(id)? else {
            return Ok(Vec::new());
        };
        let content: Arc<[u8]> = self.store.returned_body(id)?.unwrap_or_default().into();
        let readable = Arc::clone(&content);
        // The classifier is built never to panic; should it anyway, the report is kept as
        // unreadable rather than retried for ever.
        let report = tokio::task::spawn_blocking(move || bounce::classify_message(&readable))
            .await
            .unwrap_or_else(|_| unreadable());
        let messages =
            mapping::messages_for(&self.store, &self.return_path, &mail, &report, &content)?;
        drop(parsing);
        let mut effects = Vec::new();
        for (message, found) in &messages {
            let custom = self
                .account_verdict(message, *found, messages.len(), &report)
                .await;
            effects.extend(effect(
                message,
                *found,
                messages.len(),
                &report,
                &mail.id,
                custom.as_ref(),
            ));
        }
        let analysis = serde_json::to_value(&report).unwrap_or_default();
        let matched = self.store.settle_returned(id, analysis, effects).await?;
        if report.kind == Kind::Complaint {
            // After the complaint is recorded: a crash in between loses the copy for the
            // source, never the complaint, and never sends the copy twice.
            let verified = messages
                .iter()
                .filter(|(message, found)| {
                    *found == Match::ReturnPath && matched.contains(&message.id)
                })
                .map(|(message, _)| message);
            for message in verified {
                if let Err(error) = self.forward_complaint(message, &content).await {
                    tracing::warn!(message = %message.id, %error, "complaint not forwarded");
                }
            }
        }
        tracing::info!(
            returned = %id,
            kind = report.kind.as_str(),
            matched = matched.len(),
            "returned mail settled"
        );
        Ok(matched)
    }
}

fn unreadable() -> Report {
    Report {
        kind: Kind::NotABounce,
        recipients: Vec::new(),
        feedback_type: None,
        envelope_id: None,
        returned: None,
    }
}

impl Inbound {
    /// The verdict of the account's own classifier on a verified bounce, if it has one.
    async fn account_verdict(
        &self,
        message: &MessageRecord,
        found: Match,
        matched: usize,
        report: &Report,
    ) -> Option<AccountVerdict> {
        if report.kind != Kind::Bounce || found != Match::ReturnPath {
            return None;
        }
        let verdict = verdict_for(message, report, matched)?;
        if is_delay_warning(verdict) {
            return None;
        }
        let asked = ReturnedRecipient {
            kind: report.kind,
            recipient: verdict.recipient.clone(),
            status: verdict.status.clone(),
            reply_code: verdict.reply_code,
            diagnostic: verdict.diagnostic.clone(),
            reason: verdict.reason.as_str().to_string(),
            hard: verdict.class == Some(Class::Hard),
        };
        self.classifiers.verdict(message.account_id, asked).await
    }

    /// Sends a copy of a complaint to the feedback address of the source that sent the
    /// message, as a message of that source (through its flow, so signed like its others).
    async fn forward_complaint(
        &self,
        message: &MessageRecord,
        report: &[u8],
    ) -> Result<(), anyhow::Error> {
        // A complaint about a forwarded complaint is not forwarded again.
        if message.tags.iter().any(|tag| tag == FORWARD_TAG) {
            return Ok(());
        }
        let Some(source) = self.store.source(message.source_id)? else {
            return Ok(());
        };
        let Some(address) = source.feedback_address.clone() else {
            return Ok(());
        };
        let sender = format!("feedback@{}", self.return_path_domain);
        let content = mail_builder::MessageBuilder::new()
            .from(("Sluice feedback loop", sender.as_str()))
            .to(address.as_str())
            .subject(format!(
                "Spam complaint about message {} to {}",
                message.id, message.recipient
            ))
            .text_body(format!(
                "A recipient reported message {} ({}) as spam, and was put on the account's \
                 filter list.\r\nThe report as it arrived is attached.\r\n",
                message.id,
                message.subject.as_deref().unwrap_or("no subject"),
            ))
            .attachment(
                "message/rfc822",
                "complaint.eml",
                String::from_utf8_lossy(report).into_owned(),
            )
            .write_to_vec()?;
        let submission = Submission {
            source,
            over: "feedback-loop",
            sender,
            recipients: vec![address],
            content,
            data: None,
            flow_selector: None,
            tags: vec![FORWARD_TAG.to_string()],
            schedule_at: None,
        };
        submit::accept(&self.store, &self.pipeline, submission).await?;
        Ok(())
    }
}

/// The tag of forwarded complaints.
const FORWARD_TAG: &str = "feedback-forward";

/// What a report does to one of our messages. A match that is not proof only adds the event.
fn effect(
    message: &MessageRecord,
    found: Match,
    matched: usize,
    report: &Report,
    returned_id: &str,
    custom: Option<&AccountVerdict>,
) -> Option<ReturnedEffect> {
    let verdict = verdict_for(message, report, matched);
    let verified = found == Match::ReturnPath;
    let detail = |kind: EventKind| {
        let mut detail = json!({
            "kind": report.kind.as_str(),
            "returnedMail": returned_id,
            "verified": verified,
        });
        if let Some(verdict) = verdict {
            detail["reason"] = json!(verdict.reason.as_str());
            detail["class"] = json!(verdict.class.map(Class::as_str));
            detail["status"] = json!(verdict.status);
            detail["replyCode"] = json!(verdict.reply_code);
            detail["diagnostic"] = json!(verdict.diagnostic);
            detail["remoteMta"] = json!(verdict.remote_mta);
        }
        if let Some(feedback_type) = &report.feedback_type {
            detail["feedbackType"] = json!(feedback_type);
        }
        if let Some(custom) = custom.filter(|_| report.kind == Kind::Bounce) {
            detail["builtInReason"] = detail["reason"].clone();
            detail["reason"] = json!(custom.verdict.reason);
            detail["class"] = json!(if custom.verdict.hard { "hard" } else { "soft" });
            detail["classifiedBy"] = json!(custom.plugin);
        }
        Event {
            kind,
            at: now_millis(),
            detail: Some(detail.to_string()),
        }
    };
    match report.kind {
        Kind::Bounce => {
            let verdict = verdict?;
            if is_delay_warning(verdict) {
                return Some(ReturnedEffect {
                    message_id: message.id.clone(),
                    event: detail(EventKind::Delayed),
                    status: None,
                    filter_reason: None,
                });
            }
            let hard = match custom {
                Some(custom) => custom.verdict.hard,
                None => verdict.class == Some(Class::Hard),
            };
            Some(ReturnedEffect {
                message_id: message.id.clone(),
                event: detail(if hard {
                    EventKind::HardBounce
                } else {
                    EventKind::SoftBounce
                }),
                status: verified.then_some(if hard {
                    MessageStatus::HardBounce
                } else {
                    MessageStatus::SoftBounce
                }),
                filter_reason: (verified && hard).then(|| "hard-bounce".to_string()),
            })
        }
        Kind::Complaint => {
            // A report that mail was wrongly judged spam, or about authentication only, is
            // no reason to stop writing to the person.
            let filters = !matches!(
                report.feedback_type.as_deref(),
                Some("not-spam" | "auth-failure")
            );
            Some(ReturnedEffect {
                message_id: message.id.clone(),
                event: detail(EventKind::Complaint),
                status: None,
                filter_reason: (verified && filters).then(|| "complaint".into()),
            })
        }
        Kind::Autoreply => Some(ReturnedEffect {
            message_id: message.id.clone(),
            event: detail(EventKind::AutoReply),
            status: None,
            filter_reason: None,
        }),
        Kind::DeliveryReport | Kind::NotABounce => None,
    }
}

/// A DSN saying the remote is still trying (Action: delayed): nothing has failed yet.
fn is_delay_warning(verdict: &RecipientVerdict) -> bool {
    verdict
        .action
        .as_deref()
        .is_some_and(|action| action.eq_ignore_ascii_case("delayed"))
}

/// The report's verdict on this message's recipient: the one naming it, else the only one
/// when the report is about this message alone.
fn verdict_for<'a>(
    message: &MessageRecord,
    report: &'a Report,
    matched: usize,
) -> Option<&'a RecipientVerdict> {
    let recipient = filter_key(&message.recipient);
    report
        .recipients
        .iter()
        .find(|verdict| {
            verdict
                .recipient
                .as_deref()
                .is_some_and(|named| filter_key(named) == recipient)
        })
        .or(match report.recipients.as_slice() {
            [only] if matched == 1 => Some(only),
            _ => None,
        })
}
