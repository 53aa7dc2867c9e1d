//! The one body path. Every request body — none, discarded, whole, in
//! parts, with a length or chunked — goes from the client socket into a
//! [`BodySink`] through one pump (`pump`, driven by the connection).
//!
//! A content handler that answers later says where the body goes
//! ([`PendingResponse::body`](crate::handler::PendingResponse::body)) and
//! when: [`BodyMode::Whole`] reads all of it before the answer is awaited;
//! [`BodyMode::Duplex`] reads it while the answer is awaited and sent, so
//! an upload of any size passes through a bounded sink and an answer may
//! start, or end, before the body does. A handler that answers at once gets
//! its body read into [`Discard`].
//!
//! Where the bytes land: a body of known length is read with `read(2)`
//! straight into [`BodySink::space`] (shared memory, for a process
//! module's pool), or spliced from the socket into a descriptor
//! ([`FdSink`], a CGI program's stdin). Bytes that came with the head, and
//! the data of a chunked body (its framing sits between the runs), are
//! copied in user space, and counted in `iolite_body_bytes_copied_total`.
//!
//! # Layout
//! - [`sinks`]: the sinks core supplies besides [`FdSink`]: [`Discard`],
//!   [`VecSink`] (whole, into memory) and [`PoolSink`] (whole, into a
//!   pool buffer).
//! - `sink`: the [`BodySink`] interface and [`BodyMode`].
//! - `fd_sink`: [`FdSink`], the body into a pipe or socket by `splice(2)`.
//! - `pump`: the pump over every framing (the connection's side).

mod fd_sink;
pub(crate) mod pump;
mod sink;
pub mod sinks;

pub use fd_sink::FdSink;
pub use sink::{BodyMode, BodySink, FinishFuture, ReadyFuture, SpliceFuture};
pub use sinks::{Discard, PoolBody, PoolSink, VecBody, VecSink};
