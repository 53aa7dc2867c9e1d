//! What a module author writes against: [`Module`], the [`Request`] view,
//! the [`Ctx`] with its output-pool [`Writer`], the request body's parts
//! ([`Ctx::body_part`]), [`Response`] and streamed answers ([`BodyStream`]).

use std::net::SocketAddr;

use iolite_ipc::{Agg, BufMut, Pool};

use crate::link::Link;
use crate::parts::BodyLeft;
use crate::wire::{Msg, RequestFrame};

/// A content module. One value serves every request of its runner process,
/// from several threads at once: the runner serves each of the server's
/// worker threads on a thread of its own (hence `Send + Sync`); requests
/// from one server worker are handled one at a time, in order.
///
/// A panic in [`handle`](Module::handle) ends the process: the server
/// answers that request (and any other in flight in the process) with 502
/// and starts a new process.
pub trait Module: Send + Sync {
    /// Whether the module takes large request bodies in parts, as the server
    /// reads them ([`Ctx::body_part`]), instead of whole in
    /// [`Request::body`]. With `false` (the default) a body must fit the
    /// module's request pool whole, as bodies up to the server's `max_body`
    /// do; with `true`, bodies over [`BODY_PART`](crate::BODY_PART) come in
    /// parts of at most that size, and a body of any size goes through a
    /// fixed pool (an upload of several GiB).
    ///
    /// The contract with `true`: read the body with [`Ctx::body_part`] (or
    /// [`BodyStream::body_part`]) and drop each part once used. The server
    /// has only a few parts of a request unreleased at a time, so a module
    /// that holds on to many parts stalls the upload (and then waits for a
    /// part that never comes, until the server's timeout). Answering
    /// before the body's end is fine: the parts still to come are dropped
    /// on arrival. A request in parts sent to a module without this flag
    /// (a server that ignored it) is answered 413 by the runtime.
    const BODY_IN_PARTS: bool = false;

    /// Called once in each runner process before the first request. An
    /// error ends the process (the server logs it and retries with backoff).
    fn init(&mut self, init: &Init) -> Result<(), String> {
        let _ = init;
        Ok(())
    }

    /// Answers one request.
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response;
}

/// What [`Module::init`] is told.
#[derive(Debug, Clone)]
pub struct Init {
    pub(crate) name: String,
}

impl Init {
    /// The module's name: its mount prefix (`/hello`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A request: its head, and its body as an aggregate of read-only slices of
/// the module's request pool (the bytes the server read from the client,
/// never copied on the way).
#[derive(Debug)]
pub struct Request {
    pub(crate) frame: RequestFrame,
    pub(crate) body: Agg,
}

impl Request {
    /// The method token (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.frame.method
    }

    /// The percent-decoded, dot-segment-free path, mount prefix included.
    pub fn path(&self) -> &str {
        &self.frame.path
    }

    /// The raw query string without `?` (empty when absent).
    pub fn query(&self) -> &str {
        &self.frame.query
    }

    /// Every header field, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.frame
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The first header field named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The client's address.
    pub fn client(&self) -> Option<SocketAddr> {
        self.frame.client
    }

    /// The body, when it came whole (empty when it comes in parts: see
    /// [`body_in_parts`](Request::body_in_parts)). Slices of it may go into
    /// the response as they are (see [`Response::body`]): the server sends
    /// them from the same pages.
    pub fn body(&self) -> &Agg {
        &self.body
    }

    /// The body's length in bytes, whole or in parts (for a body in parts,
    /// the sum of the parts [`Ctx::body_part`] returns, known before the
    /// first came: a streamed answer of the same length can start at once).
    /// None for a chunked upload in parts: its length is known only at its
    /// end (`body_part` returns None).
    pub fn body_len(&self) -> Option<u64> {
        match self.frame.parts {
            0 => Some(self.body.len() as u64),
            crate::wire::PARTS_UNKNOWN => None,
            n => Some(n),
        }
    }

