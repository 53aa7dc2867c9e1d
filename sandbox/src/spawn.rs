//! [`Spawn`]: starting a program (a CGI program, a process per request)
//! without copying the server's page tables, with its limits applied
//! before its first instruction.
//!
//! # Why a `CLONE_VM | CLONE_VFORK` child of our own
//!
//! `std::process::Command` uses `posix_spawn` only while nothing needs to
//! run between fork and exec; a user, a `pre_exec` hook, rlimits or a new
//! session make it fall back to `fork`, which copies the page tables of
//! the whole server (a cache of gigabytes: milliseconds per spawn, and
//! every page the server writes afterwards faults once). glibc's
//! `posix_spawn` itself is a `clone(CLONE_VM | CLONE_VFORK)` child that
//! runs a few system calls on a stack of its own and then execs; this
//! module does the same with the steps posix_spawn cannot express:
//!
//! 1. signal dispositions back to the default (the server ignores
//!    `SIGPIPE`, and its handlers must never run in the child), then the
//!    server's signal mask (all signals are blocked around the clone);
//! 2. `setsid` (the program leads a process group of its own: killed as
//!    a group on timeout and when the client leaves), then the mount's
//!    pids cgroup joined (`write("0")` to its `cgroup.procs`, opened by
//!    the parent; about 20 µs);
//! 3. rlimits (`prlimit64`), set soft and hard;
//! 4. stdin, stdout, stderr from the given descriptors (`dup2`), every
//!    other descriptor close-on-exec (`close_range`);
//! 5. `setgroups`, `setgid`, `setuid` when a user is given;
//! 6. `PR_SET_NO_NEW_PRIVS`, then a landlock ruleset the parent prepared
//!    once ([`crate::PreparedLandlock`], when the mount has one) put in
//!    force (`landlock_restrict_self`), then the seccomp deny-list
//!    ([`crate::ProgramFilter`], compiled once per mount);
//! 7. `chdir` to the program's folder, then `execve`.
//!
//! The child shares the parent's memory until `execve`, so it runs only
//! raw system calls (`syscall(2)`: no allocation, no lock, and no glibc
//! wrapper that thinks it is the parent — glibc's `setuid` would signal
//! the server's threads), on data the parent prepared, and reports a
//! failed step through a slot the parent reads once `clone` returns (the
//! parent thread is suspended until the child execs or exits). The other
//! alternative, `posix_spawn` of a small exec helper that applies the
//! limits and execs again, costs a second `execve` (a dynamic loader run)
//! per request. Measured (`cargo bench -p iolite-sandbox --bench spawn`:
//! spawn and wait for `/bin/true` from a process holding 1 GiB of touched
//! memory; 2 shared cores, 2026-12-08): glibc `posix_spawn` 1.15 ms,
//! this child with setsid, two rlimits, NO_NEW_PRIVS and chdir 1.12 ms,
//! `posix_spawn` of a helper (`setsid /bin/true`) 2.19 ms, `fork` (std's
//! `Command` with a `pre_exec` hook) 67 ms. So: this child, at the cost
//! of the floor, with every step applied.
//!
//! The child's pid comes with a pidfd (`CLONE_PIDFD`): [`Spawned`]
//! exposes it for an asynchronous wait, kills the group, and reaps. A
//! [`Spawned`] dropped before it was reaped kills its group and is reaped
//! here or, if it has not died yet, by a reaper thread: no zombie is left.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// Bytes of the child's stack: it runs a handful of system calls.
const CHILD_STACK: usize = 32 << 10;

mod child;
mod spawned;

pub use spawned::Spawned;

use child::{ChildArgs, child_main, step_name};

/// A program to start (see the module doc).
#[derive(Debug)]
pub struct Spawn {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
    dir: Option<CString>,
    rlimits: Vec<(libc::c_int, u64)>,
    ids: Option<(u32, u32)>,
    no_new_privs: bool,
    /// `cgroup.procs` of the cgroup the program joins.
    cgroup: Option<RawFd>,
    /// A landlock ruleset the program is confined by.
    landlock: Option<RawFd>,
    /// The seccomp filter it runs under.
    seccomp: Option<crate::ProgramFilter>,
}

impl Spawn {
    /// A program by its path (absolute, or relative to the current
    /// folder: no `PATH` search); its `argv[0]` is the path.
    pub fn new(path: &Path) -> io::Result<Spawn> {
        let path = cstring(path.as_os_str().as_bytes())?;
        Ok(Spawn {
            args: vec![path.clone()],
            path,
            env: Vec::new(),
            dir: None,
            rlimits: Vec::new(),
            ids: None,
            no_new_privs: true,
            cgroup: None,
            landlock: None,
            seccomp: None,
        })
    }

