//! One request's trip to a runner and back: a slot picked, a credit
//! taken, the frame offered to this worker's links (a link whose runner
//! just died refuses it before it leaves), the answer awaited under the
//! module's timeout (from the body's last part when it comes in parts),
//! and cancelled in the runner if its client goes away. [`DirectClient`]
//! takes the same path without HTTP.
//!
//! # Not yet (issue 4)
//! - A timed-out request's runner is replaced (its other requests get
//!   502); a deadline per request costs one tokio timer.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use iolite_core::{Body, Error, Response, UpstreamFailure, UpstreamKind};
use iolite_ipc::Agg;
use iolite_sdk::wire::RequestFrame;

use super::ProcessModule;
use super::answer::to_response;
use super::link::lanes::WorkerLinks;
use super::link::{Answer, Link};
use super::parts::PartRoute;
use crate::metrics::ModuleMetrics;

/// Requests a slot may hold (in flight plus queued) per credit before new
/// ones get 503.
const QUEUE_PER_CREDIT: usize = 4;
/// Links a request is offered to before it fails with 502 (a link whose
/// runner died refuses it before it leaves).
const SEND_TRIES: usize = 3;

/// Why a request got 503 with no runner to take it: counted as
/// unavailable, not as busy.
const NO_RUNNER: &str = "no runner of the module is up";
const REFUSED: &str = "module refused";

