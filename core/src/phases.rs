//! The request flow. [`Phases::process_request`] reads top to bottom: check
//! the method, turn the target into a safe path, then run the phases
//! rewrite → access → content in order; every failure takes the one error
//! path, [`Response::from_error`].
//!
//! Handlers are registered once, when a worker starts, into a fixed list per
//! [`Phase`]; each answers [`Outcome::Continue`], [`Outcome::Done`],
//! [`Outcome::Declined`] or [`Outcome::Pending`] (a content handler that
//! takes the request body and answers later, such as a process module: the
//! route is decided before the body is read, and the connection reads the
//! body straight into the handler's buffer).

use std::future::Future;
use std::pin::Pin;

use crate::error::Error;
use crate::http::request::{Method, RequestHead, Span};
use crate::http::target;
use crate::response::{Body, HeaderLines, Response};

/// The phases of the request flow, in the order they run. Closed: a new
/// kind of work fits one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Change the path before anything looks at it (aliases, rewrites).
    Rewrite,
    /// Decide whether the request may proceed (rules, limits).
    Access,
    /// Produce the response (static files, modules).
    Content,
}

impl Phase {
    /// Every phase, in running order.
    pub const ALL: [Phase; 3] = [Phase::Rewrite, Phase::Access, Phase::Content];
}

/// A handler's answer.
#[derive(Debug)]
pub enum Outcome {
    /// This handler did its part: skip the rest of this phase and go to the
    /// next one. (In the content phase, no next phase: 404.)
    Continue,
    /// This request is answered: send this response now.
    Done(Response),
    /// Not for this handler: ask the next handler of the same phase.
    Declined,
    /// This handler answers, after the connection has read the request body
    /// into it (see [`PendingResponse`]).
    Pending(Box<dyn PendingResponse>),
}

/// The future of a pending answer. Workers run on a single thread, so it
/// need not be `Send`.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response>>>;

/// How a pending handler takes a `Content-Length` body (see
/// [`PendingResponse::body_start`]).
pub enum BodyMode {
    /// Whole, before the answer is awaited: into
    /// [`body_space`](PendingResponse::body_space).
    Whole,
    /// In parts, while the answer is awaited and sent: the connection calls
    /// [`respond`](PendingResponse::respond) at once and feeds the body into
    /// this sink as it reads it (full duplex: the answer may start, or end,
    /// before the body does).
    Parts(Box<dyn BodySink>),
}

impl std::fmt::Debug for BodyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyMode::Whole => "Whole",
            BodyMode::Parts(_) => "Parts",
        })
    }
}

/// The future of [`BodySink::ready`].
pub type ReadyFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, Error>> + 'a>>;

/// Where a body taken in parts goes ([`BodyMode::Parts`]). The connection
/// awaits [`ready`](BodySink::ready), fills [`space`](BodySink::space) with
/// `read(2)` and reports it with [`advance`](BodySink::advance), until the
/// body is complete or `ready` says the handler takes no more.
pub trait BodySink {
    /// Waits until there is room for more body bytes. `Ok(false)`: the
    /// handler takes no more of the body (it has answered): the connection
    /// stops reading it. An error is the answer (for example 503 when no
    /// room came in time).
    fn ready(&mut self) -> ReadyFuture<'_>;

    /// Room for the next body bytes, after `ready` said so: a non-empty
    /// slice of at most `max` bytes.
    fn space(&mut self, max: usize) -> &mut [u8];

    /// `n` bytes of [`space`](BodySink::space) were filled.
    fn advance(&mut self, n: usize);

    /// A body of unknown length (chunked) is complete. Not called for a
    /// body of known length (the sink counts it).
    fn finish(&mut self) {}
}

/// A content handler's answer that needs the request body first. The
/// connection calls [`body_start`](PendingResponse::body_start) once if the
/// request has a body; for [`BodyMode::Whole`] it then fills
/// [`body_space`](PendingResponse::body_space)
/// with `read(2)` and reports each read with
/// [`body_advance`](PendingResponse::body_advance), and finally awaits
/// [`respond`](PendingResponse::respond). Bytes that arrived with the head
/// are copied in with [`body_prefix`](PendingResponse::body_prefix) (and
/// counted as copied). A chunked body goes through
/// [`body_chunk`](PendingResponse::body_chunk) instead.
pub trait PendingResponse: std::fmt::Debug {
    /// The body has `len` bytes (`Content-Length`); called only when it has
    /// some. Answers how the handler takes it; an error is the answer (for
    /// example 503 when there is no room).
    fn body_start(&mut self, len: u64) -> Result<BodyMode, Error>;

