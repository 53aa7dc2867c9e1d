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
//! - [`metrics`]: process-wide counters and their Prometheus rendering.
#![forbid(unsafe_code)]

pub mod error;
pub mod http;
pub mod metrics;

pub use error::Error;
