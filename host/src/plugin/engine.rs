//! The one wasmtime `Engine` and `Linker` every plugin shares, and the clock for deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{ResourceTable, WasiView as _};

use super::bindings::{v0_1, v0_2};
use super::limits::RuntimeLimits;
use super::state::StepState;

/// Builds the engine: Cranelift, component model, async calls, epoch deadlines, optional
/// fuel, and a pooling allocator sized from the limits.
///
/// Calls are async so that a call's deadline is a wall-clock bound on all of it: a step that
/// waits in a host call (a WASI sleep, a poll) is a future that the deadline's timeout drops,
/// and a step that computes yields to the executor at every epoch tick, where its CPU time
/// is checked too.
pub(crate) fn build(limits: &RuntimeLimits) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.epoch_interruption(true);
    config.consume_fuel(limits.fuel.is_some());
    // A JavaScript or Python step starts from a pre-initialised heap of 10-20 MB: mapped
    // copy-on-write from an image made at compile time, an instance costs page faults on what
    // the call touches instead of a copy of the whole heap. The default, set so it stays so.
    config.memory_init_cow(true);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(limits.pool_calls());
    pool.max_core_instances_per_component(limits.core_instances_per_component);
    pool.total_core_instances(limits.total_core_instances());
    pool.max_memories_per_component(limits.memories_per_component);
    pool.total_memories(limits.total_memories());
    pool.max_tables_per_component(limits.tables_per_component);
    pool.total_tables(limits.total_tables());
    pool.table_elements(limits.table_elements as usize);
    pool.max_memory_size(limits.memory_bytes);
    // A freed slot keeps its first pages resident, restored in place, so the next call does
    // not page-fault on them; the rest goes back to the OS. With guests linked with a 64 KiB
    // stack (.cargo/config.toml) a small Rust step touches only the first 256 KiB: a header
    // read drops from 24 us to 10 us (benches/flowstep.rs). A JavaScript or Python step
    // touches megabytes of its pre-initialised heap; where the kernel can say which pages a
    // call dirtied (PAGEMAP_SCAN), only those are restored, so 16 MiB can stay resident and
    // such a call stops faulting on its heap at all (see BENCHMARKS.md).
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.linear_memory_keep_resident(limits.keep_resident());
    pool.table_keep_resident(64 << 10);
    pool.max_unused_warm_slots(limits.warm_slots);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    Engine::new(&config).map_err(|error| anyhow::anyhow!("{error:#}"))
}

/// The linker every plugin shares: the contract's imports, and the inert WASI subset of the
/// policy. Sockets, HTTP and any other WASI interface are absent: a component that imports
/// them gets a clone of this linker with denials for exactly those imports (`denial.rs`), so
/// nothing here can ever hand a step a working socket.
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<StepState>> {
    let mut linker = Linker::new(engine);
    link(&mut linker).map_err(|error| anyhow::anyhow!("{error:#}"))?;
    Ok(linker)
}

fn link(l: &mut Linker<StepState>) -> wasmtime::Result<()> {
    // Both versions of the contract, side by side: a component links against the one it was
    // built for.
    v0_2::Flowstep::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
    {
        use v0_2::privileged::sluice::flowstep::{archive, dkim, online_link, templates, tracking};
        tracking::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        online_link::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        archive::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        dkim::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        templates::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
    }
    v0_1::Flowstep::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
    {
        use v0_1::privileged::sluice::flowstep::{archive, dkim, online_link, templates, tracking};
        tracking::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        online_link::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        archive::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        dkim::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
        templates::add_to_linker::<StepState, HasSelf<StepState>>(l, |state| state)?;
    }

    clocks::wall_clock::add_to_linker::<StepState, WasiClocks>(l, StepState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<StepState, WasiClocks>(l, StepState::clocks)?;
    filesystem::preopens::add_to_linker::<StepState, WasiFilesystem>(l, StepState::filesystem)?;
    filesystem::types::add_to_linker::<StepState, WasiFilesystem>(l, StepState::filesystem)?;
    random::random::add_to_linker::<StepState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<StepState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<StepState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::environment::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::stdin::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::stdout::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::stderr::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_input::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_output::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_stdin::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_stdout::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_stderr::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    // The async flavour: a guest blocked in `poll` (a sleep) waits on a future the call's
    // deadline can drop, where the sync flavour would block the thread until it returned.
    io::error::add_to_linker::<StepState, IoTable>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<StepState, IoTable>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<StepState, IoTable>(l, |t| t.ctx().table)?;
    Ok(())
}

/// The WASI io interfaces work on the resource table alone.
struct IoTable;

impl wasmtime::component::HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Advances the engine's epoch every tick, which is what enforces call deadlines. Stops when
/// dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("the epoch thread starts");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
