//! Checking a module library before it is used ([`check_library`]): a
//! throw-away runner (`iolite runner --check`) loads it under the module's
//! sandbox, never the server, within the module's `check_timeout`. The
//! outcome is kept per library's bytes (the hash and length of its
//! snapshot, `library`) and sandbox, so a reload or a second mount of an
//! unchanged library is not checked again; a new server checks anew (nothing is
//! kept on disk: a cache file would be one more thing to trust).
//!
//! Two kinds of failure: the runner's own refusal (not a module, another
//! ABI, a sandbox that cannot be applied: [`Error::Check`], which stops the
//! server at start, as a configuration error must), and a library that
//! does not finish loading in time or dies loading (a constructor that
//! sleeps, or that seccomp kills: [`Error::Refused`], which refuses that
//! module alone; the rest is served).

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use iolite_sandbox::PidFd;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::library::Snapshot;
use super::reap::remove_cgroup;
use super::spawn::{Purpose, runner_command};
use crate::error::Error;
use crate::runner::SandboxSpec;

/// Most bytes of a checking runner's stdout and stderr kept (a library's
/// constructor could print without end).
const OUTPUT_CAP: usize = 64 << 10;
/// Most lines of a failed check's stderr logged (its last ones).
const CHECK_LOG_LINES: usize = 20;
/// Longest line of a failed check's stderr logged.
const CHECK_LOG_LINE_MAX: usize = 1024;
/// Longest the output of an ended check is waited for.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// What identifies a library's bytes and the sandbox it was checked
/// under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    hash: u64,
    len: u64,
    sandbox: String,
}

/// How a check ended, as kept.
#[derive(Debug, Clone)]
enum Outcome {
    /// Passed: the module's feature bits.
    Passed(u32),
    /// The runner refused the library (its message).
    Failed(String),
    /// Refused alone (why).
    Refused(String),
}

fn cache() -> &'static Mutex<HashMap<Key, Outcome>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<Key, Outcome>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Copies the library at `path` ([`Snapshot::take`]) and checks the copy
/// (`check_library`): the copy runners may start from, and the module's
/// feature bits. At start, at each reload and for `iolite check-config`.
pub(crate) fn checked_copy(
    exe: &Path,
    prefix: &str,
    path: &Path,
    sandbox: &SandboxSpec,
    limit: Duration,
) -> Result<(u32, std::sync::Arc<Snapshot>), Error> {
    let copy = Snapshot::take(path)?;
    let features = check_library(exe, prefix, &copy, sandbox, limit)?;
    Ok((features, copy))
}

/// Checks the snapshot `library` for the module at `prefix` under
/// `sandbox`, within `limit`; returns the module's feature bits. The same
/// bytes checked before under the same sandbox are answered from the
/// cache.
fn check_library(
    exe: &Path,
    prefix: &str,
    library: &Snapshot,
    sandbox: &SandboxSpec,
    limit: Duration,
) -> Result<u32, Error> {
    let key = Key {
        hash: library.hash,
        len: library.len,
        sandbox: format!("{:?} {:?}", sandbox.to_args(), sandbox.env),
    };
    let cached = cache().lock().ok().and_then(|c| c.get(&key).cloned());
    let outcome = match cached {
        Some(outcome) => {
            tracing::info!(module = %prefix, library = %library.origin().display(), "library unchanged since its last check: not checked again");
            outcome
        }
        None => {
            let outcome = run_check(exe, prefix, library, sandbox, limit)?;
            if let Ok(mut c) = cache().lock() {
                c.insert(key, outcome.clone());
            }
            outcome
        }
    };
    match outcome {
        Outcome::Passed(features) => Ok(features),
        Outcome::Failed(message) => Err(Error::Check {
            prefix: prefix.to_owned(),
            message,
        }),
        Outcome::Refused(message) => Err(Error::Refused {
            prefix: prefix.to_owned(),
            message,
        }),
    }
}

/// Runs `exe runner --check` for `library` and waits for it at most
/// `limit`; Err only when no runner could be started (not kept).
fn run_check(
    exe: &Path,
    prefix: &str,
    snapshot: &Snapshot,
    sandbox: &SandboxSpec,
    limit: Duration,
) -> Result<Outcome, Error> {
    let spawn_err = |source| Error::Spawn {
        what: format!("{} runner --check", exe.display()),
        source,
    };
    let library = snapshot.origin();
    let mut cmd = runner_command(exe, snapshot, prefix, sandbox, Purpose::Check);
    // Its own group: what it may have started goes with it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = iolite_sandbox::spawn_closed(&mut cmd).map_err(spawn_err)?;
    let pid = child.id();
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());
    let finished = wait_at_most(&mut child, limit);
    if finished.is_none() {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.kill();
    }
    let status = child.wait().map_err(spawn_err)?;
    if let Some(cgroup) = iolite_sandbox::pids_cgroup_for(pid) {
        remove_cgroup(prefix, pid, &cgroup);
    }
    let (out, err) = (joined(stdout), joined(stderr));
    if !(finished.is_some() && status.success()) {
        // What the library printed while it loaded (its constructors):
        // the last lines, each cut, so an operator sees why.
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines[lines.len().saturating_sub(CHECK_LOG_LINES)..] {
            let mut end = line.len().min(CHECK_LOG_LINE_MAX);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            tracing::info!(module = %prefix, library = %library.display(), "check: {}", &line[..end]);
        }
    }
    if finished.is_none() {
        return Ok(Outcome::Refused(format!(
            "loading its library {} did not finish within the check_timeout of {} (a constructor that does not return?); the module is refused, the rest is served",
            library.display(),
            iolite_core::config::format_duration(limit)
        )));
    }
    if status.success() {
        tracing::debug!(module = %prefix, "library checked; {}", out.trim());
        let features = out
            .lines()
            .find_map(|l| l.strip_prefix("features: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        return Ok(Outcome::Passed(features));
    }
    let last = err.lines().rev().find(|l| !l.trim().is_empty());
    if let Some(signal) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned());
        let seccomp = if name == "SIGSYS" {
            " (its sandbox's seccomp filter refused a call)"
        } else {
            ""
        };
        return Ok(Outcome::Refused(format!(
            "loading its library {} was killed by {name}{seccomp}{}; the module is refused, the rest is served",
            library.display(),
            last.map(|l| format!(": {l}")).unwrap_or_default()
        )));
    }
    Ok(Outcome::Failed(last.map_or_else(
        || format!("runner check failed ({status})"),
        str::to_owned,
    )))
}

/// Waits for `child` to exit, at most `limit`; its exit time if it did.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    let pidfd = PidFd::open(child.id()).ok();
    loop {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return Some(Instant::now());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            None => std::thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
}

/// Reads `from` to its end on a thread, keeping its first [`OUTPUT_CAP`]
/// bytes; they arrive on the receiver at the end.
fn capture(from: Option<impl Read + Send + 'static>) -> Option<Receiver<Vec<u8>>> {
    let mut from = from?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("iolite-check-output".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            let _ = tx.send(kept);
        })
        .ok()?;
    Some(rx)
}

/// What a [`capture`] got, waiting a little for its end (a descendant
/// that escaped the runner's group may hold the pipe open: its reader is
/// then left behind, not waited for).
fn joined(reader: Option<Receiver<Vec<u8>>>) -> String {
    reader
        .and_then(|r| r.recv_timeout(OUTPUT_GRACE).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
