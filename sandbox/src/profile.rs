//! The profile (what to apply) and the two phases that apply it in the
//! current process; the settings it shares with the measures are in
//! `settings`.

use crate::error::SandboxError;
use crate::report::{Measure, Outcome, Report};
use crate::settings::{Landlock, OpenPolicy, Rlimits};
use crate::{cgroup, fs_rules, limits, namespaces, pidns, procfs, seccomp, user};

/// What to apply to a runner process. `Default` is the safe profile: every
/// measure on.
///
/// The profile is applied in the current process, all of it before the
/// module's code is loaded (a library's constructors run inside `dlopen`):
///
/// 1. [`Profile::apply_before_load`]: rlimits, the scheduling class, the
///    pids cgroup, namespaces, the user drop and no_new_privs;
/// 2. [`Pending::confine`]: landlock, then the seccomp allow-list (last,
///    since it forbids the calls the other steps make). What the dynamic
///    loader needs stays allowed: opening paths landlock allows (the
///    module's own library), mapping a file with PROT_EXEC;
/// 3. the runner dlopens the module: its constructors run fully sandboxed;
/// 4. [`Confined::after_load`]: a filter stacked on the allow-list forbids
///    PROT_EXEC and further filters, and path calls when the open policy
///    denies them. It hardens the loaded module (no new code); the sandbox
///    proper was in force before.
///
/// [`Profile::apply`] runs it all back to back for a process that loads
/// nothing. Call the phases from the main thread **before any other thread
/// starts**: the user namespace and landlock act on the calling thread only
/// (a multi-threaded process gets namespaces "unavailable" and a landlock
/// error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// When the process runs as root, drop to this user (name or numeric
    /// uid): supplementary groups cleared, gid and uid set (real, effective,
    /// saved), and checked. `None` keeps root (then only a cgroup can bound
    /// the process count). Ignored when the process is not root.
    pub user: Option<String>,
    /// Set PR_SET_NO_NEW_PRIVS (execve can never gain privileges). Landlock
    /// and seccomp set it themselves, as the kernel requires it of an
    /// unprivileged caller, so turning this off only matters when both are off.
    pub no_new_privs: bool,
    /// Resource limits.
    pub rlimits: Rlimits,
    /// Install the seccomp allow-list ([`crate::seccomp_allow_list`]):
    /// anything else kills the process with SIGSYS.
    pub seccomp: bool,
    /// Run under SCHED_BATCH at nice 10: a spinning module gets about a
    /// tenth of what a normal thread of the server gets on the same CPU.
    pub low_priority: bool,
    /// What the seccomp filter does with path-based file calls.
    pub open: OpenPolicy,
    /// Landlock rules; `None` applies none.
    pub landlock: Option<Landlock>,
    /// Unshare the user, network, IPC and UTS namespaces where the kernel
    /// lets us. A new network namespace has no interface but a down
    /// loopback: no network at all (descriptors inherited before, like the
    /// runner's unix socket, keep working).
    pub namespaces: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            user: Some("nobody".to_owned()),
            no_new_privs: true,
            rlimits: Rlimits::default(),
            seccomp: true,
            low_priority: true,
            open: OpenPolicy::default(),
            landlock: Some(Landlock::default()),
            namespaces: true,
        }
    }
}

/// A profile whose first phase has been applied; [`Pending::confine`] is
/// next, before the module is loaded.
#[derive(Debug)]
#[must_use = "the profile is only half applied until confine is called"]
pub struct Pending {
    profile: Profile,
    report: Report,
}

/// A profile fully applied but for the post-load hardening: load the
/// module, then call [`Confined::after_load`].
#[derive(Debug)]
#[must_use = "call after_load once the module is loaded"]
pub struct Confined {
    profile: Profile,
    report: Report,
    landlock_on: bool,
}

