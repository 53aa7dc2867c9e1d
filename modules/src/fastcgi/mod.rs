//! FastCGI: requests to persistent application servers (php-fpm,
//! fcgiwrap) over unix or TCP connections.
//!
//! The request flow, for one request at a `[[fastcgi]]` mount:
//! 1. `handler` (with `mount`): the path names a script under the peer's document root
//!    (`SCRIPT_FILENAME`; a path ending in `/` gets the index file; a path
//!    segment ending in `.php` ends the script, the rest is `PATH_INFO`);
//!    the meta-variables are built from the head core parsed.
//! 2. `exchange`: a connection from the worker's idle ones, or a new one;
//!    `BEGIN_REQUEST` (keep the connection) and `PARAMS`; the body as
//!    `STDIN` records while it arrives; the end of `STDIN`.
//! 3. `exchange`: records are read until the program's header block is
//!    complete (`crate::cgi::header`); `STDERR` goes to the log.
//! 4. The answer: an answer already complete (its `END_REQUEST` read)
//!    goes out from memory and the connection goes back to the idle ones;
//!    a longer one leaves as a descriptor body — the socket itself, its
//!    record headers read in user space and its `STDOUT` content spliced
//!    to the client ([`record::Deframer`] as core's `Deframe`).
//!
//! Failures are the peer's: 502 when it cannot be reached, closes early
//! or sends what the codec refuses; 504 past the mount's `timeout`.
//!
//! # Layout
//! - [`record`]: the record codec, the client's side (fuzzed in
//!   `modules/fuzz`, target `fastcgi_records`).
//! - `mount`: [`FastCgi`], a mount's settings and its script paths.
//! - `conn`: a connection, unix or TCP, and a worker's idle ones.
//! - `handler`: the core `Handler` and its pending answer.
//! - `exchange`: one request on one connection.

mod conn;
mod exchange;
mod handler;
mod mount;
pub mod record;

pub use mount::FastCgi;
