//! [`DispatchHandler`]: the static files' wrapper on each worker, which
//! decides where a static GET or HEAD is served and forwards it when that
//! is elsewhere; and [`Gate`], core's `PeerGate`: the signature check of
//! every request on the peer listener.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use iolite_core::error::Error;
use iolite_core::handler::{Ending, Finished, Handler, Outcome, PeerGate, RequestCtx};
use iolite_core::http::request::{Method, RequestHead, Span};
use iolite_core::{Body, HeaderLines, Response};

use super::auth::{self, Hop};
use super::brain::Node;
use super::forward::{Lease, Pool};
use super::relay::{Forwarding, build_head, outgoing, route};
use super::shared::Dispatch;
use super::waiting::{OwnedRequest, Waiting};
use crate::policy::TargetKey;

/// The request-finished hook's record of what this handler did.
#[derive(Debug)]
enum Kept {
    /// Served here: one active request.
    Local,
    /// Relayed from a peer: the connection, once the answer is in.
    Relayed(Rc<RefCell<Option<Lease>>>),
}

/// The static files, dispatched (see the module doc of `dispatch`).
pub struct DispatchHandler {
    shared: Arc<Dispatch>,
    site: Box<dyn Handler>,
    pool: Rc<Pool>,
}

impl std::fmt::Debug for DispatchHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchHandler")
            .field("node", &self.shared.name)
            .field("idle", &self.pool.idle_count())
            .finish_non_exhaustive()
    }
}

impl DispatchHandler {
    /// Wraps `site` (the static files) on one worker.
    pub fn new(shared: Arc<Dispatch>, site: Box<dyn Handler>) -> DispatchHandler {
        let pool = Rc::new(Pool::new(shared.limits));
        DispatchHandler { shared, site, pool }
    }

    /// Serves here, counting the request as active until its hook.
    fn serve_here(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let out = self.site.handle(req);
        if matches!(out, Ok(Outcome::Declined | Outcome::Continue)) {
            return out;
        }
        self.shared.active.fetch_add(1, Relaxed);
        req.set_context(Box::new(Kept::Local));
        out
    }

    fn forward(&self, req: &mut RequestCtx<'_>, to: Node, hop: Hop, key: TargetKey) -> Outcome {
        let out = outgoing(req);
        let slot = Rc::new(RefCell::new(None));
        let forwarding = Forwarding {
            shared: self.shared.clone(),
            pool: self.pool.clone(),
            to,
            key,
            head: build_head(&self.shared, &out, hop),
            retry_head: (hop == Hop::Decide).then(|| build_head(&self.shared, &out, Hop::Serve)),
            head_only: req.head.method == Method::Head,
            slot: slot.clone(),
        };
        req.set_context(Box::new(Kept::Relayed(slot)));
        Outcome::Pending(Box::new(forwarding))
    }
}

impl DispatchHandler {
    /// A client's request past the cluster-wide limit: it waits for room
    /// in this node's queue (then goes as any other, forwarded even to this
    /// node's own peer listener, since it no longer has the request's
    /// context to serve it here), or gets 503 when the queue is full.
    fn wait(&self, req: &mut RequestCtx<'_>, key: TargetKey) -> Result<Outcome, Error> {
        let Some(place) = self.shared.admission.enter() else {
            return Err(Error::Unavailable(
                "the cluster holds its limit of requests and this node's queue is full",
            ));
        };
        let slot = Rc::new(RefCell::new(None));
        let waiting = Waiting {
            shared: self.shared.clone(),
            pool: self.pool.clone(),
            key,
            request: OwnedRequest::of(req),
            head_only: req.head.method == Method::Head,
            slot: slot.clone(),
            place,
        };
        req.set_context(Box::new(Kept::Relayed(slot)));
        Ok(Outcome::Pending(Box::new(waiting)))
    }
}

