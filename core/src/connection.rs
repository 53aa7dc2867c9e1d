//! One client connection: read a head, answer it, repeat (keep-alive and
//! pipelining — bytes of the next request stay in the buffer). Each request
//! goes through [`Phases::process_request`]. When a handler answers at once,
//! the body is read and discarded, bounded by the body limit; when it answers
//! later ([`Answer::Later`], a process module), the body is read straight
//! into the handler's buffer (`read(2)` into shared memory) and then its
//! answer is awaited. A handler may take a large body in parts instead
//! ([`BodyMode::Parts`]; a chunked body too, decoded as it comes): the
//! connection then awaits the answer, and sends
//! it, while it goes on reading the body into the handler part by part —
//! full duplex, so an upload of any size passes through a bounded buffer
//! and an answer may stream back while the body still arrives (a body left
//! unread when the answer's head goes out closes the connection, announced
//! with `Connection: close`). A body of unknown length (a stream without a
//! promised length) goes out in chunks to HTTP/1.1 clients and until the
//! connection closes to HTTP/1.0 ones.
//!
//! The connection never gets out of step: any error that leaves the byte
//! stream in doubt (bad framing, limits, timeouts) is answered with
//! `Connection: close` and followed by a lingering close, so the client
//! reads the error instead of a reset.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access_log::{AccessLogWriter, Entry};
use crate::error::Error;
use crate::http::request::{BodyFraming, Method, RequestHead, Version};
use crate::http::response::{ConnectionHeader, Framing, status_has_body, write_head_framed};
use crate::http::{ChunkedDecoder, date, parse_head};
use crate::metrics::Metrics;
use crate::phases::{Answer, BodyMode, BodySink, PendingResponse, Phases};
use crate::response::Response;
use crate::send::{send_response, send_response_framed};
use crate::server::ServerOptions;

/// Free space kept in the read buffer before each read.
const READ_RESERVE: usize = 4096;
/// How long, and how many bytes, a closing connection drains the client.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// What one worker shares between its connections.
#[derive(Debug)]
pub(crate) struct WorkerCtx {
    pub phases: Phases,
    pub metrics: Arc<Metrics>,
    pub opts: Arc<ServerOptions>,
    /// This worker's access-log writer (none when the log is off). The
    /// worker's connections share its thread, so a `RefCell` suffices.
    pub access_log: Option<std::cell::RefCell<AccessLogWriter>>,
}

enum HeadRead {
    Head(RequestHead),
    /// The client went away, idled out, or the server is stopping between
    /// requests: close without a response.
    Closed,
    /// Answer with this error, then close.
    Error(Error),
}

struct Conn {
    stream: TcpStream,
    /// The client's address (for logs; the access log records it too).
    peer: SocketAddr,
    /// Bytes read and not yet consumed: the current head, then whatever the
    /// client pipelined after it.
    buf: Vec<u8>,
    /// The response head being written.
    out: Vec<u8>,
    /// The normalized path of the current request.
    path: Vec<u8>,
}

/// Serves `stream` until it closes. Failures are the client's business and
/// are logged at debug level only.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Rc<WorkerCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    ctx.metrics.connection_opened();
    let mut conn = Conn {
        stream,
        peer,
        buf: Vec::with_capacity(READ_RESERVE),
        out: Vec::with_capacity(512),
        path: Vec::with_capacity(128),
    };
    if let Err(e) = conn.run(&ctx, &mut shutdown).await {
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended");
    }
    ctx.metrics.connection_closed();
}

/// Writes `response` (its head made in `out`) and counts it. Returns the
/// bytes written. A body of unknown length goes in chunks to an HTTP/1.1
/// client, and as it is to an HTTP/1.0 one (whose connection then closes:
/// see [`keeps_alive`]).
async fn send_answer(
    stream: &TcpStream,
    out: &mut Vec<u8>,
    ctx: &WorkerCtx,
    response: &Response,
    version: Version,
    head_only: bool,
    connection: ConnectionHeader,
) -> io::Result<u64> {
    out.clear();
    let framing = match (response.body.is_open_ended(), version) {
        (false, _) => Framing::Length(response.body.len()),
        (true, Version::Http11) => Framing::Chunked,
        (true, Version::Http10) => Framing::UntilClose,
    };
    write_head_framed(
        out,
        response.status,
        &date::now(),
        response.headers.as_bytes(),
        framing,
        connection,
    );
    let with_body = !head_only && status_has_body(response.status);
    let result = send_response_framed(
        stream,
        out,
        &response.body,
        with_body,
        framing == Framing::Chunked,
        ctx.opts.send_timeout,
    )
    .await;
    let sent = *result.as_ref().unwrap_or(&0);
    ctx.metrics.request_finished(response.status, sent);
    result
}