    /// Whether the body comes in parts, read with [`Ctx::body_part`]
    /// ([`body`](Request::body) is then empty). Only a module with
    /// [`Module::BODY_IN_PARTS`] gets bodies in parts.
    pub fn body_in_parts(&self) -> bool {
        self.frame.parts > 0
    }
}

/// Per-request services: the output pool, the server's unified cache, the
/// request body's parts ([`Ctx::body_part`]) and streamed answers
/// ([`Ctx::stream`]).
#[derive(Debug)]
pub struct Ctx<'a> {
    pub(crate) link: Link<'a>,
    /// The request's id.
    pub(crate) id: u64,
    /// The request's body when it came whole (empty when in parts).
    pub(crate) whole: &'a Agg,
    /// What [`Ctx::body_part`] has still to hand out.
    pub(crate) body: BodyLeft,
    /// Bytes a started stream still owes (None: not streamed; Some(None):
    /// a stream of unknown length).
    pub(crate) stream_left: Option<Option<u64>>,
}

/// Most parts a stream leaves unreleased by the server before
/// [`BodyStream::send`] waits (with writer chunks of at most 1 MiB, this
/// bounds a stream's share of the output pool).
const MAX_PARTS_OUTSTANDING: usize = 32;

/// The first chunk a [`Writer`] allocates; later chunks double up to
/// [`MAX_CHUNK`].
const MIN_CHUNK: usize = 4096;
const MAX_CHUNK: usize = 1 << 20;