    /// One more argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> io::Result<&mut Spawn> {
        self.args.push(cstring(arg.as_ref().as_bytes())?);
        Ok(self)
    }

    /// One environment variable (the program gets only these).
    pub fn env(&mut self, name: &[u8], value: &[u8]) -> io::Result<&mut Spawn> {
        if name.is_empty() || name.contains(&b'=') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an environment variable's name is empty or holds '='",
            ));
        }
        let mut pair = Vec::with_capacity(name.len() + 1 + value.len());
        pair.extend_from_slice(name);
        pair.push(b'=');
        pair.extend_from_slice(value);
        self.env.push(cstring(&pair)?);
        Ok(self)
    }

    /// The folder the program starts in.
    pub fn dir(&mut self, dir: &Path) -> io::Result<&mut Spawn> {
        self.dir = Some(cstring(dir.as_os_str().as_bytes())?);
        Ok(self)
    }

    /// A resource limit (`libc::RLIMIT_*`), soft and hard.
    pub fn rlimit(&mut self, resource: libc::c_int, value: u64) -> &mut Spawn {
        self.rlimits.push((resource, value));
        self
    }

    /// The user and group to run as (the server must be root), with no
    /// supplementary groups.
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Spawn {
        self.ids = Some((uid, gid));
        self
    }

    /// The program joins `cgroup` before its first instruction (its
    /// `pids.max` counts it and what it starts). The cgroup must outlive
    /// the calls to [`Spawn::spawn`].
    pub fn cgroup(&mut self, cgroup: &crate::ProgramCgroup) -> &mut Spawn {
        self.cgroup = Some(cgroup.procs().as_raw_fd());
        self
    }

    /// Confines the program to `rules` (keep them alive until
    /// [`Spawn::spawn`] returns): put in force after NO_NEW_PRIVS, which
    /// landlock requires of a process without CAP_SYS_ADMIN.
    pub fn landlock(&mut self, rules: &crate::PreparedLandlock) -> &mut Spawn {
        self.landlock = Some(rules.raw());
        self
    }

    /// The program runs under `filter` (put in force last before `chdir`
    /// and `execve`, after NO_NEW_PRIVS, which it needs unless the server
    /// has CAP_SYS_ADMIN).
    pub fn seccomp(&mut self, filter: &crate::ProgramFilter) -> &mut Spawn {
        self.seccomp = Some(filter.clone());
        self
    }

    /// Whether `PR_SET_NO_NEW_PRIVS` is set (the default: yes; a setuid
    /// program then runs without its privileges).
    pub fn no_new_privs(&mut self, on: bool) -> &mut Spawn {
        self.no_new_privs = on;
        self
    }

    /// Starts the program with `stdin`, `stdout` and `stderr` as its
    /// descriptors 0, 1 and 2 (they stay open here; close the child's
    /// ends after this returns). An error names the step that failed
    /// (`execve: No such file or directory`).
    pub fn spawn(
        &self,
        stdin: BorrowedFd<'_>,
        stdout: BorrowedFd<'_>,
        stderr: BorrowedFd<'_>,
    ) -> io::Result<Spawned> {
        // A descriptor below 3 would be overwritten by another's dup2
        // (and one equal to its target would stay close-on-exec): copies
        // from 3 up, closed when this returns.
        let mut lifted: Vec<OwnedFd> = Vec::new();
        let mut fds = [0; 3];
        for (slot, fd) in fds.iter_mut().zip([stdin, stdout, stderr]) {
            *slot = if fd.as_raw_fd() < 3 {
                let copy = fd.try_clone_to_owned()?;
                let high = lift(copy)?;
                let raw = high.as_raw_fd();
                lifted.push(high);
                raw
            } else {
                fd.as_raw_fd()
            };
        }
        let argv: Vec<*const libc::c_char> = self
            .args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .env
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let rlimits: Vec<(libc::c_int, libc::rlimit64)> = self
            .rlimits
            .iter()
            .map(|&(r, v)| {
                (
                    r,
                    libc::rlimit64 {
                        rlim_cur: v,
                        rlim_max: v,
                    },
                )
            })
            .collect();
        let filters: Vec<libc::sock_fprog> = self
            .seccomp
            .iter()
            .map(|f| f.program())
            .map(|p| libc::sock_fprog {
                len: p.len() as libc::c_ushort,
                filter: p.as_ptr().cast_mut(),
            })
            .collect();
        let mut args = ChildArgs {
            path: self.path.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            dir: self.dir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
            fds,
            rlimits: rlimits.as_ptr(),
            n_rlimits: rlimits.len(),
            set_ids: self.ids.is_some(),
            uid: self.ids.map_or(0, |i| i.0),
            gid: self.ids.map_or(0, |i| i.1),
            no_new_privs: self.no_new_privs,
            cgroup: self.cgroup.unwrap_or(-1),
            landlock: self.landlock.unwrap_or(-1),
            filters: filters.as_ptr(),
            n_filters: filters.len(),
            reset: handled_signals(),
            mask: 0,
            failed_step: 0,
            errno: 0,
        };
        let mut stack = vec![0u8; CHILD_STACK];
        // The top of the stack, 16-byte aligned (it grows down).
        let top = {
            let end = stack.as_mut_ptr_range().end as usize;
            (end & !15) as *mut libc::c_void
        };
        let mut pidfd: libc::c_int = -1;
        // SAFETY: sigset_t values we own, filled by sigfillset; the old
        // mask is written by pthread_sigmask into `old`.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigfillset writes the set we own; pthread_sigmask
        // changes this thread's mask only, and reads and writes sets we own.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        args.mask = mask_bits(&old);
        // SAFETY: the child runs `child_main` on `stack` (ours, alive and
        // unused until clone returns: CLONE_VFORK suspends this thread
        // until the child execs or exits) and reads only `args` and what
        // it points to (`argv`, `envp`, `rlimits`, `filters` and the
        // programs they point into, the CStrings of `self`), all alive in this frame, writing only
        // `args.failed_step` and `args.errno`. With every signal blocked,
        // no handler of ours runs on the child's stack before it resets
        // them. `pidfd` receives the child's pidfd (CLONE_PIDFD).
        let pid = unsafe {
            libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                (&raw mut args).cast(),
                &raw mut pidfd,
            )
        };
        let clone_error = io::Error::last_os_error();
        // SAFETY: restores this thread's mask from the set saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(lifted);
        if pid == -1 {
            return Err(clone_error);
        }
        // SAFETY: the kernel wrote a new descriptor that nothing else owns
        // (CLONE_PIDFD sets it close-on-exec).
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let mut child = Spawned {
            pid,
            pidfd,
            reaped: false,
        };
        // SAFETY: the child wrote these (or not) before it exec'd or
        // exited, which happened before clone returned (CLONE_VFORK).
        let (step, errno) = unsafe {
            (
                std::ptr::read_volatile(&raw const args.failed_step),
                std::ptr::read_volatile(&raw const args.errno),
            )
        };
        if step != 0 {
            child.wait()?;
            let e = io::Error::from_raw_os_error(errno);
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", step_name(step)),
            ));
        }
        Ok(child)
    }
}

