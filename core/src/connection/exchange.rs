//! One exchange: a request's body pumped into its handler while its answer
//! is awaited, then the answer sent — the connection's one send site.
//!
//! - A handler that answered at once gets its body read into
//!   [`Discard`] first (unless the client waits for `100 Continue` and the
//!   answer is final: then the body never comes, and the connection
//!   closes).
//! - [`BodyMode::Whole`]: the body is pumped, then the answer awaited.
//! - [`BodyMode::Duplex`]: `100 Continue` goes out first (if owed), the
//!   answer is awaited and sent while the body is still pumped; a body
//!   left unread when the answer's head goes out closes the connection,
//!   announced with `Connection: close`.
//! - A client that goes away before the answer cancels it (its future is
//!   dropped): logged as 499.
//! - An answer that is an internal redirect is replaced by the answer to
//!   a `GET` of its target, routed again.

use std::any::Any;
use std::future::Future;
use std::io;

use tokio::sync::watch;

use crate::body::pump::{BodyIo, pump};
use crate::body::{BodyMode, BodySink, Discard};
use crate::error::Error;
use crate::handler::{Ending, PendingResponse, ResponseFuture};
use crate::http::request::{BodyFraming, Method, RequestHead, Span, Version};
use crate::http::response::{ConnectionHeader, Framing, status_has_body, write_head_framed};
use crate::http::{date, parse_head_fields};
use crate::phases::{HandlerId, Reply};
use crate::response::{Body, Response};
use crate::send::send_response_framed;
use crate::wire::Wire;
use crate::worker::WorkerCtx;

/// Most internal redirects one request may follow.
const MAX_REDIRECTS: usize = 10;

/// How an exchange ended.
#[derive(Debug)]
pub(crate) struct Done {
    pub status: u16,
    /// Bytes written, head included (some, when the send failed midway).
    pub sent: u64,
    /// Bytes of the response head among them.
    pub head_bytes: u64,
    pub keep_alive: bool,
    pub ending: Ending,
}

impl Done {
    /// The client went away before the answer was sent.
    fn gone() -> Done {
        Done {
            status: 499,
            sent: 0,
            head_bytes: 0,
            keep_alive: false,
            ending: Ending::ClientGone,
        }
    }
}

/// What the exchange needs to know of the request (a head that could not
/// be read has none of these: no body, HTTP/1.1, close).
#[derive(Debug, Clone, Copy)]
struct Ask {
    version: Version,
    head_only: bool,
    framing: BodyFraming,
    head_len: usize,
    expects_continue: bool,
    wants_keep_alive: bool,
}

impl Ask {
    fn of(head: Option<&RequestHead>) -> Ask {
        match head {
            Some(h) => Ask {
                version: h.version,
                head_only: h.method == Method::Head,
                framing: h.body,
                head_len: h.head_len,
                expects_continue: h.expect_continue && h.version == Version::Http11,
                wants_keep_alive: h.wants_keep_alive(),
            },
            None => Ask {
                version: Version::Http11,
                head_only: false,
                framing: BodyFraming::None,
                head_len: 0,
                expects_continue: false,
                wants_keep_alive: false,
            },
        }
    }

    /// The body's length for a sink (`None` inside: chunked); `None`: no body.
    fn body_len(&self) -> Option<Option<u64>> {
        match self.framing {
            BodyFraming::None | BodyFraming::Length(0) => None,
            BodyFraming::Length(n) => Some(Some(n)),
            BodyFraming::Chunked => Some(None),
        }
    }
}

/// The answer while it is awaited: known already, a handler not asked
/// yet (it is asked once a whole body is in, or at once for a duplex one),
/// or its future.
enum Pending {
    Ready(Option<Response>),
    Asking(Option<Box<dyn PendingResponse>>),
    Later(ResponseFuture),
}

impl Pending {
    async fn answer(&mut self) -> Response {
        if let Pending::Asking(later) = self {
            match later.take() {
                Some(later) => *self = Pending::Later(later.respond()),
                None => return Response::from_error(&Error::NotFound),
            }
        }
        match self {
            Pending::Ready(r) => r
                .take()
                .unwrap_or_else(|| Response::from_error(&Error::NotFound)),
            Pending::Later(f) => f.await.unwrap_or_else(|e| Response::from_error(&e)),
            Pending::Asking(_) => Response::from_error(&Error::NotFound),
        }
    }
}

