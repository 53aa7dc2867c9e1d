//! What applying a profile did: one [`Outcome`] per [`Measure`], printable
//! as one log line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One protection a [`Profile`](crate::Profile) can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Measure {
    /// Resource limits (address space, open files, CPU, core size, file
    /// size, processes).
    Rlimits,
    /// The CPU scheduling class (SCHED_BATCH, nice 10).
    Scheduling,
    /// A pids cgroup holding the process, with `pids.max`.
    PidsCgroup,
    /// Dropping root to the configured user.
    User,
    /// New namespaces (user, net, ipc, uts).
    Namespaces,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// Landlock filesystem rules.
    Landlock,
    /// The seccomp allow-list.
    Seccomp,
}

impl Measure {
    /// The measure's name in the log line.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Rlimits => "rlimits",
            Measure::Scheduling => "sched",
            Measure::PidsCgroup => "pids",
            Measure::User => "user",
            Measure::Namespaces => "namespaces",
            Measure::NoNewPrivs => "no_new_privs",
            Measure::Landlock => "landlock",
            Measure::Seccomp => "seccomp",
        }
    }
}

/// What became of one measure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// In force; the text says what exactly (limits, syscall count, ...).
    Applied(String),
    /// Not attempted: the setting is off, or does not apply (e.g. the user
    /// drop when the process is not root). The text says which.
    Skipped(String),
    /// Asked for, but this kernel or machine does not offer it; the text
    /// says why. The process is *less* isolated than the profile asked.
    Unavailable(String),
}

impl Outcome {
    /// Whether the measure is in force.
    pub fn is_applied(&self) -> bool {
        matches!(self, Outcome::Applied(_))
    }

    /// Whether the measure was asked for but not available here.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Outcome::Unavailable(_))
    }

    /// The detail text, whatever the outcome.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Applied(s) | Outcome::Skipped(s) | Outcome::Unavailable(s) => s,
        }
    }
}

/// The result of applying a profile: each measure in the order it was
/// applied, with its outcome.
///
/// `Display` renders one line for the server's log, for example
/// `rlimits(as=1G,nofile=256,cpu=60s,core=0,nproc=64/userns) pids(cgroup v1, max=64) user=nobody(65534:65534) namespaces(net,ipc,uts,user) no_new_privs landlock(abi 7, ro=0, rw=0) seccomp(allow-list, 93 syscalls, open=landlock)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    entries: Vec<(Measure, Outcome)>,
    cgroup: Option<PathBuf>,
}

impl Report {
    pub(crate) fn push(&mut self, measure: Measure, outcome: Outcome) {
        self.entries.push((measure, outcome));
    }

    pub(crate) fn edit(&mut self, measure: Measure, f: impl FnOnce(&mut Outcome)) {
        if let Some((_, o)) = self.entries.iter_mut().find(|(m, _)| *m == measure) {
            f(o);
        }
    }

    pub(crate) fn set_cgroup(&mut self, path: PathBuf) {
        self.cgroup = Some(path);
    }

    /// The outcome of one measure, if the phases that apply it have run.
    pub fn outcome(&self, measure: Measure) -> Option<&Outcome> {
        self.entries
            .iter()
            .find(|(m, _)| *m == measure)
            .map(|(_, o)| o)
    }

    /// Whether `measure` is in force.
    pub fn is_applied(&self, measure: Measure) -> bool {
        self.outcome(measure).is_some_and(Outcome::is_applied)
    }

    /// Every measure with its outcome, in the order they were applied.
    pub fn entries(&self) -> impl Iterator<Item = (Measure, &Outcome)> {
        self.entries.iter().map(|(m, o)| (*m, o))
    }

    /// The pids cgroup the process was moved into, if any. The supervisor
    /// removes it after reaping the process
    /// ([`remove_pids_cgroup`](crate::remove_pids_cgroup)).
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (measure, outcome)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let name = measure.name();
            match (measure, outcome) {
                (Measure::User, Outcome::Applied(d) | Outcome::Skipped(d)) => {
                    write!(f, "{name}={d}")?
                }
                (Measure::NoNewPrivs, Outcome::Applied(_)) => f.write_str(name)?,
                (_, Outcome::Applied(d)) => write!(f, "{name}({d})")?,
                (_, Outcome::Skipped(d)) => write!(f, "{name}(off: {d})")?,
                (_, Outcome::Unavailable(d)) => write!(f, "{name}(unavailable: {d})")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_in_application_order() {
        let mut r = Report::default();
        r.push(
            Measure::Rlimits,
            Outcome::Applied("as=1G,nofile=256".into()),
        );
        r.push(
            Measure::User,
            Outcome::Applied("nobody(65534:65534)".into()),
        );
        r.push(Measure::NoNewPrivs, Outcome::Applied(String::new()));
        r.push(Measure::Landlock, Outcome::Unavailable("kernel".into()));
        r.push(Measure::Namespaces, Outcome::Skipped("setting".into()));
        assert_eq!(
            r.to_string(),
            "rlimits(as=1G,nofile=256) user=nobody(65534:65534) no_new_privs \
             landlock(unavailable: kernel) namespaces(off: setting)"
        );
        assert!(r.is_applied(Measure::User));
        assert!(!r.is_applied(Measure::Landlock));
        assert!(r.outcome(Measure::Landlock).unwrap().is_unavailable());
        assert!(r.outcome(Measure::Seccomp).is_none());
    }
}
