//! [`Spawned`]: a started program, its pidfd, its group, and its reaping.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// A started program: the leader of its own process group (see the
/// module doc).
#[derive(Debug)]
pub struct Spawned {
    pub(super) pid: libc::pid_t,
    pub(super) pidfd: OwnedFd,
    pub(super) reaped: bool,
}

impl Spawned {
    /// The program's pid (and its process group's id).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// A descriptor that becomes readable when the program exits (poll it,
    /// or register it with a reactor; do not read it).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.pidfd.as_fd()
    }

    /// Completes when the program has exited (it is not reaped: drop or
    /// [`Spawned::try_wait`] does that). Call within a tokio runtime;
    /// completes at once outside one.
    pub async fn exited(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: the pidfd is ours and stays open, the same descriptor,
        // for as long as `self` is borrowed, which outlives the AsyncFd
        // (dropped, so deregistered, before this returns).
        let Ok(watch) = (unsafe { tokio::io::unix::AsyncFd::register(self.pidfd.as_raw_fd()) })
        else {
            return;
        };
        let _ = watch.readable().await;
    }

    /// Whether the program has exited (a zombie counts), without waiting.
    pub fn has_exited(&self) -> bool {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            self.pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Sends `SIGKILL` to the program's process group (the program and
    /// every process it started that stayed in the group). Does nothing
    /// once the program was reaped (its id may name another group then).
    pub fn kill_group(&self) {
        if !self.reaped {
            // SAFETY: kill takes integers. The group id is the leader's
            // pid, still ours: the leader is not reaped yet.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }

    /// The exit status if the program has exited (reaping it), else None.
    pub fn try_wait(&mut self) -> io::Result<Option<i32>> {
        self.wait_flags(libc::WNOHANG)
    }

    /// Waits for the program to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<i32> {
        loop {
            if let Some(status) = self.wait_flags(0)? {
                return Ok(status);
            }
        }
    }

    fn wait_flags(&mut self, flags: libc::c_int) -> io::Result<Option<i32>> {
        if self.reaped {
            return Err(io::Error::new(io::ErrorKind::NotFound, "already reaped"));
        }
        let mut status = 0;
        // SAFETY: waitpid writes one int we own; the pid is our unreaped
        // child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, flags) };
        match r {
            0 => Ok(None),
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                Err(e)
            }
            _ => {
                self.reaped = true;
                Ok(Some(status))
            }
        }
    }
}

impl Drop for Spawned {
    /// Kills the group and reaps the program (see the module doc).
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.kill_group();
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        // Not dead yet: a reaper thread waits for it.
        let pid = self.pid;
        self.reaped = true;
        if let Ok(tx) = reaper().lock() {
            let _ = tx.send(pid);
        }
    }
}

/// The reaper thread's queue (started on first use).
fn reaper() -> &'static Mutex<mpsc::Sender<libc::pid_t>> {
    static REAPER: OnceLock<Mutex<mpsc::Sender<libc::pid_t>>> = OnceLock::new();
    REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<libc::pid_t>();
        std::thread::Builder::new()
            .name("iolite-reaper".into())
            .spawn(move || {
                for pid in rx {
                    let mut status = 0;
                    // SAFETY: waitpid on our killed, unreaped child; writes
                    // one int we own.
                    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
                        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                    {
                    }
                }
            })
            .ok();
        Mutex::new(tx)
    })
}
