//! iolite-core owns the HTTP/1.1 engine, request phases and routing, the
//! unified file cache, the send path (writev and sendfile), configuration,
//! the access log and metrics. It must not spawn processes itself (process
//! modules go through iolite-modules and iolite-sandbox) and must not know
//! about other nodes.
//!
//! # Layout
//! - [`config`]: the configuration of `iolite serve` (defaults, TOML file,
//!   flags) resolved into one validated [`config::Config`], with every error
//!   reported as `FILE:LINE:COLUMN: problem`.
//! - [`access_log`]: the access log in combined log format, buffered per
//!   writer, flushed at least once a second and at shutdown.
//! - [`metrics`]: process-wide counters and their Prometheus rendering.
//! - [`status`]: the same figures as a small HTML page (`/status`).
//!
//! (The HTTP engine, cache and send path land with the core issue.)
#![forbid(unsafe_code)]

pub mod access_log;
pub mod config;
pub mod metrics;
pub mod status;
