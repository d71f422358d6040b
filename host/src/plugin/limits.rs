//! Every limit that applies to a plugin call, in one place.

use std::time::Duration;

/// Limits applied to each Flowstep call, and the sizes of the instance pool they imply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeLimits {
    /// Linear memory a step may grow to, in bytes.
    pub memory_bytes: usize,
    /// Wall time one call may take, instantiation and waits in host calls included: what
    /// bounds a step that waits (a sleep) and a call the machine is too busy to run.
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// CPU time one call may use: instantiation, the step's code and host calls made for it.
    /// Time spent waiting for the executor or the operating system does not count, so a busy
    /// host does not turn a step's ordinary work into a timeout.
    #[serde(with = "millis")]
    pub cpu_budget: Duration,
    /// How often the deadline clock ticks: a computing step yields to other work and checks
    /// its deadline and CPU budget at every tick.
    #[serde(with = "millis")]
    pub epoch_tick: Duration,
    /// When set, each call gets this much fuel (about one unit per wasm instruction) and its
    /// consumption is recorded; running out fails the step.
    pub fuel: Option<u64>,
    /// The largest message a step may produce, in bytes.
    pub max_message_bytes: usize,
    /// Log lines kept per call; more are counted, not kept.
    pub max_log_lines: usize,
    /// Bytes kept of one log line.
    pub max_log_line_bytes: usize,
    /// Bytes kept of what a step writes to stdout or stderr.
    pub max_stdio_bytes: usize,
    /// Sandbox failures in a row (trap, timeout, memory, fuel, invalid output) after which a
    /// plugin is disabled.
    pub failures_before_disable: u32,
    /// Calls that can run at once (instances in the pool).
    pub concurrent_calls: u32,
    /// Core module instances one component may create. A Rust step has a handful; a
    /// language runtime links its interpreter from several modules: componentize-py's output
    /// has 14 (38 built with `--stub-wasi`), componentize-js's 4. They cost no memory until
    /// a call creates them.
    pub core_instances_per_component: u32,
    /// Linear memories one component may have. Each reserves address space for
    /// `memory_bytes` and a guard region (about 4 GiB on 64-bit hosts), not resident memory.
    pub memories_per_component: u32,
    /// Tables (of function references) one component may have.
    pub tables_per_component: u32,
    /// Elements a table may hold. Each table slot reserves 8 bytes per element; an
    /// interpreter's table holds thousands (componentize-js about 7,700, componentize-py
    /// about 5,700).
    pub table_elements: u32,
    /// Bytes of a freed memory slot kept resident for the next call instead of given back to
    /// the OS; none chooses by what the kernel offers (see [`RuntimeLimits::keep_resident`]).
    pub keep_resident_bytes: Option<usize>,
    /// Freed memory slots kept warm (with their resident pages) for the next call of the same
    /// component; the rest give their pages back. Bounds the memory kept resident between
    /// calls to about `warm_slots` times `keep_resident_bytes`.
    pub warm_slots: u32,
}

/// Kept resident when the kernel can tell which pages are dirty: a JavaScript or Python step's
/// working set stays mapped, and only the pages written since the slot was last given back
/// are restored (copied from the image) after a call. More
/// brings nothing: wasmtime 48 restores at most the first 32 runs of dirty pages it finds and
/// gives back everything after them, and an interpreter's heap is dirtied in more runs than
/// that, so what bounds the faults left (about 50 a call for JavaScript, 280 for Python) is
/// that count, not this size (64 MiB measured the same as 16 MiB; see BENCHMARKS.md).
const KEEP_RESIDENT_WITH_PAGEMAP_SCAN: usize = 16 << 20;
/// Kept resident otherwise: the whole region is restored with `memset` after every call, so
/// it stays small; a Rust step's stack, data and first heap pages fit in it.
const KEEP_RESIDENT_WITHOUT_PAGEMAP_SCAN: usize = 256 << 10;

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(1),
            cpu_budget: Duration::from_millis(100),
            epoch_tick: Duration::from_millis(5),
            fuel: None,
            max_message_bytes: 25 << 20,
            max_log_lines: 100,
            max_log_line_bytes: 2048,
            max_stdio_bytes: 16 << 10,
            failures_before_disable: 5,
            // A 2-core machine runs a few calls at a time; the rest of the pool is headroom
            // for calls that wait on host capabilities.
            concurrent_calls: 64,
            core_instances_per_component: 64,
            memories_per_component: 4,
            tables_per_component: 16,
            table_elements: 20_000,
            keep_resident_bytes: None,
            warm_slots: 32,
        }
    }
}

impl RuntimeLimits {
    /// Linear memories of all calls together: the pool holds `concurrent_calls` components,
    /// each with as many as one may have, so a full pool always means busy calls.
    pub fn total_memories(&self) -> u32 {
        self.pool_calls()
            .saturating_mul(self.memories_per_component.max(1))
    }

    /// Tables of all calls together, sized like [`RuntimeLimits::total_memories`].
    pub fn total_tables(&self) -> u32 {
        self.pool_calls()
            .saturating_mul(self.tables_per_component.max(1))
    }

    /// Core instances of all calls together, sized like [`RuntimeLimits::total_memories`];
    /// a count the pool checks, not memory it sets aside.
    pub fn total_core_instances(&self) -> u32 {
        self.pool_calls()
            .saturating_mul(self.core_instances_per_component.max(1))
    }

    /// Bytes of a freed memory slot kept resident: the configured value, else 16 MiB where
    /// Linux's `PAGEMAP_SCAN` (kernel 6.7 and later) lets only the pages a call dirtied be
    /// restored, and 256 KiB where the whole kept region must be rewritten after each call.
    pub fn keep_resident(&self) -> usize {
        self.keep_resident_bytes.unwrap_or_else(|| {
            if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
                KEEP_RESIDENT_WITH_PAGEMAP_SCAN
            } else {
                KEEP_RESIDENT_WITHOUT_PAGEMAP_SCAN
            }
        })
    }

    /// Component instances in the pool: one per call that can run at once.
    pub fn pool_calls(&self) -> u32 {
        self.concurrent_calls.max(1)
    }
}

mod millis {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