impl Ctx<'_> {
    /// A writer into this process's output pool. Its bytes are written once,
    /// there, and the server sends them from the same pages.
    pub fn writer(&mut self) -> Writer<'_> {
        Writer {
            pool: self.link.pool,
            cur: None,
            done: Agg::new(),
            written: 0,
        }
    }

    /// The next part of the request body, `None` once all of it came; the
    /// same loop reads a body whole or in parts:
    ///
    /// ```
    /// # use iolite_sdk::{Ctx, Request, Response};
    /// fn count_newlines(req: &Request, ctx: &mut Ctx<'_>) -> Response {
    ///     let mut newlines = 0;
    ///     loop {
    ///         match ctx.body_part() {
    ///             // Each part is dropped before the next is read.
    ///             Ok(Some(part)) => newlines += part.iter().flatten().filter(|&&b| b == b'\n').count(),
    ///             Ok(None) => break,
    ///             Err(_) => return Response::new(400), // nobody reads it
    ///         }
    ///     }
    ///     Response::new(200).header("X-Newlines", newlines.to_string())
    /// }
    /// ```
    ///
    /// A body that came whole ([`Request::body_in_parts`] false) is
    /// returned once, as [`Request::body`] (unless it is empty). A body in
    /// parts (only for a module with [`Module::BODY_IN_PARTS`]) comes as
    /// the server reads it from the client, in parts of at most
    /// [`BODY_PART`](crate::BODY_PART) bytes, [`Request::body_len`] bytes
    /// in all (a chunked upload: until the client's last chunk): this call
    /// waits for the next one. A part is read-only
    /// slices of the request pool, never copied; like the body, its slices
    /// may go into the answer by reference, also into a stream started
    /// before the body ended ([`BodyStream::body_part`]).
    ///
    /// The server has only a few parts of a request out at a time and
    /// sends the next ones as the module drops them: drop each part once
    /// used (or keep only a few); a module that holds every part waits
    /// for the next one forever (until the server's timeout). Parts not
    /// read when [`Module::handle`] returns are dropped by the runtime as
    /// they come.
    ///
    /// # Errors
    /// [`Error::Cancelled`](crate::Error::Cancelled): the client went away
    /// (no more parts come; the answer is not read).
    /// [`Error::Protocol`](crate::Error::Protocol): the server broke the
    /// protocol or went away; the runner ends once this request is
    /// answered. Every later call returns the same error.
    pub fn body_part(&mut self) -> Result<Option<Agg>, crate::Error> {
        crate::parts::next_part(&mut self.link, self.id, self.whole, &mut self.body)
    }

    /// The bytes of the file at URL path `path` under the server's document
    /// root, from its unified cache (loaded there on a miss), as read-only
    /// slices of the cache pool: put them in the response body and the
    /// server sends them from the same pages, never copied. `None` when
    /// there is no such file, it is not cacheable (too large, cache off or
    /// full) or the server is gone. One round trip to the server per call.
    pub fn cached(&mut self, path: &str) -> Option<Agg> {
        let link = &mut self.link;
        link.peer
            .send(&Msg::CacheLookup {
                path: path.to_owned(),
            })
            .ok()?;
        let body = loop {
            match link.peer.recv().ok()? {
                Msg::Cached { body } => break body?,
                other => link.pending.push_back(other),
            }
        };
        let agg = link.peer.import(&body).ok()?;
        link.quotable.extend(body.bufs);
        Some(agg)
    }

    /// Starts a streamed answer with `head`'s status and header fields (its
    /// body is ignored) and a body of exactly `len` bytes, sent in parts
    /// with [`BodyStream::send`] as they are produced: a body of any size
    /// goes through the fixed output pool, since `send` waits while too many
    /// parts are still being sent. What [`Module::handle`] returns after
    /// streaming is ignored; a stream left short of `len` closes the
    /// client's connection. The request body's parts can still be read,
    /// with [`BodyStream::body_part`].
    ///
    /// # Errors
    /// A stream was already started for this request, or the server is gone.
    pub fn stream(&mut self, head: Response, len: u64) -> Result<BodyStream<'_>, crate::Error> {
        self.start_stream(head, Some(len))
    }

    /// Starts a streamed answer whose length is not known in advance (a
    /// report produced row by row, events as they happen): as
    /// [`stream`](Ctx::stream), but parts are sent until
    /// [`Module::handle`] returns, which ends the body. The server sends it
    /// in chunks (`Transfer-Encoding: chunked`) to HTTP/1.1 clients and
    /// until it closes the connection to HTTP/1.0 ones. A runner that dies
    /// meanwhile leaves the body unterminated, so the client sees it was cut
    /// short; so does a request cancelled meanwhile (its client went away,
    /// or its body in parts ended short: [`Error::Cancelled`](crate::Error)).
    ///
    /// # Errors
    /// A stream was already started for this request, or the server is gone.
    pub fn stream_open_ended(&mut self, head: Response) -> Result<BodyStream<'_>, crate::Error> {
        self.start_stream(head, None)
    }

    fn start_stream(
        &mut self,
        head: Response,
        len: Option<u64>,
    ) -> Result<BodyStream<'_>, crate::Error> {
        if self.stream_left.is_some() {
            return Err(crate::Error::Protocol("a stream was already started"));
        }
        self.link.peer.send(&Msg::StreamHead {
            id: self.id,
            status: head.status,
            headers: head.headers,
            len,
        })?;
        Ok(BodyStream {
            link: self.link.reborrow(),
            id: self.id,
            left: self.stream_left.insert(len),
            whole: self.whole,
            body: &mut self.body,
        })
    }

    /// A raw buffer of `capacity` bytes in the output pool, to fill (for
    /// example with `read(2)`) and freeze.
    ///
    /// # Errors
    /// The pool is exhausted (buffers of earlier responses are still being
    /// sent) or the size is invalid.
    pub fn alloc(&self, capacity: usize) -> Result<BufMut, iolite_ipc::Error> {
        self.link.pool.alloc(capacity)
    }
}

/// A streamed answer in progress (see [`Ctx::stream`]).
#[derive(Debug)]
pub struct BodyStream<'a> {
    link: Link<'a>,
    id: u64,
    /// Bytes still owed (None: unknown length).
    left: &'a mut Option<u64>,
    whole: &'a Agg,
    body: &'a mut BodyLeft,
}

