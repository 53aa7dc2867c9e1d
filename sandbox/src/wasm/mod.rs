//! The WebAssembly engine (wasmtime 48 LTS): the inner wall around a guest
//! that runs inside a sandboxed runner process (the outer wall).
//!
//! Every store gets the same limits ([`Limits`]): an epoch deadline per
//! request (an [`EpochTicker`] thread advances the engine's epoch every
//! [`TICK`]), `StoreLimits` on memory, tables and instances, and a
//! `max_wasm_stack`. Instances come from the pooling allocator, sized for
//! [`Limits::instances`] requests at once; [`Limits::address_space`] is
//! what that reserves, which the runner's RLIMIT_AS must leave room for
//! (linear memories are reserved at their limit with explicit bounds
//! checks, not 4 GiB plus guards each: a runner's address space stays
//! bounded).
//!
//! # Where code is compiled, and who may load it
//! [`code::compile`] runs in the *server* process (`iolite serve`, at
//! start and reload), never in a runner: Cranelift reads the guest's bytes,
//! and nothing of the guest runs. The compiled artifact is written to the
//! server's own cache folder (mode 0700, keyed by the wasm's SHA-256 and the
//! engine's compatibility hash and version: [`code::cache_key`]), and the
//! server hands runners a sealed memfd copy of it, as it does with native
//! libraries. A runner can neither write the cache folder (its sandbox
//! user and landlock) nor the sealed copy, so no runner can write code that
//! another runner or the server later loads ([`code::load`] is the only
//! `unsafe` deserialization, and its input is always the server's).
//!
//! A runner loads the code after the first phase of its sandbox (rlimits,
//! user, namespaces) and before landlock and seccomp (`mprotect` with
//! PROT_EXEC is never allowed under the filter); no guest code runs while
//! it loads. After that, wasmtime needs no call outside the runner's
//! allow-list, which is unchanged: its trap handlers (`rt_sigaction`,
//! `sigaltstack`), memory growth and reset (`mmap`/`mprotect` without
//! PROT_EXEC, `madvise`), the epoch thread and tokio's event loop are all
//! already on it; copy-on-write memory images are off (they need
//! `memfd_create`, which the allow-list leaves out).
//!
//! # Layout
//! - `mod` (this file): [`Limits`], [`engine`], [`EpochTicker`].
//! - [`code`]: compiling, the disk cache, loading.
//! - [`http`]: a wasi:http/proxy component, one instance per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The engine, for callers that hold one (they name no wasmtime type
/// beyond it).
pub use wasmtime::Engine;
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::SandboxError;

pub mod code;
pub mod http;

/// How often the engine's epoch advances: the granularity of a request's
/// deadline.
pub const TICK: Duration = Duration::from_millis(10);
/// Core instances one component may make (a component from
/// wasm-component-ld has its module and a few shims).
const CORE_PER_COMPONENT: u32 = 32;
/// Linear memories one component may have.
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one component may have (shims have one each).
const TABLES_PER_COMPONENT: u32 = 32;
/// Elements of one table.
const TABLE_ELEMENTS: usize = 20_000;
/// A guest's fiber stack: its wasm stack plus room for host calls.
const ASYNC_STACK: usize = 2 << 20;
/// Address space besides the pools: the engine, its code, tokio, the
/// epoch thread (a rough ceiling, measured generous).
const ENGINE_ALLOWANCE: u64 = 128 << 20;

/// What every store of a guest is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one linear memory may grow to.
    pub memory: u64,
    /// A request's deadline (504 past it).
    pub timeout: Duration,
    /// Requests one runner serves at once (instances in the pool).
    pub instances: u32,
    /// Bytes of wasm stack (deeper recursion traps).
    pub max_stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(10),
            instances: 8,
            max_stack: 512 << 10,
        }
    }
}

impl Limits {
    /// Address space the pooling allocator reserves for these limits, plus
    /// the engine's own: what the runner's RLIMIT_AS must allow besides
    /// its shared pools.
    pub fn address_space(&self) -> u64 {
        let n = u64::from(self.instances.max(1));
        let memories = n * u64::from(MEMORIES_PER_COMPONENT) * self.memory;
        let tables = n * u64::from(TABLES_PER_COMPONENT) * (TABLE_ELEMENTS as u64) * 16;
        let stacks = n * (ASYNC_STACK as u64 + (64 << 10));
        memories + tables + stacks + ENGINE_ALLOWANCE
    }

    /// Epoch ticks in [`Limits::timeout`] (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        (self.timeout.as_nanos() / TICK.as_nanos()).max(1) as u64
    }
}

/// The settings that shape compiled code: the same for the server that
/// compiles and the runners that load (wasmtime refuses code compiled
/// under other settings).
fn base_config(limits: &Limits) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true)
        .max_wasm_stack(limits.max_stack)
        .async_stack_size(ASYNC_STACK)
        .memory_reservation(limits.memory)
        .memory_reservation_for_growth(0)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .memory_may_move(false)
        // No copy-on-write images: wasmtime would make them with
        // memfd_create at a module's first instantiation, which the
        // runner's seccomp forbids by then; data segments are copied in
        // at each instantiation instead.
        .memory_init_cow(false);
    c
}

/// An engine that only compiles (the server's): no instance pool.
pub fn compiler(limits: &Limits) -> Result<Engine, SandboxError> {
    Engine::new(&base_config(limits)).map_err(|e| SandboxError::Wasm(format!("engine: {e:#}")))
}

/// The runner's engine: the pooling allocator sized for
/// [`Limits::instances`] requests at once.
pub fn engine(limits: &Limits) -> Result<Engine, SandboxError> {
    let n = limits.instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n * CORE_PER_COMPONENT)
        .total_memories(n * MEMORIES_PER_COMPONENT)
        .total_tables(n * TABLES_PER_COMPONENT)
        .total_stacks(n)
        .max_core_instances_per_component(CORE_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(usize::try_from(limits.memory).unwrap_or(usize::MAX));
    let mut c = base_config(limits);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).map_err(|e| SandboxError::Wasm(format!("engine: {e:#}")))
}

/// The thread that advances an engine's epoch every [`TICK`]; stopped
/// when dropped. Start it after the sandbox is complete (landlock binds
/// only the threads that exist when it applies).
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the thread.
    pub fn start(engine: &Engine) -> Result<EpochTicker, SandboxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("iolite-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| SandboxError::Wasm(format!("epoch thread: {e}")))?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
