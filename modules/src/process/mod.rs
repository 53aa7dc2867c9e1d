//! Process modules: a native module (a cdylib built with iolite-sdk)
//! mounted at a prefix ([`ProcessModule`]) and served by supervised,
//! sandboxed runner processes.
//!
//! # The request path
//! The request flow itself — mount, body path, send, hook, log — is
//! core's (`iolite_core`'s crate doc). A module's part: its core handler
//! (`handler`), mounted at the module's prefix, routes a request from its
//! head alone and builds the request frame from the fields core parsed;
//! core's body pump then reads the body with `read(2)` straight into the
//! module's request pool (shared read-only with its runners only): whole
//! (core's `PoolSink`), or in parts while the answer is awaited (`parts`).
//! Failures are core upstream errors (503 busy, 502 crashed or invalid,
//! 504 timed out). The worker thread writes the request frame into its
//! own data link to a runner (`link`: one per worker and runner process,
//! more lanes when slow requests hold one up) and awaits the answer
//! (`exchange`); the runner serves each link on a thread of its own. The
//! answer comes back as an aggregate sent by reference, checked
//! (`answer`) before core sends it. No thread other than the worker and
//! the runner is woken: requests that a worker's connections make in one
//! scheduler round leave in one `sendmsg`, with the releases of answers
//! already sent; the runner answers a burst in one write. The runner's
//! link thread polls its socket briefly before it sleeps, and a worker's
//! link task yields a few times after sending (adaptively), which saves
//! most sleeps and wake-ups when answers are quick. The slot threads
//! (`supervisor`) start, attach, recycle and end runners, never touching a
//! request.
//!
//! # Sandbox
//! Every runner (and the throw-away `--check` runner) applies the module's
//! `[module.sandbox]` and `memory_limit` to itself before the module's code
//! runs: see [`crate::runner`] and `sandbox/README.md`. `iolite serve` logs
//! the outcome of each measure per runner ("runner ready ... sandbox=...");
//! a sandbox that cannot be applied refuses the module at start-up.
//!
//! # Not yet (issue 4)
//! - Answers are written to client sockets from the pools (the kernel
//!   copies them), not handed over by page reference: a pool reuses an
//!   answer's space at the next request, and the socket would keep the
//!   pages (`iolite_core::send::Chunks`). Page references need the buffers
//!   held until `MSG_ZEROCOPY` completions report the kernel is done.
//!
//! The other "not yet" notes are with the code they are about: `lanes`,
//! `parts`, `exchange`, `link::protocol` (copy mode), `supervisor::upkeep`.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iolite_core::config::{ModuleConfig, ModuleTransfer};
use iolite_ipc::Pool;
use iolite_sdk::wire::{FEATURE_BODY_PARTS, Transfer};

use crate::error::Error;
use crate::metrics::ModuleMetrics;
use link::LinkConfig;
use link::lanes::WorkerLinks;
use supervisor::check::checked_copy;
use supervisor::library::Library;
use supervisor::{Cmd, SlotConfig, SlotHandle, slot};

mod answer;
pub(crate) mod exchange;
mod handler;
pub(crate) mod link;
mod parts;
mod room;
mod supervisor;

/// Bytes of each runner's output pool.
const OUTPUT_POOL: u64 = 64 << 20;
/// Longest `start` waits for its runners to be ready.
const STARTUP_WAIT: Duration = Duration::from_secs(15);
/// Longest [`ProcessModule::stop_all`] waits for the runners to be reaped
/// (a slot in a runner's handshake answers only after it).
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Most lanes (data links, each served by a runner thread) a worker opens
/// to one runner; never more than `in_flight` (a runner refuses a lane it
/// has no thread for: its `tasks` limit).
const MAX_LANES: usize = 64;

/// A module mounted at a prefix, with its runner processes.
#[derive(Debug)]
pub struct ProcessModule {
    prefix: String,
    /// The prefix, as upstream errors name the module.
    name: Arc<str>,
    timeout: Duration,
    lane_stall: Duration,
    lane_idle: Duration,
    in_flight: usize,
    pool: Pool,
    slots: std::sync::RwLock<Vec<Arc<SlotHandle>>>,
    /// Most runner processes (`processes_max`).
    max: usize,
    /// What a slot added under load starts from.
    template: SlotConfig,
    metrics: Arc<ModuleMetrics>,
    /// The library takes request bodies in parts (its feature bits, read
    /// when it was checked: at start and at each reload).
    parts: std::sync::atomic::AtomicBool,
    /// Notified when a runner released request-pool buffers.
    room: Arc<room::Room>,
    /// Why the module is refused (its library's check timed out or died):
    /// its requests get 503 until a reload finds the library fixed.
    refused: std::sync::RwLock<Option<String>>,
    /// `processes_min`, for starting the runners of a refused module that
    /// a reload found fixed.
    processes_min: u32,
    /// The largest request body the module takes (413 past it).
    max_body: u64,
}

