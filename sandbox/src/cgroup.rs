//! A pids cgroup per sandboxed process: `pids.max` bounds its tasks
//! (processes and threads) even when it stays root, where RLIMIT_NPROC is
//! not enforced.
//!
//! The cgroup is `iolite-sandbox-<pid>` under the cgroup the process started
//! in (the server's), in the cgroup v2 hierarchy when its pids controller can
//! be enabled there, else in a cgroup v1 `pids` hierarchy. Creating it needs
//! write access to the parent cgroup, which in practice means root. The
//! supervisor removes it after reaping the process ([`remove_pids_cgroup`]).

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use crate::error::SandboxError;

/// One line of /proc/self/cgroup: hierarchy id, controllers, path.
#[derive(Debug, PartialEq, Eq)]
struct Membership {
    hierarchy: String,
    controllers: Vec<String>,
    path: String,
}

fn parse_memberships(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let hierarchy = it.next()?.to_owned();
            let controllers = it
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let path = it.next()?.to_owned();
            Some(Membership {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// A cgroup mount from /proc/self/mountinfo.
#[derive(Debug, PartialEq, Eq)]
struct CgroupMount {
    v2: bool,
    root: String,
    mount_point: PathBuf,
    options: Vec<String>,
}

fn parse_mounts(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let fstype = *right.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(CgroupMount {
                v2: fstype == "cgroup2",
                root: (*left.get(3)?).to_owned(),
                mount_point: PathBuf::from(left.get(4)?.replace("\\040", " ")),
                options: right
                    .get(2)
                    .map(|o| o.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn join(mount: &CgroupMount, path: &str) -> PathBuf {
    let rel = if mount.root != "/" {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    } else {
        path
    };
    mount.mount_point.join(rel.trim_start_matches('/'))
}

/// Where this process's pids cgroup parent is, and which version.
fn pids_parent() -> Result<(PathBuf, bool), String> {
    let memberships = parse_memberships(
        &fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?,
    );
    let mounts = parse_mounts(
        &fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?,
    );
    if let (Some(m), Some(mount)) = (
        memberships.iter().find(|m| m.hierarchy == "0"),
        mounts.iter().find(|m| m.v2),
    ) {
        let dir = join(mount, &m.path);
        let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "pids") {
            return Ok((dir, true));
        }
    }
    if let (Some(m), Some(mount)) = (
        memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == "pids")),
        mounts
            .iter()
            .find(|m| !m.v2 && m.options.iter().any(|o| o == "pids")),
    ) {
        return Ok((join(mount, &m.path), false));
    }
    Err("no pids controller (cgroup v2 without pids, no v1 pids hierarchy)".into())
}

fn child_name(pid: u32) -> String {
    format!("iolite-sandbox-{pid}")
}

/// Creates this process's pids cgroup with `pids.max = max` and moves the
/// whole process into it. Errors are reasons for "unavailable".
pub(crate) fn enter_new(max: u64) -> Result<(PathBuf, String), String> {
    let (parent, v2) = pids_parent()?;
    let dir = parent.join(child_name(std::process::id()));
    // A concurrent sweep may remove the new, still empty directory between
    // our steps (NotFound): start again, a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_enter(&parent, &dir, v2, max) {
            Ok(()) => break,
            Err((kind, why)) => {
                let _ = fs::remove_dir(&dir);
                if kind != ErrorKind::NotFound || attempt >= 3 {
                    return Err(why);
                }
            }
        }
    }
    let version = if v2 { "v2" } else { "v1" };
    Ok((dir, format!("cgroup {version}, max={max}")))
}

fn try_enter(parent: &Path, dir: &Path, v2: bool, max: u64) -> Result<(), (ErrorKind, String)> {
    let fail = |what: String| move |e: io::Error| (e.kind(), format!("{what}: {e}"));
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(format!("creating {}", dir.display()))(e)),
    }
    if v2 {
        let has_pids = fs::read_to_string(dir.join("cgroup.controllers"))
            .map(|c| c.split_whitespace().any(|c| c == "pids"))
            .unwrap_or(false);
        if !has_pids {
            fs::write(parent.join("cgroup.subtree_control"), "+pids")
                .map_err(fail(format!("enabling pids in {}", parent.display())))?;
        }
    }
    fs::write(dir.join("pids.max"), max.to_string())
        .map_err(fail(format!("writing {}/pids.max", dir.display())))?;
    fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .map_err(fail(format!("joining {}", dir.display())))
}

