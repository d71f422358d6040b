//! What one Flowstep call sees: the store's data and the host side of the contract's imports.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::cpu::{CpuMeter, ThreadClock};
use super::limits::RuntimeLimits;
use super::stdio::CapturedOutput;
use crate::message::{Message, MessageError};

/// The host-owned message a step works on: a copy of the message the call started with,
/// taken as the result only if the step succeeds.
#[derive(Debug)]
pub struct MessageDraft {
    message: Message,
    max_bytes: usize,
}

impl MessageDraft {
    /// Refuses an input that alone is over the size limit before any work is done with it, so
    /// a huge argument costs the host no more than its copy into the call.
    pub(super) fn check_input(&self, size: usize) -> Result<(), MessageError> {
        if size > self.max_bytes {
            return Err(MessageError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    fn check_size(&self) -> Result<(), MessageError> {
        let size = self.message.size();
        if size > self.max_bytes {
            return Err(MessageError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// [`MessageDraft::edit`] for edits that rebuild the message: on a large message it runs
    /// on a blocking thread and is awaited, so the call's deadline can drop the wait (the
    /// abandoned edit finishes in the background and is thrown away). The edit's CPU time,
    /// measured on that thread, is charged to the call: the work is the call's, done elsewhere.
    pub(super) async fn edit_rebuilding<T: Send + 'static>(
        &mut self,
        cpu: &CpuMeter,
        input_bytes: usize,
        change: impl FnOnce(&mut Message) -> Result<T, MessageError> + Send + 'static,
    ) -> wasmtime::Result<Result<T, MessageError>> {
        if self.message.size() + input_bytes <= INLINE_EDIT_BYTES {
            return Ok(self.edit(change));
        }
        let mut scratch = self.message.clone();
        let max_bytes = self.max_bytes;
        let (edited, spent) = tokio::task::spawn_blocking(move || {
            let clock = ThreadClock::start();
            let edited = change(&mut scratch).and_then(|value| {
                let size = scratch.size();
                if size > max_bytes {
                    return Err(MessageError::TooLarge {
                        size,
                        limit: max_bytes,
                    });
                }
                Ok((scratch, value))
            });
            (edited, clock.elapsed())
        })
        .await
        .map_err(|error| wasmtime::format_err!("the edit failed in the host: {error}"))?;
        cpu.charge(spent);
        if cpu.exhausted() {
            return Err(wasmtime::Error::new(wasmtime::Trap::Interrupt));
        }
        Ok(edited.map(|(message, value)| {
            self.message = message;
            value
        }))
    }

    /// Applies an edit to a scratch copy and keeps it only if it is valid and within the size
    /// limit; a refused edit leaves the message as it was.
    pub(super) fn edit<T>(
        &mut self,
        change: impl FnOnce(&mut Message) -> Result<T, MessageError>,
    ) -> Result<T, MessageError> {
        let mut scratch = self.message.clone();
        let value = change(&mut scratch)?;
        let before = std::mem::replace(&mut self.message, scratch);
        if let Err(error) = self.check_size() {
            self.message = before;
            return Err(error);
        }
        Ok(value)
    }

    /// The message as it is now.
    pub(super) fn message(&self) -> &Message {
        &self.message
    }

    /// Removes every field of this name: it only shrinks the message, so nothing is checked.
    pub(super) fn remove_header(&mut self, name: &str) {
        self.message.remove_header(name);
    }
}

/// Up to this size (message and argument), an edit runs inline: a thread hop would cost more
/// than the edit.
const INLINE_EDIT_BYTES: usize = 256 << 10;

/// Who a call works for: what privileged capabilities need to know about the message.
#[derive(Clone)]
pub struct StepContext {
    /// The message's id, which tracking links carry.
    pub message_id: String,
    /// The account the message belongs to.
    pub account_id: u64,
    /// A dry run (the API's simulate): its faults do not count towards disabling the plugin.
    pub simulation: bool,
    /// Signs tracking and online links.
    pub links: Arc<crate::tracking::LinkSigner>,
    /// The account's templates and keys, where the caller has them.
    pub services: Option<Arc<dyn HostServices>>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("message_id", &self.message_id)
            .field("account_id", &self.account_id)
            .field("simulation", &self.simulation)
            .finish_non_exhaustive()
    }
}

/// What privileged capabilities need from outside the runtime: the account's templates and
/// DKIM keys. The server implements it over its store; the runtime only calls it.
pub trait HostServices: Send + Sync {
    /// The account's template with this name.
    fn template(&self, account_id: u64, name: &str) -> Result<Option<TemplateParts>, String>;
    /// DKIM-Signature fields for the message and its DMARC alignment.
    fn sign(&self, account_id: u64, raw: &[u8]) -> Result<crate::dkim::Signed, String>;
}

/// A template's sources, as the `templates` capability hands them out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateParts {
    /// The Subject template.
    pub subject: Option<String>,
    /// The html body template.
    pub html: Option<String>,
    /// The text body template.
    pub text: Option<String>,
}

/// What a step asked of the host beyond changing the message, applied only when the flow's
/// outcome is recorded (never for a simulation, nor for a step that failed).
#[derive(Clone, Debug, Default)]
pub struct StepEffects {
    /// Archive the message as it was when the step asked.
    pub archive: Option<ArchiveRequest>,
    /// The DMARC alignment of the signatures the step added.
    pub dmarc: Option<crate::dkim::DmarcReport>,
}

impl StepEffects {
    /// Adds a later step's effects: the later request of each kind wins.
    pub fn merge(&mut self, later: StepEffects) {
        if later.archive.is_some() {
            self.archive = later.archive;
        }
        if later.dmarc.is_some() {
            self.dmarc = later.dmarc;
        }
    }
}

/// A request to keep a copy of the message.
#[derive(Clone, Debug)]
pub struct ArchiveRequest {
    /// The message as it was.
    pub message: Vec<u8>,
    /// How long to keep it.
    pub retention_days: u32,
}

/// The longest retention the archive capability accepts (P1Y, counted generously).
pub const MAX_RETENTION_DAYS: u32 = 366;

/// One log line a step wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error`; `stdout`/`stderr` for captured output.
    pub level: &'static str,
    /// The text, cut to the line limit.
    pub message: String,
}

/// Memory growth limiter that remembers whether the cap was hit, so a trap that follows a
/// failed allocation is reported as the memory limit rather than as a bare trap.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    max_bytes: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one call's Store.
pub(crate) struct StepState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) memory: MemoryCap,
    pub(crate) logs: Vec<LogLine>,
    dropped_log_lines: usize,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    max_log_lines: usize,
    max_log_line_bytes: usize,
    context: Option<StepContext>,
    pub(crate) effects: StepEffects,
    /// When the call's deadline passes: host calls that do real work check it first, so a
    /// step cannot chain them past its deadline.
    deadline_at: Instant,
    /// The CPU time the call has used, checked with the deadline.
    pub(crate) cpu: Arc<CpuMeter>,
}