impl Pending {
    /// What the first phase did.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Phase 2, before the module is loaded: landlock, then the seccomp
    /// allow-list (with what the loader needs). From here on, every line
    /// of the module's library runs sandboxed.
    pub fn confine(self) -> Result<Confined, SandboxError> {
        let Pending {
            profile,
            mut report,
        } = self;
        let landlock_outcome = match &profile.landlock {
            None => Outcome::Skipped("setting".into()),
            Some(rules) => fs_rules::apply(rules)?,
        };
        let landlock_on = landlock_outcome.is_applied();
        report.push(Measure::Landlock, landlock_outcome);
        let seccomp_outcome = if profile.seccomp {
            seccomp::apply_for_load()?
        } else {
            Outcome::Skipped("setting".into())
        };
        report.push(Measure::Seccomp, seccomp_outcome);
        Ok(Confined {
            profile,
            report,
            landlock_on,
        })
    }

    /// [`Pending::confine`] then [`Confined::after_load`], for a process
    /// that loads nothing in between.
    pub fn apply_after_load(self) -> Result<Report, SandboxError> {
        self.confine()?.after_load()
    }
}

impl Confined {
    /// What has been applied so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Once the module is loaded: no PROT_EXEC and no new seccomp filter
    /// any more, and path calls refused (EACCES) unless the open policy
    /// allows them.
    pub fn after_load(self) -> Result<Report, SandboxError> {
        let Confined {
            profile,
            mut report,
            landlock_on,
        } = self;
        if profile.seccomp && report.is_applied(Measure::Seccomp) {
            let allow_open = match profile.open {
                OpenPolicy::Never => false,
                OpenPolicy::UnderLandlock => landlock_on,
                OpenPolicy::Always => true,
            };
            let detail = seccomp::apply_after_load(allow_open, profile.open)?;
            report.edit(Measure::Seccomp, |o| {
                if let Outcome::Applied(d) = o {
                    d.push_str(", ");
                    d.push_str(&detail);
                }
            });
        }
        Ok(report)
    }
}

impl Profile {
    /// Both phases at once, for a process that loads no code in between.
    pub fn apply(&self) -> Result<Report, SandboxError> {
        self.apply_before_load()?.apply_after_load()
    }

