//! iolite-modules owns the content handlers that plug into iolite-core
//! beyond static files: today, native process modules (cdylibs built with
//! iolite-sdk, run in supervised, sandboxed runner processes); CGI and
//! FastCGI (their codecs so far) and WebAssembly (wasi:http components), each in a folder
//! beside `process/`. It must not know about other nodes, and holds no
//! `unsafe` (forbidden below): loading libraries and spawning with an
//! inherited descriptor are iolite-sandbox's.
//!
//! # Layout
//! - [`cgi`]: CGI/1.1 programs; today the header block's parser.
//! - [`fastcgi`]: FastCGI application servers; today the record codec.
//! - `error`: [`Error`], the crate's one error enum.
//! - [`metrics`]: [`ModuleMetrics`], per-module figures on `/metrics`;
//!   `ModulesStatus`, their rows on `/status`.
//! - [`runner`]: the runner process's side (`iolite runner`): its sandbox.
//! - `wasm/`: WebAssembly mounts ([`start_wasm`]): process modules whose
//!   runners host a guest; its doc has where code is compiled.
//!   - `guest`: the runner's side: a wasi:http request through the SDK's
//!     protocol.
//! - `process/`: [`ProcessModule`]; its doc has the request path.
//!   - `handler`: the core `Handler`: routes from the head, reads the body.
//!   - `exchange`: a request to a runner and back; [`DirectClient`].
//!   - `answer`: the checks a module's answer passes (a leaf).
//!   - `parts`: request bodies in parts.
//!   - `room`: uploads waiting for room in the pool (a leaf).
//!   - `link/`: a worker's data link to a runner (the API).
//!     - `protocol`: what a runner's frames do (the fuzzed state machine).
//!     - `reader`: the link's reader task.
//!     - `lanes`: which link a worker's request takes.
//!     - `fuzzing`: the `module_answer` fuzz target's entry point.
//!   - `supervisor/`: the runner slots (what workers and slots share).
//!     - `slot`: the slot thread and its control loop.
//!     - `spawn`: a runner's command line, handshake and log.
//!     - `reap`: a runner's end, and drains.
//!     - `upkeep`: when a healthy runner is recycled or retired.

#![forbid(unsafe_code)]

pub mod cgi;
mod error;
pub mod fastcgi;
pub mod metrics;
mod process;
pub mod runner;
mod wasm;

pub use error::Error;
/// The module ABI this server's runners speak (`iolite --version`).
pub use iolite_sdk::wire::ABI_VERSION as MODULE_ABI;
pub use metrics::ModuleMetrics;
pub use process::exchange::DirectClient;
/// The `module_answer` fuzz target's entry point (`modules/fuzz`): a
/// runner's bytes through a data link's receive path and the answer checks.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use process::link::fuzzing;
pub use process::{ProcessModule, check_module_library, current_exe, sweep_stale_cgroups};
pub use wasm::{WasmSpec, start_wasm};
