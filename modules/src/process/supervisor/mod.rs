//! One runner process slot: a thread that starts the runner, holds its
//! control socket (blocking [`Peer`], `poll(2)` on it and on a wake-up
//! socket), attaches data links for the worker threads ([`Cmd::Connect`]),
//! and starts the runner again with exponential backoff when it dies or a
//! worker asks for it to be replaced ([`Cmd::Replace`]). Requests never
//! pass through this thread: workers speak to the runner on their links
//! (`link`).
//!
//! A runner's end is noticed through its control socket or its pidfd (even
//! while something it forked keeps the socket open); then its process group
//! is killed (what it forked goes too), it is reaped, and its pids cgroup
//! is emptied and removed.
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

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use iolite_ipc::{Event, Peer, Pool, RemotePool};
use iolite_sandbox::PidFd;
use iolite_sdk::wire::{ABI_VERSION, Msg, Transfer};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::oneshot;

use crate::metrics::ModuleMetrics;

/// First pause before restarting a runner that died; doubles up to
/// [`BACKOFF_MAX`], and resets after a runner lived [`HEALTHY`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY: Duration = Duration::from_secs(10);
/// Time a new runner has to load its module and say `Ready`.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest a runner may take to finish a frame it started on its control
/// socket, or to take one: past it, the runner is replaced (a slot thread
/// never blocks on a stuck runner for longer).
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a slot waits for a dead runner's killed descendants to leave its
/// pids cgroup before giving up on removing it.
const CGROUP_REMOVAL: Duration = Duration::from_secs(2);
/// Share of its CPU-time limit after which a runner is recycled, in
/// quarters: the last quarter is the drain's (and a runaway request's).
const CPU_RECYCLE_QUARTERS: u32 = 3;
/// Longest pause between two looks at a runner's upkeep (CPU time,
/// idleness) while one of them applies.
const UPKEEP_TICK: Duration = Duration::from_secs(1);
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks: 100 a second in the
/// kernel's user-space ABI on every Linux architecture.
const USER_HZ: u64 = 100;

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
    pub library: PathBuf,
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
    pub sandbox: crate::runner::SandboxSpec,
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
}

/// Starts slot `index`'s thread; its runner starts at once (unless lazy).
/// `started` hears once when the first runner is ready or failed to start.
pub(crate) fn start(
    cfg: SlotConfig,
    index: usize,
    started: Sender<()>,
) -> std::io::Result<Arc<SlotHandle>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (wake_w, wake_r) = UnixStream::pair()?;
    wake_w.set_nonblocking(true)?;
    wake_r.set_nonblocking(true)?;
    let retired = Arc::new(AtomicU64::new(0));
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
    let handle = Arc::new(SlotHandle {
        tx: std::sync::Mutex::new(tx),
        wake: wake_w,
        load: AtomicUsize::new(0),
        credits: Arc::new(tokio::sync::Semaphore::new(cfg.in_flight as usize)),
        index,
        retired: retired.clone(),
        draining: tokio::sync::watch::Sender::new(0),
        dormant: AtomicBool::new(cfg.lazy),
        sent: AtomicU64::new(0),
        look_at: AtomicU64::new(u64::MAX),
        finished: std::sync::Mutex::new(finished_rx),
    });
    let weak = Arc::downgrade(&handle);
    std::thread::Builder::new()
        .name(format!("iolite-module-{index}"))
        .spawn(move || {
            let _finished = finished_tx;
            slot_main(&cfg, &rx, &wake_r, &retired, &weak, started);
        })?;
    Ok(handle)
}

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

/// A runner being ended on purpose, and what it is ended for.
struct Old {
    child: Child,
    /// Its control socket: closing it tells the runner to exit once its
    /// links have closed.
    peer: Peer<Msg>,
    pidfd: Option<PidFd>,
    generation: u64,
    why: String,
}

