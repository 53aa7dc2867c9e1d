//! iolite-core owns the HTTP/1.1 engine, request phases and routing, the
//! unified file cache, the send path (writev and sendfile), configuration,
//! the access log and metrics. It must not spawn processes itself (process
//! modules go through iolite-modules and iolite-sandbox) and must not know
//! about other nodes.
//!
//! # Layout
//! (filled in as the HTTP core lands; see the core issue.)
#![forbid(unsafe_code)]

pub mod cache;
pub mod metrics;