/// `fd` moved to a number from 3 up (close-on-exec).
fn lift(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl duplicates a descriptor we own into a new one.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a program's path, argument or environment holds a NUL byte",
        )
    })
}

/// The first 64 signals of `set` as bits (bit `n - 1` for signal `n`).
fn mask_bits(set: &libc::sigset_t) -> u64 {
    let mut bits = 0u64;
    // Not 32 and 33, glibc's own (they mean nothing to the program).
    for sig in (1..=64).filter(|&s| s != 32 && s != 33) {
        // SAFETY: sigismember reads a set we own.
        if unsafe { libc::sigismember(set, sig) } == 1 {
            bits |= 1 << (sig - 1);
        }
    }
    bits
}

/// The signals whose disposition is not the default (handled or
/// ignored): the child resets them. Read once, at the first spawn (62
/// `sigaction` calls): a server installs its handlers at start-up. A
/// handler installed later is reset by `execve` itself; only the window
/// between the child's last step and its exec, with the server's signal
/// mask back, could run it, for a signal sent to a pid nobody knows yet.
fn handled_signals() -> u64 {
    static HANDLED: OnceLock<u64> = OnceLock::new();
    *HANDLED.get_or_init(read_dispositions)
}

fn read_dispositions() -> u64 {
    // 32 and 33 are glibc's own: its sigaction refuses them, so they are
    // reset whatever they are.
    let mut bits = (1u64 << 31) | (1u64 << 32);
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == 32 || sig == 33 {
            continue;
        }
        // SAFETY: a zeroed sigaction is a valid value to be overwritten.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction with no new action only reads the disposition
        // into `old`, which we own.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0
            && old.sa_sigaction != libc::SIG_DFL
        {
            bits |= 1 << (sig - 1);
        }
    }
    bits
}