fn slot_main(
    cfg: &SlotConfig,
    rx: &Receiver<Cmd>,
    wake: &UnixStream,
    retired: &AtomicU64,
    handle: &Weak<SlotHandle>,
    started: Sender<()>,
) {
    let mut first_start = Some(started);
    let mut waiting = Vec::new();
    // Runners being drained: (pid, the thread that reaps it).
    let mut drains = Drains::default();
    let mut dormant = cfg.lazy;
    let mut backoff = BACKOFF_MIN;
    let mut generation = 0;
    // A runner to drain once its successor is ready.
    let mut old: Option<Old> = None;
    loop {
        if dormant {
            if wait_for_request(rx, &mut waiting).is_err() {
                drains.kill_all();
                return;
            }
            if let Some(h) = handle.upgrade() {
                h.dormant.store(false, Ordering::Release);
            }
        }
        generation += 1;
        let started = Instant::now();
        let mut runner = RunnerCtx {
            generation,
            retired,
            rx,
            wake,
            handle,
            drains: &mut drains,
        };
        let end = run_process(cfg, &mut runner, &mut waiting, &mut first_start, &mut old);
        dormant = false;
        match end {
            End::Shutdown => {
                if let Some(o) = old.take() {
                    start_drain(cfg, handle, o, &mut drains);
                }
                drains.kill_all();
                return;
            }
            End::Recycle(_) => continue,
            End::Idle => {
                dormant = true;
                if let Some(h) = handle.upgrade() {
                    h.dormant.store(true, Ordering::Release);
                }
                continue;
            }
            End::Died => {}
        }
        if let Some(m) = &cfg.metrics {
            m.restarts.fetch_add(1, Ordering::Relaxed);
        }
        if started.elapsed() >= HEALTHY {
            backoff = BACKOFF_MIN;
        }
        tracing::info!(module = %cfg.name, pause_ms = backoff.as_millis() as u64, "restarting runner");
        if pause(rx, &mut waiting, backoff).is_err() {
            drains.kill_all();
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // Workers that gave up while we slept need no link.
        waiting.retain(|w| !w.is_closed());
    }
}

/// Starts one runner and serves its control socket until it dies, is
/// replaced, recycled or retired; links asked for meanwhile wait in
/// `waiting` for the next one. `old`, a runner being recycled, is drained
/// once this one is ready (or failed to start); a runner this one is
/// recycled for is left in `old` for the next call.
fn run_process(
    cfg: &SlotConfig,
    ctx: &mut RunnerCtx<'_>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
    started: &mut Option<Sender<()>>,
    old: &mut Option<Old>,
) -> End {
    let (generation, rx) = (ctx.generation, ctx.rx);
    let mut child = match spawn_runner(cfg) {
        Ok(c) => c,
        Err(e) => {
            started.take();
            if let Some(o) = old.take() {
                start_drain(cfg, ctx.handle, o, ctx.drains);
            }
            tracing::error!(module = %cfg.name, error = %e, "cannot start runner");
            return drain_commands(rx, waiting).map_or(End::Shutdown, |_| End::Died);
        }
    };
    let pid = child.0.id();
    let pidfd = match PidFd::open(pid) {
        Ok(fd) => Some(fd),
        Err(e) => {
            // Kernel before 5.3: a dead runner is noticed by its socket only.
            tracing::debug!(module = %cfg.name, pid, error = %e, "no pidfd");
            None
        }
    };
    let shaken = handshake(cfg, child.1.take());
    if let Some(tx) = started.take() {
        let _ = tx.send(());
    }
    // The successor is up (or could not start): the old runner's links
    // now send their requests here.
    if let Some(o) = old.take() {
        start_drain(cfg, ctx.handle, o, ctx.drains);
    }
    let (end, peer) = match shaken {
        Ok((mut peer, output, sandbox)) => {
            tracing::info!(module = %cfg.name, pid, %sandbox, "runner ready");
            if let Some(m) = &cfg.metrics {
                m.runners.fetch_add(1, Ordering::Relaxed);
            }
            if let (Some(h), Some(max)) = (ctx.handle.upgrade(), cfg.max_requests) {
                let base = h.sent.load(Ordering::Relaxed);
                h.look_at.store(base.saturating_add(max), Ordering::Relaxed);
            }
            let mut runner = Runner {
                peer: &mut peer,
                output,
                generation,
                pid,
                pidfd: pidfd.as_ref(),
            };
            let end = serve(cfg, ctx, waiting, &mut runner);
            if let Some(m) = &cfg.metrics {
                m.runners.fetch_sub(1, Ordering::Relaxed);
            }
            (end, Some(peer))
        }
        Err(e) => {
            tracing::error!(module = %cfg.name, pid, error = %e, "runner did not start");
            let end = drain_commands(rx, waiting).map_or(End::Shutdown, |_| End::Died);
            (end, None)
        }
    };
    match (end, peer) {
        (End::Recycle(why), Some(peer)) => {
            *old = Some(Old {
                child: child.0,
                peer,
                pidfd,
                generation,
                why: why.clone(),
            });
            End::Recycle(why)
        }
        (End::Idle, Some(peer)) => {
            let o = Old {
                child: child.0,
                peer,
                pidfd,
                generation,
                why: "idle".into(),
            };
            start_drain(cfg, ctx.handle, o, ctx.drains);
            End::Idle
        }
        (end, _) => {
            let how = if matches!(end, End::Shutdown) {
                How::Shutdown
            } else {
                How::Died
            };
            reap(&cfg.name, &mut child.0, how);
            end
        }
    }
}

/// How a runner's end is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// The server stops (INFO).
    Shutdown,
    /// It died, broke the protocol or was replaced (WARN).
    Died,
    /// It was drained on purpose (INFO).
    Drained,
}

