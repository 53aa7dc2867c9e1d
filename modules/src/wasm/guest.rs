//! The runner's side of a WebAssembly mount: [`load`] the server's
//! compiled code (between the sandbox's phases, see `crate::runner`),
//! then [`serve`] the protocol as a native module's SDK does, each
//! request handed to a fresh instance of the component (iolite-sandbox's
//! `wasm::http`), on a small tokio runtime the link threads block on.
//!
//! Copies of body bytes, each counted in the runner's
//! `iolite_ipc::copied`: the request body out of the request pool into
//! one buffer (`Agg::copy_to_vec`) and from it into guest memory (as
//! wasmtime takes it); the answer's body out of guest memory (wasmtime)
//! and into the output pool (the SDK's `Writer`). The wasi:http API owns
//! its buffers, so none of these four can be skipped; the SDK's
//! zero-copy window is for SDK modules built for wasm32, not for
//! components.

use std::os::fd::OwnedFd;

use bytes::Bytes;
use iolite_sandbox::wasm::http::HttpGuest;
use iolite_sandbox::wasm::{Engine, EpochTicker, code, engine};
use iolite_sdk::{Ctx, HttpError, Module, Request, Response, Writer};

use super::spec::WasmSpec;
use crate::error::Error;

/// A component loaded and linked, not yet serving.
#[derive(Debug)]
pub(crate) struct Loaded {
    engine: Engine,
    guest: HttpGuest,
}

/// Makes the engine (its instance pool reserved now, under RLIMIT_AS),
/// maps the compiled code in `file` and links it.
pub(crate) fn load(spec: &WasmSpec, file: &std::fs::File) -> Result<Loaded, Error> {
    let engine = engine(&spec.limits)?;
    let component = code::load(&engine, file)?;
    let guest = HttpGuest::new(&engine, &component, spec.limits)?;
    Ok(Loaded { engine, guest })
}

/// Serves the protocol on `sock` (its sandbox complete) until the server
/// closes it; returns the exit code.
pub(crate) fn serve(loaded: Loaded, sock: OwnedFd, output: OwnedFd) -> Result<i32, Error> {
    let ticker = EpochTicker::start(&loaded.engine)?;
    // Timers only: tokio's I/O driver makes a socketpair for signals,
    // which the runner's seccomp allow-list leaves out (no socket is
    // made after the sandbox), and guests have no sockets or files.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("iolite-wasm")
        .enable_time()
        .build()
        .map_err(|e| Error::Runner(format!("the guest's tokio runtime: {e}")))?;
    let module = WasiHttp {
        guest: loaded.guest,
        rt,
    };
    let code = iolite_sdk::run_module(module, sock, output);
    drop(ticker);
    Ok(code)
}

/// A wasi:http component as an SDK module.
struct WasiHttp {
    guest: HttpGuest,
    rt: tokio::runtime::Runtime,
}

impl Module for WasiHttp {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let request = to_http(req)?;
        let mut sink = Counted(ctx.writer());
        let served = self.rt.block_on(self.guest.handle(
            request,
            iolite_ipc::copied::add,
            &mut sink,
        ));
        match served {
            Ok(head) => {
                let mut resp = Response::new(head.status);
                for (name, value) in &head.headers {
                    resp = resp.header(name, value);
                }
                Ok(resp.body(sink.0.finish()))
            }
            Err(failure) => {
                let status = failure.status();
                let message = match status {
                    504 => "the WebAssembly guest ran past its time",
                    503 => "every WebAssembly instance is busy",
                    _ => "the WebAssembly guest failed",
                };
                let err = HttpError::new(status, message).detail(&failure);
                Err(if status == 503 {
                    err.header("Retry-After", "1")
                } else {
                    err
                })
            }
        }
    }
}

/// The request as wasi:http takes it: method, path and query, headers,
/// and the body copied out of the request pool.
fn to_http(req: &Request) -> Result<http::Request<Bytes>, HttpError> {
    let uri = if req.query().is_empty() {
        req.path().to_owned()
    } else {
        format!("{}?{}", req.path(), req.query())
    };
    let mut builder = http::Request::builder().method(req.method()).uri(uri);
    for (name, value) in req.headers() {
        builder = builder.header(name, value);
    }
    builder
        .body(Bytes::from(req.body().copy_to_vec()))
        .map_err(|e| HttpError::bad_request(format!("not a request wasi:http can take: {e}")))
}

/// The output pool's writer, counting what reaches it: each byte was
/// copied twice (out of guest memory by wasmtime, then into the pool).
struct Counted<'a>(Writer<'a>);

impl std::io::Write for Counted<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(data)?;
        iolite_ipc::copied::add(2 * n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