impl StepState {
    /// A fresh state: inert WASI (no env, args, preopens or network), captured stdio.
    pub(crate) fn new(limits: &RuntimeLimits, context: Option<StepContext>) -> Self {
        let stdout = CapturedOutput::new(limits.max_stdio_bytes);
        let stderr = CapturedOutput::new(limits.max_stdio_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            memory: MemoryCap {
                max_bytes: limits.memory_bytes,
                hit: false,
            },
            logs: Vec::new(),
            dropped_log_lines: 0,
            stdout,
            stderr,
            max_log_lines: limits.max_log_lines,
            max_log_line_bytes: limits.max_log_line_bytes,
            context,
            effects: StepEffects::default(),
            deadline_at: Instant::now() + limits.deadline,
            cpu: Arc::new(CpuMeter::new(limits.cpu_budget)),
        }
    }

    /// The instant the call's deadline passes.
    pub(crate) fn deadline_at(&self) -> Instant {
        self.deadline_at
    }

    /// Ends the call as a timeout when its deadline has passed or its CPU time is used up.
    pub(super) fn check_deadline(&self) -> wasmtime::Result<()> {
        if Instant::now() >= self.deadline_at || self.cpu.exhausted() {
            return Err(wasmtime::Error::new(wasmtime::Trap::Interrupt));
        }
        Ok(())
    }

    pub(super) fn context(&self) -> Option<&StepContext> {
        self.context.as_ref()
    }

    pub(super) fn services(&self) -> Result<(u64, Arc<dyn HostServices>), String> {
        let context = self
            .context
            .as_ref()
            .ok_or("this call runs outside any account (no message context)")?;
        let services = context
            .services
            .clone()
            .ok_or("the host offers no account services to this call")?;
        Ok((context.account_id, services))
    }

    /// Puts the message into the call's resource table.
    pub(crate) fn add_message(
        &mut self,
        message: Message,
        max_bytes: usize,
    ) -> wasmtime::Result<Resource<MessageDraft>> {
        Ok(self.table.push(MessageDraft { message, max_bytes })?)
    }

    /// Takes the message back out after the call.
    pub(crate) fn take_message(
        &mut self,
        handle: Resource<MessageDraft>,
    ) -> wasmtime::Result<Message> {
        Ok(self.table.delete(handle)?.message)
    }

    /// Records one line the step logged, within the call's caps on lines and their length.
    pub(super) fn write_log(&mut self, level: &'static str, mut message: String) {
        if self.logs.len() >= self.max_log_lines {
            self.dropped_log_lines += 1;
            return;
        }
        if message.len() > self.max_log_line_bytes {
            let mut cut = self.max_log_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.logs.push(LogLine { level, message });
    }

    /// The call's log: what it wrote through `log`, then its stdout and stderr.
    pub(crate) fn finish_logs(&mut self) -> Vec<LogLine> {
        for (level, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (captured, dropped) = pipe.contents();
            if !captured.is_empty() {
                let mut text = String::from_utf8_lossy(&captured).trim_end().to_string();
                if dropped > 0 {
                    text.push_str(&format!("… ({dropped} more bytes dropped)"));
                }
                self.logs.push(LogLine {
                    level,
                    message: text,
                });
            }
        }
        if self.dropped_log_lines > 0 {
            self.logs.push(LogLine {
                level: "warn",
                message: format!("{} more log lines were dropped", self.dropped_log_lines),
            });
        }
        std::mem::take(&mut self.logs)
    }

    pub(super) fn draft(&self, handle: &Resource<MessageDraft>) -> wasmtime::Result<&MessageDraft> {
        Ok(self.table.get(handle)?)
    }

    /// The message to change; every change does work proportional to the message, so it
    /// starts only while the deadline has not passed.
    pub(super) fn draft_mut(
        &mut self,
        handle: &Resource<MessageDraft>,
    ) -> wasmtime::Result<&mut MessageDraft> {
        self.check_deadline()?;
        Ok(self.table.get_mut(handle)?)
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
