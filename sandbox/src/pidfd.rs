//! [`PidFd`]: a descriptor for a child process that becomes readable when
//! the process exits, so a supervisor can wait for a runner's death in the
//! same `poll(2)` as its socket (a socket can stay open after the runner
//! died, when a descendant inherited it).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

/// A pidfd (`pidfd_open(2)`, Linux 5.3). Holding one does not keep the
/// process from being reaped; it never refers to another process, even
/// after the pid number is reused.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// A pidfd for process `pid`, which must be a live (or not yet reaped)
    /// child of the caller for the answer to be about the right process.
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        // SAFETY: pidfd_open takes two integers and returns a new descriptor
        // (close-on-exec, per the man page) or -1; it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
        // SAFETY: the kernel just returned this descriptor to us; nothing
        // else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Whether the process has exited (a zombie counts: it is readable
    /// before it is reaped).
    pub fn has_exited(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.0.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::PidFd;

    #[test]
    fn readable_once_the_child_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = PidFd::open(child.id()).unwrap();
        assert!(!fd.has_exited());
        child.kill().unwrap();
        // Readable from the moment it is a zombie: poll blocks until then.
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap(),
            1
        );
        assert!(fd.has_exited());
        child.wait().unwrap();
        assert!(fd.has_exited(), "still readable after the reap");
        assert!(PidFd::open(u32::MAX).is_err());
    }
}
