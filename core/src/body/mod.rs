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
//! - `fd_sink`: [`FdSink`], the body into a pipe or socket by `splice(2)`.
//! - `pump`: the pump over every framing (the connection's side).

mod fd_sink;
pub(crate) mod pump;
pub mod sinks;

use std::future::Future;
use std::pin::Pin;

use crate::error::Error;

pub use fd_sink::FdSink;
pub use sinks::{Discard, PoolBody, PoolSink, VecBody, VecSink};

/// The future of [`BodySink::ready`]: `Ok(true)` when there is room,
/// `Ok(false)` when the sink takes no more.
pub type ReadyFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, Error>> + 'a>>;

/// The future of [`BodySink::finish`].
pub type FinishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>>;

/// How a pending handler takes its request body.
pub enum BodyMode {
    /// Whole, before the answer is awaited.
    Whole(Box<dyn BodySink>),
    /// While the answer is awaited and sent (full duplex): the connection
    /// keeps reading the body into the sink until it is complete, the
    /// sink takes no more, or the answer is sent (a body left unread then
    /// closes the connection, announced with `Connection: close`).
    Duplex(Box<dyn BodySink>),
}

impl std::fmt::Debug for BodyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyMode::Whole(_) => "Whole",
            BodyMode::Duplex(_) => "Duplex",
        })
    }
}

/// Where a request body goes. The pump awaits [`ready`](BodySink::ready),
/// fills [`space`](BodySink::space) with `read(2)` (or hands bytes it
/// already holds to [`write`](BodySink::write)) and reports each fill with
/// [`advance`](BodySink::advance), until the body is complete — then
/// [`finish`](BodySink::finish) — or `ready` says the sink takes no more.
/// Dropping a sink that was not finished means the body ended short (the
/// client went away, or a limit or timeout ended it).
pub trait BodySink {
    /// Waits until there is room for more body bytes. `Ok(false)`: the
    /// handler takes no more of the body (it has answered): the pump stops
    /// reading it. An error is the answer (for example 503 when no room
    /// came in time).
    fn ready(&mut self) -> ReadyFuture<'_>;

    /// Room for the next body bytes, after `ready` said so: a non-empty
    /// slice of at most `max` bytes.
    fn space(&mut self, max: usize) -> &mut [u8];

    /// `n` bytes of [`space`](BodySink::space) were filled.
    fn advance(&mut self, n: usize);

    /// Copies bytes the connection already holds (they came with the
    /// head) into [`space`](BodySink::space), as many as fit; returns how
    /// many. The copy is counted as copied body bytes.
    fn write(&mut self, bytes: &[u8]) -> usize {
        let space = self.space(bytes.len());
        let n = space.len();
        space.copy_from_slice(&bytes[..n]);
        self.advance(n);
        iolite_ipc::copied::add(n);
        n
    }

    /// The body is complete (every framing; called once, not for a body
    /// that ended short). The default does nothing.
    fn finish(&mut self) -> FinishFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// Whether the sink throws the body away: the pump then reads it
    /// through its own buffer and neither copies nor counts it.
    fn discards(&self) -> bool {
        false
    }

    /// A descriptor a body of known length is spliced into instead of
    /// being read into [`space`](BodySink::space) (see [`FdSink`]).
    fn splice_target(&mut self) -> Option<&mut FdSink> {
        None
    }
}
