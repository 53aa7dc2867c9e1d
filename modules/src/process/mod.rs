//! [`ProcessModule`]: a native module mounted at a prefix and served by
//! runner processes, and the core [`Handler`] that routes requests to it.
//!
//! The route is decided from the head alone ([`Outcome::Pending`]); the
//! connection then reads the body with `read(2)` straight into a buffer of
//! this module's request pool (shared read-only with its runners only), and
//! the answer comes back as an aggregate sent by reference
//! ([`Body::Agg`]). Each worker thread talks to the runners on its own data
//! links (`link`); the slot threads (`supervisor`) only start runners and
//! attach links.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use iolite_core::config::{ModuleConfig, ModuleTransfer, prefix_matches};
use iolite_core::phases::{
    BodyMode, Handler, Outcome, PendingResponse, Phase, RequestCtx, ResponseFuture,
};
use iolite_core::{Body, HeaderLines, Response};
use iolite_ipc::{Agg, BufMut, Pool};
use iolite_sdk::BODY_PART;
use iolite_sdk::wire::{FEATURE_BODY_PARTS, PARTS_UNKNOWN, RequestFrame, ResponseFrame, Transfer};

use crate::error::Error;
use crate::metrics::ModuleMetrics;
use link::lanes::WorkerLinks;
use link::{Answer, Link, LinkConfig};
use parts::{PartRoute, PartSink};
use supervisor::spawn::check_library;
use supervisor::{Cmd, SlotConfig, SlotHandle, slot};

pub(crate) mod link;
mod parts;
mod room;
mod supervisor;

/// Bytes of each runner's output pool.
const OUTPUT_POOL: u64 = 64 << 20;
/// Longest `start` waits for its runners to be ready.
const STARTUP_WAIT: Duration = Duration::from_secs(15);
/// Longest [`ProcessModule::stop_all`] waits for the runners to be reaped
/// (a slot in a runner's handshake answers only after it).
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Requests a slot may hold (in flight plus queued) per credit before new
/// ones get 503.
const QUEUE_PER_CREDIT: usize = 4;
/// Most lanes (data links, each served by a runner thread) a worker opens
/// to one runner; never more than `in_flight`.
const MAX_LANES: usize = 4;
/// Links a request is offered to before it fails with 502 (a link whose
/// runner died refuses it before it leaves).
const SEND_TRIES: usize = 3;

