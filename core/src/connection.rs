//! One client connection: read a head, answer it, repeat (keep-alive and
//! pipelining — bytes of the next request stay in the buffer). The request
//! flow reads top to bottom in [`Conn::run`]:
//!
//! ```text
//! read head → route (Phases::process_request)
//!           → exchange: pump the body into the handler's sink ‖ await the answer,
//!                       then send it (while a duplex body is still pumped)
//!           → request-finished hook, access log, metrics → next request or close
//! ```
//!
//! Every request, whatever its handler, takes this path: one send site
//! (`exchange`), one log site and one error path (an error becomes its
//! response through [`Response::from_error`] and is counted by its side).
//! A head that cannot be read is answered through the same exchange.
//!
//! The connection never gets out of step: any error that leaves the byte
//! stream in doubt (bad framing, limits, timeouts, a body left unread) is
//! answered with `Connection: close` and followed by a lingering close, so
//! the client reads the error instead of a reset.

mod exchange;

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access_log::Entry;
use crate::error::Error;
use crate::handler::{Ending, Finished, PeerGate, has_prefix_ignore_case};
use crate::http::parse_head_fields;
use crate::http::request::{RequestHead, Span, Version};
use crate::phases::{Answer, HandlerId, Reply};
use crate::response::Response;
use crate::tls::TlsListener;
use crate::wire::Wire;
use crate::worker::WorkerCtx;
use exchange::{Done, Io, exchange};

/// Free space kept in the read buffer before each read.
const READ_RESERVE: usize = 4096;
/// How long, and how many bytes, a closing connection drains the client.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

enum HeadRead {
    Head(RequestHead),
    /// The client went away, idled out, or the server is stopping between
    /// requests: close without a response.
    Closed,
    /// Answer with this error, then close.
    Error(Error),
}

struct Conn {
    stream: Wire,
    /// The client's address (for logs; the access log records it too).
    peer: SocketAddr,
    /// Bytes read and not yet consumed: the current head, then whatever the
    /// client pipelined after it.
    buf: Vec<u8>,
    /// The header fields of the current head, as spans of `buf`.
    fields: Vec<(Span, Span)>,
    /// The response head being written.
    out: Vec<u8>,
    /// The normalized path of the current request.
    path: Vec<u8>,
    /// The handlers that answered the current request (more than one after
    /// internal redirects), with their contexts: kept to reuse its room.
    handlers: Vec<(HandlerId, Option<Box<dyn Any>>)>,
    /// The cluster's gate, and whether this connection came in on the
    /// peer listener (then every request passes the gate) or on a client
    /// listener (then the peers' reserved fields are stripped).
    gate: Option<(Arc<dyn PeerGate>, Listener)>,
}

/// Which kind of listener accepted a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Client,
    Peer,
}

/// Serves `stream` until it closes, after a TLS handshake on a TLS
/// listener (bounded by the listener's handshake timeout). Failures are
/// the client's business and are logged at debug level only.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Rc<WorkerCtx>,
    mut shutdown: watch::Receiver<bool>,
    gate: Option<(Arc<dyn PeerGate>, Listener)>,
    tls: Option<Arc<TlsListener>>,
) {
    ctx.metrics.connection_opened();
    let wire = match tls {
        None => Wire::plain(stream),
        Some(tls) => match tls.accept(stream).await {
            Ok(wire) => wire,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                ctx.metrics.connection_closed();
                return;
            }
        },
    };
    let mut conn = Conn {
        stream: wire,
        peer,
        buf: Vec::with_capacity(READ_RESERVE),
        fields: Vec::with_capacity(16),
        out: Vec::with_capacity(512),
        path: Vec::with_capacity(128),
        handlers: Vec::with_capacity(1),
        gate,
    };
    if let Err(e) = conn.run(&ctx, &mut shutdown).await {
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
    }
    ctx.metrics.connection_closed();
}

