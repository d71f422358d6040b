//! The pipeline: takes spooled messages, sorts each into its Flow, runs the Flow's steps in
//! the sandbox and records the outcome, all from and back into the store. A message leaves
//! the spool only in the transaction that records its outcome, so a crash at any point is
//! resumed from the spool on the next start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::fresh::{FRESH_COPIES_BYTES, FRESH_COPY_AGE, FreshCopies};
use super::rules::{MessageFacts, Routing};
use crate::delivery::{DeliveryConfig, QueueSignal};
use crate::fairness::{FairShare, NoSlot, Slot};
use crate::message::{Envelope, Message};
use crate::plugin::registry::PluginRegistry;
use crate::plugin::{
    Grants, HostServices, Plugin, PluginRuntime, StepContext, StepEffects, StepError, StepFailed,
    StepFailure, StepOutcome, StepReport, StepRun,
};
use crate::store::EventKind;
use crate::store::{
    ArchiveEntry, Event, Flow, HeldCopy, MessageRecord, MessageStatus, StepResult,
    StepResultOutcome, Store, StoreError, now_millis,
};
use crate::tracking::LinkSigner;

/// How many ids may wait in the channel; past that the spool itself is the queue.
const QUEUE_CAPACITY: usize = 10_000;
/// A day in milliseconds, for archive retention.
const DAY_MILLIS: u64 = 24 * 60 * 60 * 1000;
/// The message a step's configuration is checked on when a flow is saved.
const PROBE_MESSAGE: &str = "From: probe@sluice.invalid\r\nTo: probe@sluice.invalid\r\n\
    Subject: configuration check\r\nMIME-Version: 1.0\r\n\
    Content-Type: text/html; charset=utf-8\r\n\r\n<p>configuration check</p>\r\n";
/// How often the spool is scanned for messages whose notification did not fit the queue.
const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Runs flows for spooled messages.
pub struct Pipeline {
    store: Store,
    runtime: Arc<PluginRuntime>,
    folder: Arc<PluginRegistry>,
    links: Arc<LinkSigner>,
    services: Arc<dyn HostServices>,
    delivery: DeliveryConfig,
    queued: QueueSignal,
    stored_plugins: Mutex<HashMap<String, Arc<Plugin>>>,
    /// Why stored plugins that were tried did not load. The same bytes fail the same way:
    /// remembered, a flow naming one does not read and compile it again for every message
    /// (nor a page listing it on every view).
    failed_plugins: Mutex<HashMap<String, String>>,
    in_flight: Mutex<HashSet<String>>,
    share: Arc<FairShare>,
    overflowed: AtomicBool,
    /// See [`PipelineParts::orphaned_after`].
    orphaned_after: Option<Duration>,
    /// Messages this node just spooled, as spooled, for their flows to start from.
    fresh: Mutex<FreshCopies>,
}

/// What the pipeline is built from.
#[derive(Clone)]
pub struct PipelineParts {
    /// The store.
    pub store: Store,
    /// Runs the steps.
    pub runtime: Arc<PluginRuntime>,
    /// The operator's and built-in plugins.
    pub folder: Arc<PluginRegistry>,
    /// Signs tracking and online links.
    pub links: Arc<LinkSigner>,
    /// Templates and keys for privileged steps.
    pub services: Arc<dyn HostServices>,
    /// Flows that may run at once.
    pub workers: usize,
    /// Flows one account may run at once (simulations and previews included).
    pub account_share: usize,
    /// The delivery settings (a processed message's expiry).
    pub delivery: DeliveryConfig,
    /// Told when a message enters the delivery queue.
    pub queued: QueueSignal,
    /// On a store other nodes share: how old a spooled message must be before this node runs
    /// its flow without having accepted it (its node died before the flow ended).
    pub orphaned_after: Option<Duration>,
}

/// What running a message's flow came to.
#[derive(Debug)]
pub struct FlowRun {
    /// The flow the message was sorted into.
    pub flow_id: Option<u64>,
    /// Processed, held or discarded.
    pub status: MessageStatus,
    /// Why it was held or discarded.
    pub reason: Option<String>,
    /// The message after the steps, when processed.
    pub message: Option<Message>,
    /// What happened, in order.
    pub events: Vec<Event>,
    /// What the steps asked the host to do once the outcome is recorded.
    pub effects: StepEffects,
    /// The flow's own delivery expiry, if it sets one.
    pub expiry_hours: Option<u64>,
    /// The message as the step that held it or failed got it (the error archive).
    pub held_copy: Option<(usize, Message)>,
    /// What each step did, in order, up to the one that ended the flow.
    pub steps: Vec<StepResult>,
}