impl<'a> BodyStream<'a> {
    /// A writer into the output pool, for the next part.
    pub fn writer(&self) -> Writer<'a> {
        Writer {
            pool: self.link.pool,
            cur: None,
            done: Agg::new(),
            written: 0,
        }
    }

    /// Bytes still owed (`u64::MAX` for a stream of unknown length).
    pub fn remaining(&self) -> u64 {
        self.left.unwrap_or(u64::MAX)
    }

    /// The next part of the request body, as [`Ctx::body_part`] (which
    /// the stream borrows): reading the body while the answer streams,
    /// each part can go back out as it came (full duplex).
    ///
    /// # Errors
    /// As [`Ctx::body_part`].
    pub fn body_part(&mut self) -> Result<Option<Agg>, crate::Error> {
        crate::parts::next_part(&mut self.link, self.id, self.whole, self.body)
    }

    /// Sends `part` (output-pool buffers, request-body or cached slices, by
    /// reference), first waiting while too many earlier parts are still
    /// being sent to the client.
    ///
    /// # Errors
    /// `part` overruns the announced length or holds a buffer this request
    /// cannot name; the server is gone; [`Error::Cancelled`](crate::Error)
    /// once the client went away (stop producing: the stream is ended for
    /// you).
    pub fn send(&mut self, part: &Agg) -> Result<(), crate::Error> {
        if part.len() as u64 > self.remaining() {
            return Err(crate::Error::Protocol(
                "the part overruns the stream's length",
            ));
        }
        if part.is_empty() {
            return Ok(());
        }
        // The client went away: no use producing the rest.
        if crate::parts::cancelled(&mut self.link, self.id)? {
            return Err(crate::Error::Cancelled);
        }
        let link = &mut self.link;
        while link.peer.leases_outstanding() > MAX_PARTS_OUTSTANDING {
            if let iolite_ipc::Event::Message(m) = link.peer.recv_event()? {
                link.pending.push_back(m);
            }
        }
        let body = if link.copy {
            crate::transfer::copy_out(link.peer, self.id, part)?;
            iolite_ipc::AggDesc::default()
        } else {
            crate::transfer::describe(link.peer, link.pool, part, link.quotable)?
        };
        link.peer.send(&Msg::StreamPart { id: self.id, body })?;
        if let Some(left) = self.left.as_mut() {
            *left -= part.len() as u64;
        }
        Ok(())
    }
}

/// Writes into the output pool in chunks; [`finish`](Writer::finish) turns
/// what was written into an [`Agg`]. Implements [`std::io::Write`] and
/// [`std::fmt::Write`] (so `write!` works); writes fail only when the pool
/// is exhausted.
#[derive(Debug)]
pub struct Writer<'a> {
    pool: &'a Pool,
    cur: Option<BufMut>,
    done: Agg,
    written: usize,
}

impl Writer<'_> {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// What was written, as an aggregate of output-pool buffers.
    pub fn finish(mut self) -> Agg {
        if let Some(cur) = self.cur.take() {
            self.done.push(cur.freeze());
        }
        std::mem::take(&mut self.done)
    }

    fn room(&mut self, want: usize) -> std::io::Result<&mut BufMut> {
        let full = self.cur.as_ref().is_none_or(|c| c.remaining() == 0);
        if full {
            if let Some(cur) = self.cur.take() {
                self.done.push(cur.freeze());
            }
            let size = self
                .written
                .clamp(MIN_CHUNK, MAX_CHUNK)
                .max(want.min(MAX_CHUNK));
            let buf = self
                .pool
                .alloc(size)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
            self.cur = Some(buf);
        }
        Ok(self.cur.as_mut().expect("a chunk was just ensured"))
    }
}

