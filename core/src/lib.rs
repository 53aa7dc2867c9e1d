//! iolite-core owns the HTTP/1.1 engine, request phases and routing, the
//! unified file cache, the send path (writev and sendfile), configuration,
//! the access log and metrics. It must not spawn processes itself (process
//! modules go through iolite-modules and iolite-sandbox) and must not know
//! about other nodes.
//!
//! # The request flow
//! One connection ([`connection`](crate#layout), private) reads a head,
//! [`phases::Phases::process_request`] routes it — rewrite → access →
//! content, each phase's handlers mounted at prefixes, the longest first —
//! and the connection then runs one exchange: the body goes through the
//! one body path ([`body`]) into the answering handler's sink while its
//! answer is awaited; the answer ([`Response`]: memory, a file range, an
//! aggregate of shared buffers, a stream, or a descriptor) goes out
//! through the send path ([`send`]: writev, sendfile, splice); then the
//! handler's request-finished hook, the access log and the metrics. Every
//! failure is an [`Error`] with its status and side (client, upstream,
//! internal), answered by [`Response::from_error`].
//!
//! # Layout
//! - [`error`]: the crate's one error enum; client-facing variants carry
//!   their HTTP status; upstream failures their kind and status.
//! - [`http`]: the wire format — request-head parser (httparse, limits),
//!   chunked decoder, target normalization, dates, validators, ranges
//!   (one or several: `multipart/byteranges` framing), response-head writer. Pure, allocation-free on the hot path, fuzzed.
//! - [`handler`]: the [`handler::Handler`] trait (with its request-finished
//!   hook), [`handler::RequestCtx`] (the head, its fields as spans, the
//!   path, the location), outcomes, pending answers.
//! - [`phases`]: the request flow — one `process_request` running the
//!   phases in order over the mount table; the static files as fallback.
//! - [`headers`]: the configured response headers (top level and
//!   `[[location]]`), resolved per location, put on every handler's answer.
//! - [`not_modified`]: preconditions on every handler's 200 to a GET or
//!   HEAD that carries validators (304, 412), as nginx's filter.
//! - [`body`]: the one body path — the sink interface, the sinks core
//!   supplies (discard, whole into memory or a pool, a descriptor by
//!   splice), the pump over every framing.
//! - [`response`]: `Response`, `Body` and the one error path.
//! - [`fd_body`]: answer bodies from a pipe or socket, framed or not.
//! - [`send`]: the send path (writev of head and memory, sendfile of
//!   files, splice of descriptor bodies).
//! - [`static_files`]: the static file handler (root-confined resolution,
//!   per-worker path/fd/response-head cache, conditionals, ranges and
//!   multipart ranges, compressed variants: flate2, brotli and zstd, in
//!   `static_files::compress`, which says why);
//!   [`site`]: it as the content fallback, per location.
//! - [`server`]: `Server` (bind, mounts, run), listeners, worker threads,
//!   shutdown; [`options`]: `ServerOptions`, what it is told.
//! - [`tls`]: HTTPS on a listener (rustls: certificates by SNI, ALPN,
//!   resumption, the handshake, reloads on SIGHUP; the kTLS probe);
//!   [`wire`]: a connection's byte stream, plain or through its TLS
//!   session, as the pump and the send path use it.
//! - `connection` (private): one connection's loop — keep-alive,
//!   pipelining, the exchange (body ‖ answer, then the one send site),
//!   timeouts, lingering close.
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
pub mod body;
pub mod cache;
pub mod config;
mod connection;
mod descriptor;
pub mod error;
pub mod fd_body;
pub mod handler;
pub mod headers;
pub mod http;
pub mod metrics;
pub mod not_modified;
pub mod options;
pub mod phases;
pub mod response;
pub mod send;
pub mod server;
pub mod site;
pub mod static_files;
pub mod status;
pub mod tls;
pub mod wire;
mod worker;

pub use error::{Error, Side, UpstreamFailure, UpstreamKind};
pub use fd_body::FdBody;
pub use response::{Body, FileRange, HeaderLines, Response, StreamBody};
pub use server::{CacheAccess, FallbackWrap, HandlerFactory, Mount, Server, ServerOptions};
