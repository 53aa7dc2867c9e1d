//! A request on its way to another node: who decides or serves it
//! ([`route`]), the head sent to the peer ([`build_head`]), and
//! [`Forwarding`], the forward in flight with its one retry and the relay
//! of the answer. A leaf below the handler and the waiting queue.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use iolite_core::error::{Error, UpstreamFailure, UpstreamKind};
use iolite_core::handler::{PendingResponse, RequestCtx, ResponseFuture};
use iolite_core::http::request::Span;

use super::auth::{Hop, Outgoing};
use super::brain::Node;
use super::forward::{ForwardError, Lease, Pool};
use super::shared::Dispatch;
use crate::policy::TargetKey;

/// Who decides or serves a request for `key`, on the node that holds the
/// brain: the chosen node to serve it (`Hop::Serve`) when this node owns
/// the target or was `asked` to decide; else its owner, to decide
/// (`Hop::Decide`). None while membership has no live node.
pub(super) fn route(
    s: &Dispatch,
    brain: &mut super::brain::Brain,
    key: TargetKey,
    path: &[u8],
    now: std::time::Duration,
    asked: bool,
) -> Option<(Node, Hop)> {
    match brain.owner(key).cloned() {
        Some(o) if o.local || asked => {
            let t0 = std::time::Instant::now();
            let chosen = brain.decide(key, path, now).cloned();
            s.counters.decisions.fetch_add(1, Relaxed);
            s.counters
                .decision_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
            chosen.map(|c| (c, Hop::Serve))
        }
        Some(o) => Some((o, Hop::Decide)),
        None => None,
    }
}

/// The covered fields of a client's request, as [`build_head`] sends them.
pub(super) fn outgoing<'a>(req: &'a RequestCtx<'_>) -> Outgoing<'a> {
    let h = req.head;
    let get = |span: Option<Span>| span.map(|sp| req.get(sp));
    Outgoing {
        method: req.get(h.method_token),
        target: req.target(),
        host: get(h.host).unwrap_or(b"iolite"),
        range: get(h.range),
        if_range: get(h.if_range),
        if_none_match: get(h.if_none_match),
        if_modified_since: get(h.if_modified_since),
        body: None,
    }
}

/// The head of the request sent to a peer: the method and target as the
/// client sent them, the fields the static files act on, and the
/// signature. Nothing else of the client's head goes (its peer fields were
/// stripped on arrival; none is copied from it here).
pub(super) fn build_head(s: &Dispatch, out: &Outgoing<'_>, hop: Hop) -> Vec<u8> {
    let signed = s
        .signer
        .sign(out, hop, crate::membership::now_us(), s.next_nonce());
    let mut head = Vec::with_capacity(256 + signed.len());
    head.extend_from_slice(out.method);
    head.push(b' ');
    head.extend_from_slice(out.target);
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(out.host);
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
pub(super) struct Forwarding {
    pub(super) shared: Arc<Dispatch>,
    pub(super) pool: Rc<Pool>,
    pub(super) to: Node,
    pub(super) key: TargetKey,
    pub(super) head: Vec<u8>,
    /// The head to send a second node if the first fails before answering
    /// (a decide request's retry asks to serve).
    pub(super) retry_head: Option<Vec<u8>>,
    pub(super) head_only: bool,
    pub(super) slot: Rc<RefCell<Option<Lease>>>,
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
