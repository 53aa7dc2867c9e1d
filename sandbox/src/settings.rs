//! The settings a [`Profile`](crate::Profile) is built from that the
//! measures read too: [`Rlimits`] (`limits`), [`Landlock`] (`fs_rules`) and
//! [`OpenPolicy`] (`seccomp`). They live below `profile`, which calls those
//! measures, so no measure imports the profile.

use std::path::PathBuf;

/// Resource limits. Each is set as both the soft and the hard limit (so the
/// module cannot raise it back); `None` leaves the inherited limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimits {
    /// RLIMIT_AS in bytes. Counts every mapping: the pools the runner maps,
    /// thread stacks and malloc arenas, not only the heap.
    pub address_space: Option<u64>,
    /// RLIMIT_NOFILE: one more than the highest file descriptor number.
    pub open_files: Option<u64>,
    /// RLIMIT_CPU in seconds of CPU over the *whole life* of the process:
    /// SIGXCPU at the limit, SIGKILL one second later. A runner that serves
    /// many requests is recycled when it has used this much.
    pub cpu_seconds: Option<u64>,
    /// Tasks (processes and threads). Enforced by a pids cgroup where one can
    /// be created, and by RLIMIT_NPROC when the process is not root (the
    /// kernel ignores RLIMIT_NPROC for root); see
    /// [`Measure::PidsCgroup`](crate::Measure::PidsCgroup).
    pub processes: Option<u64>,
    /// RLIMIT_CORE in bytes; 0 means no core dumps (they could leak request data).
    pub core_size: Option<u64>,
    /// RLIMIT_FSIZE in bytes: the largest file the process may make or grow
    /// (`write`, `ftruncate`, `fallocate`), a memfd included: memory that
    /// RLIMIT_AS does not count while it is not mapped. Past it the call
    /// fails with EFBIG (SIGXFSZ is ignored).
    pub file_size: Option<u64>,
}

impl Default for Rlimits {
    fn default() -> Self {
        Rlimits {
            address_space: Some(1 << 30),
            open_files: Some(256),
            cpu_seconds: Some(60),
            processes: Some(64),
            core_size: Some(0),
            file_size: Some(1 << 30),
        }
    }
}

/// Landlock filesystem rules, enforced after the module is loaded. Paths
/// not under one of these lists cannot be opened, created, removed or
/// executed at all. Each path (a directory, or a single file) must exist
/// and be reachable by the sandbox user (it is opened after the user drop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Landlock {
    /// Trees the module may read (files and directory listings).
    pub read_only: Vec<PathBuf>,
    /// Trees the module may read, write, create in and remove from.
    pub read_write: Vec<PathBuf>,
}

/// Whether the seccomp filter lets path-based file calls (openat, mkdirat,
/// unlinkat, readlinkat, ...) through. Calls on descriptors the process
/// already holds are always allowed. A denied call fails with EACCES; it
/// does not kill the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenPolicy {
    /// Never: the module works only on descriptors it was given.
    Never,
    /// Only when landlock rules are in force (fully or partly), so that the
    /// paths reachable are exactly the profile's [`Landlock`] lists. On a
    /// kernel without landlock this is [`OpenPolicy::Never`].
    #[default]
    UnderLandlock,
    /// Always: paths are limited only by the user's permissions and landlock
    /// if present.
    Always,
}

impl OpenPolicy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OpenPolicy::Never => "never",
            OpenPolicy::UnderLandlock => "landlock",
            OpenPolicy::Always => "always",
        }
    }
}