impl FlowRun {
    fn held(flow_id: Option<u64>, mut events: Vec<Event>, reason: String) -> Self {
        events.push(Event {
            kind: EventKind::Held,
            at: now_millis(),
            detail: Some(reason.clone()),
        });
        Self {
            flow_id,
            status: MessageStatus::Held,
            reason: Some(reason),
            message: None,
            events,
            effects: StepEffects::default(),
            expiry_hours: None,
            held_copy: None,
            steps: Vec::new(),
        }
    }

    /// The same outcome, keeping the message as step `step` got it before holding it or
    /// failing: what the error archive shows.
    fn keeping(mut self, step: usize, message: Message) -> Self {
        self.held_copy = Some((step, message));
        self
    }

    /// The same run with the steps' results it came to.
    fn with_steps(mut self, steps: Vec<StepResult>) -> Self {
        self.steps = steps;
        self
    }
}

/// Why a flow could not run to an outcome now; the message stays in the spool.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step could not be started (the instance pool is full); try again shortly.
    #[error("a step could not be started: {0}")]
    Busy(String),
}

/// Tells the pipeline about newly spooled messages.
#[derive(Clone, Debug)]
pub struct PipelineHandle {
    queue: mpsc::Sender<Spooled>,
    pipeline: Arc<Pipeline>,
}

/// A spooled message waiting for its flow: its account and id.
type Spooled = (u64, String);

impl PipelineHandle {
    /// Queues an account's spooled message; if the queue is full it is picked up from the
    /// spool later.
    pub fn notify(&self, account_id: u64, id: String) {
        if self.queue.try_send((account_id, id)).is_err() {
            self.pipeline.overflowed.store(true, Ordering::Release);
        }
    }

    /// Queues a message just spooled, with its record and body exactly as spooled: its flow
    /// starts from them instead of reading them back (while they are kept; see
    /// `flow/fresh.rs`).
    pub fn notify_spooled(&self, record: MessageRecord, body: Vec<u8>) {
        let (account_id, id) = (record.account_id, record.id.clone());
        self.pipeline.fresh().keep(record, body);
        if self.queue.try_send((account_id, id.clone())).is_err() {
            // Found in the spool later, and read from the store then.
            self.pipeline.fresh().take(&id);
            self.pipeline.overflowed.store(true, Ordering::Release);
        }
    }

    /// Runs a message's flow without storing anything (the API's `simulate`).
    pub async fn simulate(
        &self,
        record: &MessageRecord,
        message: Message,
    ) -> Result<FlowRun, FlowError> {
        // Simulations count against the account's share of the flows running at once, so a
        // burst of them cannot take slots from real mail or from other accounts.
        let Ok(_slot) = self.pipeline.share.acquire(record.account_id).await else {
            return Err(StoreError::Closed.into());
        };
        self.pipeline.run_flow(record, message, true).await
    }