/// A pids cgroup for the programs of one mount (a CGI mount: a process
/// per request, all in one cgroup, not one cgroup each): `pids.max`
/// bounds the tasks of all of them together. [`Spawn::cgroup`]
/// (crate::Spawn::cgroup) puts a program in it before it runs. Named
/// `iolite-cgi-<server pid>-<label>` under the server's pids cgroup;
/// removed when dropped (if empty). Empty ones of servers that are gone
/// are removed when another is made.
#[derive(Debug)]
pub struct ProgramCgroup {
    dir: PathBuf,
    procs: fs::File,
}

impl ProgramCgroup {
    /// Makes the cgroup with `pids.max = max`. An error is the reason
    /// there is none (no pids hierarchy, not root).
    pub fn create(label: &str, max: u64) -> Result<ProgramCgroup, String> {
        let (parent, v2) = pids_parent()?;
        sweep_gone_servers(&parent);
        let dir = parent.join(format!("iolite-cgi-{}-{label}", std::process::id()));
        let fail = |what: &str, e: io::Error| format!("{what} {}: {e}", dir.display());
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail("creating", e)),
        }
        if v2 {
            let has_pids = fs::read_to_string(dir.join("cgroup.controllers"))
                .map(|c| c.split_whitespace().any(|c| c == "pids"))
                .unwrap_or(false);
            if !has_pids {
                fs::write(parent.join("cgroup.subtree_control"), "+pids")
                    .map_err(|e| fail("enabling pids above", e))?;
            }
        }
        fs::write(dir.join("pids.max"), max.to_string()).map_err(|e| fail("pids.max of", e))?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| fail("cgroup.procs of", e))?;
        Ok(ProgramCgroup { dir, procs })
    }

    /// The cgroup's folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Its `cgroup.procs`, open for writing (close-on-exec).
    pub(crate) fn procs(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.procs.as_fd()
    }
}

impl Drop for ProgramCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Removes the empty `iolite-cgi-<pid>-*` cgroups of servers no longer
/// running.
fn sweep_gone_servers(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("iolite-cgi-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone {
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// The pids cgroup a sandboxed child with this pid got, when it was started
/// from the caller's cgroup. `None` when this machine has no pids hierarchy.
pub fn pids_cgroup_for(pid: u32) -> Option<PathBuf> {
    pids_parent().ok().map(|(p, _)| p.join(child_name(pid)))
}

/// Removes every empty `iolite-sandbox-*` cgroup under the caller's pids
/// cgroup: those left by runners of a server that died before it could
/// remove them. Call it at server start, before starting runners (a runner
/// between creating its cgroup and joining it has an empty one). A cgroup
/// with live processes is kept. Returns how many were removed.
pub fn sweep_stale_pids_cgroups() -> usize {
    let Ok((parent, _)) = pids_parent() else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(&parent) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("iolite-sandbox-")
        })
        .filter(|e| fs::remove_dir(e.path()).is_ok())
        .count()
}

/// Sends SIGKILL to every process left in a pids cgroup (the descendants
/// of a runner that forked, once the runner itself is gone); returns how
/// many were signalled. A missing cgroup holds none.
pub fn kill_pids_cgroup(path: &Path) -> usize {
    // cgroup v2 kills the whole tree in one write (Linux 5.14).
    if fs::write(path.join("cgroup.kill"), "1").is_ok() {
        return fs::read_to_string(path.join("cgroup.procs")).map_or(0, |p| p.lines().count());
    }
    let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) else {
        return 0;
    };
    procs
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|&pid| {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        })
        .count()
}

/// Removes a process's pids cgroup once the process has been reaped.
/// Returns whether there was one.
pub fn remove_pids_cgroup(path: &Path) -> Result<bool, SandboxError> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SandboxError::CgroupRemove {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_v1_and_v2() {
        let m = parse_memberships("9:name=systemd:/\n8:pids:/a/b\n0::/user.slice\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].controllers, ["pids"]);
        assert_eq!(m[1].path, "/a/b");
        assert_eq!(m[2].hierarchy, "0");
        assert!(m[2].controllers.is_empty());
    }

    #[test]
    fn mounts_keep_only_cgroups() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
22 1 8:1 / / rw - ext4 /dev/sda1 rw
";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 2);
        assert!(!m[0].v2 && m[0].options.contains(&"pids".to_owned()));
        assert!(m[1].v2);
        assert_eq!(join(&m[0], "/a"), PathBuf::from("/sys/fs/cgroup/pids/a"));
        assert_eq!(join(&m[1], "/"), PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn removing_a_missing_cgroup_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!remove_pids_cgroup(&dir.path().join("gone")).unwrap());
    }
}
