//! The [`BodySink`] interface every request body goes into, and
//! [`BodyMode`], how a handler takes its body (a leaf: the sinks and the
//! pump build on it).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::Error;

/// The future of [`BodySink::ready`]: `Ok(true)` when there is room,
/// `Ok(false)` when the sink takes no more.
pub type ReadyFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, Error>> + 'a>>;

/// The future of [`BodySink::finish`].
pub type FinishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>>;

/// The future of [`BodySink::splice_from`]: `Ok(false)` when the sink took
/// no more of the body.
pub type SpliceFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, Error>> + 'a>>;

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

    /// For a sink that takes a body of known length by `splice(2)` from
    /// the client socket (see [`FdSink`](super::FdSink)): moves `len`
    /// bytes from `stream`, each wait for the client bounded by
    /// `read_timeout` (408); `Ok(false)` when the sink took no more. None:
    /// the body is read into [`space`](BodySink::space) instead.
    fn splice_from<'a>(
        &'a mut self,
        stream: &'a TcpStream,
        len: u64,
        read_timeout: Duration,
    ) -> Option<SpliceFuture<'a>> {
        let _ = (stream, len, read_timeout);
        None
    }
}