/// The connection's parts an exchange uses.
#[derive(Debug)]
pub(super) struct Io<'a> {
    pub stream: &'a Wire,
    /// The read buffer: the head, then what came after it.
    pub buf: &'a mut Vec<u8>,
    /// Where the response head is written.
    pub out: &'a mut Vec<u8>,
    /// Scratch space for the normalized path (internal redirects).
    pub path: &'a mut Vec<u8>,
}

/// Serves one routed request: its body, its answer, the answer sent.
/// `handlers` gains the handler of each internal redirect followed.
pub(super) async fn exchange(
    ctx: &WorkerCtx,
    io: Io<'_>,
    head: Option<&RequestHead>,
    reply: Reply,
    handlers: &mut Vec<(HandlerId, Option<Box<dyn Any>>)>,
    shutdown: &watch::Receiver<bool>,
) -> Done {
    let ask = Ask::of(head);
    let Some(len) = ask.body_len() else {
        // No body (most requests): nothing to pump.
        let response = match reply {
            Reply::Now(response) => response,
            Reply::Later(later) => tokio::select! {
                biased;
                r = later.respond() => r.unwrap_or_else(|e| Response::from_error(&e)),
                () = client_gone(io.stream) => return Done::gone(),
            },
        };
        let pump = std::future::pending::<Result<bool, Error>>();
        tokio::pin!(pump);
        let to = To {
            stream: io.stream,
            out: io.out,
            path: io.path,
        };
        return deliver(ctx, to, ask, response, Some(true), pump, handlers, shutdown).await;
    };
    // Where the body goes, and the answer (or its future).
    let buffered = io.buf.len().saturating_sub(ask.head_len) as u64;
    let mut refused = None;
    let (sink, duplex, mut pending): (Option<Box<dyn BodySink>>, bool, Pending) = match reply {
        Reply::Now(response) => {
            let waits = ask.expects_continue
                && !matches!(ask.framing, BodyFraming::Length(n) if buffered >= n);
            // The client waits for our word before it sends the body; a
            // final status is that word: the body never comes onto this
            // connection.
            let sink: Option<Box<dyn BodySink>> =
                (!waits || response.status < 300).then(|| Box::new(Discard) as Box<dyn BodySink>);
            (sink, false, Pending::Ready(Some(response)))
        }
        Reply::Later(mut later) => {
            let mode = match len {
                Some(n) if n > ctx.opts.limits.max_body => {
                    refused = Some(Error::BodyTooLarge);
                    None
                }
                len => later.body(len).map_err(|e| refused = Some(e)).ok(),
            };
            let (sink, duplex) = match mode {
                Some(BodyMode::Whole(s)) => (Some(s), false),
                Some(BodyMode::Duplex(s)) => (Some(s), true),
                None => (None, false),
            };
            (sink, duplex, Pending::Asking(Some(later)))
        }
    };
    // None while the body is being read; then whether all of it was (a
    // body never asked for stays unread, and the connection closes).
    let mut pumped: Option<bool> = sink.is_none().then_some(false);
    let body_io = BodyIo {
        stream: io.stream,
        buf: &mut *io.buf,
        start: ask.head_len,
        max_body: ctx.opts.limits.max_body,
        read_timeout: ctx.opts.header_timeout,
        send_timeout: ctx.opts.send_timeout,
        continue_owed: ask.expects_continue,
    };
    let pump = pump_owned(body_io, ask.framing, sink, duplex);
    tokio::pin!(pump);
    if let Some(error) = refused {
        pending = Pending::Ready(Some(Response::from_error(&error)));
    } else if pumped.is_none() && !duplex {
        match (&mut pump).await {
            Ok(complete) => pumped = Some(complete),
            Err(Error::Io(_)) => return Done::gone(),
            Err(error) => {
                pending = Pending::Ready(Some(Response::from_error(&error)));
                pumped = Some(false);
            }
        }
    }
    let answered = matches!(pending, Pending::Ready(_));
    let response = loop {
        tokio::select! {
            biased;
            read = &mut pump, if pumped.is_none() => match read {
                Ok(complete) => pumped = Some(complete),
                Err(Error::Io(_)) => return Done::gone(),
                Err(error) => {
                    pumped = Some(false);
                    break Response::from_error(&error);
                }
            },
            response = pending.answer() => break response,
            () = client_gone(io.stream), if pumped == Some(true) && !answered => {
                return Done::gone();
            }
        }
    };
    // Answered: a future still pending (its body failed) is cancelled.
    drop(pending);
    let to = To {
        stream: io.stream,
        out: io.out,
        path: io.path,
    };
    deliver(ctx, to, ask, response, pumped, pump, handlers, shutdown).await
}

