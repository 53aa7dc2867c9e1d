//! The slot thread: starts a runner ([`start`]), serves its control
//! socket (`poll(2)` on it, on a wake-up socket and on the runner's
//! pidfd, so a runner's end is noticed even while something it forked
//! keeps the socket open), attaches data links, and starts the next
//! runner, after a backoff if it died.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use iolite_ipc::{Event, Peer, RemotePool};
use iolite_sandbox::PidFd;
use iolite_sdk::wire::Msg;
use nix::poll::{PollFd, PollFlags, poll};
use tokio::sync::oneshot;

use super::reap::{Drains, How, Old, reap, start_drain};
use super::spawn::{handshake, spawn_runner};
use super::upkeep::Upkeep;
use super::{Attached, Cmd, End, SlotConfig, SlotHandle};

/// The pause before restarting a runner that died starts at the module's
/// `restart_backoff`, doubles up to `restart_backoff_max`, and starts over
/// after a runner lived this long.
const HEALTHY: Duration = Duration::from_secs(10);
/// Requests wait through a restart's pause up to this long (the first
/// steps after a single crash); past it they get 503 at once.
const WAIT_THROUGH: Duration = Duration::from_millis(250);

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
        paused: AtomicBool::new(false),
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
    let mut backoff = cfg.backoff_min;
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
            refused: false,
        };
        let end = run_process(cfg, &mut runner, &mut waiting, &mut first_start, &mut old);
        let refused = runner.refused;
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
            backoff = cfg.backoff_min;
        }
        tracing::info!(module = %cfg.name, pause_ms = backoff.as_millis() as u64, refused, "restarting runner");
        // A short pause is waited through: the requests waiting for the
        // next runner get it. During a longer one (crashes in a row) they,
        // and those that come meanwhile, fail at once (503, Retry-After)
        // rather than wait through a pause that may outlast their timeout;
        // the module's other slots take what they can.
        let fail_fast = refused || backoff > WAIT_THROUGH;
        if fail_fast {
            waiting.clear();
        }
        let h = handle.upgrade().filter(|_| fail_fast);
        if let Some(h) = &h {
            h.paused.store(true, Ordering::Release);
        }
        let paused = pause(rx, &mut waiting, backoff, fail_fast);
        if let Some(h) = &h {
            h.paused.store(false, Ordering::Release);
        }
        if paused.is_err() {
            drains.kill_all();
            return;
        }
        // Workers that gave up while we slept need no link.
        waiting.retain(|w| !w.is_closed());
        backoff = (backoff * 2).min(cfg.backoff_max);
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
    // Held while the runner lives: it opens the copy by the server's
    // descriptor while it starts.
    let library = cfg.library.current();
    let spawned = match &library {
        Some(snapshot) => spawn_runner(cfg, snapshot),
        None => Err(std::io::Error::other("no library has passed its check")),
    };
    let mut child = match spawned {
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
    // Err(None): refused for what its handshake brought (logged here).
    let shaken = match handshake(cfg, child.1.take()) {
        Ok(h) => hold_to_its_pool(cfg, h).map_err(|why| {
            tracing::warn!(module = %cfg.name, pid, "{why}; replacing the runner");
            None
        }),
        Err(e) => Err(Some(e)),
    };
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
            if let Some(e) = e {
                tracing::error!(module = %cfg.name, pid, error = %e, "runner did not start");
            }
            let end = drain_commands(rx, waiting).map_or(End::Shutdown, |_| End::Died);
            // A runner refused for what it brought, or dead before its
            // handshake (its library failed, or a limit of its sandbox
            // stopped it), is the module's doing, and its next one will
            // likely do the same: the requests waiting for it fail now
            // (503) rather than wait out their timeout, and so do those
            // that come before the next one starts (see `pause`).
            waiting.clear();
            ctx.refused = true;
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

/// A runner's handshake brought its output pool and nothing else: one
/// pool, no larger than the server asked for. From then on its control
/// socket takes neither a pool nor a descriptor (one closes it: the runner
/// is replaced). Err: why the runner is refused.
fn hold_to_its_pool(
    cfg: &SlotConfig,
    (mut peer, output, sandbox): (Peer<Msg>, RemotePool, String),
) -> Result<(Peer<Msg>, RemotePool, String), String> {
    let shared = peer.pools_received();
    if shared != 1 {
        return Err(format!(
            "the runner shared {shared} pools in its handshake (only its output pool may be)"
        ));
    }
    let asked = cfg.output_pool.next_multiple_of(4096);
    if output.capacity() as u64 > asked {
        return Err(format!(
            "the runner's output pool holds {} bytes; the server asked for {asked}",
            output.capacity()
        ));
    }
    peer.set_pool_limit(shared);
    peer.channel().set_fd_limit(0);
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
    /// Set when the runner was refused for what its handshake brought, or
    /// died before it.
    refused: bool,
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
                Err(e @ (iolite_ipc::Error::Closed | iolite_ipc::Error::Io(_))) => {
                    tracing::warn!(module = %cfg.name, pid, error = %e, "runner gone");
                    return End::Died;
                }
                Err(e) => {
                    tracing::warn!(module = %cfg.name, pid, error = %e, "runner broke the protocol on its control socket; replacing it");
                    return End::Died;
                }
            }
        }
    }
}

/// Waits `pause` before a restart, keeping the link requests that come
/// meanwhile for the next runner, or failing them (their requests get
/// 503) when `fail_fast`; Err when the server stops.
fn pause(
    rx: &Receiver<Cmd>,
    waiting: &mut Vec<oneshot::Sender<Attached>>,
    pause: Duration,
    fail_fast: bool,
) -> Result<(), ()> {
    let until = Instant::now() + pause;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Cmd::Connect(reply)) if fail_fast => drop(reply),
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