/// Ends a runner and what it started: SIGKILL to its process group (a
/// no-op on a runner that already exited: its own exit status stays), the
/// reap, then its pids cgroup emptied and removed. A runner ended because
/// the server stops, or drained on purpose, is logged at INFO; any other
/// end at WARN.
fn reap(name: &str, child: &mut Child, how: How) {
    let pid = child.id();
    // The group is the runner's pid (`process_group(0)`): the number cannot
    // be reused while the unreaped runner holds it.
    let group = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    match (child.wait(), how) {
        (Ok(status), How::Shutdown) => {
            tracing::info!(module = %name, pid, %status, "runner exited (server stopping)");
        }
        (Ok(status), How::Drained) if status.success() => {
            tracing::info!(module = %name, pid, %status, "runner exited (drained)");
        }
        (Ok(status), How::Drained) => {
            tracing::warn!(module = %name, pid, %status, "runner exited while draining");
        }
        (Ok(status), How::Died) => tracing::warn!(module = %name, pid, %status, "runner exited"),
        (Err(e), _) => tracing::warn!(module = %name, pid, error = %e, "runner wait"),
    }
    if let Some(cgroup) = iolite_sandbox::pids_cgroup_for(pid) {
        remove_cgroup(name, pid, &cgroup);
    }
}

/// The runners a slot is draining, each reaped by a thread of its own.
#[derive(Default)]
struct Drains {
    threads: Vec<(u32, std::thread::JoinHandle<()>)>,
}

