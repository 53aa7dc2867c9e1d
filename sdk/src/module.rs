//! What a module author writes against: [`Module`], the [`Request`] view
//! (its path below the mount, decoded parameters, a body reader), the
//! [`Ctx`] with its output-pool [`Writer`], the request body's parts
//! ([`Ctx::body_part`]) and streamed answers ([`BodyStream`]).

use std::net::SocketAddr;
use std::sync::Arc;

use iolite_ipc::{Agg, BufMut};

use crate::link::Link;
use crate::params::Params;
use crate::parts::BodyLeft;
use crate::reader::BodyReader;
use crate::response::Response;
use crate::status::HttpError;
use crate::wire::{Msg, RequestFrame};
use crate::writer::Writer;

/// A content module. One value serves every request of its runner process,
/// from several threads at once: the runner serves each of the server's
/// worker threads on a thread of its own (hence `Send + Sync`); requests
/// from one server worker are handled one at a time, in order.
///
/// State a module keeps in its value (or in statics) lives in one runner
/// process: each runner has its own, and it is lost when the runner ends —
/// recycled after `max_requests`, idle past `idle_timeout`, restarted
/// after a crash or a timeout, or replaced by a reload (SIGHUP). Keep what
/// must last or be shared between runners elsewhere (files under
/// `[module.sandbox] write_paths`, another service).
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

    /// Answers one request: `Ok` with the answer, or `Err` with an
    /// [`HttpError`], which the client gets as its status and message (a
    /// 5xx's cause goes to stderr, logged by the server under the module's
    /// name). `?` works on anything that converts into [`HttpError`].
    ///
    /// A module sees HEAD requests (method `HEAD`): the server sends the
    /// head of the answer only, with the length of the body returned
    /// ([`Router`](crate::Router) answers HEAD with the GET route).
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError>;

    /// The answer to an error [`handle`](Module::handle) returned (a
    /// 5xx's cause is already on stderr). The default answers the status
    /// and message as plain text ([`HttpError::into_response`]); a JSON
    /// API answers them as JSON with [`HttpError::respond`].
    fn error_response(&self, err: HttpError) -> Response {
        err.into_response()
    }
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
    /// The module's mount prefix ([`Init::name`]).
    pub(crate) mount: Arc<str>,
}

impl Request {
    /// The method token (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.frame.method
    }

    /// The percent-decoded, dot-segment-free path, mount prefix included
    /// (`/app/items/7`).
    pub fn path(&self) -> &str {
        &self.frame.path
    }

    /// The path below the module's mount, starting with `/` (`/items/7`
    /// for `/app/items/7` under `/app`; `/` for `/app` and `/app/`). What
    /// [`Router`](crate::Router) matches.
    pub fn sub_path(&self) -> &str {
        sub_path(&self.frame.path, &self.mount)
    }

    /// The module's mount prefix (`/app`; `/` for a module mounted at the
    /// root), to build links to the module's own pages.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The raw query string without `?` (empty when absent).
    pub fn query(&self) -> &str {
        &self.frame.query
    }

    /// The query string's parameters, decoded (`+` and `%XX`; see
    /// [`Params`]).
    pub fn query_params(&self) -> Params<'_> {
        Params::parse(self.frame.query.as_bytes())
    }

    /// The body's form fields (`application/x-www-form-urlencoded`),
    /// decoded in place when the body is one slice of the request pool (a
    /// body read in one go), else gathered into one buffer first (a copy,
    /// counted in the runner's `iolite_ipc::copied::total`).
    ///
    /// # Errors
    /// 415 when the body has another `Content-Type` (none is taken as a
    /// form); 413 for a body in parts (over [`BODY_PART`](crate::BODY_PART)
    /// to a module with [`Module::BODY_IN_PARTS`]).
    pub fn form(&self) -> Result<Params<'_>, HttpError> {
        self.whole_body_of(&["application/x-www-form-urlencoded"])?;
        Ok(Params::from_body(&self.body))
    }

    /// The body parsed as JSON into a `T` (with the `json` feature), in
    /// place when it is one slice, else gathered first (a copy, counted).
    ///
    /// # Errors
    /// 400 when the body is not a `T` in JSON (the message says why); 415
    /// for another `Content-Type` than `application/json` or `…+json`
    /// (none is taken as JSON); 413 for a body in parts.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        self.whole_body_of(&["application/json", "+json"])?;
        let parsed = match crate::params::contiguous(&self.body) {
            Some(bytes) => serde_json::from_slice(bytes),
            None => serde_json::from_slice(&crate::params::gather(&self.body)),
        };
        parsed
            .map_err(|e| HttpError::bad_request(format!("the body is not the JSON expected: {e}")))
    }

    /// A reader over the body ([`std::io::Read`] and [`std::io::BufRead`],
    /// slice after slice in place; see [`BodyReader`] for what copies).
    /// Empty for a body in parts.
    pub fn reader(&self) -> BodyReader<'_> {
        BodyReader::new(&self.body)
    }

    /// Checks that the body came whole and that its media type, if given,
    /// is one of `types` (a type starting with `+` is a suffix).
    fn whole_body_of(&self, types: &[&str]) -> Result<(), HttpError> {
        if self.body_in_parts() {
            return Err(HttpError::new(413, "the body is too large"));
        }
        let Some(value) = self.header("content-type") else {
            return Ok(());
        };
        let media = value.split(|&b| b == b';').next().unwrap_or_default();
        let media = String::from_utf8_lossy(media.trim_ascii()).to_ascii_lowercase();
        let fits = types.iter().any(|t| match t.strip_prefix('+') {
            Some(_) => media.ends_with(t),
            None => media == *t,
        });
        if fits {
            Ok(())
        } else {
            Err(HttpError::new(
                415,
                format!("expected a body of type {}", types[0]),
            ))
        }
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

impl Ctx<'_> {
    /// A writer into this process's output pool. Its bytes are written once,
    /// there, and the server sends them from the same pages.
    pub fn writer(&mut self) -> Writer<'_> {
        Writer::new(self.link.pool)
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
        Writer::new(self.link.pool)
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

/// `path` below `mount` (see [`Request::sub_path`]); `path` itself when it
/// is not below it.
pub(crate) fn sub_path<'p>(path: &'p str, mount: &str) -> &'p str {
    if mount == "/" {
        return path;
    }
    match path.strip_prefix(mount) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
pub(crate) mod tests;
