//! Processes of the machine as `/proc` shows them (the parent links, the
//! memory of one), and the named pipes a test holds a module's request
//! with.

use std::path::Path;
use std::time::{Duration, Instant};

/// Opens the write end of the named pipe `path` once its reader (a module
/// under test) has opened it, failing the test after 10 s instead of
/// blocking forever when the reader never comes.
pub fn open_fifo_writer(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
        {
            Ok(file) => {
                // Writes after this block as usual.
                let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
                let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
                let flags =
                    nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
                return file;
            }
            // ENXIO: no reader yet.
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENXIO as i32) => {
                assert!(
                    Instant::now() < deadline,
                    "nobody opened {} for reading within 10 s",
                    path.display()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    pub pid: i32,
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Every process of the machine that `/proc` shows now (those that exit
/// while it is read are left out).
pub fn processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let mut fields = after.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap();
        let ppid = fields.next().unwrap().parse().unwrap();
        let pgrp = fields.next().unwrap().parse().unwrap();
        out.push(ProcInfo {
            pid,
            state,
            ppid,
            pgrp,
        });
    }
    out
}

/// The pids of `parent`'s child processes.
pub fn children(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .map(|p| p.pid)
        .collect()
}

/// A kind of memory of process `pid` from /proc/PID/status, in KiB.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}
