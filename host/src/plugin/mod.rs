//! The sandbox that runs Flowsteps: WebAssembly components of the `sluice:flowstep` world.
//!
//! One [`PluginRuntime`] holds the wasmtime `Engine`, the `Linker` and the limits. Loading a
//! plugin checks its imports against the [policy], compiles it (or takes it from the
//! [compiled-code cache](cache)) and keeps an `InstancePre`. Each call then gets a fresh
//! `Store`: no state carries from one message, or one account, to the next.

mod bindings;
pub mod builtin;
pub mod cache;
pub mod classifier;
mod contract;
mod cpu;
mod denial;
mod engine;
mod health;
pub(crate) use health::store_ticket;
pub mod limits;
pub mod policy;
pub mod registry;
mod state;
mod stdio;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::types::{ComponentExtern, ComponentItem};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::message::{Message, MessageError};
pub use cache::CompiledCache;
pub use denial::CapabilityDenied;
pub use limits::RuntimeLimits;
pub use policy::{Capability, ForbiddenImport, Grants, ImportTreatment};
pub use state::{
    ArchiveRequest, HostServices, LogLine, MAX_RETENTION_DAYS, StepContext, StepEffects,
    TemplateParts,
};

use contract::FlowstepPre;
use health::Health;
use state::StepState;

/// What a step decided about the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Go on to the next step.
    Continue,
    /// Stop and keep the message as HELD with this reason.
    Hold(String),
    /// Stop and do not send; the reason is recorded.
    Discard(String),
}

/// The error a step itself reported, by case (see `step-error` in the WIT).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The step's configuration is wrong.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The submitted data lacks something.
    #[error("missing data: {0}")]
    MissingData(String),
    /// The message has a form the step cannot handle.
    #[error("unsupported message: {0}")]
    UnsupportedMessage(String),
    /// A host capability failed.
    #[error("capability failed: {0}")]
    CapabilityFailed(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl StepError {
    /// The machine-readable case name, as in the WIT.
    pub fn code(&self) -> &'static str {
        match self {
            StepError::InvalidConfig(_) => "invalid-config",
            StepError::MissingData(_) => "missing-data",
            StepError::UnsupportedMessage(_) => "unsupported-message",
            StepError::CapabilityFailed(_) => "capability-failed",
            StepError::Other(_) => "other",
        }
    }
}

/// Why a step failed. Whatever the case, the message is kept as it was before the step.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    /// The step returned a `step-error`.
    #[error("the step reported an error: {0}")]
    Step(StepError),
    /// The step trapped (a panic, an unreachable, an out-of-bounds access...).
    #[error("the step trapped: {0}")]
    Trap(String),
    /// The step ran past its wall-time deadline.
    #[error("the step ran past its deadline of {0:?}")]
    Timeout(Duration),
    /// The step used up its CPU time.
    #[error("the step used up its CPU time of {0:?}")]
    CpuTime(Duration),
    /// The step tried to grow its memory past the cap.
    #[error("the step hit its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The step used up its fuel.
    #[error("the step ran out of fuel ({0} units)")]
    FuelExhausted(u64),
    /// The step tried to produce an invalid message (a header with CR/LF, a message over the
    /// size limit, malformed raw content).
    #[error("the step produced invalid output: {0}")]
    InvalidOutput(MessageError),
    /// The plugin was disabled after failing too often in a row.
    #[error("plugin {plugin} is disabled: {reason}")]
    Disabled {
        /// The plugin's name.
        plugin: String,
        /// Why it was disabled.
        reason: String,
    },
    /// The call stack ran past its end (deep or endless recursion).
    #[error("the step overflowed its stack: {0}")]
    StackOverflow(String),
    /// The component failed while it was being started: its start function trapped, called
    /// `exit`, or asked for something the host refuses.
    #[error("the step failed while starting: {0}")]
    Start(String),
    /// No instance could be had now (the pool is exhausted): not the step's fault, try again.
    #[error("the step could not be started: {0}")]
    Instantiate(String),
    /// The step called a function of an interface it is linked against only as a denial
    /// (the network, the file system's other half, anything outside the inert WASI subset).
    #[error("{0}")]
    Denied(CapabilityDenied),
}