    /// Phase 1: rlimits, pids cgroup, namespaces, user drop, no_new_privs.
    ///
    /// The order: limits first (they bound everything after); the cgroup
    /// and the network/IPC/UTS namespaces while still root (both need it);
    /// the user drop; then the user namespace, created by the *final* user
    /// so RLIMIT_NPROC counts only this process's tasks; no_new_privs last.
    pub fn apply_before_load(&self) -> Result<Pending, SandboxError> {
        let mut report = Report::default();
        let was_root = nix::unistd::geteuid().is_root();
        let target = match (&self.user, was_root) {
            (Some(name), true) => Some(user::resolve(name)?),
            _ => None,
        };

        report.push(Measure::Rlimits, limits::apply_static(&self.rlimits)?);

        let mut cgroup_applied = false;
        match self.rlimits.processes {
            None => report.push(Measure::PidsCgroup, Outcome::Skipped("setting".into())),
            Some(max) => match cgroup::enter_new(max) {
                Ok((path, detail)) => {
                    cgroup_applied = true;
                    report.set_cgroup(path);
                    report.push(Measure::PidsCgroup, Outcome::Applied(detail));
                }
                Err(why) => report.push(Measure::PidsCgroup, Outcome::Unavailable(why)),
            },
        }

        let mut ns = namespaces::Progress::default();
        if self.namespaces {
            // After the cgroup (the waiters stay in it, under the pid the
            // supervisor knows), before anything else: only the process
            // that returns here goes on.
            ns.note_pid(pidns::enter(was_root));
        }
        // After the PID namespace's forks: its waiters keep the normal
        // priority, so a dead runner's status is passed on at once.
        report.push(
            Measure::Scheduling,
            if self.low_priority {
                limits::low_priority()?
            } else {
                Outcome::Skipped("setting".into())
            },
        );
        if self.namespaces && was_root {
            ns.unshare_as_root();
        }

        let user_outcome = match (&self.user, &target) {
            (_, Some(t)) => user::drop_to(t)?,
            (None, None) if was_root => Outcome::Skipped("root(kept by setting)".into()),
            _ => Outcome::Skipped(format!("{}(not root)", nix::unistd::geteuid())),
        };
        report.push(Measure::User, user_outcome);

        if self.namespaces {
            ns.unshare_user(procfs::threads());
            report.push(Measure::Namespaces, ns.outcome()?);
        } else {
            report.push(Measure::Namespaces, Outcome::Skipped("setting".into()));
        }

        // RLIMIT_NPROC only binds a non-root user (the kernel exempts uid 0
        // in every namespace: the identity map keeps it uid 0). In a fresh
        // user namespace it counts the tasks of this process alone; without
        // one it counts every task of the uid (all runners sharing `nobody`),
        // so it is set then only when no cgroup does the job precisely.
        if let Some(max) = self.rlimits.processes {
            let root = nix::unistd::geteuid().is_root();
            if !root && (ns.user_created() || !cgroup_applied) {
                limits::set_nproc(max)?;
                let scope = if ns.user_created() { "userns" } else { "uid" };
                limits::append_detail(&mut report, &format!("nproc={max}/{scope}"));
            } else if root && !cgroup_applied {
                limits::append_detail(&mut report, "nproc=unenforced(root)");
            }
        }

        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs().map_err(|e| SandboxError::Prctl {
                what: "PR_SET_NO_NEW_PRIVS",
                source: e.into(),
            })?;
            report.push(Measure::NoNewPrivs, Outcome::Applied(String::new()));
        } else {
            report.push(Measure::NoNewPrivs, Outcome::Skipped("setting".into()));
        }

        Ok(Pending {
            profile: self.clone(),
            report,
        })
    }

    /// A profile with every measure off, to build a custom one from.
    pub fn none() -> Profile {
        Profile {
            user: None,
            no_new_privs: false,
            rlimits: Rlimits {
                address_space: None,
                open_files: None,
                cpu_seconds: None,
                processes: None,
                core_size: None,
                file_size: None,
            },
            seccomp: false,
            low_priority: false,
            open: OpenPolicy::Always,
            landlock: None,
            namespaces: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Profile::none()` touches nothing, so it can run in the test process
    /// itself: every measure must say it was skipped.
    #[test]
    fn profile_none_applies_nothing() {
        let report = Profile::none().apply().expect("apply none");
        let measures: Vec<Measure> = report.entries().map(|(m, _)| m).collect();
        assert_eq!(
            measures,
            [
                Measure::Rlimits,
                Measure::PidsCgroup,
                Measure::Scheduling,
                Measure::User,
                Measure::Namespaces,
                Measure::NoNewPrivs,
                Measure::Landlock,
                Measure::Seccomp,
            ]
        );
        for (measure, outcome) in report.entries() {
            assert!(
                matches!(outcome, Outcome::Skipped(_)),
                "{measure:?}: {outcome:?}"
            );
        }
        assert!(report.cgroup().is_none());
        assert!(!nix::sys::prctl::get_no_new_privs().unwrap());
    }

    #[test]
    fn default_profile_is_the_safe_one() {
        let p = Profile::default();
        assert_eq!(p.user.as_deref(), Some("nobody"));
        assert!(p.no_new_privs && p.seccomp && p.namespaces && p.low_priority);
        assert_eq!(p.open, OpenPolicy::UnderLandlock);
        assert_eq!(p.landlock, Some(Landlock::default()));
        assert_eq!(
            p.rlimits,
            Rlimits {
                address_space: Some(1 << 30),
                open_files: Some(256),
                cpu_seconds: Some(60),
                processes: Some(64),
                core_size: Some(0),
                file_size: Some(1 << 30),
            }
        );
    }
}