/// Whether the connection stays open after `response` to `head`.
fn keeps_alive(head: &RequestHead, response: &Response, shutdown: &watch::Receiver<bool>) -> bool {
    // Only the connection's end can end an open-ended body for HTTP/1.0.
    let ends_at_close = response.body.is_open_ended() && head.version == Version::Http10;
    head.wants_keep_alive() && !response.close && !*shutdown.borrow() && !ends_at_close
}

/// The `Connection` field that says `keep_alive` to a client of `version`.
fn connection_header(keep_alive: bool, version: Version) -> ConnectionHeader {
    match (keep_alive, version) {
        (false, _) => ConnectionHeader::Close,
        (true, Version::Http10) => ConnectionHeader::KeepAlive,
        (true, Version::Http11) => ConnectionHeader::Default,
    }
}

/// Reads a body of `len` bytes (None: chunked, at most `max_body`) into
/// `sink`, part by part: first the bytes that came with the head (at
/// `start` of `buf`: copied, and counted), then by `read(2)` straight into
/// the sink's space (a chunked body is decoded through `buf`, its data
/// copied in). `Ok(true)`: all of it; `Ok(false)`: the handler took no
/// more (the rest is left unread). The sink is dropped when this returns,
/// which tells a handler whose body ended short (it may be streaming its
/// answer meanwhile) that no more comes.
async fn pump_parts(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    start: usize,
    len: Option<u64>,
    mut sink: Box<dyn BodySink>,
    max_body: u64,
    timeout: Duration,
) -> Result<bool, Error> {
    let sink = sink.as_mut();
    let Some(len) = len else {
        return pump_chunked(stream, buf, start, sink, max_body, timeout).await;
    };
    let have = ((buf.len() - start) as u64).min(len) as usize;
    let mut done = 0;
    while done < have {
        if !sink.ready().await? {
            return Ok(false);
        }
        let space = sink.space(have - done);
        let n = space.len();
        space.copy_from_slice(&buf[start + done..start + done + n]);
        sink.advance(n);
        iolite_ipc::copied::add(n);
        done += n;
    }
    buf.drain(start..start + have);
    let mut left = len - have as u64;
    while left > 0 {
        if !sink.ready().await? {
            return Ok(false);
        }
        let space = sink.space(usize::try_from(left).unwrap_or(usize::MAX));
        let n = read_body_bytes(stream, space, timeout).await?;
        sink.advance(n);
        left -= n as u64;
    }
    Ok(true)
}

/// [`pump_parts`] for a chunked body: decodes what is buffered after
/// `start` into the sink's space (never more input than the space holds,
/// so the data fits), reading more into `buf` as needed; the data runs are
/// copied (and counted), as the framing sits between them.
async fn pump_chunked(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    start: usize,
    sink: &mut dyn BodySink,
    max_body: u64,
    timeout: Duration,
) -> Result<bool, Error> {
    const READ: usize = 64 << 10;
    let mut decoder = ChunkedDecoder::new(max_body);
    loop {
        if buf.len() > start {
            if !sink.ready().await? {
                return Ok(false);
            }
            let space = sink.space(usize::MAX);
            let take = (buf.len() - start).min(space.len());
            let mut filled = 0;
            let progress = decoder.feed(&buf[start..start + take], |data| {
                space[filled..filled + data.len()].copy_from_slice(data);
                filled += data.len();
            })?;
            sink.advance(filled);
            iolite_ipc::copied::add(filled);
            buf.drain(start..start + progress.consumed);
            if progress.done {
                sink.finish();
                return Ok(true);
            }
            if buf.len() > start {
                continue;
            }
        }
        let at = buf.len();
        buf.resize(at + READ, 0);
        let read = read_body_bytes(stream, &mut buf[at..], timeout).await;
        buf.truncate(at + *read.as_ref().unwrap_or(&0));
        read?;
    }
}

/// One read of request body bytes into `space`, within `timeout` (408);
/// the client closing before the body's end is an I/O error.
async fn read_body_bytes(
    stream: &TcpStream,
    space: &mut [u8],
    timeout: Duration,
) -> Result<usize, Error> {
    match tokio::time::timeout(timeout, read_some(stream, space)).await {
        Err(_) => Err(Error::HeaderTimeout),
        Ok(Ok(0)) => Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(Error::Io(e)),
    }
}

