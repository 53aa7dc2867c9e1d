//! The core [`Handler`] of a process module, one per worker thread. It
//! routes a request from its head alone ([`Outcome::Pending`]), so that
//! the connection reads the body straight into the module's request pool:
//! whole, or in parts (`parts`) when the library takes them. Then the
//! request goes to a runner (`exchange`).

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use iolite_core::config::prefix_matches;
use iolite_core::phases::{
    BodyMode, Handler, Outcome, PendingResponse, Phase, RequestCtx, ResponseFuture,
};
use iolite_ipc::{Agg, BufMut};
use iolite_sdk::BODY_PART;
use iolite_sdk::wire::{PARTS_UNKNOWN, RequestFrame};

use super::ProcessModule;
use super::exchange::NEXT_ID;
use super::link::lanes::WorkerLinks;
use super::parts::{PartRoute, PartSink};

impl ProcessModule {
    /// A content handler for one worker (call it on the worker's thread:
    /// the handler keeps that worker's links to the runners).
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

    fn phase(&self) -> Phase {
        Phase::Content
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, iolite_core::Error> {
        let Ok(path) = std::str::from_utf8(req.path) else {
            return Ok(Outcome::Declined);
        };
        if !prefix_matches(&self.module.prefix, path) {
            return Ok(Outcome::Declined);
        }
        let frame = request_frame(req, path)?;
        Ok(Outcome::Pending(Box::new(PendingModule {
            module: self.module.clone(),
            links: self.links.clone(),
            frame,
            parts: None,
            body: None,
            chunks: Agg::new(),
        })))
    }
}

fn request_frame(req: &RequestCtx<'_>, path: &str) -> Result<RequestFrame, iolite_core::Error> {
    let bad = iolite_core::Error::BadRequest;
    let method = std::str::from_utf8(req.get(req.head.method_token))
        .map_err(|_| bad("method"))?
        .to_owned();
    let target = req.target();
    let query = match target.iter().position(|&b| b == b'?') {
        Some(q) => String::from_utf8(target[q + 1..].to_vec()).map_err(|_| bad("query"))?,
        None => String::new(),
    };
    // Core parsed this head already (at most MAX_HEADERS fields); the
    // storage is left uninitialised, as httparse allows.
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() };
        iolite_core::http::request::MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    parsed
        .parse_with_uninit_headers(req.head_bytes, &mut storage)
        .map_err(|_| bad("request head"))?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
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

/// A routed request whose body the connection is reading into the
/// module's request pool.
#[derive(Debug)]
struct PendingModule {
    module: Arc<ProcessModule>,
    links: Rc<WorkerLinks>,
    frame: RequestFrame,
    /// Where the parts go, when the body comes in parts.
    parts: Option<Rc<PartRoute>>,
    /// The body being filled (Content-Length: all of it; chunked: the
    /// current buffer).
    body: Option<BufMut>,
    /// A chunked body's filled buffers.
    chunks: Agg,
}

impl PendingModule {
    /// The body goes to the module in parts: `len` bytes (None: chunked,
    /// its length unknown until its end).
    fn in_parts(&mut self, len: Option<u64>) -> BodyMode {
        let route = PartRoute::new();
        self.frame.parts = len.unwrap_or(PARTS_UNKNOWN);
        self.parts = Some(route.clone());
        BodyMode::Parts(Box::new(PartSink::new(
            self.module.pool.clone(),
            self.module.room.clone(),
            route,
            len,
            self.module.timeout,
        )))
    }
}

/// Smallest buffer a chunked body is copied into.
const CHUNK_BUF: usize = 64 << 10;

impl PendingResponse for PendingModule {
    fn body_start(&mut self, len: u64) -> Result<BodyMode, iolite_core::Error> {
        if len > BODY_PART && self.module.parts.load(Ordering::Relaxed) {
            return Ok(self.in_parts(Some(len)));
        }
        let len = usize::try_from(len).map_err(|_| iolite_core::Error::BodyTooLarge)?;
        let buf =
            self.module.pool.alloc(len).map_err(|_| {
                iolite_core::Error::Unavailable("the module's request pool is full")
            })?;
        self.body = Some(buf);
        Ok(BodyMode::Whole)
    }

    fn body_start_chunked(&mut self) -> Result<BodyMode, iolite_core::Error> {
        Ok(if self.module.parts.load(Ordering::Relaxed) {
            self.in_parts(None)
        } else {
            BodyMode::Whole
        })
    }

    fn body_space(&mut self, max: usize) -> &mut [u8] {
        match self.body.as_mut() {
            Some(buf) => {
                let spare = buf.spare_mut();
                let n = spare.len().min(max);
                &mut spare[..n]
            }
            None => &mut [],
        }
    }

    fn body_advance(&mut self, n: usize) {
        if let Some(buf) = self.body.as_mut() {
            // `n` came from a read into `body_space`: it fits.
            let _ = buf.advance(n);
        }
    }

    fn body_chunk(&mut self, mut data: &[u8]) -> Result<(), iolite_core::Error> {
        iolite_ipc::copied::add(data.len());
        while !data.is_empty() {
            if self.body.as_ref().is_none_or(|b| b.remaining() == 0) {
                if let Some(full) = self.body.take() {
                    self.chunks.push(full.freeze());
                }
                let buf = self
                    .module
                    .pool
                    .alloc(data.len().max(CHUNK_BUF))
                    .map_err(|_| {
                        iolite_core::Error::Unavailable("the module's request pool is full")
                    })?;
                self.body = Some(buf);
            }
            let Some(buf) = self.body.as_mut() else {
                break;
            };
            let n = buf.remaining().min(data.len());
            buf.extend_from_slice(&data[..n]).map_err(|_| {
                iolite_core::Error::Unavailable("the module's request pool is full")
            })?;
            data = &data[n..];
        }
        Ok(())
    }

    fn respond(self: Box<Self>) -> ResponseFuture {
        let PendingModule {
            module,
            links,
            frame,
            parts,
            body,
            mut chunks,
        } = *self;
        if let Some(last) = body {
            chunks.push(last.freeze());
        }
        Box::pin(module.call(links, frame, chunks, parts))
    }
}