    /// Room for the next body bytes: a non-empty slice of at most `max` bytes.
    fn body_space(&mut self, max: usize) -> &mut [u8];

    /// `n` bytes of [`body_space`](PendingResponse::body_space) were filled.
    fn body_advance(&mut self, n: usize);

    /// A run of a chunked body's data (its length is not known up front),
    /// copied in (and counted by the implementation). The default refuses
    /// chunked bodies (411).
    fn body_chunk(&mut self, data: &[u8]) -> Result<(), Error> {
        let _ = data;
        Err(Error::LengthRequired("this handler needs Content-Length"))
    }

    /// The body is chunked (its length unknown until its end); called
    /// instead of [`body_start`](PendingResponse::body_start). The default
    /// takes it whole, through [`body_chunk`](PendingResponse::body_chunk);
    /// [`BodyMode::Parts`] takes it in parts, the sink told its end by
    /// [`BodySink::finish`].
    fn body_start_chunked(&mut self) -> Result<BodyMode, Error> {
        Ok(BodyMode::Whole)
    }

    /// Copies body bytes that were read with the head.
    fn body_prefix(&mut self, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let space = self.body_space(bytes.len() - done);
            let n = space.len();
            space.copy_from_slice(&bytes[done..done + n]);
            self.body_advance(n);
            done += n;
        }
        iolite_ipc::copied::add(bytes.len());
    }

    /// The body is complete: the answer.
    fn respond(self: Box<Self>) -> ResponseFuture;
}

/// What [`Phases::process_request`] decided.
#[derive(Debug)]
pub enum Answer {
    /// Send this response (after reading and discarding any body).
    Now(Response),
    /// Read the body into this handler, then send what it answers.
    Later(Box<dyn PendingResponse>),
}

impl Answer {
    /// The response, for answers that are known now.
    pub fn now(self) -> Option<Response> {
        match self {
            Answer::Now(r) => Some(r),
            Answer::Later(_) => None,
        }
    }
}

/// The request as handlers see it.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    /// The parsed head; its spans index `head_bytes`.
    pub head: &'a RequestHead,
    /// The bytes of the request head.
    pub head_bytes: &'a [u8],
    /// The percent-decoded, dot-segment-free path (starts with `/`). Rewrite
    /// handlers may change it; it is never decoded again.
    pub path: &'a mut Vec<u8>,
    /// The client's address.
    pub client: std::net::SocketAddr,
}

impl RequestCtx<'_> {
    /// The bytes a span of the head names.
    pub fn get(&self, span: Span) -> &[u8] {
        span.get(self.head_bytes)
    }

    /// The request target as sent.
    pub fn target(&self) -> &[u8] {
        self.head.target.get(self.head_bytes)
    }
}

/// A request handler, registered for one phase.
pub trait Handler {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// The phase this handler runs in.
    fn phase(&self) -> Phase;

    /// Looks at the request. `Declined`: not mine, ask the next handler of
    /// this phase. `Continue`: done with this phase, go to the next one.
    /// `Done`: send this response. `Err`: send the error's status. The
    /// default declines every request.
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let _ = req;
        Ok(Outcome::Declined)
    }
}

/// The handlers of every phase, fixed at start-up.
#[derive(Default)]
pub struct Phases {
    rewrite: Vec<Box<dyn Handler>>,
    access: Vec<Box<dyn Handler>>,
    content: Vec<Box<dyn Handler>>,
}

impl std::fmt::Debug for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |hs: &[Box<dyn Handler>]| hs.iter().map(|h| h.name()).collect::<Vec<_>>();
        f.debug_struct("Phases")
            .field("rewrite", &names(&self.rewrite))
            .field("access", &names(&self.access))
            .field("content", &names(&self.content))
            .finish()
    }
}

