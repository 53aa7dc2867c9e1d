//! What a handler is: the [`Handler`] trait, the request as handlers see
//! it ([`RequestCtx`]), what they answer ([`Outcome`]), the answer that
//! needs the request body first ([`PendingResponse`]), and the
//! request-finished hook's record ([`Finished`]).
//!
//! Handlers are mounted at a prefix of one phase ([`crate::phases`]); they
//! never match prefixes themselves.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::body::{BodyMode, Discard};
use crate::config::Location;
use crate::error::{Error, Side};
use crate::http::request::{RequestHead, Span};
use crate::response::Response;

/// A handler's answer.
#[derive(Debug)]
pub enum Outcome {
    /// This handler did its part: skip the rest of this phase and go to the
    /// next one. (In the content phase, no next phase: 404.)
    Continue,
    /// This request is answered: send this response (any request body is
    /// read and thrown away first).
    Done(Response),
    /// Not for this handler: ask the handler of the next shorter mount of
    /// the same phase.
    Declined,
    /// This handler answers later, and takes the request body through the
    /// one body path first or alongside (see [`PendingResponse`]).
    Pending(Box<dyn PendingResponse>),
}

/// The future of a pending answer: a response, or an error that takes the
/// one error path. Workers run on a single thread, so it need not be `Send`.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Error>>>>;

/// A content handler's answer that needs the request body. The connection
/// calls [`body`](PendingResponse::body) once if the request has a body,
/// pumps the body into the sink it returns, and calls and awaits
/// [`respond`](PendingResponse::respond): once the whole body is in for
/// [`BodyMode::Whole`] (or when there is no body), at once for
/// [`BodyMode::Duplex`]. Dropping the answer's future (the client went
/// away) cancels the request.
pub trait PendingResponse: std::fmt::Debug {
    /// The request has a body of `len` bytes (`None`: chunked, its length
    /// unknown until its end; a `Content-Length` over the body limit never
    /// gets here). Answers where it goes; an error is the answer (for
    /// example 503 when there is no room). The default reads the body and
    /// throws it away before the answer is awaited.
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, Error> {
        let _ = len;
        Ok(BodyMode::Whole(Box::new(Discard)))
    }

    /// The answer.
    fn respond(self: Box<Self>) -> ResponseFuture;
}

/// The request as handlers see it.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    /// The parsed head; its spans index `head_bytes`.
    pub head: &'a RequestHead,
    /// The bytes of the request head.
    pub head_bytes: &'a [u8],
    /// Every header field, as spans of `head_bytes` (name, value), in the
    /// order sent: the head is parsed once, by the connection.
    pub fields: &'a [(Span, Span)],
    /// The percent-decoded, dot-segment-free path (starts with `/`). Rewrite
    /// handlers may change it; it is never decoded again.
    pub path: &'a mut Vec<u8>,
    /// The client's address.
    pub client: std::net::SocketAddr,
    /// The `[[location]]` whose prefix is the longest that matches the path
    /// (once the rewrite phase is over; none before), if any: its settings
    /// apply to whatever handler answers under it.
    pub location: Option<&'a Location>,
    /// Bytes at the start of `path` that the handler's mount strips
    /// ([`RequestCtx::local_path`]); set by the mount table.
    pub(crate) stripped: usize,
    /// The answering handler's per-request context, for its
    /// request-finished hook.
    pub(crate) context: Option<Box<dyn Any>>,
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

    /// The query string (after `?`), without the `?`; empty when none.
    pub fn query(&self) -> &[u8] {
        let target = self.target();
        match target.iter().position(|&b| b == b'?') {
            Some(q) => &target[q + 1..],
            None => b"",
        }
    }

    /// Every header field as (name, value) bytes, in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|(n, v)| (n.get(self.head_bytes), v.get(self.head_bytes)))
    }

    /// The path as the handler's mount gives it: with the mount's prefix
    /// removed when the mount strips it (`/` when nothing is left), else
    /// the whole path.
    pub fn local_path(&self) -> &[u8] {
        match &self.path[self.stripped.min(self.path.len())..] {
            [] => b"/",
            rest => rest,
        }
    }

    /// Keeps `context` for the answering handler's
    /// [`request_finished`](Handler::request_finished) hook (the last one
    /// set wins; a handler that declines should not set one).
    pub fn set_context(&mut self, context: Box<dyn Any>) {
        self.context = Some(context);
    }
}

/// How a request ended, for the request-finished hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its answer was written whole.
    Complete,
    /// It was answered with an error (the status says which), caused by
    /// this side; the error response was written.
    Error(Side),
    /// The client went away, or stopped reading, before the answer was
    /// written whole.
    ClientGone,
}

/// One finished request, as its handler's hook sees it.
#[derive(Debug)]
pub struct Finished {
    /// The status sent (499 when the client went away before the head).
    pub status: u16,
    /// Response bytes written, head included.
    pub bytes_sent: u64,
    /// When the request's head had been read (see [`Finished::duration`]).
    pub started: std::time::Instant,
    pub ending: Ending,
    /// What the handler kept with [`RequestCtx::set_context`].
    pub context: Option<Box<dyn Any>>,
}

impl Finished {
    /// From the head's arrival to now: the hook runs right after the last
    /// byte was written (or the failure). Read the clock only if you need
    /// it.
    pub fn duration(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A request handler, mounted at a prefix of one phase (see
/// [`crate::phases::Phases::mount`]).
pub trait Handler {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Looks at a request under the handler's mount. `Declined`: not mine,
    /// ask the next shorter mount of this phase. `Continue`: done with this
    /// phase, go to the next one. `Done`: send this response. `Pending`:
    /// answer after (or while) taking the body. `Err`: send the error's
    /// status. The default declines every request.
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let _ = req;
        Ok(Outcome::Declined)
    }

    /// Called exactly once for each request this handler answered (`Done`,
    /// `Pending` or an error), after its last byte was written or it
    /// failed. The default does nothing.
    fn request_finished(&self, finished: Finished) {
        let _ = finished;
    }
}

/// The check every request on a peer listener passes before it is routed
/// ([`crate::Server::peer_listener`]): the cluster's signature on it. A
/// server with a gate also strips, from requests on its client listeners,
/// every header field whose name starts with
/// [`reserved_prefix`](PeerGate::reserved_prefix), so no handler ever sees
/// a client's imitation of a peer's fields.
pub trait PeerGate: Send + Sync {
    /// `Ok`: route the request as any other. `Err`: answer that error
    /// (403 for a missing, wrong, stale or replayed signature) and route
    /// nothing.
    fn admit(
        &self,
        head: &RequestHead,
        head_bytes: &[u8],
        fields: &[(Span, Span)],
    ) -> Result<(), Error>;

    /// The lower-case prefix of the header names only peers may send.
    fn reserved_prefix(&self) -> &'static [u8];
}

/// Whether the header `name` starts with `prefix` (lower case), ignoring
/// ASCII case.
pub fn has_prefix_ignore_case(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}
