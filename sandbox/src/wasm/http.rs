//! A wasi:http/proxy component ([`HttpGuest`]): pre-instantiated once
//! (`ProxyPre`), one instance per request in a store of its own, as
//! `wasmtime serve` and Spin do for P2 components: no state is shared
//! between clients. What ends a request early, and its status:
//!
//! | what | status |
//! |---|---|
//! | the epoch deadline, or the request's time, passes | 504 |
//! | a trap (`unreachable`, out of bounds, stack overflow, memory past its limit) | 502 |
//! | no instance free in the pool | 503 |
//! | the guest never answers, or answers with an error code | 502 |
//!
//! The store is dropped with its instance whatever happened, so a trap
//! costs only its request. Outgoing requests (`wasi:http/outgoing-handler`)
//! are refused with `HTTP-request-denied`: runners have no network.
//!
//! Body bytes are copied twice each way, by necessity of the wasi:http
//! API: the request body into a `Bytes` the host hands wasmtime, and from
//! that into guest memory when the guest reads it (reported to `copied`
//! as it is handed over); the answer's from guest memory into a `Bytes`
//! (wasmtime), then into the caller's `sink` (the caller counts those).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::Limits;
use crate::error::SandboxError;

/// A component ready to serve requests.
pub struct HttpGuest {
    pre: ProxyPre<GuestState>,
    limits: Limits,
}

impl std::fmt::Debug for HttpGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGuest")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a request did not get the guest's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// Past its deadline (504).
    Timeout,
    /// No instance free (503).
    Busy,
    /// The guest trapped, or answered with an error (502): what happened.
    Failed(String),
}

impl GuestFailure {
    /// The status the client gets.
    pub fn status(&self) -> u16 {
        match self {
            GuestFailure::Timeout => 504,
            GuestFailure::Busy => 503,
            GuestFailure::Failed(_) => 502,
        }
    }
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFailure::Timeout => f.write_str("the guest ran past its deadline"),
            GuestFailure::Busy => f.write_str("no guest instance free"),
            GuestFailure::Failed(why) => f.write_str(why),
        }
    }
}

/// The guest's answer head (its body went to the caller's sink).
#[derive(Debug)]
pub struct AnswerHead {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The request body as the guest reads it: one buffer, reported to
/// `copied` when wasmtime takes it (it then copies it into guest memory).
struct RequestBody {
    bytes: Option<Bytes>,
    copied: fn(usize),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let copied = self.copied;
        Poll::Ready(self.bytes.take().filter(|b| !b.is_empty()).map(|b| {
            copied(b.len());
            Ok(Frame::data(b))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl HttpGuest {
    /// Links `component` against WASI p2 and wasi:http (a component that
    /// imports anything else, or exports no incoming handler, is refused
    /// here, with wasmtime's reason).
    pub fn new(
        engine: &Engine,
        component: &Component,
        limits: Limits,
    ) -> Result<Self, SandboxError> {
        let failed = |e: wasmtime::Error| SandboxError::Wasm(format!("{e:#}"));
        let mut linker: Linker<GuestState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(failed)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(failed)?;
        let pre = linker.instantiate_pre(component).map_err(failed)?;
        let pre = ProxyPre::new(pre).map_err(|e| {
            SandboxError::Wasm(format!(
                "not a wasi:http/proxy component (no wasi:http/incoming-handler export): {e:#}"
            ))
        })?;
        Ok(HttpGuest { pre, limits })
    }

    /// The limits every store gets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Serves one request in a fresh instance: the answer's body goes to
    /// `sink` chunk by chunk; `copied` hears of the request body's bytes
    /// as wasmtime takes them. Call it inside a tokio runtime.
    pub async fn handle(
        &self,
        req: http::Request<Bytes>,
        copied: fn(usize),
        sink: &mut dyn std::io::Write,
    ) -> Result<AnswerHead, GuestFailure> {
        let served = self.serve(req, copied, sink);
        match tokio::time::timeout(self.limits.timeout, served).await {
            Ok(result) => result,
            // A guest waiting on the host (a clock, a stream) is not
            // running, so the epoch cannot stop it; the timer does.
            Err(_) => Err(GuestFailure::Timeout),
        }
    }

    async fn serve(
        &self,
        req: http::Request<Bytes>,
        copied: fn(usize),
        sink: &mut dyn std::io::Write,
    ) -> Result<AnswerHead, GuestFailure> {
        let mut store = Store::new(self.pre.engine(), GuestState::new(&self.limits));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.epoch_deadline_trap();
        let (parts, body) = req.into_parts();
        let body = RequestBody {
            bytes: Some(body),
            copied,
        };
        let host = |e: wasmtime::Error| GuestFailure::Failed(format!("host: {e:#}"));
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, http::Request::from_parts(parts, body))
            .map_err(host)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(host)?;
        let pre = self.pre.clone();
        // The store moves into the run: when it ends (returned or
        // trapped), the instance and every stream it held are dropped, and
        // a body the guest never finished ends with an error.
        let run = async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        };
        let answer = async {
            let resp = match rx.await {
                Ok(Ok(resp)) => resp,
                Ok(Err(code)) => {
                    return Err(GuestFailure::Failed(format!(
                        "the guest answered with an error: {code:?}"
                    )));
                }
                Err(_) => return Err(GuestFailure::Failed("the guest set no response".into())),
            };
            let (head, mut body) = resp.into_parts();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    GuestFailure::Failed(format!("the guest's body ended with an error: {e:#}"))
                })?;
                if let Ok(data) = frame.into_data() {
                    sink.write_all(&data).map_err(|e| {
                        GuestFailure::Failed(format!("writing the guest's body: {e}"))
                    })?;
                }
            }
            Ok(AnswerHead {
                status: head.status.as_u16(),
                headers: head
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            })
        };
        tokio::pin!(run, answer);
        let mut ran = false;
        loop {
            tokio::select! {
                result = &mut run, if !ran => {
                    result.map_err(classify)?;
                    ran = true;
                }
                head = &mut answer => {
                    if !ran {
                        // The answer is whole; the guest may still run
                        // (code after its body): let it end, within time.
                        run.await.map_err(classify)?;
                    }
                    return head;
                }
            }
        }
    }
}

/// A failed run's status.
fn classify(e: wasmtime::Error) -> GuestFailure {
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return GuestFailure::Timeout;
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return GuestFailure::Busy;
    }
    GuestFailure::Failed(format!("{e:#}"))
}

/// A store's data: WASI (no files, no environment, stderr to the
/// runner's log), wasi:http, and the limits.
struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    hooks: NoOutgoing,
}

impl GuestState {
    fn new(limits: &Limits) -> Self {
        GuestState {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory).unwrap_or(usize::MAX))
                .instances(super::CORE_PER_COMPONENT as usize)
                .memories(super::MEMORIES_PER_COMPONENT as usize)
                .tables(super::TABLES_PER_COMPONENT as usize)
                .table_elements(super::TABLE_ELEMENTS)
                .trap_on_grow_failure(true)
                .build(),
            hooks: NoOutgoing,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outgoing request.
struct NoOutgoing;

type Sent = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for NoOutgoing {
    fn send_request(
        &mut self,
        _: http::Request<wasmtime_wasi_http::WasiBody>,
        _: Option<wasmtime_wasi_http::RequestOptions>,
        _: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Sent {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
