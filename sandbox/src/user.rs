//! Dropping root to an unprivileged user, and checking that it stuck.

use nix::unistd::{
    Gid, Uid, User, getgroups, getresgid, getresuid, setgroups, setresgid, setresuid,
};

use crate::error::SandboxError;
use crate::procfs;
use crate::report::Outcome;

/// The user to become, resolved before anything restricts access to the
/// user database.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// A user name, or a numeric uid (its primary group if it has an entry,
/// else the gid of the same number).
pub(crate) fn resolve(name: &str) -> Result<Target, SandboxError> {
    let lookup_err = |e: nix::Error| SandboxError::UserLookup {
        user: name.to_owned(),
        source: e.into(),
    };
    if let Ok(n) = name.parse::<u32>() {
        let uid = Uid::from_raw(n);
        let gid = User::from_uid(uid)
            .map_err(lookup_err)?
            .map_or(Gid::from_raw(n), |u| u.gid);
        return Ok(Target {
            name: name.to_owned(),
            uid,
            gid,
        });
    }
    let user =
        User::from_name(name)
            .map_err(lookup_err)?
            .ok_or_else(|| SandboxError::UnknownUser {
                user: name.to_owned(),
            })?;
    Ok(Target {
        name: name.to_owned(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// setgroups([]), setresgid, setresuid (glibc applies them to every thread),
/// then checks the ids, the capability sets, and that root cannot be regained.
pub(crate) fn drop_to(t: &Target) -> Result<Outcome, SandboxError> {
    let fail = |step: &'static str| {
        move |e: nix::Error| SandboxError::UserDrop {
            user: t.name.clone(),
            step,
            source: e.into(),
        }
    };
    setgroups(&[]).map_err(fail("setgroups"))?;
    setresgid(t.gid, t.gid, t.gid).map_err(fail("setresgid"))?;
    setresuid(t.uid, t.uid, t.uid).map_err(fail("setresuid"))?;

    let not_stuck = |detail: String| SandboxError::UserDropNotStuck {
        user: t.name.clone(),
        detail,
    };
    let ru = getresuid().map_err(fail("getresuid"))?;
    let rg = getresgid().map_err(fail("getresgid"))?;
    if [ru.real, ru.effective, ru.saved] != [t.uid; 3] {
        return Err(not_stuck(format!("uids {ru:?}")));
    }
    if [rg.real, rg.effective, rg.saved] != [t.gid; 3] {
        return Err(not_stuck(format!("gids {rg:?}")));
    }
    let groups = getgroups().map_err(fail("getgroups"))?;
    if !groups.is_empty() {
        return Err(not_stuck(format!("supplementary groups {groups:?}")));
    }
    if !t.uid.is_root() {
        match procfs::caps() {
            Some((0, 0)) => {}
            Some((prm, eff)) => {
                return Err(not_stuck(format!(
                    "capabilities left: permitted {prm:#x}, effective {eff:#x}"
                )));
            }
            None => return Err(not_stuck("cannot read /proc/self/status".into())),
        }
        if setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
            return Err(not_stuck("setresuid(0) succeeded again".into()));
        }
    }
    // The kernel makes a process that changed uid non-dumpable only when
    // fs.suid_dumpable is 0; say it explicitly, so that other processes of
    // the same uid can neither ptrace it nor read its memory through /proc.
    nix::sys::prctl::set_dumpable(false).map_err(|e| SandboxError::Prctl {
        what: "PR_SET_DUMPABLE",
        source: e.into(),
    })?;
    Ok(Outcome::Applied(format!("{}({}:{})", t.name, t.uid, t.gid)))
}