impl StepFailure {
    /// A short machine-readable name of the case.
    pub fn code(&self) -> &'static str {
        match self {
            StepFailure::Step(error) => error.code(),
            StepFailure::Trap(_) => "trap",
            StepFailure::Timeout(_) | StepFailure::CpuTime(_) => "timeout",
            StepFailure::MemoryLimit(_) => "memory-limit",
            StepFailure::FuelExhausted(_) => "fuel-exhausted",
            StepFailure::InvalidOutput(_) => "invalid-output",
            StepFailure::Disabled { .. } => "disabled",
            StepFailure::StackOverflow(_) => "stack-overflow",
            StepFailure::Start(_) => "start-failed",
            StepFailure::Instantiate(_) => "instantiate",
            StepFailure::Denied(_) => "capability-denied",
        }
    }

    /// True for failures of the sandboxed code itself, which count towards disabling it. A
    /// denied call is one: like a trap it ends the call where the step cannot catch it, and a
    /// step that reaches for the network will on every message.
    fn is_sandbox_fault(&self) -> bool {
        matches!(
            self,
            StepFailure::Trap(_)
                | StepFailure::Timeout(_)
                | StepFailure::CpuTime(_)
                | StepFailure::MemoryLimit(_)
                | StepFailure::FuelExhausted(_)
                | StepFailure::InvalidOutput(_)
                | StepFailure::StackOverflow(_)
                | StepFailure::Start(_)
                | StepFailure::Denied(_)
        )
    }
}

/// What the host measured and collected during one call.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    /// Wall time of the call, instantiation included.
    pub elapsed: Duration,
    /// CPU time of the call: what counts against its budget.
    pub cpu: Duration,
    /// Fuel consumed, when fuel metering is on.
    pub fuel_consumed: Option<u64>,
    /// What the step logged, then its captured stdout/stderr.
    pub logs: Vec<LogLine>,
}

/// A step that ran to completion.
#[derive(Debug)]
pub struct StepRun {
    /// What the step decided.
    pub outcome: StepOutcome,
    /// The message after the step.
    pub message: Message,
    /// What it asked the host to do when the flow's outcome is recorded.
    pub effects: StepEffects,
    /// Measurements and logs.
    pub report: StepReport,
}

/// A step that failed; the caller keeps the message it passed in.
#[derive(Debug)]
pub struct StepFailed {
    /// What went wrong.
    pub failure: StepFailure,
    /// Measurements and logs up to the failure (boxed: failures travel in `Result`s).
    pub report: Box<StepReport>,
    /// True when this failure disabled the plugin for the call's account.
    pub disabled: bool,
}

/// Why a component could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component imports something the policy refuses.
    #[error("{0}")]
    ForbiddenImport(#[from] ForbiddenImport),
    /// The component does not fit the `flowstep` world (a missing or mistyped export...).
    #[error("the component does not implement the sluice:flowstep world: {0}")]
    WrongShape(String),
    /// Compilation failed.
    #[error("the component could not be compiled: {0}")]
    Compile(String),
    /// The task that compiles it ended without an answer (a panic, a shutdown): the
    /// component's bytes say nothing about it, and loading may be tried again.
    #[error("the compile task failed: {0}")]
    Interrupted(String),
}

impl LoadError {
    /// True when the same bytes would fail the same way again.
    pub fn is_lasting(&self) -> bool {
        !matches!(self, LoadError::Interrupted(_))
    }
}

/// A component's imports and exports, as `sluice plugin check` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentSummary {
    /// Imported interfaces or functions, by name.
    pub imports: Vec<String>,
    /// Exported items, by name.
    pub exports: Vec<String>,
}

/// A compiled component that has not been checked against the policy yet.
pub struct CompiledComponent {
    component: Component,
    sha256: String,
    summary: ComponentSummary,
}

impl CompiledComponent {
    /// The sha256 of the component, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its imports and exports.
    pub fn summary(&self) -> &ComponentSummary {
        &self.summary
    }
}

