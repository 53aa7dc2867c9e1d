//! iolite-modules owns the content handlers that plug into iolite-core
//! beyond static files: today, native process modules (cdylibs built with
//! iolite-sdk, run in supervised runner processes); later CGI, FastCGI and
//! WebAssembly. It must not know about other nodes, and holds no `unsafe`:
//! loading libraries and spawning with an inherited descriptor are
//! iolite-sandbox's.
//!
//! # Layout
//! - `process`: [`ProcessModule`] (request pool, slots, the core handler
//!   that routes before the body is read, response validation).
//! - `supervisor`: one thread per runner process: spawn (re-exec of the
//!   iolite binary), handshake (the runner's sandbox report first),
//!   credits, the blocking protocol loop (socket, wake-up socket and the
//!   runner's pidfd), restart with backoff, timeouts, log forwarding, and
//!   the runner's end (process group killed, reaped, pids cgroup removed).
//! - [`runner`]: the runner process's side (`iolite runner`): the module's
//!   [`runner::SandboxSpec`] from its config, applied in two phases around
//!   loading the library, and reported to the server.
//! - `error`: [`Error`].
//!
//! # Sandbox
//! Every runner (and the throw-away `--check` runner) applies the module's
//! `[module.sandbox]` and `memory_limit` to itself before the module's code
//! runs: see [`runner`] and `sandbox/README.md`. `iolite serve` logs the
//! outcome of each measure per runner ("runner ready ... sandbox=...");
//! a sandbox that cannot be applied refuses the module at start-up.
//!
//! # Not yet (issue 4)
//! - `processes_max`: runners are added when every one has all its credits
//!   in use, but idle ones are never retired.
//! - A runner handles one request at a time (`in_flight` requests wait in
//!   its socket); `Msg::Cancel` reaches it but the SDK does not act on it.
//! - Request bodies are held whole in the request pool (2 × `max_body`);
//!   only answers stream.
//! - A runner's CPU time limit is a lifetime budget: a runner that used it
//!   is ended by SIGXCPU (its in-flight requests get 502) and restarted,
//!   not retired gracefully beforehand.
//! - Per-module metrics (restarts, 502/504 counts) and the module bench.

mod error;
mod process;
pub mod runner;
mod supervisor;

pub use error::Error;
pub use process::{ProcessModule, current_exe, sweep_stale_cgroups};
