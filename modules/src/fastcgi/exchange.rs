//! One request on one connection: `BEGIN_REQUEST` and `PARAMS`, the body
//! as `STDIN` records ([`StdinSink`]), then the answer ([`answer`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use iolite_core::body::{BodySink, FinishFuture, ReadyFuture};
use iolite_core::{Body, Error, FdBody, HeaderLines, Response, UpstreamFailure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{Conn, Idle};
use super::mount::FastCgi;
use super::record::{self, Deframer, Piece};
use crate::cgi::env::Var;
use crate::cgi::header::{self, Kind};

/// The request id: one request at a time on a connection (php-fpm does
/// not multiplex, `FCGI_MPXS_CONNS=0`).
const ID: u16 = 1;
/// The longest header block a peer may send.
const HEADER_LIMIT: usize = 64 * 1024;
/// `STDIN` content per record: the most a record holds, rounded down to 8.
const STDIN_RECORD: usize = record::MAX_CONTENT - 7;

/// A request's side of the exchange, shared by its body sink and its
/// answer (the body is complete before the answer is awaited).
#[derive(Debug)]
pub(super) struct Request {
    fcgi: Arc<FastCgi>,
    idle: Rc<Idle>,
    /// The connection once `BEGIN_REQUEST` and `PARAMS` went out.
    conn: Option<Conn>,
    /// The request's turn among the worker's requests to the peer.
    turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Request {
    /// A request given up while its body was going out (the client left,
    /// or a limit ended it): the peer is told, and the connection closes.
    fn drop(&mut self) {
        if let Some(conn) = &self.conn {
            conn.abort(ID);
        }
    }
}

/// A connection waiting for its answer's header block; given up (the
/// client left, the timeout struck), it tells the peer and closes.
struct InFlight(Option<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = &self.0 {
            conn.abort(ID);
        }
    }
}

impl Request {
    pub fn new(fcgi: Arc<FastCgi>, idle: Rc<Idle>) -> Request {
        Request {
            fcgi,
            idle,
            conn: None,
            turn: None,
        }
    }
}

/// Waits for the request's turn, takes an idle connection (or makes one)
/// and sends `BEGIN_REQUEST` and `PARAMS` on it.
async fn start(
    fcgi: &FastCgi,
    idle: &Idle,
    vars: &[Var],
) -> Result<(Conn, tokio::sync::OwnedSemaphorePermit), Error> {
    let turn = idle
        .turn()
        .await
        .map_err(|why| fcgi.error(UpstreamFailure::Unavailable(why)))?;
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(&record::begin_request(ID, true));
    record::params(
        ID,
        vars.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
        &mut out,
    );
    // An idle one closed by the peer meanwhile: a new connection.
    if let Some(mut conn) = idle.take()
        && conn.write_all(&out).await.is_ok()
    {
        return Ok((conn, turn));
    }
    let connect = Conn::connect(fcgi.address());
    let mut conn = match tokio::time::timeout(fcgi.timeout(), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!(fastcgi = %fcgi.name(), "cannot connect: {e}");
            return Err(fcgi.error(UpstreamFailure::Crashed));
        }
        Err(_) => return Err(fcgi.error(UpstreamFailure::TimedOut)),
    };
    conn.write_all(&out)
        .await
        .map_err(|_| fcgi.error(UpstreamFailure::Crashed))?;
    Ok((conn, turn))
}

/// A body with a length, as `STDIN` records while it arrives: read into
/// a record's room, written behind its header. The bytes pass through
/// user space and are counted as copied.
pub(super) struct StdinSink {
    request: Rc<RefCell<Request>>,
    /// Sent with `BEGIN_REQUEST` when the first bytes are ready.
    vars: Option<Vec<Var>>,
    /// A record header's room, then content.
    record: Vec<u8>,
    /// Where the room `space` last handed out starts.
    room_start: usize,
}

impl StdinSink {
    pub fn new(request: Rc<RefCell<Request>>, vars: Vec<Var>) -> StdinSink {
        let mut record = Vec::with_capacity(record::HEADER_LEN + STDIN_RECORD);
        record.resize(record::HEADER_LEN, 0);
        StdinSink {
            request,
            vars: Some(vars),
            record,
            room_start: record::HEADER_LEN,
        }
    }

