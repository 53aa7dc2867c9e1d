//! One runner process slot: a thread that starts the runner, speaks the
//! module protocol with it (blocking [`Peer`], `poll(2)` on the socket, a
//! wake-up socket and the runner's pidfd), and starts it again with
//! exponential backoff when it dies. Worker threads hand it [`Job`]s through
//! a channel and wait for the answer on a oneshot.
//!
//! A runner's end: its process group is killed (what it forked goes too),
//! it is reaped, and its pids cgroup is emptied and removed.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use iolite_core::static_files::StaticFiles;
use iolite_ipc::{Agg, Event, Peer, Pool};
use iolite_sandbox::PidFd;
use iolite_sdk::wire::{ABI_VERSION, Msg, RequestFrame, ResponseFrame};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::oneshot;

/// First pause before restarting a runner that died; doubles up to
/// [`BACKOFF_MAX`], and resets after a runner lived [`HEALTHY`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY: Duration = Duration::from_secs(10);
/// Time a new runner has to load its module and say `Ready`.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest a runner may take to finish a frame it started, or to take one
/// from a full socket: past it, the runner is replaced (a slot thread never
/// blocks on a stuck runner for longer).
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a slot waits for a dead runner's killed descendants to leave its
/// pids cgroup before giving up on removing it.
const CGROUP_REMOVAL: Duration = Duration::from_secs(2);
/// How often held leases are released when nothing else wakes the thread.
const RELEASE_TICK: Duration = Duration::from_millis(10);

/// Why a request got no answer from its module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The process died (or broke the protocol) with the request in flight.
    Crashed,
    /// The request passed its deadline in the module; its process is being
    /// replaced.
    TimedOut,
}

/// A module's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The whole answer: its frame and the imported body.
    Whole(ResponseFrame, Agg),
    /// A streamed answer: its head (body empty), the body's length, and
    /// the parts as they arrive (the sender is dropped if it ends short).
    Stream(
        ResponseFrame,
        u64,
        tokio::sync::mpsc::UnboundedReceiver<Agg>,
    ),
}

/// What a caller hears back.
pub(crate) type Reply = Result<Answer, Failure>;

/// One request for a slot.
#[derive(Debug)]
pub(crate) struct Job {
    /// The request (its `id` unique in the server, its `body` empty: the
    /// slot fills it in when it exports `body`).
    pub frame: RequestFrame,
    pub body: Agg,
    pub reply: oneshot::Sender<Reply>,
    /// Past this, in flight: 504 and the process is replaced.
    pub deadline: Instant,
}

/// A request sent to the runner and not yet answered.
#[derive(Debug)]
struct Flight {
    /// None once the caller went away (cancelled), or once a stream began.
    reply: Option<oneshot::Sender<Reply>>,
    deadline: Instant,
    /// A streamed answer's parts still owed, and where they go.
    stream: Option<(tokio::sync::mpsc::UnboundedSender<Agg>, u64)>,
}

#[derive(Debug)]
pub(crate) enum Cmd {
    Job(Box<Job>),
    /// The client of request `id` went away: drop it if queued, tell the
    /// runner if in flight.
    Cancel(u64),
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
    /// Disconnected when the slot thread has ended (its runner reaped).
    finished: std::sync::Mutex<Receiver<()>>,
}

impl SlotHandle {
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
    /// A request's time limit (a stream's: between parts).
    pub timeout: Duration,
    pub output_pool: u64,
    pub pool: Pool,
    /// The document root and unified cache, for `Ctx::cached`.
    pub cache: Option<iolite_core::CacheAccess>,
    /// Start the runner only when the first request comes.
    pub lazy: bool,
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
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
    let handle = Arc::new(SlotHandle {
        tx: std::sync::Mutex::new(tx),
        wake: wake_w,
        load: AtomicUsize::new(0),
        finished: std::sync::Mutex::new(finished_rx),
    });
    std::thread::Builder::new()
        .name(format!("iolite-module-{index}"))
        .spawn(move || {
            let _finished = finished_tx;
            slot_main(&cfg, &rx, &wake_r, started);
        })?;
    Ok(handle)
}

enum End {
    /// Every handle is gone: the server is stopping.
    Shutdown,
    /// The runner died or was replaced.
    Died,
}

