//! iolite-sandbox owns isolating a process from the rest of the machine:
//! rlimits, a pids cgroup, namespaces, the drop from root, NO_NEW_PRIVS,
//! landlock and a seccomp allow-list, applied *in the current process* (a
//! module runner, right around loading the module's code) or to a program
//! it starts ([`Spawn`]: a CGI program, rlimits, a session, the user,
//! NO_NEW_PRIVS and its folder applied between clone and exec, without
//! copying the server's page tables). It must not open sockets or route
//! requests, and it knows nothing of modules or the wire protocol: callers
//! hand it a [`Profile`] and get a [`Report`], or a [`Spawn`] and get a
//! [`Spawned`].
//!
//! # Using it from a runner
//!
//! ```no_run
//! # fn load_module() {}
//! let profile = iolite_sandbox::Profile::default();
//! let pending = profile.apply_before_load()?; // still single-threaded
//! let confined = pending.confine()?; // landlock, then seccomp
//! load_module(); // dlopen: its constructors run inside the sandbox
//! let report = confined.after_load()?; // no PROT_EXEC from here on
//! eprintln!("sandbox: {report}");
//! # Ok::<(), iolite_sandbox::SandboxError>(())
//! ```
//!
//! See [`Profile`] for the phases and their order, [`seccomp_allow_list`] for
//! the syscalls a sandboxed process keeps, and `sandbox/README.md` for what
//! each measure stops and what this machine offers.
//!
//! # Layout
//! - `profile`: [`Profile`], its phases, [`Pending`], [`Confined`].
//! - `settings`: the parts of a profile the measures read ([`Rlimits`],
//!   [`Landlock`], [`OpenPolicy`]).
//! - `report`: [`Report`], [`Measure`], [`Outcome`] (the log line).
//! - `limits`: setrlimit.
//! - `cgroup`: the per-process pids cgroup ([`remove_pids_cgroup`],
//!   [`kill_pids_cgroup`], [`sweep_stale_pids_cgroups`]) and the
//!   per-mount one of programs ([`ProgramCgroup`]).
//! - `namespaces`: user/net/ipc/uts namespaces, best effort.
//! - `pidns`: a PID namespace of its own (two forks: waiters outside and
//!   as its init, the sandboxed process as its pid 2).
//! - `user`: dropping root and checking it stuck.
//! - `fs_rules`: landlock rules ([`landlock_abi`]).
//! - `seccomp`: the allow-list ([`seccomp_allow_list`]).
//! - `procfs`: thread count and capabilities of the current process.
//! - `error`: [`SandboxError`].
//! - [`loader`]: loading a module's cdylib (libloading) and spawning a
//!   runner that inherits its socket.
//! - `pidfd`: [`PidFd`], a child's exit as a pollable descriptor (the
//!   supervisor's side, not the sandboxed process's).
//! - `spawn`: [`Spawn`], a program started by a `CLONE_VM | CLONE_VFORK`
//!   child that applies the limits with raw system calls, then execs (a
//!   CGI program per request: no copy of the server's page tables; its
//!   doc says why this and not `posix_spawn` of a helper); [`Spawned`].
//! - [`wasm`]: the WebAssembly engine a runner hosts guests in (wasmtime
//!   48 LTS): limits, compiled code and its cache, wasi:http components.
//!
//! `tests/profile.rs` runs the fixture `iolite-sandbox-probe`
//! (`fixtures/probes`), which applies a profile and then misbehaves on
//! purpose; `tests/tokio_runner.rs` runs a tokio runtime under the
//! allow-list.

mod cgroup;
mod error;
mod fs_rules;
mod limits;
pub mod loader;
mod namespaces;
mod pidfd;
mod pidns;
mod procfs;
mod profile;
mod program_filter;
mod report;
mod seccomp;
mod settings;
mod spawn;
mod user;
pub mod wasm;

pub use cgroup::{
    ProgramCgroup, kill_pids_cgroup, pids_cgroup_for, remove_pids_cgroup, sweep_stale_pids_cgroups,
};
pub use error::SandboxError;
pub use fs_rules::{PreparedLandlock, landlock_abi};
pub use loader::{LoadError, ModuleLibrary, spawn_closed, spawn_inheriting, take_inherited_socket};
pub use pidfd::PidFd;
pub use pidns::RUNNER_PID_VAR;
pub use profile::{Confined, Pending, Profile};
pub use program_filter::ProgramFilter;
pub use report::{Measure, Outcome, Report};
pub use seccomp::{SyscallGroup, seccomp_allow_list};
pub use settings::{Landlock, OpenPolicy, Rlimits};
pub use spawn::{Spawn, Spawned};
