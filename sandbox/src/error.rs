//! The crate's one error type.
//!
//! Every variant is an *internal* failure of the process being sandboxed (a
//! runner), never a client's: the caller logs it and the process must not go
//! on to load module code. Retrying in the same process is never safe (a half
//! applied profile cannot be rolled back); starting a fresh process is.

use std::io;
use std::path::PathBuf;

/// Why applying a [`Profile`](crate::Profile) failed.
///
/// A measure the kernel or machine does not offer is *not* an error: it is
/// reported as [`Outcome::Unavailable`](crate::Outcome::Unavailable). An error
/// means a measure that should work did not, so the process is in an unknown
/// state and must exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The configured user name is not in the user database.
    #[error("sandbox user {user:?} does not exist")]
    UnknownUser {
        /// The configured name.
        user: String,
    },
    /// The user database could not be read.
    #[error("looking up sandbox user {user:?}: {source}")]
    UserLookup {
        /// The configured name.
        user: String,
        /// The error from getpwnam_r.
        source: io::Error,
    },
    /// A step of dropping to the unprivileged user failed.
    #[error("dropping to user {user:?}: {step} failed: {source}")]
    UserDrop {
        /// The configured name.
        user: String,
        /// Which call failed (`setgroups`, `setresgid`, `setresuid`).
        step: &'static str,
        /// The error from that call.
        source: io::Error,
    },
    /// The user drop returned success but the credentials did not change
    /// as asked (or privileges can be regained).
    #[error("dropping to user {user:?} did not stick: {detail}")]
    UserDropNotStuck {
        /// The configured name.
        user: String,
        /// What was found instead.
        detail: String,
    },
    /// setrlimit failed.
    #[error("setting rlimit {resource} to {value}: {source}")]
    Rlimit {
        /// The limit's short name (`as`, `nofile`, ...).
        resource: &'static str,
        /// The value asked for.
        value: u64,
        /// The error from setrlimit.
        source: io::Error,
    },
    /// A prctl call failed (no_new_privs, dumpable, capabilities).
    #[error("{what}: {source}")]
    Prctl {
        /// Which setting.
        what: &'static str,
        /// The error from the call.
        source: io::Error,
    },
    /// A landlock path could not be opened to build its rule.
    #[error("landlock path {path}: {source}")]
    LandlockPath {
        /// The configured path.
        path: PathBuf,
        /// Why it could not be opened (missing, or not reachable by the sandbox user).
        source: io::Error,
    },
    /// Building or enforcing the landlock ruleset failed on a kernel that supports it.
    #[error("landlock: {0}")]
    Landlock(String),
    /// Building or installing the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// The WebAssembly engine could not be made, or a guest's code could
    /// not be compiled, cached, loaded or linked (what and why).
    #[error("wasm: {0}")]
    Wasm(String),
    /// A per-thread measure was asked for while other threads already run: it
    /// would cover only the calling thread, so it is refused rather than
    /// half-applied. Apply the profile before starting any thread.
    #[error("{measure} needs a single-threaded process, found {threads} threads")]
    Threaded {
        /// The measure that was refused.
        measure: &'static str,
        /// Threads found in /proc/self/status.
        threads: usize,
    },
    /// Removing a process's pids cgroup failed.
    #[error("removing cgroup {path}: {source}")]
    CgroupRemove {
        /// The cgroup directory.
        path: PathBuf,
        /// The error from rmdir.
        source: io::Error,
    },
}