impl ProcessModule {
    /// Checks the library (in a throw-away runner: a library built for
    /// another ABI is refused here, both versions named), creates the
    /// request pool (room for two bodies of `max_body`) and starts
    /// `processes_min` runners; with `processes_min = 0`, one runner starts
    /// on the first request. `exe` is the iolite binary.
    ///
    /// A library whose check does not finish within `check_timeout`, or
    /// dies (a constructor that sleeps, or that its sandbox kills), gives a
    /// *refused* module (logged): its requests get 503, the rest of the
    /// server is served, and a reload starts it once the library passes.
    ///
    /// With `cache`, the runners can include files of the document root
    /// from the unified cache by reference (`Ctx::cached`).
    pub fn start(
        cfg: &ModuleConfig,
        exe: &Path,
        max_body: u64,
        cache: Option<iolite_core::CacheAccess>,
    ) -> Result<Arc<Self>, Error> {
        let sandbox = crate::runner::SandboxSpec::from_config(cfg);
        Self::start_with(cfg, sandbox, exe, max_body, cache)
    }

    /// [`ProcessModule::start`] with the runners' sandbox given (a
    /// WebAssembly mount's names the guest they host).
    pub(crate) fn start_with(
        cfg: &ModuleConfig,
        sandbox: crate::runner::SandboxSpec,
        exe: &Path,
        max_body: u64,
        cache: Option<iolite_core::CacheAccess>,
    ) -> Result<Arc<Self>, Error> {
        let library = Library::new(&cfg.path);
        let checked = checked_copy(exe, &cfg.prefix, &cfg.path, &sandbox, cfg.check_timeout);
        let (features, refused) = match checked {
            Ok((features, copy)) => {
                library.replace(copy);
                (features, None)
            }
            Err(Error::Refused { message, .. }) => {
                tracing::error!(module = %cfg.prefix, library = %cfg.path.display(), "module refused: {message}");
                (0, Some(message))
            }
            Err(e) => return Err(e),
        };
        // The module's own limit, under the server's (which applies first).
        let max_body = cfg.max_body.map_or(max_body, |m| m.min(max_body));
        let size = max_body.saturating_mul(2).clamp(16 << 20, 1 << 36);
        let pool =
            Pool::with_name("iolite-requests", size as usize).map_err(|source| Error::Pool {
                prefix: cfg.prefix.clone(),
                source,
            })?;
        let n = cfg.processes_min.max(1) as usize;
        let metrics = Arc::new(ModuleMetrics::new(&cfg.prefix));
        let template = SlotConfig {
            name: cfg.prefix.clone(),
            exe: exe.to_owned(),
            library,
            in_flight: cfg.in_flight.max(1),
            output_pool: OUTPUT_POOL,
            pool: pool.clone(),
            cache: cache.clone(),
            lazy: false,
            sandbox,
            transfer: match cfg.transfer {
                ModuleTransfer::Shared => Transfer::Shared,
                ModuleTransfer::Copy => Transfer::Copy,
            },
            metrics: Some(metrics.clone()),
            keep: false,
            idle_timeout: cfg.idle_timeout,
            max_requests: cfg.max_requests,
            drain_limit: cfg.timeout,
            check_timeout: cfg.check_timeout,
            backoff_min: cfg.restart_backoff,
            backoff_max: cfg.restart_backoff_max,
        };
        let module = Arc::new(ProcessModule {
            prefix: cfg.prefix.clone(),
            name: Arc::from(cfg.prefix.as_str()),
            timeout: cfg.timeout,
            lane_stall: cfg.lane_stall,
            lane_idle: cfg.lane_idle,
            in_flight: cfg.in_flight.max(1) as usize,
            pool,
            slots: std::sync::RwLock::new(Vec::with_capacity(n)),
            max: (cfg.processes_max as usize).max(n),
            template,
            metrics,
            parts: std::sync::atomic::AtomicBool::new(features & FEATURE_BODY_PARTS != 0),
            room: Arc::default(),
            refused: std::sync::RwLock::new(refused.clone()),
            processes_min: cfg.processes_min,
            max_body,
        });
        if refused.is_none() {
            module.start_slots()?;
        }
        Ok(module)
    }

