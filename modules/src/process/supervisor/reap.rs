//! A runner's end: SIGKILL to its process group (what it forked goes
//! too), the reap, its pids cgroup emptied and removed; and the drains of
//! runners ended on purpose, each waited for by a thread of its own.

use std::os::fd::AsFd;
use std::process::Child;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iolite_ipc::Peer;
use iolite_sandbox::PidFd;
use iolite_sdk::wire::Msg;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{SlotConfig, SlotHandle};

/// Longest a slot waits for a dead runner's killed descendants to leave its
/// pids cgroup before giving up on removing it.
const CGROUP_REMOVAL: Duration = Duration::from_secs(2);

/// Longest a dead runner's outer process is given to end by itself before
/// SIGKILL (see `sandbox`'s pidns: it passes on how the runner ended).
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// A runner being ended on purpose, and what it is ended for.
pub(super) struct Old {
    pub(super) child: Child,
    /// Its control socket: closing it tells the runner to exit once its
    /// links have closed.
    pub(super) peer: Peer<Msg>,
    pub(super) pidfd: Option<PidFd>,
    pub(super) generation: u64,
    pub(super) why: String,
}

/// How a runner's end is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
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
pub(super) fn reap(name: &str, child: &mut Child, how: How) {
    let pid = child.id();
    // The group is the runner's pid (`process_group(0)`): the number cannot
    // be reused while the unreaped runner holds it.
    let group = nix::unistd::Pid::from_raw(pid as i32);
    if how == How::Died {
        // A runner in a PID namespace ends a moment after the process
        // that died in it (its waiters pass the status on): that status,
        // SIGSYS say, is what the log must name, not our SIGKILL.
        wait_exit(child, PidFd::open(pid).ok().as_ref(), EXIT_GRACE);
    }
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
pub(super) struct Drains {
    threads: Vec<(u32, std::thread::JoinHandle<()>)>,
}

impl Drains {
    /// The server stops: every runner still draining is killed (its
    /// process group), and its thread waited for (it reaps and logs it).
    pub(super) fn kill_all(&mut self) {
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
pub(super) fn start_drain(
    cfg: &SlotConfig,
    handle: &Weak<SlotHandle>,
    old: Old,
    drains: &mut Drains,
) {
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
