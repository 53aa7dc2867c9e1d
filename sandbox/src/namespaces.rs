//! New user, network, IPC and UTS namespaces, best effort.
//!
//! Root unshares net/ipc/uts with its own privilege, before the user drop
//! (that works even where unprivileged user namespaces are disabled). The
//! user namespace is created afterwards by the final user, with an identity
//! map for that one uid/gid, and the capabilities it grants inside are
//! dropped at once. A non-root process unshares net/ipc/uts from inside it.
//!
//! The PID namespace is `pidns` (it takes two forks). Not done: a mount
//! namespace (landlock already fences the filesystem, without needing
//! privilege).

use std::fs;

use nix::sched::{CloneFlags, unshare};
use nix::unistd::{getegid, geteuid};

use crate::error::SandboxError;
use crate::procfs;
use crate::report::Outcome;

const OTHERS: [(CloneFlags, &str); 3] = [
    (CloneFlags::CLONE_NEWNET, "net"),
    (CloneFlags::CLONE_NEWIPC, "ipc"),
    (CloneFlags::CLONE_NEWUTS, "uts"),
];

/// Which namespaces are done and which could not be made, and why.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    done: Vec<&'static str>,
    failed: Vec<(&'static str, String)>,
    user_created: bool,
    /// Why dropping the capabilities granted by the user namespace failed.
    caps_error: Option<String>,
    /// How entering the PID namespace went (reported last).
    pid: Option<Result<(), String>>,
}

impl Progress {
    /// Whether the process now lives in a user namespace of its own.
    pub(crate) fn user_created(&self) -> bool {
        self.user_created
    }

    fn unshare_others(&mut self) {
        for (flag, name) in OTHERS {
            if self.done.contains(&name) {
                continue;
            }
            match unshare(flag) {
                Ok(()) => {
                    self.failed.retain(|(n, _)| *n != name);
                    self.done.push(name);
                }
                Err(e) => {
                    self.failed.retain(|(n, _)| *n != name);
                    self.failed.push((name, e.desc().to_owned()));
                }
            }
        }
    }

    /// Records how entering the PID namespace went (`pidns::enter`).
    pub(crate) fn note_pid(&mut self, entered: Result<(), String>) {
        self.pid = Some(entered);
    }

    /// net, ipc, uts with root's own CAP_SYS_ADMIN.
    pub(crate) fn unshare_as_root(&mut self) {
        self.unshare_others();
    }

    /// The user namespace (then net/ipc/uts inside it if still missing).
    pub(crate) fn unshare_user(&mut self, threads: usize) {
        if threads > 1 {
            let why = format!("process has {threads} threads");
            self.failed.push(("user", why.clone()));
            for (_, name) in OTHERS {
                if !self.done.contains(&name) && !self.failed.iter().any(|(n, _)| *n == name) {
                    self.failed.push((name, why.clone()));
                }
            }
            return;
        }
        let (uid, gid) = (geteuid(), getegid());
        if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
            self.failed.push(("user", e.desc().to_owned()));
            return;
        }
        self.user_created = true;
        match write_identity_maps(uid.as_raw(), gid.as_raw()) {
            Ok(()) => self.done.push("user"),
            Err(e) => self.failed.push(("user", format!("no id map: {e}"))),
        }
        self.unshare_others();
        self.caps_error = drop_all_caps().err();
    }

    pub(crate) fn outcome(&self) -> Result<Outcome, SandboxError> {
        if let Some(e) = &self.caps_error {
            return Err(SandboxError::Prctl {
                what: "dropping capabilities in the user namespace",
                source: std::io::Error::other(e.clone()),
            });
        }
        let mut done = self.done.clone();
        let mut failed = self.failed.clone();
        match &self.pid {
            Some(Ok(())) => done.push("pid"),
            Some(Err(why)) => failed.push(("pid", why.clone())),
            None => {}
        }
        let failed = failed
            .iter()
            .map(|(n, why)| format!("{n}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        Ok(match (done.is_empty(), failed.is_empty()) {
            (true, _) => Outcome::Unavailable(failed),
            (false, true) => Outcome::Applied(done.join(",")),
            (false, false) => Outcome::Applied(format!("{}; unavailable {failed}", done.join(","))),
        })
    }
}

/// Maps this one uid/gid to itself. /proc/self files of a non-dumpable
/// process (any process that changed uid) are root's, so the process is made
/// dumpable for the writes and put back.
pub(crate) fn write_identity_maps(uid: u32, gid: u32) -> std::io::Result<()> {
    let was_dumpable = nix::sys::prctl::get_dumpable()?;
    if !was_dumpable {
        nix::sys::prctl::set_dumpable(true)?;
    }
    let result = (|| {
        fs::write("/proc/self/setgroups", "deny")?;
        fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
        fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
    })();
    if !was_dumpable {
        nix::sys::prctl::set_dumpable(false)?;
    }
    result
}

/// Empties the permitted, effective and inheritable sets (the new user
/// namespace granted all of them inside it) and checks the result.
pub(crate) fn drop_all_caps() -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and, for version 3, exactly two data
    // structs; both are live, correctly laid out (#[repr(C)] copies of the
    // kernel's __user_cap_header_struct / __user_cap_data_struct) and outlive
    // the call. pid 0 means the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    match procfs::caps() {
        Some((0, 0)) => Ok(()),
        other => Err(format!("capabilities still set after capset: {other:?}")),
    }
}