    /// Sends what the record holds (an empty record ends `STDIN`).
    async fn flush(&mut self, last: bool) -> Result<(), Error> {
        let (fcgi, idle, conn) = {
            let mut r = self.request.borrow_mut();
            (r.fcgi.clone(), r.idle.clone(), r.conn.take())
        };
        let mut conn = match (conn, self.vars.take()) {
            (Some(c), _) => c,
            (None, Some(vars)) => {
                let (c, turn) = start(&fcgi, &idle, &vars).await?;
                self.request.borrow_mut().turn = Some(turn);
                c
            }
            (None, None) => return Err(fcgi.error(UpstreamFailure::Crashed)),
        };
        let len = self.record.len() - record::HEADER_LEN;
        if len > 0 {
            self.record[..record::HEADER_LEN].copy_from_slice(&record::stream_header(
                record::STDIN,
                ID,
                len,
            ));
            iolite_ipc::copied::add(len);
            conn.write_all(&self.record)
                .await
                .map_err(|_| fcgi.error(UpstreamFailure::Crashed))?;
            self.record.truncate(record::HEADER_LEN);
        }
        if last {
            conn.write_all(&record::stream_header(record::STDIN, ID, 0))
                .await
                .map_err(|_| fcgi.error(UpstreamFailure::Crashed))?;
        }
        self.request.borrow_mut().conn = Some(conn);
        Ok(())
    }
}

/// A full record: header and the most content.
const RECORD_FULL: usize = record::HEADER_LEN + STDIN_RECORD;

impl BodySink for StdinSink {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async move {
            if self.record.len() == RECORD_FULL {
                self.flush(false).await?;
            }
            Ok(true)
        })
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        let filled = self.record.len();
        self.room_start = filled;
        let room = (RECORD_FULL - filled).min(max);
        self.record.resize(filled + room, 0);
        &mut self.record[filled..]
    }

    fn advance(&mut self, n: usize) {
        // `space` handed out room past the filled bytes; keep the `n` of
        // it that were filled. The room is the vector's tail.
        self.record.truncate(self.room_start + n);
    }

    fn finish(&mut self) -> FinishFuture<'_> {
        Box::pin(async move { self.flush(true).await })
    }
}

/// Sends what is left of the request, reads the answer up to the
/// program's header block, and makes it a response.
pub(super) async fn answer(
    request: Rc<RefCell<Request>>,
    vars: Vec<Var>,
    body: Option<Vec<u8>>,
) -> Result<Response, Error> {
    let (fcgi, idle, conn, mut turn) = {
        let mut r = request.borrow_mut();
        (r.fcgi.clone(), r.idle.clone(), r.conn.take(), r.turn.take())
    };
    drop(request);
    let work = async {
        let conn = match conn {
            // The body's sink sent everything.
            Some(c) => c,
            None => {
                let (mut c, t) = start(&fcgi, &idle, &vars).await?;
                turn = Some(t);
                // Each record's header, then its content from the body as
                // it is (not gathered into another buffer first).
                let crashed = |_| fcgi.error(UpstreamFailure::Crashed);
                for chunk in body.as_deref().unwrap_or_default().chunks(STDIN_RECORD) {
                    c.write_all(&record::stream_header(record::STDIN, ID, chunk.len()))
                        .await
                        .map_err(crashed)?;
                    c.write_all(chunk).await.map_err(crashed)?;
                }
                c.write_all(&record::stream_header(record::STDIN, ID, 0))
                    .await
                    .map_err(crashed)?;
                c
            }
        };
        let mut flight = InFlight(Some(conn));
        let head = read_head(&fcgi, flight.0.as_mut().expect("in flight")).await?;
        let conn = flight.0.take().expect("in flight");
        Ok::<_, Error>((conn, head))
    };
    let (conn, head) = match tokio::time::timeout(fcgi.timeout(), work).await {
        Ok(r) => r?,
        Err(_) => return Err(fcgi.error(UpstreamFailure::TimedOut)),
    };
    // The turn ends with the answer's head: a body spliced from the
    // socket goes on outside the bound.
    let response = respond(&fcgi, &idle, conn, head);
    drop(turn);
    response
}

