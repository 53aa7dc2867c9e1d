//! [`DispatchHandler`]: the static files' wrapper on each worker, which
//! decides where a static GET or HEAD is served and forwards it when that
//! is elsewhere; and [`Gate`], core's `PeerGate`: the signature check of
//! every request on the peer listener.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use iolite_core::error::{Error, UpstreamFailure, UpstreamKind};
use iolite_core::handler::{
    Ending, Finished, Handler, Outcome, PeerGate, PendingResponse, RequestCtx, ResponseFuture,
};
use iolite_core::http::request::{Method, RequestHead, Span};
use iolite_core::{Body, HeaderLines, Response};

use super::auth::{self, Hop, Outgoing};
use super::brain::Node;
use super::forward::{ForwardError, Lease, Pool};
use super::shared::Dispatch;
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
        let head = build_head(&self.shared, req, hop);
        let slot = Rc::new(RefCell::new(None));
        req.set_context(Box::new(Kept::Relayed(slot.clone())));
        Outcome::Pending(Box::new(Forwarding {
            shared: self.shared.clone(),
            pool: self.pool.clone(),
            to,
            key,
            head,
            retry_head: (hop == Hop::Decide).then(|| build_head(&self.shared, req, Hop::Serve)),
            head_only: req.head.method == Method::Head,
            slot,
        }))
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
            let owner = brain.owner(key).cloned();
            match owner {
                // A peer asked us to decide (it saw us as the owner), or we
                // own the target: decide.
                Some(o) if o.local || hop == Some(true) => {
                    let t0 = std::time::Instant::now();
                    let chosen = brain.decide(key, req.path, now).cloned();
                    s.counters.decisions.fetch_add(1, Relaxed);
                    s.counters
                        .decision_ns
                        .fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
                    chosen.map(|c| (c, Hop::Serve))
                }
                Some(o) => Some((o, Hop::Decide)),
                None => None,
            }
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

/// The head of the request sent to a peer: the method and target as the
/// client sent them, the fields the static files act on, and the
/// signature. Nothing else of the client's head goes (its peer fields were
/// stripped on arrival; none is copied from it here).
fn build_head(s: &Dispatch, req: &RequestCtx<'_>, hop: Hop) -> Vec<u8> {
    let h = req.head;
    let get = |span: Option<Span>| span.map(|sp| req.get(sp));
    let method = req.get(h.method_token);
    let target = req.target();
    let host = get(h.host).unwrap_or(b"iolite");
    let out = Outgoing {
        method,
        target,
        host,
        range: get(h.range),
        if_range: get(h.if_range),
        if_none_match: get(h.if_none_match),
        if_modified_since: get(h.if_modified_since),
        body: None,
    };
    let signed = s
        .signer
        .sign(&out, hop, crate::membership::now_us(), s.next_nonce());
    let mut head = Vec::with_capacity(256 + signed.len());
    head.extend_from_slice(method);
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host);
    head.extend_from_slice(b"\r\n");
    for (name, value) in [
        ("range", out.range),
        ("if-range", out.if_range),
        ("if-none-match", out.if_none_match),
        ("if-modified-since", out.if_modified_since),
    ] {
        if let Some(v) = value {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v);
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(signed.as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

/// A forward in flight.
struct Forwarding {
    shared: Arc<Dispatch>,
    pool: Rc<Pool>,
    to: Node,
    key: TargetKey,
    head: Vec<u8>,
    /// The head to send a second node if the first fails before answering
    /// (a decide request's retry asks to serve).
    retry_head: Option<Vec<u8>>,
    head_only: bool,
    slot: Rc<RefCell<Option<Lease>>>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("to", &self.to.name)
            .finish_non_exhaustive()
    }
}

fn upstream(name: &str, failure: UpstreamFailure) -> Error {
    Error::upstream(UpstreamKind::Peer, name.into(), failure)
}

impl PendingResponse for Forwarding {
    fn respond(self: Box<Self>) -> ResponseFuture {
        Box::pin(async move {
            let s = &self.shared;
            let serve_head = self.retry_head.as_deref().unwrap_or(&self.head);
            let mut to = self.to.clone();
            let mut head: &[u8] = &self.head;
            let mut followed = false;
            let mut retried = false;
            loop {
                s.counters.forwarded.fetch_add(1, Relaxed);
                let failure = match self
                    .pool
                    .forward(to.peer, &to.name, head, self.head_only)
                    .await
                {
                    Ok(f) => match f.go {
                        Some(go) if !followed => {
                            // The owner chose another node: forward there.
                            followed = true;
                            let node = s.brain.lock().ok().and_then(|b| b.node(&go).cloned());
                            match node {
                                Some(node) => {
                                    to = node;
                                    head = serve_head;
                                    continue;
                                }
                                // Not a live member here: the owner's view
                                // lags this node's (a node just died). A
                                // failed hop: retried below.
                                None => ForwardError::BeforeAnswer(std::io::Error::other(
                                    "the owner named a node that is not a live member",
                                )),
                            }
                        }
                        Some(_) => {
                            s.counters.peer_errors.fetch_add(1, Relaxed);
                            return Err(upstream(
                                &to.name,
                                UpstreamFailure::InvalidAnswer("a second redirection"),
                            ));
                        }
                        None => {
                            *self.slot.borrow_mut() = f.lease;
                            return Ok(f.response);
                        }
                    },
                    Err(e) => e,
                };
                s.counters.peer_errors.fetch_add(1, Relaxed);
                tracing::debug!(peer = %to.name, error = ?failure, "forward failed");
                let status = match failure {
                    ForwardError::Invalid(why) => {
                        tracing::warn!(peer = %to.name, why, "peer answered invalidly");
                        return Err(upstream(&to.name, UpstreamFailure::InvalidAnswer(why)));
                    }
                    ForwardError::TimedOut => UpstreamFailure::TimedOut,
                    ForwardError::BeforeAnswer(_) => UpstreamFailure::Crashed,
                };
                if retried {
                    return Err(upstream(&to.name, status));
                }
                // Only GET and HEAD are forwarded, and both are safe to
                // repeat: once, on another live node (this one included),
                // to serve there. Each node keeps its own replay guard, so
                // the same signed request is new to the second node.
                retried = true;
                let other = s
                    .brain
                    .lock()
                    .ok()
                    .and_then(|b| b.another(self.key, &to.name).cloned());
                let Some(other) = other else {
                    return Err(upstream(&to.name, status));
                };
                s.counters.retries.fetch_add(1, Relaxed);
                to = other;
                head = serve_head;
            }
        })
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