impl Drains {
    /// The server stops: every runner still draining is killed (its
    /// process group), and its thread waited for (it reaps and logs it).
    fn kill_all(&mut self) {
        for (pid, thread) in self.threads.drain(..) {
            if !thread.is_finished() {
                // Not reaped yet (its thread reaps it): the group id is
                // still this runner's.
                let group = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = thread.join();
        }
    }

    fn forget_finished(&mut self) {
        self.threads.retain(|(_, t)| !t.is_finished());
    }
}

/// Drains `old`: its links take no new request and close once they have
/// answered theirs; its control socket is closed, so the runner exits after
/// its last link; a thread waits for that (at most the drain limit, then
/// SIGKILL) and reaps it.
fn start_drain(cfg: &SlotConfig, handle: &Weak<SlotHandle>, old: Old, drains: &mut Drains) {
    drains.forget_finished();
    let Old {
        mut child,
        peer,
        pidfd,
        generation,
        why,
    } = old;
    let pid = child.id();
    if let Some(h) = handle.upgrade() {
        h.draining.send_modify(|g| *g = (*g).max(generation));
    }
    tracing::info!(module = %cfg.name, pid, reason = %why, "draining the runner (it finishes its requests, then exits)");
    if let Some(m) = &cfg.metrics {
        m.recycled.fetch_add(1, Ordering::Relaxed);
    }
    let name = cfg.name.clone();
    let limit = cfg.drain_limit;
    let wait = move |child: &mut Child| {
        drop(peer);
        if !wait_exit(child, pidfd.as_ref(), limit) {
            tracing::warn!(module = %name, pid, limit_ms = limit.as_millis() as u64, "drained runner still busy past the limit; killing it");
        }
        reap(&name, child, How::Drained);
    };
    let spawned = std::thread::Builder::new()
        .name(format!("iolite-drain-{pid}"))
        .spawn(move || wait(&mut child));
    match spawned {
        Ok(thread) => drains.threads.push((pid, thread)),
        Err(e) => {
            // The runner was moved into the closure, which is gone: its
            // process group and cgroup are ended without the wait.
            tracing::warn!(module = %cfg.name, pid, error = %e, "cannot start a drain thread; killing the runner");
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Waits for `child` to exit, at most `limit`; whether it did.
fn wait_exit(child: &mut Child, pidfd: Option<&PidFd>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            None => std::thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
}

/// Removes a reaped runner's pids cgroup, first killing any task left in
/// it (a descendant that left the process group). Killed tasks take a
/// moment to leave the cgroup: retries with growing pauses for up to
/// [`CGROUP_REMOVAL`], then a warning (the next server start sweeps it).
/// The cgroup is named by the reaped pid: another runner could reuse the
/// name only if the pid counter wrapped around within that window.
pub(crate) fn remove_cgroup(module: &str, pid: u32, cgroup: &std::path::Path) {
    let deadline = Instant::now() + CGROUP_REMOVAL;
    let mut pause = Duration::from_millis(1);
    loop {
        iolite_sandbox::kill_pids_cgroup(cgroup);
        match iolite_sandbox::remove_pids_cgroup(cgroup) {
            Ok(_) => return,
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!(module = %module, pid, error = %e, "runner's pids cgroup left behind");
                return;
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Waits `pause` before a restart, keeping the link requests that come
/// meanwhile; Err when the server stops.
fn pause(
    rx: &Receiver<Cmd>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
    pause: Duration,
) -> Result<(), ()> {
    let until = Instant::now() + pause;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Cmd::Connect(reply)) => waiting.push(reply),
            // The next runner loads the library anew anyway.
            Ok(Cmd::Replace | Cmd::Look | Cmd::Recycle(_)) => {}
            Ok(Cmd::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(()),
        }
    }
}

/// A dormant slot waits for a worker that wants a link (a request came);
/// Err when the server stops.
fn wait_for_request(
    rx: &Receiver<Cmd>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
) -> Result<(), ()> {
    loop {
        match rx.recv() {
            Ok(Cmd::Connect(reply)) => {
                waiting.push(reply);
                return Ok(());
            }
            Ok(Cmd::Replace | Cmd::Look | Cmd::Recycle(_)) => {}
            Ok(Cmd::Stop) | Err(_) => return Err(()),
        }
    }
}

/// Takes every pending command: link requests join `waiting` (a replace
/// only wakes the thread: it reads `retired`); returns why a recycle was
/// asked for, if one was. Err when the server stops.
fn drain_commands(
    rx: &Receiver<Cmd>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
) -> Result<Option<String>, ()> {
    let mut recycle = None;
    loop {
        match rx.try_recv() {
            Ok(Cmd::Connect(reply)) => waiting.push(reply),
            Ok(Cmd::Replace | Cmd::Look) => {}
            Ok(Cmd::Recycle(why)) => recycle = Some(why),
            Ok(Cmd::Stop) => return Err(()),
            Err(TryRecvError::Empty) => return Ok(recycle),
            Err(TryRecvError::Disconnected) => return Err(()),
        }
    }
}

fn spawn_runner(cfg: &SlotConfig) -> std::io::Result<(Child, Option<UnixStream>)> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = Command::new(&cfg.exe);
    cmd.arg("runner")
        .arg("--socket-fd")
        .arg(theirs.as_raw_fd().to_string())
        .arg("--module")
        .arg(&cfg.library)
        .arg("--name")
        .arg(&cfg.name)
        .arg("--shared-bytes")
        .arg(shared_bytes(cfg).to_string())
        .args(cfg.sandbox.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if cfg.sandbox.memory.is_some() && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // glibc reserves 64 MiB of address space per malloc arena, one per
        // thread that allocates: under an address-space limit, each new
        // runner thread's arena fails, and every allocation it makes then
        // tries (and fails) to map one first. Two arenas fit any limit.
        cmd.env("MALLOC_ARENA_MAX", "2");
    }
    // Its own process group: a terminal's ^C stops the server, which then
    // closes the socket; the runner ends when it sees that.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = iolite_sandbox::spawn_inheriting(&mut cmd, theirs.as_fd())?;
    drop(theirs);
    let pid = child.id();
    if let Some(out) = child.stdout.take() {
        forward_log(&cfg.name, pid, "stdout", out);
    }
    if let Some(err) = child.stderr.take() {
        forward_log(&cfg.name, pid, "stderr", err);
    }
    Ok((child, Some(ours)))
}

/// Bytes of shared memory the runner will map: the request pool, its output
/// pool and the cache pool. An address-space limit must leave room for them
/// on top of the module's own memory.
fn shared_bytes(cfg: &SlotConfig) -> u64 {
    cfg.pool.memfd_size()
        + cfg.output_pool
        + cfg.cache.as_ref().map_or(0, |c| c.pool().memfd_size())
}

/// The module's stdout and stderr go to the server's log, line by line,
/// under the module's name.
fn forward_log(name: &str, pid: u32, stream: &'static str, from: impl Read + Send + 'static) {
    let name = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("iolite-module-log-{pid}"))
        .spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                tracing::info!(module = %name, pid, stream, "{line}");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot forward a runner's output");
    }
}

/// The runner's sandbox report, then the protocol's Hello/Ready; returns
/// the peer, the runner's output pool and the report.
fn handshake(
    cfg: &SlotConfig,
    sock: Option<UnixStream>,
) -> Result<(Peer<Msg>, RemotePool, String), String> {
    let sock = sock.ok_or("no socket")?;
    sock.set_read_timeout(Some(HANDSHAKE))
        .map_err(|e| e.to_string())?;
    let sandbox = crate::runner::read_report(&sock)?;
    sock.set_write_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut peer: Peer<Msg> = Peer::new(sock);
    peer.share_pool(&cfg.pool).map_err(|e| e.to_string())?;
    if let Some(cache) = &cfg.cache {
        peer.share_pool(cache.pool()).map_err(|e| e.to_string())?;
    }
    peer.send(&Msg::Hello {
        abi: ABI_VERSION,
        name: cfg.name.clone(),
        output_pool: cfg.output_pool,
        in_flight: cfg.in_flight,
        transfer: cfg.transfer,
    })
    .map_err(|e| e.to_string())?;
    let output = match peer.recv() {
        Ok(Msg::Ready { abi, output_pool }) if abi == ABI_VERSION => peer
            .remote_pool(output_pool)
            .cloned()
            .ok_or("the runner's Ready names a pool it did not share")?,
        Ok(Msg::Ready { abi, .. }) => {
            return Err(format!(
                "runner speaks module ABI {abi}, the server {ABI_VERSION}"
            ));
        }
        Ok(_) => return Err("the runner's first message is not Ready".into()),
        Err(e) => return Err(format!("no Ready from the runner: {e}")),
    };
    // From now on the socket is read only when poll says a frame started.
    peer.channel()
        .stream()
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok((peer, output, sandbox))
}

/// What the control loop of one runner start needs from its slot.
struct RunnerCtx<'a> {
    generation: u64,
    retired: &'a AtomicU64,
    rx: &'a Receiver<Cmd>,
    wake: &'a UnixStream,
    handle: &'a Weak<SlotHandle>,
    drains: &'a mut Drains,
}

/// The checks that end a healthy runner on purpose: its CPU time against
/// its limit, its requests against `max_requests`, its slot's idleness.
struct Upkeep {
    /// RLIMIT_CPU, and the CPU time at which the runner is recycled.
    cpu: Option<(Duration, Duration)>,
    /// How often the CPU time is read (a twentieth of the limit, 50 ms to
    /// 1 s: the runner cannot burn the last quarter between two looks
    /// unless it has more than five CPUs).
    cpu_every: Duration,
    next_cpu: Instant,
    /// When the slot was last seen with a request (None: the slot is kept).
    busy_at: Option<Instant>,
    /// `sent` at the last look.
    sent: u64,
    idle_timeout: Duration,
}

impl Upkeep {
    fn new(cfg: &SlotConfig, handle: &Weak<SlotHandle>) -> Self {
        let cpu = cfg.sandbox.cpu_seconds.map(|s| {
            let limit = Duration::from_secs(s);
            (limit, limit * CPU_RECYCLE_QUARTERS / 4)
        });
        let cpu_every = cpu.map_or(UPKEEP_TICK, |(limit, _)| {
            (limit / 20).clamp(Duration::from_millis(50), UPKEEP_TICK)
        });
        Upkeep {
            cpu,
            cpu_every,
            next_cpu: Instant::now() + cpu_every,
            busy_at: (!cfg.keep).then(Instant::now),
            sent: handle
                .upgrade()
                .map_or(0, |h| h.sent.load(Ordering::Relaxed)),
            idle_timeout: cfg.idle_timeout,
        }
    }