    /// Checks a step's configuration as it would be saved into a flow of the account: the
    /// step runs once on a probe message, as a simulation, and a configuration it calls
    /// invalid is refused. Other outcomes are the probe message's business, not the config's.
    pub async fn check_step(
        &self,
        account_id: u64,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<(), String> {
        let pipeline = &self.pipeline;
        let plugin = pipeline
            .plugin(plugin)
            .await
            .map_err(|error| error.to_string())?;
        let probe = Message::parse(
            PROBE_MESSAGE.as_bytes().to_vec(),
            Envelope {
                sender: "probe@sluice.invalid".into(),
                recipient: "probe@sluice.invalid".into(),
            },
        )
        .map_err(|error| error.to_string())?;
        let result = self
            .run_dry(plugin, probe, config.to_string(), account_id, "probe")
            .await
            .map_err(|error| error.to_string())?;
        match result {
            Err(failed) => match failed.failure {
                StepFailure::Step(StepError::InvalidConfig(reason)) => Err(reason),
                _ => Ok(()),
            },
            Ok(_) => Ok(()),
        }
    }

    /// Runs one step as a simulation for the account (a preview, a configuration check),
    /// within the account's share of the flows running at once, so a burst of them cannot
    /// take slots from real mail or from other accounts.
    pub async fn run_dry(
        &self,
        plugin: Arc<Plugin>,
        message: Message,
        config: String,
        account_id: u64,
        message_id: &str,
    ) -> Result<Result<StepRun, StepFailed>, FlowError> {
        let pipeline = &self.pipeline;
        let context = pipeline.context(message_id, account_id, true);
        let Ok(_slot) = pipeline.share.acquire(account_id).await else {
            return Err(StoreError::Closed.into());
        };
        Ok(plugin.run_in(&message, &config, Some(context)).await)
    }

    /// Why a plugin (by sha256 or folder name) is disabled for the account; `None` when it
    /// runs. An error when there is no such plugin.
    pub async fn plugin_disabled(
        &self,
        account_id: u64,
        reference: &str,
    ) -> Result<(Arc<Plugin>, Option<String>), String> {
        let plugin = self
            .pipeline
            .plugin(reference)
            .await
            .map_err(|error| error.to_string())?;
        let reason = plugin.disabled_for(account_id);
        Ok((plugin, reason))
    }

    /// Lets a plugin that failed its way to disabled run again for the account. Returns
    /// whether it was disabled.
    pub async fn enable_plugin(&self, account_id: u64, reference: &str) -> Result<bool, String> {
        let (plugin, reason) = self.plugin_disabled(account_id, reference).await?;
        self.pipeline
            .store
            .clear_plugin_disabled(plugin.sha256(), account_id)
            .await
            .map_err(|error| error.to_string())?;
        plugin.enable_for(account_id);
        if reason.is_some() {
            tracing::info!(account = account_id, plugin = %plugin.name(), sha256 = %plugin.sha256(), "plugin enabled again");
        }
        Ok(reason.is_some())
    }

    /// Brings the plugins this node loaded up to date with the store after the plugins
    /// `changed` (by sha256; every loaded one when `None`) changed through any node: a plugin
    /// no longer stored is dropped, the disabled states recorded now are applied, and a new
    /// upload is loaded ahead of its first message.
    pub async fn plugins_changed(&self, changed: Option<&[String]>) -> Result<(), StoreError> {
        let pipeline = &self.pipeline;
        let folder: Vec<Arc<Plugin>> = pipeline
            .folder
            .names()
            .iter()
            .filter_map(|name| pipeline.folder.get(name))
            .collect();
        let targets: Vec<String> = match changed {
            Some(changed) => changed.to_vec(),
            None => {
                let mut all: Vec<String> = lock(&pipeline.stored_plugins).keys().cloned().collect();
                all.extend(lock(&pipeline.failed_plugins).keys().cloned());
                all.extend(folder.iter().map(|plugin| plugin.sha256().to_string()));
                all.sort();
                all.dedup();
                all
            }
        };
        for sha256 in targets {
            lock(&pipeline.failed_plugins).remove(&sha256);
            let stored = pipeline.store.has_plugin(&sha256)?;
            let ticket = crate::plugin::store_ticket();
            let recorded = pipeline.store.plugin_disabled_accounts(&sha256)?;
            let loaded = if stored {
                lock(&pipeline.stored_plugins).get(&sha256).cloned()
            } else {
                lock(&pipeline.stored_plugins).remove(&sha256);
                None
            };
            for plugin in loaded
                .iter()
                .chain(folder.iter().filter(|plugin| plugin.sha256() == sha256))
            {
                plugin.apply_recorded_disabled(&recorded, ticket);
            }
            let in_folder = folder.iter().any(|plugin| plugin.sha256() == sha256);
            if stored && loaded.is_none() && !in_folder && changed.is_some() {
                // Loaded now rather than by its first message. A bounce classifier does not
                // load as a step: that is remembered as for any other plugin that cannot run.
                if let Err(error) = pipeline.plugin(&sha256).await {
                    tracing::debug!(plugin = %sha256, %error, "an uploaded plugin does not load as a step");
                }
            }
        }
        Ok(())
    }

    /// Whether this node holds the uploaded plugin `sha256` loaded.
    pub fn has_loaded(&self, sha256: &str) -> bool {
        lock(&self.pipeline.stored_plugins).contains_key(sha256)
    }

    /// Messages whose flow is running now.
    pub fn in_flight(&self) -> usize {
        self.pipeline
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// Why a step could not run at all.
#[derive(Debug, thiserror::Error)]
enum StepSetupError {
    #[error("plugin {0} is neither stored nor in the plugin folder")]
    MissingPlugin(String),
    #[error("plugin {plugin} does not load: {error}")]
    Load { plugin: String, error: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Pipeline {
    /// Starts the pipeline; resumes the spool first.
    pub fn start(parts: PipelineParts) -> PipelineHandle {
        let PipelineParts {
            store,
            runtime,
            folder,
            links,
            services,
            workers,
            account_share,
            delivery,
            queued,
            orphaned_after,
        } = parts;
        let pipeline = Arc::new(Self {
            store,
            runtime,
            folder,
            links,
            services,
            delivery,
            queued,
            stored_plugins: Mutex::new(HashMap::new()),
            failed_plugins: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            share: FairShare::new(workers, account_share),
            // Start with a scan: whatever was spooled before a restart is picked up.
            overflowed: AtomicBool::new(true),
            orphaned_after,
            fresh: Mutex::new(FreshCopies::new(FRESH_COPIES_BYTES, FRESH_COPY_AGE)),
        });
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(Arc::clone(&pipeline).run(receiver));
        PipelineHandle { queue, pipeline }
    }

    /// Takes spooled messages in turn by account: each account's messages wait in its own
    /// queue, and the next flow to start is the next account's whose share has room.
    async fn run(self: Arc<Self>, mut receiver: mpsc::Receiver<Spooled>) {
        let mut rescan = tokio::time::interval(RESCAN_INTERVAL);
        // Never ticks on a store of this node's own.
        let orphan_every = self
            .orphaned_after
            .map_or(Duration::from_secs(3600 * 24 * 365), |after| {
                (after / 2).max(RESCAN_INTERVAL)
            });
        let mut orphan_scan = tokio::time::interval(orphan_every);
        orphan_scan.tick().await;
        let mut backlog = Backlog::default();
        loop {
            while let Ok((account_id, id)) = receiver.try_recv() {
                backlog.push(account_id, id);
            }
            let released = self.share.released();
            tokio::pin!(released);
            released.as_mut().enable();
            match backlog.next(&self.share) {
                Some((id, slot)) => {
                    self.start_flow(id, slot);
                    continue;
                }
                None if backlog.closed => return,
                None => {}
            }
            // Nothing can start now: wait for a new message, a slot given back, or a scan.
            tokio::select! {
                received = receiver.recv() => match received {
                    Some((account_id, id)) => backlog.push(account_id, id),
                    None => return,
                },
                () = &mut released, if !backlog.is_empty() => {}
                _ = rescan.tick() => {
                    if self.overflowed.swap(false, Ordering::AcqRel) {
                        self.rescan(&mut backlog, u64::MAX);
                    }
                }
                _ = orphan_scan.tick(), if self.orphaned_after.is_some() => {
                    let after = self.orphaned_after.unwrap_or_default();
                    let cutoff = crate::store::now_millis()
                        .saturating_sub(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                    self.rescan(&mut backlog, cutoff);
                }
            }
        }
    }

    /// Queues what is in the spool, submitted before `before` (after a restart, or when the
    /// channel overflowed: everything; on a shared store, now and then, what another node
    /// accepted long ago and left, having died).
    fn rescan(&self, backlog: &mut Backlog, before: u64) {
        let ids = match self.store.spooled_before(before) {
            Ok(ids) => ids,
            Err(error) => {
                tracing::error!(%error, "cannot read the spool");
                return;
            }
        };
        let queued: HashSet<&String> = backlog.queues.values().flatten().collect();
        let fresh: Vec<String> = ids.into_iter().filter(|id| !queued.contains(id)).collect();
        for id in fresh {
            match self.store.message(&id) {
                Ok(Some(record)) => backlog.push(record.account_id, id),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(message = %id, %error, "cannot read a spooled message")
                }
            }
        }
    }

    /// Runs one message's flow in its own task, holding its account's slot until it ends.
    fn start_flow(self: &Arc<Self>, id: String, slot: Slot) {
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
        {
            return;
        }
        let pipeline = Arc::clone(self);
        tokio::spawn(async move {
            let _running = InFlight {
                pipeline: &pipeline,
                id: &id,
                _slot: slot,
            };
            if let Err(error) = pipeline.process(&id).await {
                // The message stays in the spool and is tried again at the next scan.
                tracing::warn!(message = %id, %error, "flow did not finish; retrying from the spool");
                pipeline.overflowed.store(true, Ordering::Release);
            }
        });
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, FreshCopies> {
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one message's flow and records the outcome.
    async fn process(self: &Arc<Self>, id: &str) -> Result<(), FlowError> {
        let fresh = self.fresh().take(id);
        let stored = match fresh {
            Some((record, body)) => Some((record, Some(body))),
            None => self.store.message_with_body(id)?,
        };
        let Some((mut record, body)) = stored else {
            return Ok(());
        };
        if record.status != MessageStatus::Submitted {
            return Ok(());
        }
        let Some(body) = body else {
            return Err(StoreError::NotFound(format!("body of message {id}")).into());
        };
        let envelope = Envelope {
            sender: record.sender.clone(),
            recipient: record.recipient.clone(),
        };
        let data_text = record.data.as_ref().map(|data| data.to_string());
        let run = match Message::parse(body.clone(), envelope) {
            Ok(message) => {
                self.run_flow(&record, message.with_data(data_text), false)
                    .await?
            }
            Err(error) => FlowRun::held(
                None,
                Vec::new(),
                format!("the message cannot be read: {error}"),
            ),
        };
        record.flow_id = run.flow_id;
        record.steps = run.steps;
        record.status = run.status;
        record.status_reason = run.reason;
        let mut events = run.events;
        // A step may send this copy elsewhere (a test inbox, a redirect): delivery, the filter
        // list and the API follow the new recipient.
        if let Some(message) = &run.message
            && message.envelope().recipient != record.recipient
        {
            events.push(Event {
                kind: EventKind::Redirected,
                at: now_millis(),
                detail: Some(format!(
                    "recipient {} → {}",
                    record.recipient,
                    message.envelope().recipient
                )),
            });
            record.recipient = message.envelope().recipient.clone();
        }
        // Read from the message as the flow left it, already parsed; a message that could not
        // be parsed is held, never sent, so it needs none.
        record.header_message_id = run.message.as_ref().and_then(Message::message_id);
        let new_body = run.message.map(|message| message.to_bytes());
        let changed = new_body.filter(|new_body| *new_body != body);
        let archive = run
            .effects
            .archive
            .filter(|_| record.status == MessageStatus::Processed)
            .map(|request| {
                let stored_at = now_millis();
                let entry = ArchiveEntry {
                    message_id: record.id.clone(),
                    account_id: record.account_id,
                    stored_at,
                    expires_at: stored_at + u64::from(request.retention_days) * DAY_MILLIS,
                };
                (entry, request.message)
            });
        record.dmarc = run.effects.dmarc;
        let held = run.held_copy.map(|(step, message)| HeldCopy {
            step,
            body: message.to_bytes(),
        });
        let expires_at = self.delivery.expires_at(run.expiry_hours);
        let status = self
            .store
            .finish_flow(record, changed, events, archive, held, expires_at)
            .await?;
        if status == Some(MessageStatus::Processed) {
            self.queued.queued();
        }
        Ok(())
    }

    /// Sorts a message into its flow and runs the flow's steps; stores nothing.
    pub async fn run_flow(
        self: &Arc<Self>,
        record: &MessageRecord,
        message: Message,
        simulation: bool,
    ) -> Result<FlowRun, FlowError> {
        let routed = self.store.routed_flow(record.account_id, |routing| {
            select_flow(routing, record, &message)
        })?;
        let Some((flow_id, flow)) = routed else {
            let reason = "the account has no default flow".to_string();
            return Ok(FlowRun::held(None, Vec::new(), reason));
        };
        let Some(flow) = flow else {
            let reason = format!("flow {flow_id} does not exist");
            return Ok(FlowRun::held(Some(flow_id), Vec::new(), reason));
        };

        let mut current = message;
        let mut events = Vec::new();
        let mut effects = StepEffects::default();
        // Bounded by the flow's steps, themselves bounded; a flow longer than the API allows
        // (written some other way) keeps the results of its first steps only.
        let mut steps = Vec::with_capacity(flow.steps.len().min(Flow::MAX_STEPS));
        for (index, step) in flow.steps.iter().enumerate() {
            let number = index + 1;
            let mut result_of_step = |outcome: StepResultOutcome, report: Option<&StepReport>| {
                if steps.len() < Flow::MAX_STEPS {
                    steps.push(StepResult {
                        number: u16::try_from(number).unwrap_or(u16::MAX),
                        plugin: step.plugin.clone(),
                        outcome,
                        micros: report.map_or(0, |report| {
                            u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX)
                        }),
                        fuel: report.and_then(|report| report.fuel_consumed),
                    });
                }
            };
            let facts = facts(record, &current);
            if step
                .enabled_when
                .as_ref()
                .is_some_and(|condition| !condition.holds(&facts))
            {
                result_of_step(StepResultOutcome::Skipped, None);
                continue;
            }
            let plugin = match self.plugin(&step.plugin).await {
                Ok(plugin) => plugin,
                Err(error) => {
                    result_of_step(StepResultOutcome::Failed("not-loaded".into()), None);
                    events.push(error_event(format!("step {number}: {error}")));
                    let reason = format!("step {number} could not run");
                    return Ok(FlowRun::held(Some(flow_id), events, reason).with_steps(steps));
                }
            };
            let config = step.config.to_string();
            let context = self.context(&record.id, record.account_id, simulation);
            let result = plugin.run_in(&current, &config, Some(context)).await;
            match result {
                Ok(run) => match run.outcome {
                    StepOutcome::Continue => {
                        result_of_step(StepResultOutcome::Continued, Some(&run.report));
                        current = run.message;
                        effects.merge(run.effects);
                    }
                    StepOutcome::Hold(reason) => {
                        result_of_step(StepResultOutcome::Held, Some(&run.report));
                        let reason = format!("step {number}: {reason}");
                        return Ok(FlowRun::held(Some(flow_id), events, reason)
                            .with_steps(steps)
                            .keeping(number, current));
                    }
                    StepOutcome::Discard(reason) => {
                        result_of_step(StepResultOutcome::Discarded, Some(&run.report));
                        let reason = format!("step {number}: {reason}");
                        events.push(Event {
                            kind: EventKind::Discarded,
                            at: now_millis(),
                            detail: Some(reason.clone()),
                        });
                        return Ok(FlowRun {
                            flow_id: Some(flow_id),
                            status: MessageStatus::Discarded,
                            reason: Some(reason),
                            message: None,
                            events,
                            effects: StepEffects::default(),
                            expiry_hours: flow.expiry_hours,
                            held_copy: None,
                            steps,
                        });
                    }
                },
                Err(failed) => {
                    if failed.disabled
                        && let Some(reason) = plugin.disabled_for(record.account_id)
                    {
                        // Kept, so a restart does not hand the plugin fresh tries.
                        self.store
                            .record_plugin_disabled(plugin.sha256(), record.account_id, &reason)
                            .await?;
                        plugin.disabling_recorded(record.account_id);
                    }
                    let failure = failed.failure;
                    // Not the step's fault nor the message's: the message waits in the
                    // spool and is tried again at the next scan.
                    if let StepFailure::Instantiate(reason) = failure {
                        return Err(FlowError::Busy(reason));
                    }
                    let code = failure.code();
                    result_of_step(
                        StepResultOutcome::Failed(code.into()),
                        Some(&*failed.report),
                    );
                    events.push(error_event(format!("step {number} ({code}): {failure}")));
                    let reason = format!("step {number} failed: {code}");
                    return Ok(FlowRun::held(Some(flow_id), events, reason)
                        .with_steps(steps)
                        .keeping(number, current));
                }
            }
        }
        events.push(Event {
            kind: EventKind::Processed,
            at: now_millis(),
            detail: Some(format!("flow {}", flow.name)),
        });
        Ok(FlowRun {
            flow_id: Some(flow_id),
            status: MessageStatus::Processed,
            reason: None,
            message: Some(current),
            events,
            effects,
            expiry_hours: flow.expiry_hours,
            held_copy: None,
            steps,
        })
    }

    fn context(&self, message_id: &str, account_id: u64, simulation: bool) -> StepContext {
        StepContext {
            message_id: message_id.to_string(),
            account_id,
            simulation,
            links: Arc::clone(&self.links),
            services: Some(Arc::clone(&self.services)),
        }
    }

    /// A plugin by sha256 (uploaded to the store) or by name (the operator's folder), with
    /// the disabled states recorded for its version.
    async fn plugin(&self, reference: &str) -> Result<Arc<Plugin>, StepSetupError> {
        let plugin = self.load_plugin(reference).await?;
        plugin.restore_disabled(|| self.store.plugin_disabled_accounts(plugin.sha256()))?;
        Ok(plugin)
    }

    async fn load_plugin(&self, reference: &str) -> Result<Arc<Plugin>, StepSetupError> {
        if let Some(plugin) = self.folder.get(reference) {
            return Ok(plugin);
        }
        if let Some(plugin) = self
            .stored_plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reference)
        {
            return Ok(Arc::clone(plugin));
        }
        let failed = |error: String| StepSetupError::Load {
            plugin: reference.to_string(),
            error,
        };
        if let Some(error) = self
            .failed_plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reference)
        {
            return Err(failed(error.clone()));
        }
        let bytes = self
            .store
            .plugin(reference)?
            .ok_or_else(|| StepSetupError::MissingPlugin(reference.to_string()))?;
        let plugin = match self
            .runtime
            .load_async(reference.to_string(), bytes, Grants::none())
            .await
        {
            Ok(plugin) => plugin,
            Err(error) => {
                let lasting = error.is_lasting();
                let error = error.to_string();
                if lasting {
                    self.failed_plugins
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(reference.to_string(), error.clone());
                }
                return Err(failed(error));
            }
        };
        self.stored_plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reference.to_string(), Arc::clone(&plugin));
        Ok(plugin)
    }
}

/// A message whose flow is running: it leaves the in-flight set and gives its slot back
/// however the flow ends, a panic included.
struct InFlight<'a> {
    pipeline: &'a Pipeline,
    id: &'a str,
    _slot: Slot,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.pipeline
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.id);
    }
}

