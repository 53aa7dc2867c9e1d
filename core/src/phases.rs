//! The request flow. [`Phases::process_request`] reads top to bottom: check
//! the method, turn the target into a safe path, then run the phases
//! rewrite → access → content in order; every failure takes the one error
//! path, [`Response::from_error`].
//!
//! Handlers are mounted once, when a worker starts, at a prefix of one
//! [`Phase`] ([`Phases::mount`]). In each phase the mount with the longest
//! prefix that matches the path is asked first; one that declines passes
//! the request to the next shorter one, and in the content phase, after
//! the last mount, to the fallback (the static files). Two handlers at the
//! same prefix of a phase are refused: the order is the prefixes', never
//! the order of registration. A mount may strip its prefix for its handler
//! ([`RequestCtx::local_path`]). `[[location]]` settings are not mounts:
//! the longest matching location is looked up once the rewrite phase is
//! over and handed to whichever handler answers ([`RequestCtx::location`]);
//! its configured response headers ([`crate::headers`]) go on the answer,
//! whichever handler gave it (the server's own where no location applies).

use std::any::Any;
use std::sync::Arc;

use crate::config::Location;
use crate::error::Error;
use crate::handler::{Finished, Handler, Outcome, PendingResponse, RequestCtx};
use crate::headers::{HeaderSet, Rules, WithHeaders};
use crate::http::request::{Method, RequestHead, Span};
use crate::http::target;
use crate::not_modified::{Checked, Conditions};
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

    fn index(self) -> usize {
        match self {
            Phase::Rewrite => 0,
            Phase::Access => 1,
            Phase::Content => 2,
        }
    }
}

/// Which handler answered a request (for its request-finished hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerId {
    phase: Phase,
    /// Its place in the phase's mounts; `None`: the fallback.
    mount: Option<usize>,
}

/// What [`Phases::process_request`] decided.
#[derive(Debug)]
pub enum Reply {
    /// Send this response (after reading and discarding any body).
    Now(Response),
    /// Take the body through the handler's sink, then (or meanwhile) send
    /// what it answers.
    Later(Box<dyn PendingResponse>),
}

/// A routed request: the reply, and who gave it.
#[derive(Debug)]
pub struct Answer {
    pub reply: Reply,
    /// The handler that answered (none: the request failed before any
    /// handler saw it, or none matched).
    pub handler: Option<HandlerId>,
    /// What the handler kept for its request-finished hook.
    pub context: Option<Box<dyn Any>>,
}

impl Answer {
    /// The response, for answers that are known now.
    pub fn now(self) -> Option<Response> {
        match self.reply {
            Reply::Now(r) => Some(r),
            Reply::Later(_) => None,
        }
    }

    fn error(error: &Error) -> Self {
        Answer {
            reply: Reply::Now(Response::from_error(error)),
            handler: None,
            context: None,
        }
    }
}

/// One handler at its prefix.
struct Mounted {
    prefix: Box<str>,
    strip: bool,
    handler: Box<dyn Handler>,
}

/// The mounts of every phase, fixed at start-up.
#[derive(Default)]
pub struct Phases {
    /// Per phase, longest prefix first.
    mounts: [Vec<Mounted>; 3],
    /// Asked when no content mount answers (the static files).
    fallback: Option<Box<dyn Handler>>,
    /// Longest prefix first.
    locations: Vec<Location>,
    /// The top-level headers tables.
    server_headers: ServerHeaders,
    /// The headers under each of `locations` (same order), and where no
    /// location applies.
    location_headers: Vec<Option<Arc<HeaderSet>>>,
    root_headers: Option<Arc<HeaderSet>>,
}

/// The top-level `headers`, `headers_default` and `headers_always`.
#[derive(Debug, Clone, Default)]
pub struct ServerHeaders {
    pub set: Vec<(String, String)>,
    pub default: Vec<(String, String)>,
    pub always: bool,
}

impl std::fmt::Debug for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn names(ms: &[Mounted]) -> Vec<(&str, &'static str)> {
            ms.iter().map(|m| (&*m.prefix, m.handler.name())).collect()
        }
        f.debug_struct("Phases")
            .field("rewrite", &names(&self.mounts[0]))
            .field("access", &names(&self.mounts[1]))
            .field("content", &names(&self.mounts[2]))
            .field("fallback", &self.fallback.as_ref().map(|h| h.name()))
            .finish()
    }
}