    /// Starts the module's first `processes_min` slots (at least one; lazy
    /// when `processes_min` is 0) and, when there are any to wait for,
    /// waits until their runners are ready or failed to start.
    fn start_slots(&self) -> Result<(), Error> {
        let n = self.processes_min.max(1) as usize;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let mut slots = Vec::with_capacity(n);
        let template = &self.template;
        for index in 0..n {
            let slot_cfg = SlotConfig {
                lazy: self.processes_min == 0,
                keep: index < self.processes_min as usize,
                ..template.clone()
            };
            let slot = slot::start(slot_cfg, index, started_tx.clone()).map_err(|source| {
                Error::Spawn {
                    what: format!("module {} runner thread", self.prefix),
                    source,
                }
            })?;
            slots.push(slot);
        }
        drop(started_tx);
        if let Ok(mut mine) = self.slots.write() {
            *mine = slots;
        }
        if self.processes_min > 0 {
            // Announce the server only once its runners are ready (or failed
            // to start, logged): no first request waits for a cold start.
            let deadline = std::time::Instant::now() + STARTUP_WAIT;
            for _ in 0..n {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if started_rx.recv_timeout(left).is_err() {
                    break;
                }
            }
        }
        tracing::info!(module = %self.prefix, library = %template.library.path.display(), processes = n, "module mounted");
        Ok(())
    }

    /// Why the module is refused, if it is (its requests get 503).
    pub(crate) fn refused(&self) -> Option<String> {
        self.refused.read().ok().and_then(|r| r.clone())
    }

    /// The module's counters, for `/metrics` (labelled by prefix).
    pub fn metrics(&self) -> Arc<ModuleMetrics> {
        self.metrics.clone()
    }