impl Handler for DispatchHandler {
    fn name(&self) -> &'static str {
        "dispatch"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        let s = &self.shared;
        if !s.dispatches() || !matches!(req.head.method, Method::Get | Method::Head) {
            return self.serve_here(req);
        }
        // Only a request that passed the gate can carry a hop: client
        // listeners strip every peer field.
        let hop = req
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(auth::HOP.as_bytes()))
            .map(|(_, v)| v == b"decide");
        if hop == Some(false) {
            s.counters.served_for_peers.fetch_add(1, Relaxed);
            return self.serve_here(req);
        }
        let key = TargetKey::of(req.path);
        let view = s.view();
        let now = s.started.elapsed();
        let decision = {
            let Ok(mut brain) = s.brain.lock() else {
                return self.serve_here(req);
            };
            brain.sync(&view, s.active(), now);
            // A client's request past the cluster-wide limit waits (a
            // peer's was admitted where it arrived).
            if hop.is_none()
                && !s
                    .admission
                    .goes_ahead(brain.in_cluster(), brain.admission_limit())
            {
                drop(brain);
                return self.wait(req, key);
            }
            route(s, &mut brain, key, req.path, now, hop == Some(true))
        };
        if hop == Some(true) {
            s.counters.served_for_peers.fetch_add(1, Relaxed);
        }
        match decision {
            Some((node, _)) if node.local => self.serve_here(req),
            // Asked to decide: name the chosen node, the asker forwards.
            Some((node, _)) if hop == Some(true) => {
                let mut lines = format!("{}: {}\r\n", super::auth::GO, node.name).into_bytes();
                lines.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
                Ok(Outcome::Done(Response::new(
                    421,
                    HeaderLines::Owned(lines),
                    Body::Empty,
                )))
            }
            Some((node, hop)) => Ok(self.forward(req, node, hop, key)),
            // Membership has not seen this node yet: serve here.
            None => self.serve_here(req),
        }
    }

    fn request_finished(&self, finished: Finished) {
        let kept = finished
            .context
            .as_ref()
            .and_then(|c| <dyn Any>::downcast_ref::<Kept>(c.as_ref()));
        match kept {
            Some(Kept::Local) => {
                let _ = self
                    .shared
                    .active
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
                self.shared.admission.finished();
            }
            Some(Kept::Relayed(slot)) => {
                if let Some(lease) = slot.borrow_mut().take() {
                    self.pool
                        .give_back(lease, finished.ending == Ending::Complete);
                }
            }
            None => {}
        }
    }
}

/// Core's `PeerGate`: every request on the peer listener is checked with
/// the cluster key before it is routed.
#[derive(Debug)]
pub struct Gate(pub Arc<Dispatch>);

impl PeerGate for Gate {
    fn admit(
        &self,
        head: &RequestHead,
        head_bytes: &[u8],
        fields: &[(Span, Span)],
    ) -> Result<(), Error> {
        let s = &self.0;
        let headers = fields
            .iter()
            .map(|(n, v)| (n.get(head_bytes), v.get(head_bytes)));
        let verdict = match s.guard.lock() {
            Ok(mut guard) => s.verifier.verify(
                head.method_token.get(head_bytes),
                head.target.get(head_bytes),
                headers,
                crate::membership::now_us(),
                &mut guard,
            ),
            Err(_) => Err(auth::Refusal::GuardFull),
        };
        match verdict {
            Ok(_) => Ok(()),
            Err(why) => {
                let slot = auth::Refusal::ALL
                    .iter()
                    .position(|r| *r == why)
                    .unwrap_or(0);
                s.counters.refused[slot].fetch_add(1, Relaxed);
                tracing::debug!(reason = why.as_str(), "peer request refused");
                Err(Error::Forbidden(refusal_text(why)))
            }
        }
    }

    fn reserved_prefix(&self) -> &'static [u8] {
        auth::PREFIX
    }
}

fn refusal_text(why: auth::Refusal) -> &'static str {
    match why {
        auth::Refusal::Malformed => "peer request without a valid signature",
        auth::Refusal::BadSig => "peer request signature does not verify",
        auth::Refusal::Stale => "peer request outside the replay window",
        auth::Refusal::Replay => "peer request replayed",
        auth::Refusal::GuardFull => "peer replay guard full",
        auth::Refusal::Body => "peer request with a body",
    }
}