/// Where an answer goes (the connection's parts a delivery uses).
struct To<'a> {
    stream: &'a Wire,
    out: &'a mut Vec<u8>,
    path: &'a mut Vec<u8>,
}

/// Follows the answer's internal redirects, then sends it — the one send
/// site — while a duplex body goes on being pumped (`pumped` None: not
/// all read yet). The connection stays open only when the whole body was
/// read before the answer's head went out.
#[allow(clippy::too_many_arguments)]
async fn deliver<P: Future<Output = Result<bool, Error>>>(
    ctx: &WorkerCtx,
    to: To<'_>,
    ask: Ask,
    response: Response,
    mut pumped: Option<bool>,
    mut pump: std::pin::Pin<&mut P>,
    handlers: &mut Vec<(HandlerId, Option<Box<dyn Any>>)>,
    shutdown: &watch::Receiver<bool>,
) -> Done {
    let To { stream, out, path } = to;
    let mut response = response;
    if response.redirect.is_some() {
        match follow_redirects(ctx, response, handlers, stream, path).await {
            Some(r) => response = r,
            None => return Done::gone(),
        }
    }
    // The connection cannot be reused with body bytes left unread.
    let keep_alive = pumped == Some(true) && keeps_alive(&ask, &response, shutdown);
    let connection = connection_header(keep_alive, ask.version);
    let mut sent = 0;
    let result = {
        let send = send_answer(ctx, stream, out, &response, ask, connection, &mut sent);
        tokio::pin!(send);
        // The handler may still need body parts to finish its answer
        // (a streamed echo): keep reading them.
        loop {
            tokio::select! {
                biased;
                read = pump.as_mut(), if pumped.is_none() => pumped = Some(read.unwrap_or(false)),
                result = &mut send => break result,
            }
        }
    };
    ctx.metrics.request_finished(response.status, sent);
    let ending = match (&result, response.error) {
        (Err(_), _) => Ending::ClientGone,
        (Ok(()), Some(side)) => Ending::Error(side),
        (Ok(()), None) => Ending::Complete,
    };
    Done {
        status: response.status,
        sent,
        head_bytes: out.len() as u64,
        keep_alive: keep_alive && result.is_ok(),
        ending,
    }
}

/// Pumps the body into `sink` (none: nothing to pump), dropping the sink
/// as soon as the pump ends, which tells a handler streaming its answer
/// meanwhile that no more of the body comes. A duplex body owes its `100
/// Continue` before anything else can be written on the connection.
async fn pump_owned(
    mut io: BodyIo<'_>,
    framing: BodyFraming,
    sink: Option<Box<dyn BodySink>>,
    duplex: bool,
) -> Result<bool, Error> {
    let Some(mut sink) = sink else {
        return Ok(true);
    };
    if duplex {
        io.send_continue().await?;
    }
    let result = pump(io, framing, sink.as_mut()).await;
    drop(sink);
    result
}

