//! The core [`Handler`] of a process module, one per worker thread,
//! mounted at the module's prefix. It routes a request from its head alone
//! ([`Outcome::Pending`]) and builds the request frame from the header
//! fields core parsed (the head is never parsed again); the connection
//! then pumps the body straight into the module's request pool — whole
//! ([`PoolSink`]), or in parts while the answer is awaited ([`PartSink`],
//! when the library takes them) — and the request goes to a runner
//! (`exchange`).

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use iolite_core::body::{BodyMode, BodySink, FinishFuture, PoolBody, PoolSink, ReadyFuture};
use iolite_core::handler::{Handler, Outcome, PendingResponse, RequestCtx, ResponseFuture};
use iolite_ipc::Agg;
use iolite_sdk::BODY_PART;
use iolite_sdk::wire::{PARTS_UNKNOWN, RequestFrame};

use super::ProcessModule;
use super::exchange::NEXT_ID;
use super::link::lanes::WorkerLinks;
use super::parts::{PartRoute, PartSink};

/// Why a whole body found no room (503).
const POOL_FULL: &str = "the module's request pool is full";

impl ProcessModule {
    /// A content handler for one worker (call it on the worker's thread:
    /// the handler keeps that worker's links to the runners). Mount it at
    /// [`ProcessModule::prefix`], unstripped: a module sees whole paths.
    pub fn handler(self: &Arc<Self>) -> Box<dyn Handler> {
        Box::new(ModuleHandler {
            module: self.clone(),
            links: self.worker_links(),
        })
    }
}

/// The content handler of one module, on one worker.
#[derive(Debug)]
struct ModuleHandler {
    module: Arc<ProcessModule>,
    links: Rc<WorkerLinks>,
}

impl Handler for ModuleHandler {
    fn name(&self) -> &'static str {
        "module"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, iolite_core::Error> {
        let Ok(path) = std::str::from_utf8(req.path) else {
            return Ok(Outcome::Declined);
        };
        let frame = request_frame(req, path)?;
        Ok(Outcome::Pending(Box::new(PendingModule {
            module: self.module.clone(),
            links: self.links.clone(),
            frame,
            parts: None,
            body: None,
        })))
    }
}

fn request_frame(req: &RequestCtx<'_>, path: &str) -> Result<RequestFrame, iolite_core::Error> {
    let bad = iolite_core::Error::BadRequest;
    let method = std::str::from_utf8(req.get(req.head.method_token))
        .map_err(|_| bad("method"))?
        .to_owned();
    let query = String::from_utf8(req.query().to_vec()).map_err(|_| bad("query"))?;
    let headers = req
        .headers()
        .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), value.to_vec()))
        .collect();
    Ok(RequestFrame {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        method,
        path: path.to_owned(),
        query,
        headers,
        client: Some(req.client),
        body: iolite_ipc::AggDesc::default(),
        parts: 0,
    })
}

/// A routed request whose body the connection pumps into the module's
/// request pool.
#[derive(Debug)]
struct PendingModule {
    module: Arc<ProcessModule>,
    links: Rc<WorkerLinks>,
    frame: RequestFrame,
    /// Where the parts go, when the body comes in parts.
    parts: Option<Rc<PartRoute>>,
    /// The whole body, once pumped.
    body: Option<PoolBody>,
}

impl PendingResponse for PendingModule {
    /// Over [`BODY_PART`] (or chunked) to a library that takes parts: in
    /// parts, duplex; otherwise whole, into the request pool.
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, iolite_core::Error> {
        let max = self.module.max_body;
        if len.is_some_and(|n| n > max) {
            return Err(iolite_core::Error::BodyTooLarge);
        }
        let in_parts =
            self.module.parts.load(Ordering::Relaxed) && len.is_none_or(|n| n > BODY_PART);
        if !in_parts {
            let (sink, body) = PoolSink::new(&self.module.pool, len, POOL_FULL)?;
            self.body = Some(body);
            return Ok(BodyMode::Whole(Box::new(Capped::new(sink, max))));
        }
        let route = PartRoute::new();
        self.frame.parts = len.unwrap_or(PARTS_UNKNOWN);
        self.parts = Some(route.clone());
        Ok(BodyMode::Duplex(Box::new(Capped::new(
            PartSink::new(
                self.module.pool.clone(),
                self.module.room.clone(),
                route,
                len,
                self.module.timeout,
            ),
            max,
        ))))
    }

    fn respond(self: Box<Self>) -> ResponseFuture {
        let PendingModule {
            module,
            links,
            frame,
            parts,
            body,
        } = *self;
        let body = body.and_then(|b| b.take()).unwrap_or_else(Agg::new);
        Box::pin(module.call(links, frame, body, parts))
    }
}

/// A sink that refuses a body (413) once more than `max` bytes came: a
/// chunked body says its length only at its end.
#[derive(Debug)]
struct Capped<S> {
    sink: S,
    left: u64,
    over: bool,
}

impl<S> Capped<S> {
    fn new(sink: S, max: u64) -> Self {
        Capped {
            sink,
            left: max,
            over: false,
        }
    }
}

impl<S: BodySink> BodySink for Capped<S> {
    fn ready(&mut self) -> ReadyFuture<'_> {
        if self.over {
            return Box::pin(async { Err(iolite_core::Error::BodyTooLarge) });
        }
        self.sink.ready()
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        // One byte past the limit is room enough to tell.
        let room = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        self.sink.space(max.min(room))
    }

    fn advance(&mut self, n: usize) {
        let n64 = n as u64;
        self.over |= n64 > self.left;
        self.left = self.left.saturating_sub(n64);
        self.sink.advance(n);
    }

    fn finish(&mut self) -> FinishFuture<'_> {
        if self.over {
            return Box::pin(async { Err(iolite_core::Error::BodyTooLarge) });
        }
        self.sink.finish()
    }
}