/// What the peer sent up to the end of the program's header block.
struct Head {
    deframer: Deframer,
    /// `STDOUT` bytes read: the header block, then the body's first bytes.
    stdout: Vec<u8>,
    block_end: usize,
    ended: bool,
}

async fn read_head(fcgi: &FastCgi, conn: &mut Conn) -> Result<Head, Error> {
    let invalid = |why| fcgi.error(UpstreamFailure::InvalidAnswer(why));
    let mut deframer = Deframer::new(ID);
    let mut stdout = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut scanned = 0;
    let mut ended = false;
    loop {
        let n = conn
            .read(&mut buf)
            .await
            .map_err(|_| fcgi.error(UpstreamFailure::Crashed))?;
        if n == 0 {
            return Err(fcgi.error(UpstreamFailure::Crashed));
        }
        let mut at = 0;
        while at < n {
            let (used, piece) = deframer.step(&buf[at..n]).map_err(|e| {
                tracing::warn!(fastcgi = %fcgi.name(), "{e}");
                invalid("malformed FastCGI records")
            })?;
            match piece {
                Piece::None => {}
                Piece::Stdout(r) => stdout.extend_from_slice(&buf[at + r.start..at + r.end]),
                Piece::Stderr(r) => record::log_stderr(fcgi.name(), &buf[at + r.start..at + r.end]),
                Piece::End(_) => ended = true,
            }
            at += used;
        }
        match header::find_end(&stdout, scanned, HEADER_LIMIT) {
            Ok(Some(block_end)) => {
                return Ok(Head {
                    deframer,
                    stdout,
                    block_end,
                    ended,
                });
            }
            Ok(None) if ended => return Err(invalid("the answer ended inside its header block")),
            Ok(None) => scanned = stdout.len(),
            Err(e) => {
                tracing::warn!(fastcgi = %fcgi.name(), "{e}");
                return Err(invalid("header block too long"));
            }
        }
    }
}

/// The response for a parsed head: from memory when the answer is
/// complete, else the socket as a descriptor body.
fn respond(fcgi: &FastCgi, idle: &Idle, conn: Conn, mut head: Head) -> Result<Response, Error> {
    let invalid = |why| fcgi.error(UpstreamFailure::InvalidAnswer(why));
    let cgi = header::parse(&head.stdout[..head.block_end]).map_err(|e| {
        tracing::warn!(fastcgi = %fcgi.name(), "{e}");
        invalid("malformed header block")
    })?;
    // The body's first bytes: moved out of the buffer they were read into.
    let rest = head.stdout.split_off(head.block_end);
    if let Kind::LocalRedirect(target) = &cgi.kind {
        if head.ended {
            idle.put(conn);
        }
        return Ok(Response::internal_redirect(target));
    }
    let mut lines = Vec::with_capacity(256);
    for (name, value) in &cgi.fields {
        lines.extend_from_slice(name.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value);
        lines.extend_from_slice(b"\r\n");
    }
    let headers = HeaderLines::Owned(lines);
    if head.ended {
        if cgi.content_length.is_some_and(|n| n != rest.len() as u64) {
            return Err(invalid("Content-Length differs from the body's length"));
        }
        idle.put(conn);
        iolite_ipc::copied::add(rest.len());
        return Ok(Response::new(cgi.status, headers, Body::Bytes(rest)));
    }
    let fd = conn
        .into_fd()
        .map_err(|_| fcgi.error(UpstreamFailure::Crashed))?;
    let body = FdBody::new(fd, cgi.content_length, fcgi.timeout())
        .map_err(|_| fcgi.error(UpstreamFailure::Crashed))?
        .with_prefix(rest)
        .framed(Box::new(head.deframer.log_stderr_as(fcgi.name().clone())));
    Ok(Response::new(cgi.status, headers, Body::Fd(Arc::new(body))))
}