/// Whether `prefix` can be mounted: `/`, or `/seg[/seg...]` without a
/// trailing slash.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    prefix == "/" || (prefix.starts_with('/') && !prefix.ends_with('/') && !prefix.contains("//"))
}

impl Phases {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mounts `handler` at `prefix` of `phase`; with `strip`, the handler
    /// sees paths without the prefix ([`RequestCtx::local_path`]). A second
    /// handler at the same prefix of a phase is refused (configurations
    /// are checked for that with the line and column of both).
    pub fn mount(
        mut self,
        phase: Phase,
        prefix: &str,
        strip: bool,
        handler: Box<dyn Handler>,
    ) -> Result<Self, Error> {
        if !valid_prefix(prefix) {
            return Err(Error::Options(format!(
                "mount prefix {prefix:?}: expected / or /name[/name...] without a trailing slash"
            )));
        }
        let mounts = &mut self.mounts[phase.index()];
        if let Some(first) = mounts.iter().find(|m| &*m.prefix == prefix) {
            return Err(Error::Options(format!(
                "{prefix:?} is mounted twice in the {phase:?} phase ({} and {})",
                first.handler.name(),
                handler.name()
            )));
        }
        let at = mounts.partition_point(|m| m.prefix.len() >= prefix.len());
        mounts.insert(
            at,
            Mounted {
                prefix: prefix.into(),
                strip: strip && prefix != "/",
                handler,
            },
        );
        Ok(self)
    }

    /// The content handler asked when no content mount answers.
    pub fn fallback(mut self, handler: Box<dyn Handler>) -> Self {
        self.fallback = Some(handler);
        self
    }

    /// The `[[location]]` settings requests are matched against.
    pub fn with_locations(mut self, mut locations: Vec<Location>) -> Self {
        locations.sort_by_key(|l| std::cmp::Reverse(l.prefix.len()));
        self.locations = locations;
        self.resolve_headers();
        self
    }

    /// The top-level headers tables, under every location.
    pub fn with_headers(mut self, headers: ServerHeaders) -> Self {
        self.server_headers = headers;
        self.resolve_headers();
        self
    }

    /// Each location's headers: the server's, then the enclosing
    /// locations' from the outermost in, then its own.
    fn resolve_headers(&mut self) {
        let server = Rules {
            set: &self.server_headers.set,
            default: &self.server_headers.default,
            always: self.server_headers.always,
        };
        self.root_headers = HeaderSet::resolve([server]);
        self.location_headers =
            self.locations
                .iter()
                .map(|l| {
                    let enclosing =
                        self.locations.iter().rev().filter(|outer| {
                            prefix_matches_bytes(&outer.prefix, l.prefix.as_bytes())
                        });
                    HeaderSet::resolve(std::iter::once(server).chain(enclosing.map(Rules::of)))
                })
                .collect();
    }

    /// Answers one request: every outcome, error or not, is a [`Response`]
    /// now or a [`PendingResponse`]. `fields` are the head's header fields
    /// (as [`crate::http::parse_head_fields`] found them); `path` is scratch
    /// space reused across requests.
    pub fn process_request(
        &self,
        head: &RequestHead,
        head_bytes: &[u8],
        fields: &[(Span, Span)],
        path: &mut Vec<u8>,
        client: std::net::SocketAddr,
    ) -> Answer {
        let mut req = RequestCtx {
            head,
            head_bytes,
            fields,
            path,
            client,
            location: None,
            stripped: 0,
            context: None,
        };
        let mut answer = match self.run(&mut req) {
            Ok(Some((reply, handler))) => Answer {
                reply,
                handler,
                context: req.context.take(),
            },
            Ok(None) => Answer::error(&Error::NotFound),
            Err((error, handler)) => Answer {
                handler,
                context: req.context.take(),
                ..Answer::error(&error)
            },
        };
        if let Some(conditions) = Conditions::of(head, head_bytes) {
            answer.reply = match answer.reply {
                Reply::Now(response) => Reply::Now(conditions.apply(response)),
                Reply::Later(inner) => Reply::Later(Box::new(Checked { inner, conditions })),
            };
        }
        let headers = match req.location {
            Some(l) => self
                .locations
                .iter()
                .position(|x| std::ptr::eq(x, l))
                .and_then(|i| self.location_headers[i].clone()),
            None => self.root_headers.clone(),
        };
        if let Some(headers) = headers {
            answer.reply = match answer.reply {
                Reply::Now(mut response) => {
                    headers.apply(&mut response);
                    Reply::Now(response)
                }
                Reply::Later(inner) => Reply::Later(Box::new(WithHeaders { inner, headers })),
            };
        }
        answer
    }