/// A module mounted at a prefix, with its runner processes.
#[derive(Debug)]
pub struct ProcessModule {
    prefix: String,
    timeout: Duration,
    in_flight: usize,
    pool: Pool,
    slots: std::sync::RwLock<Vec<Arc<SlotHandle>>>,
    /// Most runner processes (`processes_max`).
    max: usize,
    /// What a slot added under load starts from.
    template: SlotConfig,
    metrics: Arc<ModuleMetrics>,
    /// The library takes request bodies in parts (its feature bits, read
    /// when it was checked: at start and at each reload).
    parts: std::sync::atomic::AtomicBool,
    /// Notified when a runner released request-pool buffers.
    room: Arc<room::Room>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ProcessModule {
    /// Checks the library (in a throw-away runner: a library built for
    /// another ABI is refused here, both versions named), creates the
    /// request pool (room for two bodies of `max_body`) and starts
    /// `processes_min` runners; with `processes_min = 0`, one runner starts
    /// on the first request. `exe` is the iolite binary.
    ///
    /// With `cache`, the runners can include files of the document root
    /// from the unified cache by reference (`Ctx::cached`).
    pub fn start(
        cfg: &ModuleConfig,
        exe: &Path,
        max_body: u64,
        cache: Option<iolite_core::CacheAccess>,
    ) -> Result<Arc<Self>, Error> {
        let sandbox = crate::runner::SandboxSpec::from_config(cfg);
        let features = check_library(exe, &cfg.prefix, &cfg.path, &sandbox)?;
        let size = max_body.saturating_mul(2).clamp(16 << 20, 1 << 36);
        let pool =
            Pool::with_name("iolite-requests", size as usize).map_err(|source| Error::Pool {
                prefix: cfg.prefix.clone(),
                source,
            })?;
        let n = cfg.processes_min.max(1) as usize;
        let mut slots = Vec::with_capacity(n);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let metrics = Arc::new(ModuleMetrics::new(&cfg.prefix));
        let template = SlotConfig {
            name: cfg.prefix.clone(),
            exe: exe.to_owned(),
            library: cfg.path.clone(),
            in_flight: cfg.in_flight.max(1),
            output_pool: OUTPUT_POOL,
            pool: pool.clone(),
            cache: cache.clone(),
            lazy: false,
            sandbox,
            transfer: match cfg.transfer {
                ModuleTransfer::Shared => Transfer::Shared,
                ModuleTransfer::Copy => Transfer::Copy,
            },
            metrics: Some(metrics.clone()),
            keep: false,
            idle_timeout: cfg.idle_timeout,
            max_requests: cfg.max_requests,
            drain_limit: cfg.timeout,
        };
        for index in 0..n {
            let slot_cfg = SlotConfig {
                lazy: cfg.processes_min == 0,
                keep: index < cfg.processes_min as usize,
                ..template.clone()
            };
            let slot = slot::start(slot_cfg, index, started_tx.clone()).map_err(|source| {
                Error::Spawn {
                    what: format!("module {} runner thread", cfg.prefix),
                    source,
                }
            })?;
            slots.push(slot);
        }
        drop(started_tx);
        if cfg.processes_min > 0 {
            // Announce the server only once its runners are ready (or failed
            // to start, logged): no first request waits for a cold start.
            let deadline = std::time::Instant::now() + STARTUP_WAIT;
            for _ in 0..n {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if started_rx.recv_timeout(left).is_err() {
                    break;
                }
            }
        }
        tracing::info!(module = %cfg.prefix, library = %cfg.path.display(), processes = n, "module mounted");
        Ok(Arc::new(ProcessModule {
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout,
            in_flight: cfg.in_flight.max(1) as usize,
            pool,
            slots: std::sync::RwLock::new(slots),
            max: (cfg.processes_max as usize).max(n),
            template,
            metrics,
            parts: std::sync::atomic::AtomicBool::new(features & FEATURE_BODY_PARTS != 0),
            room: Arc::default(),
        }))
    }

    /// The module's counters, for `/metrics` (labelled by prefix).
    pub fn metrics(&self) -> Arc<ModuleMetrics> {
        self.metrics.clone()
    }

    /// The least loaded slot with a runner; when even that one has all its
    /// credits in use (or no slot has a runner), a dormant slot is woken, or,
    /// when `processes_max` allows, a new slot added: its runner starts for
    /// the request (which waits for it).
    fn pick(&self) -> Option<Arc<SlotHandle>> {
        let load = |s: &Arc<SlotHandle>| s.load.load(Ordering::Relaxed);
        let dormant = |s: &Arc<SlotHandle>| s.dormant.load(Ordering::Acquire);
        let (best, grow) = {
            let slots = self.slots.read().ok()?;
            let best = slots
                .iter()
                .filter(|s| !dormant(s))
                .min_by_key(|s| load(s))
                .cloned();
            if let Some(best) = best.as_ref().filter(|b| load(b) < self.in_flight) {
                return Some(best.clone());
            }
            if let Some(sleeper) = slots.iter().find(|s| dormant(s)) {
                // Claimed here; its thread starts a runner on the request's
                // link request.
                sleeper.dormant.store(false, Ordering::Release);
                return Some(sleeper.clone());
            }
            let grow = slots.len() < self.max;
            (best.or_else(|| slots.first().cloned())?, grow)
        };
        if !grow {
            return Some(best);
        }
        let mut slots = self.slots.write().ok()?;
        if slots.len() >= self.max {
            return Some(best);
        }
        let index = slots.len();
        // Nobody waits for this runner's start-up: the request queues.
        let (started, _) = std::sync::mpsc::channel();
        match slot::start(self.template.clone(), index, started) {
            Ok(slot) => {
                tracing::info!(module = %self.prefix, processes = index + 1, "all runners busy; starting another");
                slots.push(slot.clone());
                Some(slot)
            }
            Err(e) => {
                tracing::warn!(module = %self.prefix, error = %e, "cannot start another runner");
                Some(best)
            }
        }
    }

    /// Ends every runner of `modules` (each is killed, reaped and logged at
    /// INFO, its cgroup removed) and their slot threads; waits for them at
    /// most 5 s in all. Call once the server stopped serving:
    /// requests still in flight get 502.
    pub fn stop_all(modules: &[Arc<ProcessModule>]) {
        let deadline = std::time::Instant::now() + STOP_WAIT;
        let slots: Vec<Arc<SlotHandle>> = modules
            .iter()
            .filter_map(|m| m.slots.read().ok().map(|s| s.clone()))
            .flatten()
            .collect();
        for slot in &slots {
            slot.send(Cmd::Stop);
        }
        let stuck = slots.iter().filter(|s| !s.wait_finished(deadline)).count();
        if stuck > 0 {
            tracing::warn!(slots = stuck, "runner slots still busy at exit");
        }
    }

    /// Has every runner of the module recycled, so that it loads the
    /// library again from disk (a rebuilt module goes live without a failed
    /// request): first a throw-away runner checks the library as at start
    /// (it must load, with this server's ABI); if it fails, the error is
    /// logged and the runners keep the library they have. Runs on a thread
    /// of its own: call it from anywhere (`iolite serve` does on SIGHUP).
    pub fn reload(self: &Arc<Self>) {
        let module = self.clone();
        let spawned = std::thread::Builder::new()
            .name("iolite-reload".into())
            .spawn(move || {
                let t = &module.template;
                match check_library(&t.exe, &module.prefix, &t.library, &t.sandbox) {
                    Ok(features) => module
                        .parts
                        .store(features & FEATURE_BODY_PARTS != 0, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(module = %module.prefix, error = %e, "not reloaded: its runners keep the library they loaded");
                        return;
                    }
                }
                let slots = module.slots.read().map(|s| s.clone()).unwrap_or_default();
                tracing::info!(module = %module.prefix, library = %t.library.display(), "reloading: recycling every runner");
                for slot in slots {
                    slot.send(Cmd::Recycle("reload".into()));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(module = %self.prefix, error = %e, "not reloaded: no thread");
        }
    }

    /// The mount prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A content handler for one worker (call it on the worker's thread:
    /// the handler keeps that worker's links to the runners).
    pub fn handler(self: &Arc<Self>) -> Box<dyn Handler> {
        Box::new(ModuleHandler {
            module: self.clone(),
            links: self.worker_links(),
        })
    }

    /// Requests straight to the runners, without HTTP (see [`DirectClient`]).
    pub fn direct_client(self: &Arc<Self>) -> DirectClient {
        DirectClient {
            module: self.clone(),
            links: self.worker_links(),
        }
    }

    fn worker_links(&self) -> Rc<WorkerLinks> {
        let cfg = LinkConfig {
            name: Arc::from(self.prefix.as_str()),
            pool: self.pool.clone(),
            cache_pool: self.template.cache.as_ref().map(|c| c.pool().clone()),
            timeout: self.timeout,
            copy: self.template.transfer == Transfer::Copy,
            lanes: self.in_flight.clamp(1, MAX_LANES),
            metrics: Some(self.metrics.clone()),
            room: Some(self.room.clone()),
        };
        let files = self
            .template
            .cache
            .as_ref()
            .map(iolite_core::CacheAccess::files);
        Rc::new(WorkerLinks::new(cfg, files))
    }

    /// Sends a request to the least loaded runner and waits for its answer.
    async fn call(
        self: Arc<Self>,
        links: Rc<WorkerLinks>,
        frame: RequestFrame,
        body: Agg,
        parts: Option<Rc<PartRoute>>,
    ) -> Response {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.exchange(&links, frame, body, parts.as_deref()).await;
        if let Some(parts) = parts {
            // A whole answer ends the body's parts; a streamed one takes
            // them on (the link knows when it ends).
            if !matches!(response.body, Body::Stream(_)) {
                parts.close();
            }
        }
        self.metrics.answered(response.status);
        response
    }

    /// With `parts`, the body follows the request in parts (see
    /// `parts`), and the time limit runs from the last part.
    async fn exchange(
        &self,
        links: &WorkerLinks,
        frame: RequestFrame,
        body: Agg,
        parts: Option<&PartRoute>,
    ) -> Response {
        let Some(slot) = self.pick() else {
            return plain(502, b"502 Bad Gateway\n");
        };
        if slot.load.load(Ordering::Relaxed) >= self.in_flight * QUEUE_PER_CREDIT {
            return plain(503, b"503 Service Unavailable: module busy\n");
        }
        let _load = LoadGuard::new(&slot.load);
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
        let answer = {
            let exchange = async {
                let mut credit = slot.credits.clone().acquire_owned().await.ok()?;
                let mut frame = frame;
                // A link whose runner just died takes no request: the request
                // goes on the next runner's link instead (it never left).
                for _ in 0..SEND_TRIES {
                    let link = links.link(&slot).await?;
                    match link.submit(frame, &body, credit) {
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
                plain(504, b"504 Gateway Timeout\n")
            }
            Ok(None) => plain(502, b"502 Bad Gateway\n"),
            Ok(Some(Answer::Whole(frame, body))) => to_response(&self.prefix, frame, body),
            Ok(Some(Answer::Stream(head, len, parts))) => to_response(
                &self.prefix,
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
    /// `GET path` with no header fields and no body; the module's answer.
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

struct LoadGuard<'a>(&'a AtomicUsize);

impl<'a> LoadGuard<'a> {
    fn new(load: &'a AtomicUsize) -> Self {
        load.fetch_add(1, Ordering::Relaxed);
        LoadGuard(load)
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn plain(status: u16, text: &'static [u8]) -> Response {
    Response::new(
        status,
        HeaderLines::Static(b"Content-Type: text/plain; charset=utf-8\r\n"),
        Body::Static(text),
    )
}

/// Header fields the server writes itself (a module's are refused).
pub const SERVER_FIELDS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "server",
    "keep-alive",
];

/// Turns a module's answer into a core response; an invalid one (status
/// out of range, a header that could split the response) is a 502.
pub(crate) fn to_response(prefix: &str, frame: ResponseFrame, body: Body) -> Response {
    if !(200..=999).contains(&frame.status) {
        tracing::warn!(module = %prefix, status = frame.status, "module answered an invalid status");
        return plain(502, b"502 Bad Gateway\n");
    }
    let mut lines = Vec::new();
    for (name, value) in &frame.headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        // RFC 9110 field-value: visible characters, obs-text, spaces and
        // tabs. CR and LF would split the response; other control
        // characters make strict clients refuse all of it.
        let clean = value
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if !token || !clean {
            tracing::warn!(module = %prefix, header = %name, "module answered an invalid header field");
            return plain(502, b"502 Bad Gateway\n");
        }
        if SERVER_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        lines.extend_from_slice(name.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value);
        lines.extend_from_slice(b"\r\n");
    }
    Response::new(frame.status, HeaderLines::Owned(lines), body)
}

/// Removes the pids cgroups that runners of a server that died left
/// behind (empty ones only); call once at start-up, before any runner
/// starts. Returns how many were removed.
pub fn sweep_stale_cgroups() -> usize {
    let n = iolite_sandbox::sweep_stale_pids_cgroups();
    if n > 0 {
        tracing::info!(removed = n, "removed stale runner pids cgroups");
    }
    n
}

/// The iolite binary, for starting runners.
pub fn current_exe() -> Result<PathBuf, Error> {
    std::env::current_exe().map_err(Error::Exe)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(status: u16, headers: &[(&str, &[u8])]) -> ResponseFrame {
        ResponseFrame {
            id: 1,
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect(),
            body: iolite_ipc::AggDesc::default(),
        }
    }

    #[test]
    fn module_answers_are_checked_table() {
        type Case = (
            u16,
            &'static [(&'static str, &'static [u8])],
            u16,
            &'static [u8],
        );
        let table: &[Case] = &[
            (
                200,
                &[("Content-Type", b"text/plain")],
                200,
                b"Content-Type: text/plain\r\n",
            ),
            (
                201,
                &[("X-A", b"1"), ("x-b", b"two words")],
                201,
                b"X-A: 1\r\nx-b: two words\r\n",
            ),
            // The server's own fields are dropped, not duplicated.
            (
                200,
                &[
                    ("Content-Length", b"9"),
                    ("connection", b"close"),
                    ("Date", b"x"),
                ],
                200,
                b"",
            ),
            // Response splitting and bad names are refused.
            (200, &[("X-A", b"1\r\nSet-Cookie: a=b")], 502, b""),
            (200, &[("X-A", b"1\n")], 502, b""),
            // Other control characters (found by the module_answer fuzz
            // target: httparse, as strict clients, refused the head).
            (
                200,
                &[("Content-Type", b" application/oct\xa1t-st\x1eeam")],
                502,
                b"",
            ),
            (200, &[("X-A", b"\x00")], 502, b""),
            (200, &[("X-A", b"a\x7f")], 502, b""),
            (200, &[("X-A", b"\x1b[2J")], 502, b""),
            // Tabs and obs-text are fine.
            (200, &[("X-A", b"a\tb \xe9")], 200, b"X-A: a\tb \xe9\r\n"),
            (200, &[("Bad Name", b"1")], 502, b""),
            (200, &[("", b"1")], 502, b""),
            (200, &[("X:Y", b"1")], 502, b""),
            // Statuses a module may not send.
            (100, &[], 502, b""),
            (199, &[], 502, b""),
            (1000, &[], 502, b""),
            (404, &[], 404, b""),
        ];
        for (status, headers, want_status, want_lines) in table {
            let r = to_response("/m", frame(*status, headers), Body::Empty);
            assert_eq!(r.status, *want_status, "{status} {headers:?}");
            if *want_status != 502 {
                assert_eq!(r.headers.as_bytes(), *want_lines, "{status} {headers:?}");
            }
        }
    }
}
