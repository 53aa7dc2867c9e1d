//! iolite-core owns the HTTP/1.1 engine, request phases and routing, the
//! unified file cache, the send path (writev and sendfile), configuration,
//! the access log and metrics. It must not spawn processes itself (process
//! modules go through iolite-modules and iolite-sandbox) and must not know
//! about other nodes.
//!
//! # Layout
//! - [`error`]: the crate's one error enum; client-facing variants carry
//!   their HTTP status.
//! - [`http`]: the wire format — request-head parser (httparse, limits),
//!   chunked decoder, target normalization, dates, validators and ranges,
//!   response-head writer. Pure, allocation-free on the hot path, fuzzed.
//! - [`phases`]: the request flow — one `process_request` running the
//!   phases rewrite → access → content; handlers registered once at start-up
//!   (extra ones, such as process modules, through `Server::with_handlers`);
//!   a handler may answer later, after the body is read into it.
//! - [`static_files`]: the static file handler (root-confined resolution,
//!   per-worker path/fd/response-head cache, conditionals, ranges).
//! - [`response`]: `Response`, `Body` and the one error path.
//! - [`send`]: the send path (writev of head and memory, sendfile of files).
//! - [`server`]: `ServerOptions`, `Server` (bind, extra handlers, run),
//!   listeners, worker threads, shutdown.
//! - `connection` (private): one connection's loop — keep-alive,
//!   pipelining, bodies (discarded, or read into a pending handler's
//!   buffer), timeouts, lingering close.
//! - `admin` (private): the admin listener, `/metrics` and `/status`.
//! - [`cache`]: the unified file cache (GDSF/LRU within a byte budget).
//! - [`metrics`]: process-wide counters and their Prometheus rendering.
//! - [`status`]: the same figures as a small HTML page (`/status`).
//! - [`config`]: the configuration of `iolite serve` (defaults, TOML file,
//!   flags) resolved into one validated [`config::Config`], with every error
//!   reported as `FILE:LINE:COLUMN: problem` (the file parser is fuzzed in
//!   `fuzz/`).
//! - [`access_log`]: the access log in combined log format, buffered per
//!   writer, flushed at least once a second and at shutdown.
#![forbid(unsafe_code)]

pub mod access_log;
mod admin;
pub mod cache;
pub mod config;
mod connection;
pub mod error;
pub mod http;
pub mod metrics;
pub mod phases;
pub mod response;
pub mod send;
pub mod server;
pub mod static_files;
pub mod status;

pub use error::Error;
pub use response::{Body, FileRange, HeaderLines, Response, StreamBody};
pub use server::{CacheAccess, HandlerFactory, Server, ServerOptions};
