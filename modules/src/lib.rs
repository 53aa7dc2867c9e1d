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
//!   iolite binary), handshake, credits, the blocking protocol loop,
//!   restart with backoff, timeouts, log forwarding.
//! - [`runner`]: the runner process's side (`iolite runner`).
//! - `error`: [`Error`].
//!
//! # Not yet (issue 4)
//! - The sandbox profile: the call sites are marked in [`runner`] (the
//!   sandbox crate applies it); `memory_limit` and `[module.sandbox]` are
//!   parsed but not applied; the runner gets `--shared-bytes` for its
//!   address-space limit.
//! - `processes_max`: runners are added when every one has all its credits
//!   in use, but idle ones are never retired.
//! - A runner handles one request at a time (`in_flight` requests wait in
//!   its socket); `Msg::Cancel` reaches it but the SDK does not act on it.
//! - Request bodies are held whole in the request pool (2 × `max_body`);
//!   only answers stream.
//! - Supervision watches the socket and reaps with `waitpid`; no pidfd.
//! - Per-module metrics (restarts, 502/504 counts) and the module bench.

mod error;
mod process;
pub mod runner;
mod supervisor;

pub use error::Error;
pub use process::{ProcessModule, current_exe, sweep_stale_cgroups};