/// Spooled messages waiting for a slot, one queue per account, accounts in turn.
#[derive(Default)]
struct Backlog {
    queues: HashMap<u64, VecDeque<String>>,
    turns: VecDeque<u64>,
    closed: bool,
}

impl Backlog {
    fn push(&mut self, account_id: u64, id: String) {
        let queue = self.queues.entry(account_id).or_default();
        if queue.is_empty() {
            self.turns.push_back(account_id);
        }
        queue.push_back(id);
    }

    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// The next message that can start now with its slot: accounts take turns, and one
    /// whose share is full is passed over until a slot of its own is given back.
    fn next(&mut self, share: &FairShare) -> Option<(String, Slot)> {
        for _ in 0..self.turns.len() {
            let account_id = self.turns.pop_front()?;
            match share.try_acquire(account_id) {
                Ok(slot) => {
                    let queue = self.queues.get_mut(&account_id)?;
                    let id = queue.pop_front()?;
                    if queue.is_empty() {
                        self.queues.remove(&account_id);
                    } else {
                        self.turns.push_back(account_id);
                    }
                    return Some((id, slot));
                }
                Err(NoSlot::AccountFull) => self.turns.push_back(account_id),
                Err(NoSlot::PoolFull) => {
                    // Its turn is kept for the next free slot.
                    self.turns.push_front(account_id);
                    return None;
                }
                Err(NoSlot::Closed) => {
                    self.turns.push_front(account_id);
                    self.closed = true;
                    return None;
                }
            }
        }
        None
    }
}

fn facts<'a>(record: &'a MessageRecord, message: &'a Message) -> MessageFacts<'a> {
    MessageFacts {
        source_id: record.source_id,
        flow_selector: record.flow_selector.as_deref(),
        sender: &record.sender,
        message,
        data: record.data.as_ref(),
    }
}

fn select_flow(routing: &Routing, record: &MessageRecord, message: &Message) -> u64 {
    routing.select(&facts(record, message))
}

fn error_event(detail: String) -> Event {
    Event {
        kind: EventKind::Error,
        at: now_millis(),
        detail: Some(detail),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