/// The engine, linker and limits that every plugin runs with.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<StepState>,
    limits: RuntimeLimits,
    cache: Option<CompiledCache>,
    _ticker: engine::EpochTicker,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// A runtime with these limits; compiled code is cached in `cache` when given.
    pub fn new(limits: RuntimeLimits, cache: Option<CompiledCache>) -> anyhow::Result<Arc<Self>> {
        let engine = engine::build(&limits)?;
        let linker = engine::linker(&engine)?;
        let ticker = engine::EpochTicker::start(&engine, limits.epoch_tick);
        Ok(Arc::new(Self {
            engine,
            linker,
            limits,
            cache,
            _ticker: ticker,
        }))
    }

    /// The limits in force.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Compiles a component (or takes it from the cache) and lists its imports and exports,
    /// without judging them yet.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, LoadError> {
        let sha256 = hex_sha256(bytes);
        let component = self.compile_component(bytes, &sha256)?;
        let summary = summarize(&self.engine, &component);
        Ok(CompiledComponent {
            component,
            sha256,
            summary,
        })
    }

    /// Checks, compiles and prepares a plugin. This compiles code: call it off async workers.
    pub fn load(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
        grants: Grants,
    ) -> Result<Arc<Plugin>, LoadError> {
        let compiled = self.compile(bytes)?;
        self.load_compiled(name, compiled, grants)
    }

    /// Checks a compiled component against the import policy and the world, and prepares it.
    pub fn load_compiled(
        self: &Arc<Self>,
        name: &str,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<Arc<Plugin>, LoadError> {
        let CompiledComponent {
            component,
            sha256,
            summary,
        } = compiled;
        for import in &summary.imports {
            policy::check_import(import, &grants)?;
        }
        let instance_pre = self
            .linker_for(&component, &grants)?
            .instantiate_pre(&component)
            .map_err(|error| LoadError::WrongShape(format!("{error:#}")))?;
        let pre = FlowstepPre::new(instance_pre).map_err(LoadError::WrongShape)?;
        Ok(Arc::new(Plugin {
            name: name.to_string(),
            sha256,
            imports: summary.imports,
            grants,
            pre,
            runtime: Arc::clone(self),
            health: Health::new(self.limits.failures_before_disable),
            restored: std::sync::Mutex::new(false),
            restored_once: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Loads a plugin from a thread where blocking is allowed, for async callers.
    pub async fn load_async(
        self: &Arc<Self>,
        name: String,
        bytes: Vec<u8>,
        grants: Grants,
    ) -> Result<Arc<Plugin>, LoadError> {
        let runtime = Arc::clone(self);
        tokio::task::spawn_blocking(move || runtime.load(&name, &bytes, grants))
            .await
            .map_err(|error| LoadError::Interrupted(error.to_string()))?
    }

    fn compile_component(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        if !wasmtime::wasmparser::Parser::is_component(bytes) {
            let what = if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
                "this is a core WebAssembly module; build for wasm32-wasip2 (or wrap it with \
                 `wasm-tools component new`)"
            } else {
                "the file does not start with the WebAssembly magic number"
            };
            return Err(LoadError::NotAComponent(what.into()));
        }
        let compile = || {
            Component::new(&self.engine, bytes)
                .map_err(|error| LoadError::Compile(format!("{error:#}")))
        };
        match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, sha256, compile),
            None => compile(),
        }
    }
}

fn summarize(engine: &Engine, component: &Component) -> ComponentSummary {
    let ty = component.component_type();
    // Type and resource imports (`use types.{message}` in a world) only name types of
    // imported interfaces; the interfaces and functions are what the policy judges, and the
    // linker refuses a resource it does not define.
    let named = |(name, item): (&str, ComponentExtern<'_>)| {
        (!matches!(item.ty, ComponentItem::Type(_) | ComponentItem::Resource(_)))
            .then(|| name.to_string())
    };
    ComponentSummary {
        imports: ty.imports(engine).filter_map(named).collect(),
        exports: ty.exports(engine).filter_map(named).collect(),
    }
}

/// The sha256 of some bytes in hex: a plugin's identity.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A loaded plugin version, ready to run: content-addressed by the sha256 of its component.
pub struct Plugin {
    name: String,
    sha256: String,
    imports: Vec<String>,
    grants: Grants,
    pre: FlowstepPre,
    runtime: Arc<PluginRuntime>,
    health: Health,
    restored: std::sync::Mutex<bool>,
    restored_once: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("disabled", &self.is_disabled())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the component, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The version of the contract the component was built for (`0.2.0`, `0.1.0`).
    pub fn contract_version(&self) -> &'static str {
        self.pre.version()
    }

    /// What the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The privileges the operator granted it.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// True once calls without an account (CLI, tests) failed too often in a row.
    pub fn is_disabled(&self) -> bool {
        self.health.disabled(None).is_some()
    }

    /// True once this account's calls failed too often in a row.
    pub fn is_disabled_for(&self, account_id: u64) -> bool {
        self.health.disabled(Some(account_id)).is_some()
    }

    /// Why the plugin is disabled for this account, if it is.
    pub fn disabled_for(&self, account_id: u64) -> Option<String> {
        self.health.disabled(Some(account_id))
    }

    /// Lets a disabled plugin run again for every account (an operator's decision).
    pub fn enable(&self) {
        self.health.enable_all();
    }

    /// Lets a disabled plugin run again for one account, with a fresh count of failures.
    pub fn enable_for(&self, account_id: u64) {
        self.health.enable(Some(account_id));
    }

    /// Makes the accounts' disabled states those recorded in the store now (changed through
    /// another node, or by an operator).
    /// `ticket` is the store ticket taken before `recorded` was read.
    pub fn apply_recorded_disabled(&self, recorded: &[(u64, String)], ticket: u64) {
        self.health.set_recorded(recorded, ticket);
    }

    /// Notes that this plugin's disabling for the account is now recorded in the store, so a
    /// store read that began later and lacks it means the account enabled it again.
    pub fn disabling_recorded(&self, account_id: u64) {
        self.health.recorded(Some(account_id));
    }

    /// Applies disabled states recorded before (in the store, across a restart), once per
    /// loaded plugin: `recorded` is asked only the first time.
    pub fn restore_disabled<E>(
        &self,
        recorded: impl FnOnce() -> Result<Vec<(u64, String)>, E>,
    ) -> Result<(), E> {
        // Every step call comes through here: after the first, one atomic load.
        if self
            .restored_once
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(());
        }
        let mut restored = self.restored.lock().unwrap_or_else(|e| e.into_inner());
        if *restored {
            return Ok(());
        }
        for (account_id, reason) in recorded()? {
            self.health.disable(Some(account_id), reason);
        }
        *restored = true;
        self.restored_once
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Runs the step on a message in a fresh sandbox, with no message context (links cannot
    /// be made). Blocks for up to the deadline: for the CLI, tests and benches, never call
    /// it from async code (use [`Plugin::run_in`] there).
    pub fn run(&self, message: &Message, config: &str) -> Result<StepRun, StepFailed> {
        self.run_blocking(message, config, None)
    }

    /// [`Plugin::run_in`] for sync code (the CLI, tests, benches): blocks for up to the
    /// deadline on an executor of the calling thread's own. Never call it from async code.
    pub fn run_blocking(
        &self,
        message: &Message,
        config: &str,
        context: Option<StepContext>,
    ) -> Result<StepRun, StepFailed> {
        block_on(self.run_in(message, config, context))
    }

    /// Runs the step for a stored message, whose context privileged capabilities use. The
    /// call ends at its deadline whatever the step is doing, waiting in a host call included.
    pub async fn run_in(
        &self,
        message: &Message,
        config: &str,
        context: Option<StepContext>,
    ) -> Result<StepRun, StepFailed> {
        let started = Instant::now();
        let tenant = context.as_ref().map(|context| context.account_id);
        // A simulation is a dry run: its faults say nothing about real mail.
        let counts = !context.as_ref().is_some_and(|context| context.simulation);
        if let Some(reason) = self.health.disabled(tenant) {
            return Err(StepFailed {
                failure: StepFailure::Disabled {
                    plugin: self.name.clone(),
                    reason,
                },
                report: Box::default(),
                disabled: false,
            });
        }
        let limits = &self.runtime.limits;
        let mut store = self.runtime.store(context);
        let result = self
            .runtime
            .within_deadline(&mut store, |store| self.call(store, message, config))
            .await;

        let fuel_consumed = limits
            .fuel
            .map(|fuel| fuel.saturating_sub(store.get_fuel().unwrap_or(0)));
        let report = StepReport {
            elapsed: started.elapsed(),
            cpu: store.data().cpu.used(),
            fuel_consumed,
            logs: store.data_mut().finish_logs(),
        };
        match result {
            Ok((outcome, message)) => {
                if counts {
                    self.health.record_success(tenant);
                }
                Ok(StepRun {
                    outcome,
                    message,
                    effects: std::mem::take(&mut store.data_mut().effects),
                    report,
                })
            }
            Err(failure) => {
                let disabled = (counts && failure.is_sandbox_fault())
                    .then(|| self.health.record_fault(tenant, &failure.to_string()))
                    .flatten();
                if let Some(reason) = &disabled {
                    tracing::warn!(
                        plugin = %self.name, sha256 = %self.sha256, account = ?tenant, %reason,
                        "plugin disabled"
                    );
                }
                Err(StepFailed {
                    failure,
                    report: Box::new(report),
                    disabled: disabled.is_some(),
                })
            }
        }
    }

    async fn call(
        &self,
        store: &mut Store<StepState>,
        message: &Message,
        config: &str,
    ) -> Result<(StepOutcome, Message), StepFailure> {
        let limits = &self.runtime.limits;
        let handle = store
            .data_mut()
            .add_message(message.clone(), limits.max_message_bytes)
            .map_err(|error| StepFailure::Instantiate(format!("{error:#}")))?;
        let returned = match self.pre.process(&mut *store, &handle, config).await {
            Ok(returned) => returned,
            Err((error, instantiating)) => {
                return Err(self.runtime.classify(store, error, instantiating));
            }
        };
        let edited = store
            .data_mut()
            .take_message(handle)
            .map_err(|error| StepFailure::Trap(format!("{error:#}")))?;
        // Reasons and error texts are stored with the message and shown in every view of
        // it: a step decides what they say, not how much room they take.
        let cap = |text: String| crate::truncate::cut_to(text, MAX_REASON_BYTES);
        match returned {
            Ok(StepOutcome::Continue) => Ok((StepOutcome::Continue, edited)),
            Ok(StepOutcome::Hold(reason)) => Ok((StepOutcome::Hold(cap(reason)), edited)),
            Ok(StepOutcome::Discard(reason)) => Ok((StepOutcome::Discard(cap(reason)), edited)),
            Err(error) => Err(StepFailure::Step(match error {
                StepError::InvalidConfig(text) => StepError::InvalidConfig(cap(text)),
                StepError::MissingData(text) => StepError::MissingData(cap(text)),
                StepError::UnsupportedMessage(text) => StepError::UnsupportedMessage(cap(text)),
                StepError::CapabilityFailed(text) => StepError::CapabilityFailed(cap(text)),
                StepError::Other(text) => StepError::Other(cap(text)),
            })),
        }
    }
}

impl PluginRuntime {
    /// A fresh store for one call: the memory cap, the deadline and the fuel in force.
    fn store(&self, context: Option<StepContext>) -> Store<StepState> {
        let limits = &self.limits;
        let mut store = Store::new(&self.engine, StepState::new(limits, context));
        store.limiter(|state| &mut state.memory);
        let deadline_at = store.data().deadline_at();
        let cpu = Arc::clone(&store.data().cpu);
        // Computing code yields to the executor at every tick, so other calls and the
        // deadline's timer run; past the deadline or its CPU time it traps.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline_at || cpu.exhausted() {
                Err(wasmtime::Error::new(Trap::Interrupt))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        if let Some(fuel) = limits.fuel {
            // Fuel is only unavailable when metering is off, which `limits.fuel` rules out.
            let _ = store.set_fuel(fuel);
        }
        store
    }

    /// Runs a call on the store and ends it at the store's deadline, wherever it is: a guest
    /// waiting in a host future is dropped there, one computing traps at its next tick. Each
    /// poll of the call is timed on its thread's CPU clock.
    async fn within_deadline<'s, T, F>(
        &self,
        store: &'s mut Store<StepState>,
        call: impl FnOnce(&'s mut Store<StepState>) -> F,
    ) -> Result<T, StepFailure>
    where
        F: Future<Output = Result<T, StepFailure>> + 's,
    {
        let deadline_at = tokio::time::Instant::from_std(store.data().deadline_at());
        let cpu = Arc::clone(&store.data().cpu);
        let mut call = std::pin::pin!(call(store));
        let metered = std::future::poll_fn(|context| cpu.poll(|| call.as_mut().poll(context)));
        tokio::time::timeout_at(deadline_at, metered)
            .await
            .unwrap_or(Err(StepFailure::Timeout(self.limits.deadline)))
    }

    /// Turns a wasmtime error into the failure case it stands for.
    fn classify(
        &self,
        store: &Store<StepState>,
        error: wasmtime::Error,
        instantiating: bool,
    ) -> StepFailure {
        let limits = &self.limits;
        if let Some(invalid) = error.downcast_ref::<MessageError>() {
            return StepFailure::InvalidOutput(invalid.clone());
        }
        if let Some(denied) = error.downcast_ref::<CapabilityDenied>() {
            return StepFailure::Denied(denied.clone());
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                let cpu = &store.data().cpu;
                return if cpu.exhausted() {
                    StepFailure::CpuTime(cpu.budget())
                } else {
                    StepFailure::Timeout(limits.deadline)
                };
            }
            Some(Trap::OutOfFuel) => return StepFailure::FuelExhausted(limits.fuel.unwrap_or(0)),
            Some(Trap::StackOverflow) => {
                return StepFailure::StackOverflow(trap_summary(&error));
            }
            Some(Trap::MemoryOutOfBounds) if recursed(&error) => {
                // The shadow stack of a language like Rust or C lives in linear memory: running
                // past its end shows as an access below address 0, deep in a recursion.
                return StepFailure::StackOverflow(trap_summary(&error));
            }
            _ => {}
        }
        if store.data().memory.hit {
            return StepFailure::MemoryLimit(limits.memory_bytes);
        }
        if instantiating {
            // The pool being full is the host's state, worth a retry; anything else is the
            // component's own doing while it started (a trap, `exit`), a fault like any other.
            if error
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                return StepFailure::Instantiate(format!("{error:#}"));
            }
            return StepFailure::Start(start_summary(&error));
        }
        StepFailure::Trap(trap_summary(&error))
    }
}