impl std::io::Write for Writer<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let cur = self.room(data.len())?;
        let n = cur.remaining().min(data.len());
        cur.extend_from_slice(&data[..n])
            .map_err(std::io::Error::other)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        std::io::Write::write_all(self, s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

/// An answer: status, header fields and a body aggregate that may mix
/// output-pool buffers ([`Writer::finish`]) and slices of the request body
/// ([`Request::body`]), none of them copied.
#[derive(Debug, Clone)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Agg,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Agg::new(),
        }
    }

    /// Adds a header field. `Content-Length`, `Date`, `Server` and
    /// `Connection` belong to the server and are dropped; a name or value
    /// with CR or LF makes the response a 500.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Agg) -> Self {
        self.body = body;
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body set so far.
    pub fn body_ref(&self) -> &Agg {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn writer(pool: &Pool) -> Writer<'_> {
        Writer {
            pool,
            cur: None,
            done: Agg::new(),
            written: 0,
        }
    }

    #[test]
    fn the_writer_keeps_every_byte_in_order_table() {
        let pool = Pool::new(16 << 20).unwrap();
        let cases: &[&[usize]] = &[
            &[],
            &[1],
            &[4096],
            &[4097],
            &[3, 4093, 1, 5000],
            &[1 << 20, 1, (1 << 20) + 7],
            &[100; 200],
        ];
        for sizes in cases {
            let mut w = writer(&pool);
            let mut want = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let chunk: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                w.write_all(&chunk).unwrap();
                want.extend_from_slice(&chunk);
            }
            assert_eq!(w.len(), want.len());
            let agg = w.finish();
            assert_eq!(agg.copy_to_vec(), want, "{sizes:?}");
            // Chunks grow: never more buffers than writes plus doublings.
            assert!(agg.bufs().len() <= sizes.len() + 12, "{sizes:?}");
        }
    }

    #[test]
    fn the_writer_formats_and_fails_cleanly_when_the_pool_is_full() {
        let pool = Pool::new(64 << 10).unwrap();
        let mut w = writer(&pool);
        std::fmt::Write::write_fmt(&mut w, format_args!("{}-{}", 1, "a")).unwrap();
        assert_eq!(w.finish().copy_to_vec(), b"1-a");
        let mut w = writer(&pool);
        let big = vec![7u8; 1 << 20];
        let err = w.write_all(&big).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
        assert!(std::fmt::Write::write_str(&mut writer(&pool), &"x".repeat(1 << 20)).is_err());
    }

    fn request(headers: Vec<(String, Vec<u8>)>, body: Agg, parts: u64) -> Request {
        Request {
            frame: RequestFrame {
                id: 1,
                method: "GET".into(),
                path: "/a".into(),
                query: String::new(),
                headers,
                client: None,
                body: iolite_ipc::AggDesc::default(),
                parts,
            },
            body,
        }
    }

    #[test]
    fn request_headers_match_names_case_insensitively() {
        let req = request(
            vec![
                ("Content-Type".into(), b"text/x".to_vec()),
                ("X-Two".into(), b"1".to_vec()),
                ("x-two".into(), b"2".to_vec()),
            ],
            Agg::new(),
            0,
        );
        assert_eq!(req.header("content-type"), Some(&b"text/x"[..]));
        assert_eq!(req.header("X-TWO"), Some(&b"1"[..]));
        assert_eq!(req.header("absent"), None);
        assert_eq!(req.headers().count(), 3);
    }

    #[test]
    fn a_body_has_its_length_whole_or_in_parts_table() {
        let pool = Pool::new(1 << 20).unwrap();
        let mut w = writer(&pool);
        w.write_all(b"hello").unwrap();
        let five = w.finish();
        // (body, bytes announced in parts) -> (body_len, body_in_parts)
        let cases = [
            (Agg::new(), 0, (Some(0), false)),
            (five, 0, (Some(5), false)),
            (Agg::new(), 1, (Some(1), true)),
            (Agg::new(), 5 << 30, (Some(5 << 30), true)),
            (Agg::new(), crate::wire::PARTS_UNKNOWN, (None, true)),
        ];
        for (body, parts, want) in cases {
            let req = request(Vec::new(), body, parts);
            assert_eq!((req.body_len(), req.body_in_parts()), want, "{parts}");
        }
    }
}
