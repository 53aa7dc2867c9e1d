//! iolite-sdk is what a content-module author depends on: request and
//! response views over buffer aggregates, the module trait and its export
//! macro, and references to the server's cached files. It depends on
//! iolite-ipc (the wire contract) and never on iolite-core (the server).
//!
//! # Layout
//! (filled in by the modules issue.)
#![forbid(unsafe_code)]