    /// How long the control loop may sleep before the next look.
    fn timeout(&self) -> PollTimeout {
        if self.cpu.is_none() && self.busy_at.is_none() {
            return PollTimeout::NONE;
        }
        let mut every = UPKEEP_TICK;
        if self.cpu.is_some() {
            every = every.min(self.cpu_every);
        }
        if self.busy_at.is_some() {
            every = every.min((self.idle_timeout / 4).max(Duration::from_millis(10)));
        }
        PollTimeout::from(u16::try_from(every.as_millis()).unwrap_or(u16::MAX))
    }

    /// Why the runner should end now, if it should.
    fn check(&mut self, pid: u32, handle: &Weak<SlotHandle>) -> Option<End> {
        let now = Instant::now();
        let h = handle.upgrade()?;
        // `look_at` is u64::MAX without `max_requests`.
        if h.sent.load(Ordering::Relaxed) >= h.look_at.load(Ordering::Relaxed) {
            return Some(End::Recycle("max_requests reached".into()));
        }
        if let Some(busy_at) = self.busy_at.as_mut() {
            // Busy: holding requests now, or sent some since the last look.
            let sent = h.sent.load(Ordering::Relaxed);
            let moved = std::mem::replace(&mut self.sent, sent) != sent;
            if moved || h.load.load(Ordering::Relaxed) > 0 {
                *busy_at = now;
            } else if now.duration_since(*busy_at) >= self.idle_timeout {
                return Some(End::Idle);
            }
        }
        if let Some((limit, at)) = self.cpu
            && now >= self.next_cpu
        {
            self.next_cpu = now + self.cpu_every;
            match cpu_time(pid) {
                Some(used) if used >= at => {
                    return Some(End::Recycle(format!(
                        "used {:.2}s of its {}s CPU time (cpu_time)",
                        used.as_secs_f64(),
                        limit.as_secs()
                    )));
                }
                _ => {}
            }
        }
        None
    }
}

/// CPU time (user + system, all threads) a process has used, from
/// `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')'. utime and stime are the
    // 14th and 15th fields: the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.saturating_add(stime);
    Some(Duration::from_millis(ticks.saturating_mul(1000) / USER_HZ))
}

