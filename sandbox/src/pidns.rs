//! A PID namespace of its own for each sandboxed process, root or not: it
//! sees (and can signal) no process but its own, so no module can signal
//! another module's runners, whatever seccomp allows.
//!
//! A process cannot move itself into a new PID namespace (`unshare` moves
//! only its future children, and then forbids it to make threads), so the
//! process forks twice, single-threaded, before any module code is loaded:
//!
//! - the *outer* process (the one its parent started, with the pid the
//!   supervisor knows) waits for the next one and ends as it ended;
//! - the namespace's *init* (pid 1) waits for the last one and tells the
//!   outer process how it ended (through a pipe: pid 1 cannot die by a
//!   signal it sends itself); when it ends, the kernel kills whatever else
//!   is left in the namespace;
//! - the *sandboxed* process (pid 2) goes on with the profile, loads the
//!   module and serves. Its own signals (abort, SIGXCPU) work as outside
//!   (it is not the namespace's init).
//!
//! The two waiters run no module code and hold no descriptor but stderr
//! and the pipe. The whole chain shares one process group, one pids cgroup
//! (joined before the fork) and the supervisor's SIGKILL: killing the
//! outer process kills the init (PR_SET_PDEATHSIG) and so the namespace.
//!
//! Root unshares the namespace with its own privilege; another user
//! creates a user namespace with it (an identity map of its one uid), whose
//! capabilities the sandboxed process drops at once.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::namespaces;
use crate::procfs;

/// The environment variable that tells the sandboxed process the pid its
/// supervisor knows it by (the outer process's, on the host): inside the
/// namespace `getpid()` is 2. A module may log it to match the server's
/// log (`pid=`).
pub const RUNNER_PID_VAR: &str = "IOLITE_RUNNER_PID";

/// Enters a new PID namespace as its pid 2 (see the module doc). Returns
/// in the sandboxed process only: Ok when it lives in the new namespace,
/// Err with the reason when none could be made (nothing forked then).
pub(crate) fn enter(was_root: bool) -> Result<(), String> {
    let threads = procfs::threads();
    if threads > 1 {
        return Err(format!("process has {threads} threads"));
    }
    if was_root {
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| e.desc().to_owned())?;
    } else {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID)
            .map_err(|e| e.desc().to_owned())?;
        if let Err(e) = namespaces::write_identity_maps(uid.as_raw(), gid.as_raw()) {
            fatal(&format!("no id map: {e}"));
        }
    }
    // From here on the process could no longer start threads (its
    // children's PID namespace is not its own): a failure ends it.
    let outer_pid = std::process::id();
    let (status_rx, status_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .unwrap_or_else(|e| fatal(&format!("pipe: {e}")));
    // SAFETY: the process is single-threaded (checked above), so the child
    // may run any code after fork.
    match unsafe { fork() }.unwrap_or_else(|e| fatal(&format!("fork: {e}"))) {
        ForkResult::Parent { child } => {
            drop(status_tx);
            outer(child, status_rx)
        }
        ForkResult::Child => {
            drop(status_rx);
            die_with_parent();
            // SAFETY: still single-threaded (a fork copies one thread).
            match unsafe { fork() } {
                Ok(ForkResult::Parent { child }) => init(child, status_tx),
                Ok(ForkResult::Child) => {}
                Err(e) => fatal(&format!("fork: {e}")),
            }
            drop(status_tx);
            die_with_parent();
            // SAFETY: single-threaded (the fork above copied one thread),
            // so no other thread reads the environment meanwhile.
            unsafe { std::env::set_var(RUNNER_PID_VAR, outer_pid.to_string()) };
            if !was_root {
                // The user namespace made for the PID namespace granted
                // every capability in it: none is kept.
                if let Err(e) = namespaces::drop_all_caps() {
                    fatal(&e);
                }
            }
            Ok(())
        }
    }
}

/// Ends the process with `why` on stderr (the supervisor logs it): it is
/// half in a PID namespace and must not go on.
fn fatal(why: &str) -> ! {
    eprintln!("iolite sandbox: pid namespace: {why}");
    exit(70)
}

/// The kernel kills this process when its parent ends.
fn die_with_parent() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

/// Closes every descriptor but stdin, stdout, stderr and `keep`.
fn close_all_but(keep: RawFd) {
    let Ok(k) = libc::c_uint::try_from(keep) else {
        return;
    };
    for (first, last) in [(3, k.saturating_sub(1)), (k + 1, libc::c_uint::MAX)] {
        if first <= last {
            // SAFETY: close_range takes integers; the descriptors closed
            // are owned by nothing that runs after (this process only
            // waits from here on).
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        }
    }
}

/// The outer process: waits for the init, ends as the sandboxed process
/// did (as the init tells), or as the init did.
fn outer(init: Pid, status_rx: OwnedFd) -> ! {
    close_all_but(status_rx.as_raw_fd());
    let mut raw = [0u8; 4];
    let mut got = 0;
    while got < raw.len() {
        match nix::unistd::read(status_rx.as_raw_fd(), &mut raw[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    let init_status = loop {
        match waitpid(init, None) {
            Err(nix::errno::Errno::EINTR) => {}
            other => break other,
        }
    };
    if got == raw.len() {
        end_as(i32::from_ne_bytes(raw))
    }
    match init_status {
        Ok(WaitStatus::Exited(_, code)) => exit(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => raise(signal as i32),
        _ => exit(70),
    }
}

/// The namespace's init: reaps every process of the namespace until the
/// sandboxed one ends, then tells the outer process its wait status.
fn init(sandboxed: Pid, status_tx: OwnedFd) -> ! {
    close_all_but(status_tx.as_raw_fd());
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one integer we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == sandboxed.as_raw() {
            let _ = nix::unistd::write(&status_tx, &status.to_ne_bytes());
            exit(0);
        }
        if pid < 0 && nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            exit(70);
        }
        // Another process of the namespace (a module's fork without
        // seccomp): reaped, nothing else.
    }
}

/// Ends this process as a process with wait status `status` ended.
fn end_as(status: i32) -> ! {
    if libc::WIFEXITED(status) {
        exit(libc::WEXITSTATUS(status))
    }
    if libc::WIFSIGNALED(status) {
        raise(libc::WTERMSIG(status))
    }
    exit(70)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns.
    unsafe { libc::_exit(code) }
}

/// Dies by `signal` (its default action), or exits 128 + signal if that
/// does not end the process.
fn raise(signal: i32) -> ! {
    // SAFETY: resetting a disposition to the default and unblocking every
    // signal touch no memory of ours but the set on the stack.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
    }
    exit(128 + signal)
}
