//! [`Waiting`]: a client's request that found the cluster at its limit S
//! (see `admission`), holding its place in this node's queue until the
//! loads leave room, then routed and forwarded as any other.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use iolite_core::Error;
use iolite_core::handler::{PendingResponse, RequestCtx, ResponseFuture};

use super::admission::Place;
use super::auth::{Hop, Outgoing};
use super::forward::{Lease, Pool};
use super::relay::{Forwarding, build_head, outgoing, route};
use super::shared::Dispatch;
use crate::policy::TargetKey;

/// What of a client's request a waiting forward needs once the request's
/// context is gone: the covered fields and the path.
#[derive(Debug)]
pub(super) struct OwnedRequest {
    method: Vec<u8>,
    target: Vec<u8>,
    host: Vec<u8>,
    fields: [Option<Vec<u8>>; 4],
    path: Vec<u8>,
}

impl OwnedRequest {
    pub(super) fn of(req: &RequestCtx<'_>) -> OwnedRequest {
        let o = outgoing(req);
        let own = |v: Option<&[u8]>| v.map(<[u8]>::to_vec);
        OwnedRequest {
            method: o.method.to_vec(),
            target: o.target.to_vec(),
            host: o.host.to_vec(),
            fields: [
                own(o.range),
                own(o.if_range),
                own(o.if_none_match),
                own(o.if_modified_since),
            ],
            path: req.path.clone(),
        }
    }

    fn outgoing(&self) -> Outgoing<'_> {
        let [range, if_range, if_none_match, if_modified_since] = &self.fields;
        Outgoing {
            method: &self.method,
            target: &self.target,
            host: &self.host,
            range: range.as_deref(),
            if_range: if_range.as_deref(),
            if_none_match: if_none_match.as_deref(),
            if_modified_since: if_modified_since.as_deref(),
            body: None,
        }
    }
}

/// A request waiting for room in the cluster.
pub(super) struct Waiting {
    pub(super) shared: Arc<Dispatch>,
    pub(super) pool: Rc<Pool>,
    pub(super) key: TargetKey,
    pub(super) request: OwnedRequest,
    pub(super) head_only: bool,
    pub(super) slot: Rc<RefCell<Option<Lease>>>,
    pub(super) place: Place,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("path", &String::from_utf8_lossy(&self.request.path))
            .finish_non_exhaustive()
    }
}

impl PendingResponse for Waiting {
    fn respond(self: Box<Self>) -> ResponseFuture {
        Box::pin(async move {
            let s = &self.shared;
            let until = tokio::time::Instant::now() + s.admission.timeout;
            let routed = loop {
                let view = s.view();
                let now = s.started.elapsed();
                let routed = s.brain.lock().ok().and_then(|mut brain| {
                    brain.sync(&view, s.active(), now);
                    let room = brain
                        .admission_limit()
                        .is_none_or(|limit| brain.in_cluster() < limit as u64);
                    room.then(|| route(s, &mut brain, self.key, &self.request.path, now, false))
                });
                if let Some(routed) = routed {
                    break routed;
                }
                if tokio::time::Instant::now() >= until {
                    s.admission.refused_timeout.fetch_add(1, Relaxed);
                    return Err(Error::Unavailable(
                        "the cluster held its limit of requests for longer than this node's queue_timeout",
                    ));
                }
                self.place.nap(until).await;
            };
            let Waiting {
                shared,
                pool,
                key,
                request,
                head_only,
                slot,
                place,
            } = *self;
            drop(place);
            // Chosen here (this node owns the target) or not: the request's
            // context is gone, so even this node is reached through its
            // own peer listener.
            let local = shared
                .brain
                .lock()
                .ok()
                .and_then(|b| b.node(&shared.name).cloned());
            let Some((to, hop)) = routed.or(local.map(|n| (n, Hop::Serve))) else {
                return Err(Error::Unavailable(
                    "this node is not a member of the cluster yet",
                ));
            };
            let out = request.outgoing();
            let forwarding = Forwarding {
                head: build_head(&shared, &out, hop),
                retry_head: (hop == Hop::Decide).then(|| build_head(&shared, &out, Hop::Serve)),
                shared,
                pool,
                to,
                key,
                head_only,
                slot,
            };
            Box::new(forwarding).respond().await
        })
    }
}
