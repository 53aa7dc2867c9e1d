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
#![forbid(unsafe_code)]

mod error;
mod process;
pub mod runner;
mod supervisor;

pub use error::Error;
pub use process::{ProcessModule, current_exe};