/// Replaces an internal redirect by the answer to a `GET` of its target,
/// routed again (at most [`MAX_REDIRECTS`] in a row, then 500); the
/// handlers that answer join `handlers`. None: the client went away.
async fn follow_redirects(
    ctx: &WorkerCtx,
    mut response: Response,
    handlers: &mut Vec<(HandlerId, Option<Box<dyn Any>>)>,
    stream: &Wire,
    path: &mut Vec<u8>,
) -> Option<Response> {
    let mut hops = 0;
    let mut buf = Vec::new();
    let mut fields = Vec::new();
    while let Some(target) = response.redirect.take() {
        hops += 1;
        if hops > MAX_REDIRECTS {
            tracing::warn!(target = %String::from_utf8_lossy(&target), "internal redirects loop");
            return Some(Response::from_error(&Error::Io(io::Error::other(
                "too many internal redirects",
            ))));
        }
        let Some(head) = redirect_head(&target, &mut buf, &mut fields, ctx) else {
            return Some(Response::from_error(&Error::BadRequest("redirect target")));
        };
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let answer = ctx.phases.process_request(&head, &buf, &fields, path, peer);
        if let Some(h) = answer.handler {
            handlers.push((h, answer.context));
        }
        response = match answer.reply {
            Reply::Now(r) => r,
            Reply::Later(later) => tokio::select! {
                biased;
                r = later.respond() => r.unwrap_or_else(|e| Response::from_error(&e)),
                () = client_gone(stream) => return None,
            },
        };
    }
    Some(response)
}

/// The head of a `GET target` with no body and no header field (the
/// original request's fields stay with the original; a redirected request
/// is the server's own).
fn redirect_head(
    target: &[u8],
    buf: &mut Vec<u8>,
    fields: &mut Vec<(Span, Span)>,
    ctx: &WorkerCtx,
) -> Option<RequestHead> {
    buf.clear();
    buf.extend_from_slice(b"GET ");
    buf.extend_from_slice(target);
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    parse_head_fields(buf, &ctx.opts.limits, fields)
        .ok()
        .flatten()
}

/// Writes `response` (its head made in `out`). A body of unknown length
/// goes in chunks to an HTTP/1.1 client, and as it is to an HTTP/1.0 one
/// (whose connection then closes: see [`keeps_alive`]).
async fn send_answer(
    ctx: &WorkerCtx,
    stream: &Wire,
    out: &mut Vec<u8>,
    response: &Response,
    ask: Ask,
    connection: ConnectionHeader,
    sent: &mut u64,
) -> io::Result<()> {
    out.clear();
    // An NPH program's answer is its own head and body, sent as they come.
    let raw = matches!(&response.body, Body::Fd(fd) if fd.is_raw());
    let framing = match (response.body.is_open_ended(), ask.version) {
        _ if raw => Framing::UntilClose,
        (false, _) => Framing::Length(response.body.len()),
        (true, Version::Http11) => Framing::Chunked,
        (true, Version::Http10) => Framing::UntilClose,
    };
    if !raw {
        write_head_framed(
            out,
            response.status,
            &date::now(),
            response.headers.as_bytes(),
            framing,
            connection,
        );
    }
    let with_body = raw || (!ask.head_only && status_has_body(response.status));
    send_response_framed(
        stream,
        out,
        &response.body,
        with_body,
        framing == Framing::Chunked,
        ctx.opts.send_timeout,
        sent,
    )
    .await
}

/// Whether the connection stays open after `response`.
fn keeps_alive(ask: &Ask, response: &Response, shutdown: &watch::Receiver<bool>) -> bool {
    // Only the connection's end can end an open-ended body for HTTP/1.0.
    let ends_at_close = (response.body.is_open_ended() && ask.version == Version::Http10)
        || matches!(&response.body, Body::Fd(fd) if fd.is_raw());
    ask.wants_keep_alive && !response.close && !*shutdown.borrow() && !ends_at_close
}

/// The `Connection` field that says `keep_alive` to a client of `version`.
fn connection_header(keep_alive: bool, version: Version) -> ConnectionHeader {
    match (keep_alive, version) {
        (false, _) => ConnectionHeader::Close,
        (true, Version::Http10) => ConnectionHeader::KeepAlive,
        (true, Version::Http11) => ConnectionHeader::Default,
    }
}

/// Completes when the client has closed (or reset) its side; never when
/// it sends more (a pipelined request is not a departure).
async fn client_gone(stream: &Wire) {
    let mut probe = [0u8; 1];
    // Over TLS, a client that says close_notify first looks like one that
    // sends more: only its FIN or reset is seen here.
    match stream.tcp().peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
