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

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
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

    /// Whether runner `generation` may still take requests.
    pub fn is_retired(&self, generation: u64) -> bool {
        self.retired.load(Ordering::Acquire) >= generation
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
        finished: std::sync::Mutex::new(finished_rx),
    });
    std::thread::Builder::new()
        .name(format!("iolite-module-{index}"))
        .spawn(move || {
            let _finished = finished_tx;
            slot_main(&cfg, &rx, &wake_r, &retired, started);
        })?;
    Ok(handle)
}

enum End {
    /// Every handle is gone: the server is stopping.
    Shutdown,
    /// The runner died or was replaced.
    Died,
}

fn slot_main(
    cfg: &SlotConfig,
    rx: &Receiver<Cmd>,
    wake: &UnixStream,
    retired: &AtomicU64,
    started: Sender<()>,
) {
    let mut first_start = Some(started);
    let mut waiting = Vec::new();
    if cfg.lazy {
        match rx.recv() {
            Ok(Cmd::Connect(reply)) => waiting.push(reply),
            Ok(Cmd::Replace) => {}
            Ok(Cmd::Stop) | Err(_) => return,
        }
    }
    let mut backoff = BACKOFF_MIN;
    let mut generation = 0;
    loop {
        generation += 1;
        let started = Instant::now();
        let mut runner = RunnerCtx {
            generation,
            retired,
            rx,
            wake,
        };
        match run_process(cfg, &mut runner, &mut waiting, &mut first_start) {
            End::Shutdown => return,
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
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // Workers that gave up while we slept need no link.
        waiting.retain(|w| !w.is_closed());
    }
}

/// Starts one runner and serves its control socket until it dies or is
/// replaced; links asked for meanwhile wait in `waiting` for the next one.
fn run_process(
    cfg: &SlotConfig,
    ctx: &mut RunnerCtx<'_>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
    started: &mut Option<Sender<()>>,
) -> End {
    let (generation, rx) = (ctx.generation, ctx.rx);
    let mut child = match spawn_runner(cfg) {
        Ok(c) => c,
        Err(e) => {
            started.take();
            tracing::error!(module = %cfg.name, error = %e, "cannot start runner");
            return drain_commands(rx, waiting).map_or(End::Shutdown, |()| End::Died);
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
    let end = match shaken {
        Ok((mut peer, output, sandbox)) => {
            tracing::info!(module = %cfg.name, pid, %sandbox, "runner ready");
            if let Some(m) = &cfg.metrics {
                m.runners.fetch_add(1, Ordering::Relaxed);
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
            end
        }
        Err(e) => {
            tracing::error!(module = %cfg.name, pid, error = %e, "runner did not start");
            drain_commands(rx, waiting).map_or(End::Shutdown, |()| End::Died)
        }
    };
    reap(cfg, &mut child.0, matches!(end, End::Shutdown));
    end
}

/// Ends a runner and what it started: SIGKILL to its process group (a
/// no-op on a runner that already died: its own exit status stays), the
/// reap, then its pids cgroup emptied and removed. A runner ended because
/// the server stops is logged at INFO; any other end at WARN.
fn reap(cfg: &SlotConfig, child: &mut Child, shutdown: bool) {
    let pid = child.id();
    // The group is the runner's pid (`process_group(0)`): the number cannot
    // be reused while the unreaped runner holds it.
    let group = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    match child.wait() {
        Ok(status) if shutdown => {
            tracing::info!(module = %cfg.name, pid, %status, "runner exited (server stopping)");
        }
        Ok(status) => tracing::warn!(module = %cfg.name, pid, %status, "runner exited"),
        Err(e) => tracing::warn!(module = %cfg.name, pid, error = %e, "runner wait"),
    }
    if let Some(cgroup) = iolite_sandbox::pids_cgroup_for(pid) {
        remove_cgroup(&cfg.name, pid, &cgroup);
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
            Ok(Cmd::Replace) => {}
            Ok(Cmd::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(()),
        }
    }
}

/// Takes every pending command: link requests join `waiting` (a replace
/// only wakes the thread: it reads `retired`). Err when the server stops.
fn drain_commands(
    rx: &Receiver<Cmd>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
) -> Result<(), ()> {
    loop {
        match rx.try_recv() {
            Ok(Cmd::Connect(reply)) => waiting.push(reply),
            Ok(Cmd::Replace) => {}
            Ok(Cmd::Stop) => return Err(()),
            Err(TryRecvError::Empty) => return Ok(()),
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
    /// Makes a data link and hands the runner its end.
    fn attach(&mut self) -> Result<Attached, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        self.peer
            .send_with_fds(&Msg::Attach, &[theirs.as_fd()])
            .map_err(|e| e.to_string())?;
        drop(theirs);
        // The runner says it serves the link: a runner that is dying (its
        // control socket not yet seen closed) gets no link to lose requests on.
        match self.peer.recv() {
            Ok(Msg::Attach) => {}
            Ok(_) => return Err("the runner answered Attach with another message".into()),
            Err(e) => return Err(e.to_string()),
        }
        Ok(Attached {
            sock: ours,
            generation: self.generation,
            output: self.output.clone(),
        })
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
    loop {
        if drain_commands(rx, waiting).is_err() {
            return End::Shutdown;
        }
        if ctx.retired.load(Ordering::Acquire) >= ctx.generation {
            tracing::warn!(module = %cfg.name, pid, "replacing the runner");
            return End::Died;
        }
        while let Some(reply) = waiting.pop() {
            if reply.is_closed() {
                continue;
            }
            match runner.attach() {
                Ok(link) => {
                    let _ = reply.send(link);
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
            match poll(&mut fds, PollTimeout::NONE) {
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