impl Phases {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` at the end of its phase's list (handlers of a phase run
    /// in registration order).
    pub fn register(mut self, handler: Box<dyn Handler>) -> Self {
        match handler.phase() {
            Phase::Rewrite => self.rewrite.push(handler),
            Phase::Access => self.access.push(handler),
            Phase::Content => self.content.push(handler),
        }
        self
    }

    fn handlers(&self, phase: Phase) -> &[Box<dyn Handler>] {
        match phase {
            Phase::Rewrite => &self.rewrite,
            Phase::Access => &self.access,
            Phase::Content => &self.content,
        }
    }

    /// Answers one request: every outcome, error or not, is a [`Response`]
    /// now or a [`PendingResponse`]. `path` is scratch space reused across
    /// requests.
    pub fn process_request(
        &self,
        head: &RequestHead,
        head_bytes: &[u8],
        path: &mut Vec<u8>,
        client: std::net::SocketAddr,
    ) -> Answer {
        let mut req = RequestCtx {
            head,
            head_bytes,
            path,
            client,
        };
        match self.run(&mut req) {
            Ok(answer) => answer,
            Err(error) => Answer::Now(Response::from_error(&error)),
        }
    }

    fn run(&self, req: &mut RequestCtx<'_>) -> Result<Answer, Error> {
        if req.head.method == Method::Unknown {
            return Err(Error::NotImplemented("unknown method"));
        }
        let raw_target = req.head.target.get(req.head_bytes);
        if raw_target == b"*" && req.head.method == Method::Options {
            // A question about the server itself, not about a resource.
            let allow = HeaderLines::Static(b"Allow: GET, HEAD\r\n");
            return Ok(Answer::Now(Response::new(200, allow, Body::Empty)));
        }
        let raw_path = target::target_path(raw_target)?;
        target::normalize(raw_path, req.path)?;
        for phase in Phase::ALL {
            if let Some(response) = self.run_phase(phase, req)? {
                return Ok(response);
            }
        }
        Err(Error::NotFound)
    }

    fn run_phase(&self, phase: Phase, req: &mut RequestCtx<'_>) -> Result<Option<Answer>, Error> {
        for handler in self.handlers(phase) {
            match handler.handle(req)? {
                Outcome::Done(response) => return Ok(Some(Answer::Now(response))),
                Outcome::Pending(p) => return Ok(Some(Answer::Later(p))),
                Outcome::Continue => return Ok(None),
                Outcome::Declined => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, parse_head};

    /// Rewrites `/old` to `/new`.
    struct Rename;
    impl Handler for Rename {
        fn name(&self) -> &'static str {
            "rename"
        }
        fn phase(&self) -> Phase {
            Phase::Rewrite
        }
        fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
            if req.path.as_slice() == b"/old" {
                *req.path = b"/new".to_vec();
                return Ok(Outcome::Continue);
            }
            Ok(Outcome::Declined)
        }
    }

    /// Refuses `/secret`.
    struct Deny;
    impl Handler for Deny {
        fn name(&self) -> &'static str {
            "deny"
        }
        fn phase(&self) -> Phase {
            Phase::Access
        }
        fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
            if req.path.starts_with(b"/secret") {
                return Err(Error::Forbidden("rule"));
            }
            Ok(Outcome::Declined)
        }
    }

    /// Answers `/new` only; echoes nothing else.
    struct Echo;
    impl Handler for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn phase(&self) -> Phase {
            Phase::Content
        }
        fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
            if req.path.as_slice() == b"/new" {
                return Ok(Outcome::Done(Response::new(
                    200,
                    HeaderLines::None,
                    Body::Bytes(req.path.clone()),
                )));
            }
            Ok(Outcome::Declined)
        }
    }

    /// Declines everything (the trait's default).
    struct Nobody;
    impl Handler for Nobody {
        fn name(&self) -> &'static str {
            "nobody"
        }
        fn phase(&self) -> Phase {
            Phase::Content
        }
    }

    #[test]
    fn phases_run_in_order_table() {
        let phases = Phases::new()
            .register(Box::new(Nobody))
            .register(Box::new(Echo))
            .register(Box::new(Deny))
            .register(Box::new(Rename));
        let table: &[(&str, u16)] = &[
            ("GET /old HTTP/1.0\r\n\r\n", 200),
            ("GET /new HTTP/1.0\r\n\r\n", 200),
            ("GET /a/../old HTTP/1.0\r\n\r\n", 200),
            ("GET /secret HTTP/1.0\r\n\r\n", 403),
            ("GET /other HTTP/1.0\r\n\r\n", 404),
            ("GET /../x HTTP/1.0\r\n\r\n", 403),
            ("GET * HTTP/1.0\r\n\r\n", 400),
            ("OPTIONS * HTTP/1.0\r\n\r\n", 200),
            ("BREW /new HTTP/1.0\r\n\r\n", 501),
        ];
        let mut path = Vec::new();
        for (raw, want) in table {
            let head = parse_head(raw.as_bytes(), &Limits::default())
                .unwrap()
                .unwrap();
            let client = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
            let response = phases
                .process_request(&head, raw.as_bytes(), &mut path, client)
                .now()
                .unwrap();
            assert_eq!(response.status, *want, "{raw}");
        }
        assert!(format!("{phases:?}").contains("\"rename\""));
    }
}
