//! A module's runner processes, one *slot* each. Each slot has a thread
//! that starts its runner, holds its control socket, attaches data links
//! for the worker threads ([`Cmd::Connect`]), and starts the runner again
//! with exponential backoff when it dies or a worker asks for it to be
//! replaced ([`Cmd::Replace`]). Requests never pass through that thread:
//! workers speak to the runner on their links (`link`).
//!
//! A runner is also ended on purpose, without failing a request: *recycled*
//! when it has used three quarters of its CPU-time limit (RLIMIT_CPU would
//! otherwise kill it under load, with its requests) or served
//! `max_requests`, and *retired* when its slot is not one of the
//! `processes_min` kept and no request came for `idle_timeout`. Either way
//! it is drained: its links take no new request ([`SlotHandle::is_draining`];
//! a recycled runner's successor is ready first), each link closes once its
//! requests are answered, and the runner, whose control socket the slot
//! closed, exits when its last link has closed (SDK runtime, ABI 5). A
//! drain that outlasts the module's timeout ends with SIGKILL.
//!
//! This file holds what the workers and the slot thread share, and
//! imports none of its siblings: the slot thread, [`slot::start`]
//! included, is `slot`; the runner's command line, handshake and log are
//! `spawn`, the check of a library before it is used `check`, a runner's
//! end `reap`, the reasons to end a healthy one `upkeep`.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use iolite_ipc::{Pool, RemotePool};
use iolite_sdk::wire::Transfer;
use tokio::sync::oneshot;

use crate::metrics::ModuleMetrics;
use crate::runner::SandboxSpec;

pub(crate) mod check;
pub(crate) mod library;
mod reap;
pub(crate) mod slot;
pub(crate) mod spawn;
mod upkeep;

/// A data link to a ready runner, for one worker thread.
#[derive(Debug)]
pub(crate) struct Attached {
    /// The server's end of the link.
    pub sock: UnixStream,
    /// Which runner of the slot (counts starts): a replace names it.
    pub generation: u64,
    /// The runner's output pool (mapped once, on the control socket).
    pub output: RemotePool,
}

#[derive(Debug)]
pub(crate) enum Cmd {
    /// A worker wants a data link: answered once a runner is ready.
    Connect(oneshot::Sender<Attached>),
    /// A runner was retired ([`SlotHandle::retire`]): look whether it is
    /// the current one, and replace it if so.
    Replace,
    /// The runner reached `max_requests`: look at the count.
    Look,
    /// Recycle the runner (why): a successor, which loads the library
    /// again, takes the next requests; the old one drains.
    Recycle(String),
    /// The server is stopping: end the runner (logged at INFO) and the
    /// thread.
    Stop,
}

/// The worker threads' handle on one slot.
#[derive(Debug)]
pub(crate) struct SlotHandle {
    tx: std::sync::Mutex<Sender<Cmd>>,
    wake: UnixStream,
    /// Requests handed to this slot and not yet finished (kept by callers).
    pub load: AtomicUsize,
    /// One permit per request the runner may hold (`in_flight`): taken
    /// before a request is sent, returned with its answer.
    pub credits: Arc<tokio::sync::Semaphore>,
    /// Which slot of its module (for logs and metrics).
    pub index: usize,
    /// Runners up to this generation are done for (dead, or to be
    /// replaced): no new request goes to them, and the slot thread replaces
    /// the current one if it is among them.
    retired: Arc<AtomicU64>,
    /// Runners up to this generation are being drained: they take no new
    /// request, and their links close once their requests are answered
    /// (links watch it).
    draining: tokio::sync::watch::Sender<u64>,
    /// No runner, and none until a request wants one (idle, or not started
    /// yet): [`ProcessModule`](crate::ProcessModule) prefers live slots.
    pub dormant: AtomicBool,
    /// No runner, and none until a restart's back-off pause ends: requests
    /// go to the module's other slots, or get 503 at once.
    pub paused: AtomicBool,
    /// Requests handed to this slot's runners, ever.
    sent: AtomicU64,
    /// The value of `sent` at which the slot thread is told to look
    /// (`max_requests` reached); `u64::MAX`: never.
    look_at: AtomicU64,
    /// Disconnected when the slot thread has ended (its runner reaped).
    finished: std::sync::Mutex<Receiver<()>>,
}