    /// Calls the request-finished hook of the handler that answered.
    pub fn finished(&self, handler: HandlerId, finished: Finished) {
        let h = match handler.mount {
            Some(i) => self.mounts[handler.phase.index()]
                .get(i)
                .map(|m| &m.handler),
            None => self.fallback.as_ref(),
        };
        if let Some(h) = h {
            h.request_finished(finished);
        }
    }

    /// The phases in order: a reply and the handler that gave it (none for
    /// `OPTIONS *`), or none when no handler answered; an error carries the
    /// handler that failed, if one did.
    fn run<'a>(&'a self, req: &mut RequestCtx<'a>) -> Result<Option<Routed>, Failed> {
        if req.head.method == Method::Unknown {
            return Err((Error::NotImplemented("unknown method"), None));
        }
        let raw_target = req.head.target.get(req.head_bytes);
        if raw_target == b"*" && req.head.method == Method::Options {
            // A question about the server itself, not about a resource.
            let allow = HeaderLines::Static(b"Allow: GET, HEAD\r\n");
            return Ok(Some((
                Reply::Now(Response::new(200, allow, Body::Empty)),
                None,
            )));
        }
        let no_handler = |e| (e, None);
        let raw_path = target::target_path(raw_target).map_err(no_handler)?;
        target::normalize(raw_path, req.path).map_err(no_handler)?;
        for phase in Phase::ALL {
            if phase == Phase::Access {
                req.location = self.location(req.path);
            }
            if let Some(routed) = self.run_phase(phase, req)? {
                return Ok(Some(routed));
            }
        }
        Ok(None)
    }

    /// The mounts of `phase` that match the path, longest first, then (for
    /// the content phase) the fallback. `Continue` ends the phase.
    fn run_phase(&self, phase: Phase, req: &mut RequestCtx<'_>) -> Result<Option<Routed>, Failed> {
        let mounts = &self.mounts[phase.index()];
        for (i, m) in mounts.iter().enumerate() {
            if !prefix_matches_bytes(&m.prefix, req.path) {
                continue;
            }
            req.stripped = if m.strip { m.prefix.len() } else { 0 };
            let id = HandlerId {
                phase,
                mount: Some(i),
            };
            match ask(&*m.handler, req, id)? {
                Asked::Declined => {}
                Asked::Continue => return Ok(None),
                Asked::Answer(reply) => return Ok(Some((reply, Some(id)))),
            }
        }
        req.stripped = 0;
        if let (Phase::Content, Some(fallback)) = (phase, &self.fallback) {
            let id = HandlerId { phase, mount: None };
            if let Asked::Answer(reply) = ask(&**fallback, req, id)? {
                return Ok(Some((reply, Some(id))));
            }
        }
        Ok(None)
    }

    /// The longest location whose prefix matches `path`.
    fn location(&self, path: &[u8]) -> Option<&Location> {
        self.locations
            .iter()
            .find(|l| prefix_matches_bytes(&l.prefix, path))
    }
}

/// A reply and the handler that gave it.
type Routed = (Reply, Option<HandlerId>);
/// An error and the handler that failed, if one did.
type Failed = (Error, Option<HandlerId>);

enum Asked {
    Declined,
    Continue,
    Answer(Reply),
}

fn ask(handler: &dyn Handler, req: &mut RequestCtx<'_>, id: HandlerId) -> Result<Asked, Failed> {
    match handler.handle(req) {
        Ok(Outcome::Declined) => Ok(Asked::Declined),
        Ok(Outcome::Continue) => Ok(Asked::Continue),
        Ok(Outcome::Done(response)) => Ok(Asked::Answer(Reply::Now(response))),
        Ok(Outcome::Pending(p)) => Ok(Asked::Answer(Reply::Later(p))),
        Err(e) => Err((e, Some(id))),
    }
}

/// [`crate::config::prefix_matches`] on a path that may not be UTF-8.
fn prefix_matches_bytes(prefix: &str, path: &[u8]) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

#[cfg(test)]
mod tests;