fn slot_main(cfg: &SlotConfig, rx: &Receiver<Cmd>, wake: &UnixStream, started: Sender<()>) {
    let mut first_start = Some(started);
    let files = cfg.cache.as_ref().map(iolite_core::CacheAccess::files);
    let mut queue = VecDeque::new();
    if cfg.lazy {
        match rx.recv() {
            Ok(Cmd::Job(job)) => queue.push_back(*job),
            Ok(Cmd::Cancel(_)) => {}
            Ok(Cmd::Stop) | Err(_) => return,
        }
    }
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        match run_process(cfg, files.as_ref(), rx, wake, &mut queue, &mut first_start) {
            End::Shutdown => return,
            End::Died => {}
        }
        if started.elapsed() >= HEALTHY {
            backoff = BACKOFF_MIN;
        }
        tracing::info!(module = %cfg.name, pause_ms = backoff.as_millis() as u64, "restarting runner");
        if pause(rx, &mut queue, backoff).is_err() {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // Requests whose callers gave up while we slept need no process.
        queue.retain(|j: &Job| !j.reply.is_closed());
    }
}

/// Starts one runner and serves it until it dies; fails its in-flight
/// requests; leaves queued ones for the next runner.
fn run_process(
    cfg: &SlotConfig,
    files: Option<&StaticFiles>,
    rx: &Receiver<Cmd>,
    wake: &UnixStream,
    queue: &mut VecDeque<Job>,
    started: &mut Option<Sender<()>>,
) -> End {
    let mut child = match spawn_runner(cfg) {
        Ok(c) => c,
        Err(e) => {
            started.take();
            tracing::error!(module = %cfg.name, error = %e, "cannot start runner");
            return drain_commands(rx, queue).map_or(End::Shutdown, |()| End::Died);
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
    let mut inflight: HashMap<u64, Flight> = HashMap::new();
    let shaken = handshake(cfg, child.1.take());
    if let Some(tx) = started.take() {
        let _ = tx.send(());
    }
    let end = match shaken {
        Ok((mut peer, sandbox)) => {
            tracing::info!(module = %cfg.name, pid, %sandbox, "runner ready");
            let mut link = Link {
                peer: &mut peer,
                inflight: &mut inflight,
                files,
                pid,
                pidfd: pidfd.as_ref(),
            };
            serve(cfg, rx, wake, queue, &mut link)
        }
        Err(e) => {
            tracing::error!(module = %cfg.name, pid, error = %e, "runner did not start");
            drain_commands(rx, queue).map_or(End::Shutdown, |()| End::Died)
        }
    };
    let now = Instant::now();
    for (_, flight) in inflight.drain() {
        if let Some(reply) = flight.reply {
            let failure = if flight.deadline <= now {
                Failure::TimedOut
            } else {
                Failure::Crashed
            };
            let _ = reply.send(Err(failure));
        }
    }
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

/// Waits `pause` before a restart, queueing what comes meanwhile; Err when
/// the server stops.
fn pause(rx: &Receiver<Cmd>, queue: &mut VecDeque<Job>, pause: Duration) -> Result<(), ()> {
    let until = Instant::now() + pause;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Cmd::Job(job)) => queue.push_back(*job),
            Ok(Cmd::Cancel(id)) => queue.retain(|j| j.frame.id != id),
            Ok(Cmd::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(()),
        }
    }
}

/// Takes every pending command into the queue; Err when the server stops.
fn drain_commands(rx: &Receiver<Cmd>, queue: &mut VecDeque<Job>) -> Result<(), ()> {
    loop {
        match rx.try_recv() {
            Ok(Cmd::Job(job)) => queue.push_back(*job),
            Ok(Cmd::Cancel(id)) => queue.retain(|j| j.frame.id != id),
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
/// the peer and the report.
fn handshake(cfg: &SlotConfig, sock: Option<UnixStream>) -> Result<(Peer<Msg>, String), String> {
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
    })
    .map_err(|e| e.to_string())?;
    match peer.recv() {
        Ok(Msg::Ready { abi, .. }) if abi == ABI_VERSION => {}
        Ok(Msg::Ready { abi, .. }) => {
            return Err(format!(
                "runner speaks module ABI {abi}, the server {ABI_VERSION}"
            ));
        }
        Ok(_) => return Err("the runner's first message is not Ready".into()),
        Err(e) => return Err(format!("no Ready from the runner: {e}")),
    }
    // From now on the socket is read only when poll says a frame started.
    peer.channel()
        .stream()
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok((peer, sandbox))
}

/// One live runner, as the protocol loop sees it.
struct Link<'a> {
    peer: &'a mut Peer<Msg>,
    inflight: &'a mut HashMap<u64, Flight>,
    files: Option<&'a StaticFiles>,
    pid: u32,
    /// Readable once the runner exited (even if a descendant keeps its
    /// socket open).
    pidfd: Option<&'a PidFd>,
}

fn serve(
    cfg: &SlotConfig,
    rx: &Receiver<Cmd>,
    wake: &UnixStream,
    queue: &mut VecDeque<Job>,
    link: &mut Link<'_>,
) -> End {
    let Link {
        peer,
        inflight,
        files,
        pid,
        pidfd,
    } = link;
    let (peer, inflight, files, pid, pidfd) = (&mut **peer, &mut **inflight, *files, *pid, *pidfd);
    loop {
        if drain_commands_inflight(rx, queue, inflight, peer, cfg, pid).is_err() {
            return End::Shutdown;
        }
        let now = Instant::now();
        if let Some((id, _)) = inflight.iter().find(|(_, f)| f.deadline <= now) {
            // Nothing more goes to a process being replaced; queued
            // requests wait for the next one.
            tracing::warn!(module = %cfg.name, pid, request = id, "request timed out; replacing the runner");
            return End::Died;
        }
        // Dispatch while credits last.
        while inflight.len() < cfg.in_flight as usize {
            let Some(mut job) = queue.pop_front() else {
                break;
            };
            if job.reply.is_closed() {
                continue;
            }
            match peer.export(&job.body) {
                Ok(desc) => job.frame.body = desc,
                Err(e) => {
                    tracing::error!(module = %cfg.name, error = %e, "cannot export a request body");
                    let _ = job.reply.send(Err(Failure::Crashed));
                    continue;
                }
            }
            let id = job.frame.id;
            let frame = std::mem::replace(&mut job.frame, empty_frame());
            if let Err(e) = peer.send(&Msg::Request(frame)) {
                tracing::warn!(module = %cfg.name, pid, error = %e, "runner socket");
                let _ = job.reply.send(Err(Failure::Crashed));
                return End::Died;
            }
            inflight.insert(
                id,
                Flight {
                    reply: Some(job.reply),
                    deadline: job.deadline,
                    stream: None,
                },
            );
        }
        let buffered = peer.channel().buffered() > 0;
        let (sock_ready, wake_ready) = if buffered {
            (true, false)
        } else {
            let next_deadline = inflight.values().map(|f| f.deadline).min();
            let mut wait = next_deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if peer.leases_held() > 0 {
                wait = Some(wait.map_or(RELEASE_TICK, |w| w.min(RELEASE_TICK)));
            }
            // Round up so a deadline is not polled for in a busy loop.
            let timeout = wait.map_or(PollTimeout::NONE, |w| {
                PollTimeout::try_from(w + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            });
            let sock = peer.channel().stream().as_fd();
            // Without a pidfd the wake-up socket stands in (polled twice).
            let exit = pidfd.map_or(wake.as_fd(), AsFd::as_fd);
            let mut fds = [
                PollFd::new(sock, PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
                PollFd::new(exit, PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(module = %cfg.name, error = %e, "poll");
                    return End::Died;
                }
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            if pidfd.is_some() && ready(&fds[2]) && !ready(&fds[0]) {
                // Dead, and nothing left to read from it.
                tracing::warn!(module = %cfg.name, pid, "runner died; its socket is still open");
                return End::Died;
            }
            (ready(&fds[0]), ready(&fds[1]))
        };
        if wake_ready {
            let mut sink = [0u8; 64];
            while matches!((&mut { wake }).read(&mut sink), Ok(n) if n > 0) {}
        }
        if sock_ready {
            match peer.recv_event() {
                Ok(Event::Message(
                    msg @ (Msg::Response(_)
                    | Msg::StreamHead { .. }
                    | Msg::StreamPart { .. }
                    | Msg::StreamAbort { .. }),
                )) => {
                    if let Err(why) = answer(peer, inflight, msg, cfg.timeout) {
                        tracing::warn!(module = %cfg.name, pid, "{why}; replacing the runner");
                        return End::Died;
                    }
                }
                Ok(Event::Message(Msg::CacheLookup { path })) => {
                    let body = files.and_then(|f| match f.cached_agg(path.as_bytes()) {
                        Ok(Some(agg)) => peer.export(&agg).ok(),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::debug!(module = %cfg.name, path, error = %e, "cache lookup");
                            None
                        }
                    });
                    if let Err(e) = peer.send(&Msg::Cached { body }) {
                        tracing::warn!(module = %cfg.name, pid, error = %e, "runner gone");
                        return End::Died;
                    }
                }
                Ok(Event::Message(_)) => {
                    tracing::warn!(module = %cfg.name, pid, "runner sent an unexpected message; replacing it");
                    return End::Died;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(module = %cfg.name, pid, error = %e, "runner gone");
                    return End::Died;
                }
            }
        }
        if let Err(e) = peer.flush_releases() {
            tracing::warn!(module = %cfg.name, pid, error = %e, "runner gone");
            return End::Died;
        }
    }
}

/// Handles a runner's answer (whole, or a stream's head, part or abort);
/// Err: the runner broke the protocol and is replaced.
fn answer(
    peer: &mut Peer<Msg>,
    inflight: &mut HashMap<u64, Flight>,
    msg: Msg,
    timeout: Duration,
) -> Result<(), String> {
    let id = match &msg {
        Msg::Response(f) => f.id,
        Msg::StreamHead { id, .. } | Msg::StreamPart { id, .. } | Msg::StreamAbort { id } => *id,
        _ => return Err("not an answer".into()),
    };
    let Some(flight) = inflight.get_mut(&id) else {
        return Err(format!("answer to request {id}, which is not in flight"));
    };
    match msg {
        Msg::Response(frame) if flight.stream.is_none() => {
            // A cancelled request's body is imported all the same, and
            // dropped at once: that releases its leases.
            let body = peer
                .import(&frame.body)
                .map_err(|e| format!("bad response body descriptor: {e}"))?;
            if let Some(reply) = inflight.remove(&id).and_then(|f| f.reply) {
                let _ = reply.send(Ok(Answer::Whole(frame, body)));
            }
        }
        Msg::StreamHead {
            status,
            headers,
            len,
            ..
        } if flight.stream.is_none() => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let head = ResponseFrame {
                id,
                status,
                headers,
                body: iolite_ipc::AggDesc::default(),
            };
            if let Some(reply) = flight.reply.take() {
                let _ = reply.send(Ok(Answer::Stream(head, len, rx)));
            }
            flight.deadline = Instant::now() + timeout;
            flight.stream = Some((tx, len));
            if len == 0 {
                inflight.remove(&id);
            }
        }
        Msg::StreamPart { body, .. } if flight.stream.is_some() => {
            let part = peer
                .import(&body)
                .map_err(|e| format!("bad stream part descriptor: {e}"))?;
            let Some((tx, left)) = flight.stream.as_mut() else {
                return Err("no stream".into());
            };
            if part.len() as u64 > *left {
                return Err(format!("request {id}: stream part overruns its length"));
            }
            *left -= part.len() as u64;
            let done = *left == 0;
            // The client may be gone: the part is dropped (and released).
            let _ = tx.send(part);
            flight.deadline = Instant::now() + timeout;
            if done {
                inflight.remove(&id);
            }
        }
        Msg::StreamAbort { .. } if flight.stream.is_some() => {
            // Dropping the sender closes the client's connection.
            inflight.remove(&id);
        }
        _ => return Err(format!("request {id}: answer out of order")),
    }
    Ok(())
}

/// Like [`drain_commands`], but a cancelled request in flight is told to
/// the runner (its deadline still holds: a runner stuck on it is replaced).
/// Err: the server is stopping.
fn drain_commands_inflight(
    rx: &Receiver<Cmd>,
    queue: &mut VecDeque<Job>,
    inflight: &mut HashMap<u64, Flight>,
    peer: &mut Peer<Msg>,
    cfg: &SlotConfig,
    pid: u32,
) -> Result<(), ()> {
    loop {
        match rx.try_recv() {
            Ok(Cmd::Job(job)) => queue.push_back(*job),
            Ok(Cmd::Cancel(id)) => {
                queue.retain(|j| j.frame.id != id);
                if let Some(flight) = inflight.get_mut(&id)
                    && flight.reply.take().is_some()
                {
                    tracing::info!(module = %cfg.name, pid, request = id, "client gone; request cancelled");
                    // A send failure shows up as a closed socket next.
                    let _ = peer.send(&Msg::Cancel { id });
                }
            }
            Ok(Cmd::Stop) => return Err(()),
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Disconnected) => return Err(()),
        }
    }
}

fn empty_frame() -> RequestFrame {
    RequestFrame {
        id: 0,
        method: String::new(),
        path: String::new(),
        query: String::new(),
        headers: Vec::new(),
        client: None,
        body: iolite_ipc::AggDesc::default(),
    }
}