    /// The least loaded slot with a runner, its load counted for the
    /// request already (decrement it when the request is done: `LoadGuard`
    /// adopts it), reserved atomically so that two workers never both
    /// take a slot's last credit; when every slot with a runner has all its
    /// credits in use (or none has a runner), a dormant slot is woken, or,
    /// when `processes_max` allows, a new slot added: its runner starts for
    /// the request (which waits for it); failing those, the least loaded
    /// one, where the request queues. A slot pausing before a restart
    /// takes a request only when no other can (it fails it: 503).
    fn pick(&self) -> Option<Arc<SlotHandle>> {
        let load = |s: &Arc<SlotHandle>| s.load.load(Ordering::Relaxed);
        let dormant = |s: &Arc<SlotHandle>| s.dormant.load(Ordering::Acquire);
        let paused = |s: &Arc<SlotHandle>| s.paused.load(Ordering::Acquire);
        let taken = |s: Arc<SlotHandle>| {
            s.load.fetch_add(1, Ordering::Relaxed);
            Some(s)
        };
        let (best, grow) = {
            let slots = self.slots.read().ok()?;
            let live = || slots.iter().filter(|s| !dormant(s) && !paused(s));
            // The least loaded with a credit left, reserved; another worker
            // may take it first: then look again (each miss means a slot
            // filled up, so this ends).
            for _ in 0..slots.len() {
                let Some(s) = live()
                    .filter(|s| load(s) < self.in_flight)
                    .min_by_key(|s| load(s))
                else {
                    break;
                };
                let reserved = s
                    .load
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                        (l < self.in_flight).then_some(l + 1)
                    });
                if reserved.is_ok() {
                    return Some(s.clone());
                }
            }
            if let Some(sleeper) = slots.iter().find(|s| dormant(s)) {
                // Claimed here; its thread starts a runner on the request's
                // link request.
                sleeper.dormant.store(false, Ordering::Release);
                return taken(sleeper.clone());
            }
            match live().min_by_key(|s| load(s)) {
                // Every runner is busy: another one, if allowed.
                Some(best) => (best.clone(), slots.len() < self.max),
                // None is up (each slot pauses before a restart).
                None => return slots.first().cloned().and_then(taken),
            }
        };
        if !grow {
            return taken(best);
        }
        let mut slots = self.slots.write().ok()?;
        if slots.len() >= self.max {
            return taken(best);
        }
        let index = slots.len();
        // Nobody waits for this runner's start-up: the request queues.
        let (started, _) = std::sync::mpsc::channel();
        match slot::start(self.template.clone(), index, started) {
            Ok(slot) => {
                tracing::info!(module = %self.prefix, processes = index + 1, "all runners busy; starting another");
                slots.push(slot.clone());
                taken(slot)
            }
            Err(e) => {
                tracing::warn!(module = %self.prefix, error = %e, "cannot start another runner");
                taken(best)
            }
        }
    }

    /// Ends every runner of `modules` (each is killed, reaped and logged at
    /// INFO, its cgroup removed) and their slot threads; waits for them at
    /// most 5 s in all. Call once the server stopped serving:
    /// requests still in flight get 502.
    pub fn stop_all(modules: &[Arc<ProcessModule>]) {
        let deadline = std::time::Instant::now() + STOP_WAIT;
        let slots: Vec<Arc<SlotHandle>> = modules
            .iter()
            .filter_map(|m| m.slots.read().ok().map(|s| s.clone()))
            .flatten()
            .collect();
        for slot in &slots {
            slot.send(Cmd::Stop);
        }
        let stuck = slots.iter().filter(|s| !s.wait_finished(deadline)).count();
        if stuck > 0 {
            tracing::warn!(slots = stuck, "runner slots still busy at exit");
        }
    }

    /// Has every runner of the module recycled, so that it loads the
    /// library again from disk (a rebuilt module goes live without a failed
    /// request): the file is copied into a sealed memfd, a throw-away
    /// runner checks that copy as at start (it must load, with this
    /// server's ABI), and only then does the copy replace the one runners
    /// start from. If the check fails, the error is logged and the module
    /// keeps the copy it has: its runners, and any it restarts later, load
    /// the library that passed. Runs on a thread
    /// of its own: call it from anywhere (`iolite serve` does on SIGHUP).
    pub fn reload(self: &Arc<Self>) {
        let module = self.clone();
        let spawned = std::thread::Builder::new()
            .name("iolite-reload".into())
            .spawn(move || {
                let t = &module.template;
                let checked = checked_copy(
                    &t.exe,
                    &module.prefix,
                    &t.library.path,
                    &t.sandbox,
                    t.check_timeout,
                );
                match checked {
                    Ok((features, copy)) => {
                        module
                            .parts
                            .store(features & FEATURE_BODY_PARTS != 0, Ordering::Relaxed);
                        // From now on every runner start loads this copy.
                        t.library.replace(copy);
                    }
                    Err(e) => {
                        tracing::warn!(module = %module.prefix, error = %e, "not reloaded: its runners keep the library they loaded, and restarts load that one too");
                        return;
                    }
                }
                if module.refused().is_some() {
                    tracing::info!(module = %module.prefix, library = %t.library.path.display(), "the library passes its check now: starting its runners");
                    if let Err(e) = module.start_slots() {
                        tracing::error!(module = %module.prefix, error = %e, "cannot start the runners");
                        return;
                    }
                    if let Ok(mut r) = module.refused.write() {
                        *r = None;
                    }
                    return;
                }
                let slots = module.slots.read().map(|s| s.clone()).unwrap_or_default();
                tracing::info!(module = %module.prefix, library = %t.library.path.display(), "reloading: recycling every runner");
                for slot in slots {
                    slot.send(Cmd::Recycle("reload".into()));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(module = %self.prefix, error = %e, "not reloaded: no thread");
        }
    }

    /// The mount prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    // `handler()` is in handler.rs and `direct_client()` in exchange.rs,
    // beside what they make: this file imports neither (both import it).

    /// One worker's links to this module's runners (made on, and kept by,
    /// that worker's thread).
    fn worker_links(&self) -> Rc<WorkerLinks> {
        let cfg = LinkConfig {
            name: Arc::from(self.prefix.as_str()),
            pool: self.pool.clone(),
            cache_pool: self.template.cache.as_ref().map(|c| c.pool().clone()),
            timeout: self.timeout,
            copy: self.template.transfer == Transfer::Copy,
            lanes: self.in_flight.clamp(1, MAX_LANES),
            lane_stall: self.lane_stall,
            pace: Rc::default(),
            lane_idle: self.lane_idle,
            metrics: Some(self.metrics.clone()),
            room: Some(self.room.clone()),
            copy_cap: OUTPUT_POOL as usize,
        };
        let files = self
            .template
            .cache
            .as_ref()
            .map(iolite_core::CacheAccess::files);
        Rc::new(WorkerLinks::new(cfg, files))
    }
}

/// Checks the library of the module `cfg` as `iolite serve` does before it
/// starts its runners (a copy of it loaded by a throw-away runner under
/// the module's sandbox, within its `check_timeout`), for `iolite
/// check-config`; the error names the library and the problem.
pub fn check_module_library(cfg: &ModuleConfig, exe: &Path) -> Result<(), Error> {
    let sandbox = crate::runner::SandboxSpec::from_config(cfg);
    checked_copy(exe, &cfg.prefix, &cfg.path, &sandbox, cfg.check_timeout).map(|_| ())
}

/// Removes the pids cgroups that runners of a server that died left
/// behind (empty ones only); call once at start-up, before any runner
/// starts. Returns how many were removed.
pub fn sweep_stale_cgroups() -> usize {
    let n = iolite_sandbox::sweep_stale_pids_cgroups();
    if n > 0 {
        tracing::info!(removed = n, "removed stale runner pids cgroups");
    }
    n
}

/// The iolite binary, for starting runners.
pub fn current_exe() -> Result<PathBuf, Error> {
    std::env::current_exe().map_err(Error::Exe)
}