impl Conn {
    async fn run(
        &mut self,
        ctx: &WorkerCtx,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<()> {
        let mut first = true;
        loop {
            let (head, answer) = match self.read_head(ctx, first, shutdown).await? {
                HeadRead::Closed => return Ok(()),
                HeadRead::Head(head) => match self.pass_gate(&head) {
                    Ok(()) => {
                        let answer = ctx.phases.process_request(
                            &head,
                            &self.buf[..head.head_len],
                            &self.fields,
                            &mut self.path,
                            self.peer,
                        );
                        (Some(head), answer)
                    }
                    Err(error) => {
                        let answer = Answer {
                            reply: Reply::Now(Response::from_error(&error)),
                            handler: None,
                            context: None,
                        };
                        (Some(head), answer)
                    }
                },
                HeadRead::Error(error) => {
                    let reply = Reply::Now(Response::from_error(&error));
                    let answer = Answer {
                        reply,
                        handler: None,
                        context: None,
                    };
                    (None, answer)
                }
            };
            first = false;
            let started = std::time::Instant::now();
            let Answer {
                reply,
                handler,
                context,
            } = answer;
            let mut handlers = std::mem::take(&mut self.handlers);
            if let Some(h) = handler {
                handlers.push((h, context));
            }
            let io = Io {
                stream: &self.stream,
                buf: &mut self.buf,
                out: &mut self.out,
                path: &mut self.path,
            };
            let done = exchange(ctx, io, head.as_ref(), reply, &mut handlers, shutdown).await;
            self.log(ctx, head.as_ref(), &done);
            for (handler, context) in handlers.drain(..) {
                ctx.phases.finished(
                    handler,
                    Finished {
                        status: done.status,
                        bytes_sent: done.sent,
                        started,
                        ending: done.ending,
                        context,
                    },
                );
            }
            self.handlers = handlers;
            if !done.keep_alive {
                // Whatever the client sent beyond this request is not read.
                return self.linger().await;
            }
            let head_len = head.map_or(0, |h| h.head_len);
            self.buf.drain(..head_len);
        }
    }

    /// A request on the peer listener must pass the gate; on a client
    /// listener of a server with a gate, the peers' fields are stripped.
    fn pass_gate(&mut self, head: &RequestHead) -> Result<(), Error> {
        let Some((gate, listener)) = &self.gate else {
            return Ok(());
        };
        let head_bytes = &self.buf[..head.head_len];
        match listener {
            Listener::Peer => gate.admit(head, head_bytes, &self.fields),
            Listener::Client => {
                let prefix = gate.reserved_prefix();
                self.fields
                    .retain(|(name, _)| !has_prefix_ignore_case(name.get(head_bytes), prefix));
                Ok(())
            }
        }
    }

    /// The one log site: the access log and the error metrics, for the
    /// request whose head is at the start of the read buffer (`None`: no
    /// request line could be read). The log counts body bytes only.
    fn log(&self, ctx: &WorkerCtx, head: Option<&RequestHead>, done: &Done) {
        let error = match done.ending {
            Ending::Error(side) => {
                ctx.metrics.request_failed(side);
                Some(side)
            }
            Ending::Complete | Ending::ClientGone => None,
        };
        let Some(writer) = &ctx.access_log else {
            return;
        };
        let buf = &self.buf;
        let span = |s: Option<Span>| s.map(|s| s.get(buf));
        let entry = Entry {
            client: self.peer.ip(),
            user: None,
            time: std::time::SystemTime::now(),
            method: head.map_or(&b""[..], |h| h.method_token.get(buf)),
            target: head.map_or(&b""[..], |h| h.target.get(buf)),
            version: match head.map(|h| h.version) {
                Some(Version::Http10) => "HTTP/1.0",
                Some(Version::Http11) => "HTTP/1.1",
                None => "",
            },
            status: done.status,
            body_bytes: done.sent.saturating_sub(done.head_bytes),
            referer: span(head.and_then(|h| h.referer)),
            user_agent: span(head.and_then(|h| h.user_agent)),
            error,
        };
        writer.borrow_mut().log(&entry);
    }

    /// Reads until a whole head is buffered, the client leaves, a limit or
    /// the header timeout is hit, or (between requests) the server stops.
    async fn read_head(
        &mut self,
        ctx: &WorkerCtx,
        first: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<HeadRead> {
        let opts = &ctx.opts;
        // The first request's clock starts at accept; later ones at their
        // first byte (until then the keep-alive timeout applies).
        let mut head_deadline = first.then(|| Instant::now() + opts.header_timeout);
        loop {
            if !self.buf.is_empty() {
                match parse_head_fields(&self.buf, &opts.limits, &mut self.fields) {
                    Ok(Some(head)) => return Ok(HeadRead::Head(head)),
                    Ok(None) => {}
                    Err(error) => return Ok(HeadRead::Error(error)),
                }
                head_deadline.get_or_insert_with(|| Instant::now() + opts.header_timeout);
            } else if *shutdown.borrow() {
                return Ok(HeadRead::Closed);
            }
            let (deadline, idle) = match head_deadline {
                Some(d) => (d, false),
                None => (Instant::now() + opts.keepalive_timeout, true),
            };
            if self.buf.capacity() - self.buf.len() < READ_RESERVE / 2 {
                self.buf.reserve(READ_RESERVE);
            }
            let waiting = self.buf.is_empty();
            let n = tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buf) => read?,
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(if idle && waiting { HeadRead::Closed } else { HeadRead::Error(Error::HeaderTimeout) });
                }
                _ = shutdown.changed(), if waiting => return Ok(HeadRead::Closed),
            };
            if n == 0 {
                return Ok(HeadRead::Closed);
            }
        }
    }

    /// Half-closes, then drains what the client still sends for a bounded
    /// time, so that closing does not reset the connection under the last
    /// response.
    async fn linger(&mut self) -> io::Result<()> {
        self.stream.shutdown(LINGER_TIME).await?;
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        loop {
            self.buf.clear();
            if self.buf.capacity() < READ_RESERVE {
                self.buf.reserve(READ_RESERVE);
            }
            match tokio::time::timeout_at(deadline, self.stream.drain_raw(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 && drained < LINGER_BYTES => drained += n,
                _ => return Ok(()),
            }
        }
    }
}