/// One live runner, as the control loop sees it.
struct Runner<'a> {
    peer: &'a mut Peer<Msg>,
    output: RemotePool,
    generation: u64,
    pid: u32,
    /// Readable once the runner exited (even if a descendant keeps its
    /// sockets open).
    pidfd: Option<&'a PidFd>,
}

impl Runner<'_> {
    /// Makes a data link and hands the runner its end; None: the runner
    /// has no thread for another one.
    fn attach(&mut self) -> Result<Option<Attached>, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        self.peer
            .send_with_fds(&Msg::Attach, &[theirs.as_fd()])
            .map_err(|e| e.to_string())?;
        drop(theirs);
        // The runner says it serves the link: a runner that is dying (its
        // control socket not yet seen closed) gets no link to lose requests on.
        match self.peer.recv() {
            Ok(Msg::Attach) => {}
            Ok(Msg::AttachRefused) => return Ok(None),
            Ok(_) => return Err("the runner answered Attach with another message".into()),
            Err(e) => return Err(e.to_string()),
        }
        Ok(Some(Attached {
            sock: ours,
            generation: self.generation,
            output: self.output.clone(),
        }))
    }
}

/// The control loop: links for whoever asks, until the runner dies (its
/// control socket closes), misbehaves, or is to be replaced.
fn serve(
    cfg: &SlotConfig,
    ctx: &RunnerCtx<'_>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
    runner: &mut Runner<'_>,
) -> End {
    let (pid, rx, wake) = (runner.pid, ctx.rx, ctx.wake);
    let mut upkeep = Upkeep::new(cfg, ctx.handle);
    let mut recycle = None;
    loop {
        match drain_commands(rx, waiting) {
            Err(()) => return End::Shutdown,
            Ok(Some(why)) => recycle = Some(why),
            Ok(None) => {}
        }
        if ctx.retired.load(Ordering::Acquire) >= ctx.generation {
            tracing::warn!(module = %cfg.name, pid, "replacing the runner");
            return End::Died;
        }
        if waiting.is_empty() {
            if let Some(why) = recycle.take() {
                return End::Recycle(why);
            }
            if let Some(end) = upkeep.check(pid, ctx.handle) {
                return end;
            }
        }
        while let Some(reply) = waiting.pop() {
            if reply.is_closed() {
                continue;
            }
            match runner.attach() {
                Ok(Some(link)) => {
                    let _ = reply.send(link);
                }
                Ok(None) => {
                    // The worker makes do with the lanes it has.
                    tracing::info!(module = %cfg.name, pid, "the runner has no thread for another link (its tasks limit); the worker keeps the links it has");
                }
                Err(e) => {
                    // It waits for the next runner.
                    waiting.push(reply);
                    tracing::warn!(module = %cfg.name, pid, error = %e, "cannot attach a link; replacing the runner");
                    return End::Died;
                }
            }
        }
        let sock_ready = if runner.peer.has_frame() {
            true
        } else {
            let sock = runner.peer.channel().stream().as_fd();
            // Without a pidfd the wake-up socket stands in (polled twice).
            let exit = runner.pidfd.map_or(wake.as_fd(), AsFd::as_fd);
            let mut fds = [
                PollFd::new(sock, PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
                PollFd::new(exit, PollFlags::POLLIN),
            ];
            match poll(&mut fds, upkeep.timeout()) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(module = %cfg.name, error = %e, "poll");
                    return End::Died;
                }
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            if runner.pidfd.is_some() && ready(&fds[2]) && !ready(&fds[0]) {
                // Dead, and nothing left to read from it.
                tracing::warn!(module = %cfg.name, pid, "runner died; its socket is still open");
                return End::Died;
            }
            if ready(&fds[1]) {
                let mut sink = [0u8; 64];
                while matches!((&mut { wake }).read(&mut sink), Ok(n) if n > 0) {}
            }
            ready(&fds[0])
        };
        if sock_ready {
            match runner.peer.recv_event() {
                Ok(Event::Message(_)) => {
                    tracing::warn!(module = %cfg.name, pid, "runner sent an unexpected message on its control socket; replacing it");
                    return End::Died;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(module = %cfg.name, pid, error = %e, "runner gone");
                    return End::Died;
                }
            }
        }
    }
}