/// One `read(2)` into `space` once the socket is readable (through a
/// shared reference, so that the answer can be written meanwhile).
async fn read_some(stream: &TcpStream, space: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(space) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
    }
}

/// Completes when the client has closed (or reset) its side; never when
/// it sends more (a pipelined request is not a departure).
async fn client_gone(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

impl Conn {
    async fn run(
        &mut self,
        ctx: &WorkerCtx,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<()> {
        let mut first = true;
        loop {
            let head = match self.read_head(ctx, first, shutdown).await? {
                HeadRead::Head(head) => head,
                HeadRead::Closed => return Ok(()),
                HeadRead::Error(error) => {
                    let response = Response::from_error(&error);
                    let sent = self
                        .respond(
                            ctx,
                            &response,
                            Version::Http11,
                            false,
                            ConnectionHeader::Close,
                        )
                        .await?;
                    self.log(ctx, None, response.status, sent);
                    return self.linger().await;
                }
            };
            first = false;
            let answer = ctx.phases.process_request(
                &head,
                &self.buf[..head.head_len],
                &mut self.path,
                self.peer,
            );
            let (response, mut keep_alive) = match answer {
                Answer::Now(response) => self.finish_now(ctx, &head, response).await?,
                Answer::Later(mut pending) => {
                    match self.read_body_into(ctx, &head, pending.as_mut()).await {
                        Ok(Some((sink, len))) => {
                            let keep_alive = self
                                .serve_in_parts(ctx, &head, pending, sink, len, shutdown)
                                .await?;
                            if !keep_alive {
                                return self.linger().await;
                            }
                            self.buf.drain(..head.head_len);
                            continue;
                        }
                        Ok(None) => {
                            // A client that goes away meanwhile cancels the
                            // request: dropping the answer's future tells
                            // its handler.
                            let response = tokio::select! {
                                response = pending.respond() => response,
                                () = client_gone(&self.stream) => {
                                    self.log(ctx, Some(&head), 499, 0);
                                    return Ok(());
                                }
                            };
                            let keep_alive = head.wants_keep_alive() && !response.close;
                            (response, keep_alive)
                        }
                        Err(Error::Io(e)) => return Err(e),
                        Err(error) => (Response::from_error(&error), false),
                    }
                }
            };
            keep_alive &= keeps_alive(&head, &response, shutdown);
            let connection = connection_header(keep_alive, head.version);
            let head_only = head.method == Method::Head;
            let sent = self
                .respond(ctx, &response, head.version, head_only, connection)
                .await?;
            self.log(ctx, Some(&head), response.status, sent);
            if !keep_alive {
                // Whatever the client sent beyond this request is not read.
                return self.linger().await;
            }
            self.buf.drain(..head.head_len);
        }
    }

    /// The body of a request answered at once is read and thrown away
    /// (unless the client waits for a 100 that an error makes moot).
    async fn finish_now(
        &mut self,
        ctx: &WorkerCtx,
        head: &RequestHead,
        mut response: Response,
    ) -> io::Result<(Response, bool)> {
        let mut keep_alive = head.wants_keep_alive() && !response.close;
        if head.body != BodyFraming::None {
            let body_buffered = match head.body {
                BodyFraming::Length(n) => (self.buf.len() - head.head_len) as u64 >= n,
                _ => false,
            };
            if head.expect_continue && !body_buffered && response.status >= 300 {
                // The client waits for our word before sending the body;
                // the final status is that word, and the body never comes
                // onto this connection.
                keep_alive = false;
            } else if let Err(error) = self.discard_body(ctx, head).await {
                if let Error::Io(e) = error {
                    return Err(e);
                }
                response = Response::from_error(&error);
                keep_alive = false;
            }
        }
        Ok((response, keep_alive))
    }

    /// Reads the request body into a pending handler: the bytes that came
    /// with the head are copied (and counted), the rest is read by `read(2)`
    /// straight into the handler's buffer. A chunked body is decoded and its
    /// data copied in run by run. Returns the sink and the length of a body
    /// the handler takes in parts instead (nothing of it read yet).
    async fn read_body_into(
        &mut self,
        ctx: &WorkerCtx,
        head: &RequestHead,
        pending: &mut dyn PendingResponse,
    ) -> Result<Option<(Box<dyn BodySink>, Option<u64>)>, Error> {
        let len = match head.body {
            BodyFraming::None | BodyFraming::Length(0) => return Ok(None),
            BodyFraming::Chunked => {
                if let BodyMode::Parts(sink) = pending.body_start_chunked()? {
                    return Ok(Some((sink, None)));
                }
                return self
                    .read_chunked_into(ctx, head, pending)
                    .await
                    .map(|()| None);
            }
            BodyFraming::Length(len) => len,
        };
        if len > ctx.opts.limits.max_body {
            return Err(Error::BodyTooLarge);
        }
        if let BodyMode::Parts(sink) = pending.body_start(len)? {
            return Ok(Some((sink, Some(len))));
        }
        let start = head.head_len;
        let have = ((self.buf.len() - start) as u64).min(len) as usize;
        if have > 0 {
            pending.body_prefix(&self.buf[start..start + have]);
            self.buf.drain(start..start + have);
        }
        let mut remaining = len - have as u64;
        let mut continue_sent = !head.expect_continue || head.version == Version::Http10;
        while remaining > 0 {
            self.send_continue(ctx, &mut continue_sent).await?;
            let space = pending.body_space(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = read_body_bytes(&self.stream, space, ctx.opts.header_timeout).await?;
            pending.body_advance(n);
            remaining -= n as u64;
        }
        Ok(None)
    }

    /// Serves a request whose handler takes its body in parts: the answer
    /// is awaited, and then sent, while the body is still being read into
    /// `sink` (full duplex: a handler may answer, or stream its answer,
    /// before the body has all come). Logs the request. Returns whether the
    /// connection stays open: only when the whole body was read before the
    /// answer's head went out (a body left unread closes the connection,
    /// announced, and is drained by the lingering close).
    async fn serve_in_parts(
        &mut self,
        ctx: &WorkerCtx,
        head: &RequestHead,
        pending: Box<dyn PendingResponse>,
        sink: Box<dyn BodySink>,
        len: Option<u64>,
        shutdown: &watch::Receiver<bool>,
    ) -> io::Result<bool> {
        // The body will be read: the interim answer goes out first, before
        // anything else can be written on the connection (it fails only in
        // I/O).
        let mut continue_sent = !head.expect_continue || head.version == Version::Http10;
        self.send_continue(ctx, &mut continue_sent)
            .await
            .map_err(|e| match e {
                Error::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
        let answer = pending.respond();
        // (status, bytes sent, keep-alive); None: the client went away (a
        // dropped answer future cancels the request in its handler).
        let done = {
            let Conn {
                stream, buf, out, ..
            } = self;
            let stream = &*stream;
            let pump = pump_parts(
                stream,
                buf,
                head.head_len,
                len,
                sink,
                ctx.opts.limits.max_body,
                ctx.opts.header_timeout,
            );
            tokio::pin!(pump, answer);
            // None while the body is being read; then whether all of it was.
            let mut pumped: Option<bool> = None;
            let response = loop {
                tokio::select! {
                    read = &mut pump, if pumped.is_none() => match read {
                        Ok(complete) => pumped = Some(complete),
                        Err(Error::Io(_)) => break None,
                        Err(error) => break Some(Response::from_error(&error)),
                    },
                    response = &mut answer => break Some(response),
                    () = client_gone(stream), if pumped == Some(true) => break None,
                }
            };
            match response {
                None => None,
                Some(response) => {
                    let keep_alive = pumped == Some(true) && keeps_alive(head, &response, shutdown);
                    let connection = connection_header(keep_alive, head.version);
                    let head_only = head.method == Method::Head;
                    let send = send_answer(
                        stream,
                        out,
                        ctx,
                        &response,
                        head.version,
                        head_only,
                        connection,
                    );
                    tokio::pin!(send);
                    // The handler may still need body parts to finish its
                    // answer (a streamed echo): keep reading them.
                    let sent = loop {
                        tokio::select! {
                            read = &mut pump, if pumped.is_none() => {
                                pumped = Some(read.unwrap_or(false));
                            }
                            sent = &mut send => break sent?,
                        }
                    };
                    Some((response.status, sent, keep_alive))
                }
            }
        };
        let Some((status, sent, keep_alive)) = done else {
            self.log(ctx, Some(head), 499, 0);
            return Ok(false);
        };
        self.log(ctx, Some(head), status, sent);
        Ok(keep_alive)
    }

    /// Decodes a chunked body into a pending handler, run by run of data
    /// (each copied: the framing sits between the runs).
    async fn read_chunked_into(
        &mut self,
        ctx: &WorkerCtx,
        head: &RequestHead,
        pending: &mut dyn PendingResponse,
    ) -> Result<(), Error> {
        let start = head.head_len;
        let mut continue_sent = !head.expect_continue || head.version == Version::Http10;
        let mut decoder = ChunkedDecoder::new(ctx.opts.limits.max_body);
        loop {
            let mut refused = None;
            let progress = decoder.feed(&self.buf[start..], |data| {
                if refused.is_none() {
                    refused = pending.body_chunk(data).err();
                }
            })?;
            if let Some(error) = refused {
                return Err(error);
            }
            self.buf.drain(start..start + progress.consumed);
            if progress.done {
                return Ok(());
            }
            self.send_continue(ctx, &mut continue_sent).await?;
            self.read_more(ctx).await?;
        }
    }

    /// Writes an access-log line for the request whose head is at the start
    /// of the read buffer (`None`: no request line could be read). `sent`
    /// counts the response head too; the log counts body bytes only.
    fn log(&self, ctx: &WorkerCtx, head: Option<&RequestHead>, status: u16, sent: u64) {
        let Some(writer) = &ctx.access_log else {
            return;
        };
        let buf = &self.buf;
        let span = |s: Option<crate::http::request::Span>| s.map(|s| s.get(buf));
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
            status,
            body_bytes: sent.saturating_sub(self.out.len() as u64),
            referer: span(head.and_then(|h| h.referer)),
            user_agent: span(head.and_then(|h| h.user_agent)),
        };
        writer.borrow_mut().log(&entry);
    }

    /// Writes `response` and counts it. Returns the bytes written.
    async fn respond(
        &mut self,
        ctx: &WorkerCtx,
        response: &Response,
        version: Version,
        head_only: bool,
        connection: ConnectionHeader,
    ) -> io::Result<u64> {
        send_answer(
            &self.stream,
            &mut self.out,
            ctx,
            response,
            version,
            head_only,
            connection,
        )
        .await
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
                match parse_head(&self.buf, &opts.limits) {
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

    /// Reads the request body after the head and throws it away, sending
    /// `100 Continue` first if the client waits for it.
    async fn discard_body(&mut self, ctx: &WorkerCtx, head: &RequestHead) -> Result<(), Error> {
        let start = head.head_len;
        let limits = &ctx.opts.limits;
        let mut continue_sent = !head.expect_continue || head.version == Version::Http10;
        match head.body {
            BodyFraming::None => Ok(()),
            BodyFraming::Length(len) => {
                if len > limits.max_body {
                    return Err(Error::BodyTooLarge);
                }
                let mut remaining = len;
                loop {
                    let take = ((self.buf.len() - start) as u64).min(remaining);
                    self.buf.drain(start..start + take as usize);
                    remaining -= take;
                    if remaining == 0 {
                        return Ok(());
                    }
                    self.send_continue(ctx, &mut continue_sent).await?;
                    self.read_more(ctx).await?;
                }
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(limits.max_body);
                loop {
                    let progress = decoder.feed(&self.buf[start..], |_| {})?;
                    self.buf.drain(start..start + progress.consumed);
                    if progress.done {
                        return Ok(());
                    }
                    self.send_continue(ctx, &mut continue_sent).await?;
                    self.read_more(ctx).await?;
                }
            }
        }
    }

    async fn send_continue(&mut self, ctx: &WorkerCtx, sent: &mut bool) -> Result<(), Error> {
        if !*sent {
            *sent = true;
            let body = crate::response::Body::Empty;
            send_response(
                &self.stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                &body,
                false,
                ctx.opts.send_timeout,
            )
            .await?;
        }
        Ok(())
    }

    /// One read of body bytes, bounded by the header timeout.
    async fn read_more(&mut self, ctx: &WorkerCtx) -> Result<(), Error> {
        if self.buf.capacity() - self.buf.len() < READ_RESERVE / 2 {
            self.buf.reserve(READ_RESERVE);
        }
        match tokio::time::timeout(ctx.opts.header_timeout, self.stream.read_buf(&mut self.buf))
            .await
        {
            Err(_) => Err(Error::HeaderTimeout),
            Ok(Ok(0)) => Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Io(e)),
        }
    }

    /// Half-closes, then drains what the client still sends for a bounded
    /// time, so that closing does not reset the connection under the last
    /// response.
    async fn linger(&mut self) -> io::Result<()> {
        self.stream.shutdown().await?;
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        loop {
            self.buf.clear();
            if self.buf.capacity() < READ_RESERVE {
                self.buf.reserve(READ_RESERVE);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 && drained < LINGER_BYTES => drained += n,
                _ => return Ok(()),
            }
        }
    }
}