impl SlotHandle {
    /// Waits until the slot thread has ended, at most until `deadline`;
    /// whether it has.
    pub fn wait_finished(&self, deadline: Instant) -> bool {
        let Ok(finished) = self.finished.lock() else {
            return false;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        matches!(
            finished.recv_timeout(left),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        )
    }

    /// Whether runner `generation` is done for (its requests fail).
    pub fn is_retired(&self, generation: u64) -> bool {
        self.retired.load(Ordering::Acquire) >= generation
    }

    /// Whether runner `generation` only finishes what it holds.
    pub fn is_draining(&self, generation: u64) -> bool {
        *self.draining.borrow() >= generation
    }

    /// Changes whenever a runner starts draining.
    pub fn drain_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.draining.subscribe()
    }

    /// Counts a request sent to a runner of this slot.
    pub fn count_sent(&self) {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.look_at.load(Ordering::Relaxed) {
            self.send(Cmd::Look);
        }
    }

    /// Stops sending requests to runner `generation` (it died, broke the
    /// protocol or holds a request past its deadline) and has it replaced.
    pub fn retire(&self, generation: u64) {
        if self.retired.fetch_max(generation, Ordering::AcqRel) < generation {
            self.send(Cmd::Replace);
        }
    }

    /// Hands `cmd` to the slot thread; false if the thread is gone.
    pub fn send(&self, cmd: Cmd) -> bool {
        let sent = match self.tx.lock() {
            Ok(tx) => tx.send(cmd).is_ok(),
            Err(_) => false,
        };
        if sent {
            // A full wake-up socket already means "look": ignore EAGAIN.
            let _ = (&self.wake).write_byte();
        }
        sent
    }
}

trait WriteByte {
    fn write_byte(self) -> std::io::Result<usize>;
}

impl WriteByte for &UnixStream {
    fn write_byte(self) -> std::io::Result<usize> {
        std::io::Write::write(&mut { self }, &[1])
    }
}

/// What a slot thread needs to know.
#[derive(Debug, Clone)]
pub(crate) struct SlotConfig {
    pub name: String,
    pub exe: PathBuf,
    /// The checked copy of the library that runners start from.
    pub library: Arc<library::Library>,
    pub in_flight: u32,
    pub output_pool: u64,
    pub pool: Pool,
    /// The document root and unified cache, for `Ctx::cached`.
    pub cache: Option<iolite_core::CacheAccess>,
    /// Start the runner only when the first request comes.
    pub lazy: bool,
    /// How bodies travel (zero-copy, or inline for comparison).
    pub transfer: Transfer,
    /// The module's counters (restarts, runners).
    pub metrics: Option<Arc<ModuleMetrics>>,
    /// What the runner applies to itself before and after loading the module.
    pub sandbox: SandboxSpec,
    /// One of the module's first `processes_min` slots: never retired for
    /// idleness.
    pub keep: bool,
    /// A runner of a slot that is not kept, with no request for this long,
    /// is drained and not replaced until a request comes.
    pub idle_timeout: Duration,
    /// Requests after which a runner is recycled.
    pub max_requests: Option<u64>,
    /// Longest a recycled or retired runner may take to finish what it
    /// holds (the module's request timeout).
    pub drain_limit: Duration,
    /// Longest the check of the library may take (at a reload).
    pub check_timeout: Duration,
    /// The first and the longest pause before a runner that died is
    /// started again (`restart_backoff`, `restart_backoff_max`).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// How one runner's time in its slot ended: what the slot thread does next.
enum End {
    /// Every handle is gone: the server is stopping.
    Shutdown,
    /// The runner died or was replaced.
    Died,
    /// The runner is to be recycled (why): a successor takes over, then it
    /// is drained.
    Recycle(String),
    /// The runner is idle and its slot not kept: drained, not replaced.
    Idle,
}