/// Request ids, one sequence for the server: links and runners key
/// requests by them.
pub(super) static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ProcessModule {
    /// Requests straight to the runners, without HTTP (see [`DirectClient`]).
    pub fn direct_client(self: &Arc<Self>) -> DirectClient {
        DirectClient {
            module: self.clone(),
            links: self.worker_links(),
        }
    }

    /// Sends a request to the least loaded runner and waits for its
    /// answer; a failure is an upstream error (503 busy, 502 crashed or
    /// invalid, 504 timed out).
    pub(super) async fn call(
        self: Arc<Self>,
        links: Rc<WorkerLinks>,
        frame: RequestFrame,
        body: Agg,
        parts: Option<Rc<PartRoute>>,
    ) -> Result<Response, Error> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let start = std::time::Instant::now();
        let answer = self.exchange(&links, frame, body, parts.as_deref()).await;
        self.metrics.took(start.elapsed());
        if let Some(parts) = parts {
            // A whole answer ends the body's parts; a streamed one takes
            // them on (the link knows when it ends).
            if !matches!(&answer, Ok(r) if matches!(r.body, Body::Stream(_))) {
                parts.close();
            }
        }
        match &answer {
            Err(Error::Upstream {
                failure: UpstreamFailure::Unavailable(why @ (NO_RUNNER | REFUSED)),
                ..
            }) => {
                tracing::debug!(module = %self.prefix, "503: {why}");
                self.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.metrics.answered(e.status()),
            Ok(r) => self.metrics.answered(r.status),
        }
        answer
    }

    /// The module's failure as an error.
    pub(super) fn failed(&self, failure: UpstreamFailure) -> Error {
        Error::upstream(UpstreamKind::Module, self.name.clone(), failure)
    }

    /// With `parts`, the body follows the request in parts (see
    /// `parts`), and the time limit runs from the last part.
    async fn exchange(
        &self,
        links: &WorkerLinks,
        frame: RequestFrame,
        body: Agg,
        parts: Option<&PartRoute>,
    ) -> Result<Response, Error> {
        let unavailable = |why| Err(self.failed(UpstreamFailure::Unavailable(why)));
        let Some(slot) = self.pick() else {
            if self.refused().is_some() {
                return unavailable(REFUSED);
            }
            return Err(self.failed(UpstreamFailure::Crashed));
        };
        // `pick` counted this request in the slot's load.
        let _load = LoadGuard(&slot.load);
        if slot.load.load(Ordering::Relaxed) > self.in_flight * QUEUE_PER_CREDIT {
            return Err(self.failed(UpstreamFailure::Unavailable("module busy")));
        }
        // Dropped before the answer (the client went away): cancel.
        let mut sent = Sent {
            link: None,
            id: frame.id,
            metrics: &self.metrics,
        };
        // Waiting for a credit, for a (re)starting runner and for the answer
        // all count against the timeout; only a request the runner holds
        // gets its process replaced.
        let id = sent.id;
        let target = crate::process::link::target_key(&frame.path);
        let answer = {
            let exchange = async {
                let mut credit = slot.credits.clone().acquire_owned().await.ok()?;
                let mut frame = frame;
                // A link whose runner just died takes no request: the request
                // goes on the next runner's link instead (it never left).
                for _ in 0..SEND_TRIES {
                    let link = links.link(&slot, target).await?;
                    match link.submit(frame, &body, credit, target) {
                        Ok(rx) => {
                            drop(body);
                            if let Some(parts) = parts {
                                parts.attach(link.clone(), id);
                            }
                            sent.link = Some(link);
                            return rx.await.ok();
                        }
                        Err(back) => (frame, credit) = *back,
                    }
                }
                None
            };
            tokio::pin!(exchange);
            let start = tokio::time::Instant::now();
            loop {
                let from = parts.map_or(start, |p| p.progress().max(start));
                match tokio::time::timeout_at(from + self.timeout, &mut exchange).await {
                    Ok(answer) => break Ok(answer),
                    // A part went out meanwhile: the limit runs from it.
                    Err(_) if parts.is_some_and(|p| p.progress() > from) => {}
                    Err(e) => break Err(e),
                }
            }
        };
        let link = sent.link.take();
        match answer {
            Err(_) => {
                if let Some(link) = link {
                    link.cancel(sent.id);
                    slot.retire(link.generation);
                    tracing::warn!(module = %self.prefix, request = sent.id, "request timed out; replacing the runner");
                }
                Err(self.failed(UpstreamFailure::TimedOut))
            }
            // No runner took it (none could start, or the module's runner
            // is in its restart back-off): try again later (503).
            Ok(None) if link.is_none() => unavailable(NO_RUNNER),
            Ok(None) => Err(self.failed(UpstreamFailure::Crashed)),
            Ok(Some(Answer::Whole(frame, body))) => to_response(&self.name, frame, body),
            Ok(Some(Answer::Stream(head, len, parts))) => to_response(
                &self.name,
                head,
                Body::Stream(Arc::new(match len {
                    Some(len) => iolite_core::StreamBody::new(len, parts),
                    None => iolite_core::StreamBody::open_ended(parts),
                })),
            ),
        }
    }
}

/// Requests straight to a module's runners, without HTTP: the same data
/// links, frames, credits, timeouts and answer checks as the HTTP handler
/// (for benchmarks and tools: `benches/module_rtt.rs` times the round trip
/// with it). Make and use it on one thread, inside a tokio `LocalSet`.
#[derive(Debug)]
pub struct DirectClient {
    module: Arc<ProcessModule>,
    links: Rc<WorkerLinks>,
}

impl DirectClient {
    /// `GET path` with no header fields and no body; the module's answer
    /// (a failure as the response a client would get).
    pub async fn get(&self, path: &str) -> Response {
        let frame = RequestFrame {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: Vec::new(),
            client: None,
            body: iolite_ipc::AggDesc::default(),
            parts: 0,
        };
        self.module
            .clone()
            .call(self.links.clone(), frame, Agg::new(), None)
            .await
            .unwrap_or_else(|e| Response::from_error(&e))
    }
}

/// A request sent on `link` and not answered yet: dropped so (the client
/// went away), it is cancelled in the runner.
struct Sent<'a> {
    link: Option<Rc<Link>>,
    id: u64,
    metrics: &'a ModuleMetrics,
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            link.cancel(self.id);
        }
    }
}

/// A request counted in its slot's load (by `pick`): uncounted when done.
struct LoadGuard<'a>(&'a AtomicUsize);

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