/// The longest hold or discard reason, or step error text, kept from a step.
pub const MAX_REASON_BYTES: usize = 1024;

/// Frames of one function, in a row at the top of a backtrace, that make a trap a stack
/// overflow rather than a stray access (wasmtime keeps 20 frames of a backtrace).
const RECURSION_FRAMES: usize = 16;

/// True when the innermost function of the trap's backtrace called itself many times over.
fn recursed(error: &wasmtime::Error) -> bool {
    let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = trace.frames();
    let Some(top) = frames.first() else {
        return false;
    };
    frames
        .iter()
        .take_while(|frame| frame.func_index() == top.func_index())
        .count()
        >= RECURSION_FRAMES
}

/// Why a component failed to start: an `exit` code, or the trap.
fn start_summary(error: &wasmtime::Error) -> String {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("the component called exit({}) while starting", exit.0);
    }
    trap_summary(error)
}

thread_local! {
    /// The executor that sync callers' calls run on, one per thread.
    static BLOCKING_RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds");
}

/// Runs a call to completion from sync code.
fn block_on<F: Future>(future: F) -> F::Output {
    BLOCKING_RUNTIME.with(|runtime| runtime.block_on(future))
}

/// The trap's message and the innermost wasm frame, without the long backtrace.
fn trap_summary(error: &wasmtime::Error) -> String {
    let mut text = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    if let Some(frame) = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|trace| trace.frames().first())
        .and_then(|frame| frame.func_name().map(str::to_string))
    {
        text.push_str(" in ");
        text.push_str(&frame);
    }
    text
}
