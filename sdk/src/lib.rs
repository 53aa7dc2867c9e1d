//! iolite-sdk is what a content-module author depends on: the [`Module`]
//! trait, the [`Request`] view over a body in shared memory, the output-pool
//! [`Writer`], [`Response`], [`HttpError`], a small [`Router`], decoded
//! [`Params`], a [`BodyReader`], and the [`export!`] macro that makes the
//! C-ABI entry points. It also owns the wire contract between the server
//! and a runner process ([`wire`]). It depends on iolite-ipc and never on
//! iolite-core (the server).
//!
//! # A module from an empty folder
//!
//! The crate is not published: depend on it by path. Next to a checkout of
//! iolite (`iolite/`), make a folder `app/` with this `Cargo.toml`:
//!
//! ```toml
#![doc = include_str!("../doc/app.toml")]
//! ```
//!
//! and this `src/lib.rs`:
//!
//! ```
#![doc = include_str!("../doc/app.rs")]
//! ```
//!
//! Build it, and serve it with the iolite binary built from the checkout
//! (a relative `--module` path is taken from the working directory):
//!
//! ```sh
//! cd app && cargo build --release
//! cd ../iolite && cargo run --release -- serve --listen 127.0.0.1:8080 \
//!     --module /app=../app/target/release/libapp.so
//! curl http://127.0.0.1:8080/app/hello?name=you     # Hello, you!
//! curl -d a=1 -d b=2 http://127.0.0.1:8080/app/sum   # 3
//! curl -X DELETE -i http://127.0.0.1:8080/app/sum    # 405, Allow: POST
//! ```
//!
//! The server starts runner processes (sandboxed first) that load the
//! library, check its ABI version (a module built for another version is
//! refused, both versions named) and serve the mount: every request whose
//! path is the prefix or below it (`/app`, `/app/…`). The test
//! `tests/sdk.rs` builds exactly this crate, outside the workspace, and
//! asks it these questions through the real binary.
//!
//! # Requests and answers
//!
//! - [`Module::handle`] returns `Result<Response, HttpError>`: an error is
//!   answered with its status and message (a 5xx's cause goes to the
//!   module's stderr, which the server logs under the module's name, not
//!   to the client). `?` converts `io::Error` (500; a full output pool:
//!   503 with `Retry-After`), `fmt::Error` (a [`Writer`] whose pool is
//!   full: 503), the SDK's [`Error`] and your own types with a `From` impl.
//! - [`Router`]: method and [`Request::sub_path`] (the path below the
//!   mount; [`Request::path`] is the whole path, [`Request::mount`] the
//!   prefix); 405 with `Allow`, 404, HEAD answered by the GET route.
//! - [`Request::query_params`], [`Request::form`] and (feature `json`)
//!   `Request::json` decode in place; [`Request::reader`] reads the body
//!   with `io::Read` and `io::BufRead`.
//! - [`Response::text`], [`html`](Response::html), (feature `json`)
//!   `json`, [`bytes`](Response::bytes) and
//!   [`redirect`](Response::redirect); [`Response::body`] for shared
//!   buffers: the output pool ([`Ctx::writer`]), the request body, cached
//!   files of the document root ([`Ctx::cached`]).
//!
//! What copies body bytes in the runner (each counted in its
//! `iolite_ipc::copied::total`; the server's own copies are on its
//! `/metrics` as `iolite_body_bytes_copied_total`):
//!
//! | what | copies |
//! |---|---|
//! | [`Response::body`] with [`Writer`] output, request-body slices, [`Ctx::cached`] files | nothing: sent from the same pages |
//! | [`Response::text`], `html`, `json`, `bytes` | the body once, from the module's memory into the output pool (write a large body with [`Ctx::writer`] instead) |
//! | [`Request::form`], `Request::json` | nothing when the body is one slice (a body the server read in one go); the body once when it is in several |
//! | [`Request::query_params`] | nothing (the query string is in the request frame) |
//! | [`BodyReader`]: `BufRead::fill_buf`, `lines`, `read_until` | nothing: the slices themselves |
//! | [`BodyReader`]: `Read::read` | into the caller's buffer, as `Read` must |
//! | a value decoded with `+` or `%XX` ([`Params`]) | that value, decoded into a `String` |
//!
//! # Configuration
//!
//! `--module PREFIX=PATH` mounts a module with every default; a
//! `[[module]]` table in the `--config` file sets the rest (durations such
//! as `"250ms"`, `"30s"`; sizes such as `"256M"`):
//!
//! | key | default | what |
//! |---|---|---|
//! | `prefix` | required | the mount; also [`Init::name`] and [`Request::mount`] |
//! | `path` | required | the cdylib |
//! | `processes_min` | 1 | runner processes kept started (0: the first request starts one) |
//! | `processes_max` | 4 | most runner processes |
//! | `in_flight` | 16 | requests sent to one runner before it answers |
//! | `timeout` | `"30s"` | a request past it gets 504, and its runner is replaced |
//! | `idle_timeout` | `"60s"` | a runner above `processes_min` idle this long ends |
//! | `max_requests` | none | a runner is recycled after this many requests |
//! | `memory_limit` | `"256M"` (strict), none (`profile = "none"`) | the runner's own memory (RLIMIT_AS, plus the pools it maps) |
//! | `transfer` | `"shared"` | or `"copy"`: bodies inline, copied (to measure zero-copy) |
//! | `lane_stall` | `"1ms"` | a request waits behind another in a runner thread only when that one's path is known to take at most this long (otherwise it gets a thread of its own, up to `in_flight`) |
//! | `lane_idle` | `"2s"` | an extra lane idle this long closes |
//! | `check_timeout` | `"10s"` | longest the check of the library (at start, on SIGHUP) may take |
//! | `restart_backoff` | `"50ms"` | pause before a runner that died starts again; doubles at each death in a row |
//! | `restart_backoff_max` | `"10s"` | the longest pause (requests wait through pauses up to 250 ms, else get 503 with `Retry-After`) |
//! | `max_body` | `limits.max_body` | the largest request body the module takes (413 past it) |
//! | `env` | none | a table of environment variables set in its runners: per-module settings |
//! | `sandbox.profile` | `"strict"` | or `"none"`: every measure below off unless set |
//! | `sandbox.user` | `"nobody"` | the user a root server's runners drop to |
//! | `sandbox.seccomp` | true | the system-call allow-list |
//! | `sandbox.landlock` | true | no file reachable but the library and the paths below |
//! | `sandbox.read_paths` | `[]` | trees the module may read |
//! | `sandbox.write_paths` | `[]` | trees the module may read and write |
//! | `sandbox.namespaces` | true | new user, network, IPC and UTS namespaces |
//! | `sandbox.open_files` | 256 | RLIMIT_NOFILE |
//! | `sandbox.tasks` | 64 | processes and threads |
//! | `sandbox.cpu_time` | `"60s"` | CPU time over a runner's life (recycled at 3/4 of it) |
//! | `sandbox.low_priority` | true | SCHED_BATCH at nice 10 |
//!
//! (`sandbox.*` keys go in a `[module.sandbox]` table after their
//! `[[module]]`.) **Settings.** A module learns its name
//! ([`Init::name`]) in [`Module::init`]; anything else it reads from its
//! environment there, which `env = { NAME = "value" }` (or a
//! `[module.env]` table) sets in its runners:
//! `std::env::var("DB_URL")`. The runners also inherit the server's own
//! environment.
//!
//! **Body size.** A body larger than the module's `max_body` (by
//! default the server's `[limits] max_body`, `"64M"`, which applies to
//! every body first) gets 413 before the module sees it; a chunked one as
//! soon as it grows past it. A module refuses smaller ones itself from
//! [`Request::body_len`] (with [`Module::BODY_IN_PARTS`], before the body
//! is read: `examples/modules/echo`). Each runner writes its answers into
//! an output pool of 64 MiB.
//!
//! **State.** A module's value (and its statics) lives in one runner
//! process: each runner has its own copy, and loses it when it ends —
//! recycled (`max_requests`, `cpu_time`), idle (`idle_timeout`), restarted
//! after a crash or a timeout, or replaced by a reload (SIGHUP). Requests
//! are spread over runners and run on several threads of each: keep
//! shared state behind a `Mutex` or atomics, and what must last elsewhere.
//!
//! **HEAD.** A module sees HEAD requests (method `HEAD`); the server sends
//! the head of its answer only, with the length of the body it returned.
//! [`Router`] answers them with the GET route.
//!
//! # Beyond one answer of bytes
//!
//! Files of the server's document root come from its unified cache by
//! reference, and a body of any size can be sent in parts through the
//! fixed output pool:
//!
//! ```
//! use iolite_sdk::{Ctx, HttpError, Module, Request, Response};
//!
//! #[derive(Default)]
//! struct Page;
//!
//! impl Module for Page {
//!     fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
//!         if req.sub_path() == "/big" {
//!             // 1 GiB in 1 MiB parts, all naming one buffer written once.
//!             let mut w = ctx.writer();
//!             std::io::Write::write_all(&mut w, &[b'x'; 1 << 20])?;
//!             let part = w.finish();
//!             let head = Response::new(200).header("Content-Type", "text/plain");
//!             let mut stream = ctx.stream(head, 1 << 30)?;
//!             while stream.remaining() > 0 {
//!                 stream.send(&part)?;
//!             }
//!             return Ok(Response::new(200)); // ignored after a stream
//!         }
//!         // Header and footer from the cache, never copied.
//!         let (Some(mut page), Some(mut footer)) =
//!             (ctx.cached("/header.html"), ctx.cached("/footer.html"))
//!         else {
//!             return Err(HttpError::not_found());
//!         };
//!         page.append(&mut footer);
//!         Ok(Response::new(200).body(page))
//!     }
//! }
//!
//! iolite_sdk::export!(Page);
//! ```
//!
//! A request body of any size (an upload of several GiB) goes through the
//! fixed request pool when the module takes it in parts, as the server
//! reads it from the client ([`Module::BODY_IN_PARTS`]). The same loop
//! reads a body whole or in parts; each part is dropped (released to the
//! server) before the next is read, since the server has only a few
//! parts out at a time:
//!
//! ```
//! use iolite_sdk::{Ctx, HttpError, Module, Request, Response};
//!
//! #[derive(Default)]
//! struct Sum;
//!
//! impl Module for Sum {
//!     const BODY_IN_PARTS: bool = true;
//!
//!     fn handle(&self, _req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
//!         let mut sum = 0u64;
//!         // An error: the client went away (nobody reads the answer), or
//!         // the server broke the protocol.
//!         while let Some(part) = ctx.body_part()? {
//!             sum += part.iter().flatten().map(|&b| u64::from(b)).sum::<u64>();
//!         }
//!         Ok(Response::text(200, format!("{sum}\n")))
//!     }
//! }
//!
//! iolite_sdk::export!(Sum);
//! ```
//!
//! A streamed answer can go out while the body still comes in
//! ([`BodyStream::body_part`]): `examples/modules/echo` sends each part
//! back by reference as it arrives. `examples/modules/guestbook` is a
//! whole site: a page with cached parts, a form, JSON.
//!
//! A module crate cannot `forbid(unsafe_code)`: the entry point the macro
//! makes takes ownership of a raw descriptor (one `unsafe` block with its
//! `SAFETY` comment, allowed on that item only). `deny` works.
//!
//! # Layout
//! - [`wire`]: the ABI version, entry-point symbols and protocol messages.
//! - `module`: [`Module`], [`Init`], [`Request`], [`Ctx`], [`BodyStream`]
//!   (answers produced in parts).
//! - `response`: [`Response`]; `status`: [`HttpError`]; `router`:
//!   [`Router`]; `params`: [`Params`]; `reader`: [`BodyReader`];
//!   `writer`: [`Writer`].
//! - `parts`: request bodies in parts on the runner side (what
//!   [`Ctx::body_part`] reads).
//! - `link`: the data link a request's handling borrows, and the parts of
//!   answered requests it drops as they come.
//! - `transfer`: bodies over the link, by descriptor or (copy mode) inline.
//! - `runtime`: the runner-side protocol loop the entry point runs.
//! - `error`: [`Error`].
#![forbid(unsafe_code)]

mod error;
mod link;
mod module;
mod params;
mod parts;
mod reader;
mod response;
mod router;
mod runtime;
mod status;
#[cfg(test)]
mod testing;
mod transfer;
pub mod wire;
mod writer;

pub use error::Error;
pub use iolite_ipc::{Agg, Buf, BufMut};
pub use module::{BodyStream, Ctx, Init, Module, Request};
pub use params::Params;
pub use reader::BodyReader;
pub use response::Response;
pub use router::Router;
pub use status::HttpError;
pub use writer::Writer;

/// The largest part of a request body a module that takes bodies in parts
/// ([`Module::BODY_IN_PARTS`]) gets; bodies up to this size come whole.
pub const BODY_PART: u64 = 1 << 20;

#[doc(hidden)]
pub use runtime::run as __run;
/// Serves the protocol for a module value the caller made (the runner's
/// WebAssembly guests); modules use [`export!`].
#[doc(hidden)]
pub use runtime::run_module;

/// Exports `$module` (a type implementing [`Module`] and [`Default`]) as the
/// library's module: makes `iolite_module_abi_version() -> u32` and
/// `iolite_module_main(sock_fd: i32, output_fd: i32) -> i32`, the two
/// symbols the runner looks up. Use it once per library.
#[macro_export]
macro_rules! export {
    ($module:ty) => {
        /// The module ABI version this library was built for.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn iolite_module_abi_version() -> u32 {
            $crate::wire::ABI_VERSION
        }

        /// The module's feature bits (`iolite_sdk::wire::FEATURE_*`).
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn iolite_module_features() -> u32 {
            if <$module as $crate::Module>::BODY_IN_PARTS {
                $crate::wire::FEATURE_BODY_PARTS
            } else {
                0
            }
        }

        /// Serves the module protocol on `sock_fd` until the server closes
        /// it, with `output_fd` as the output pool's memfd; returns the
        /// process exit code.
        ///
        /// # Safety
        /// `sock_fd` must be an open, connected unix stream socket, and
        /// `output_fd` a memfd made with `iolite_ipc::Pool::memfd`, that
        /// nothing else in the process owns: this call takes ownership of
        /// both.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn iolite_module_main(sock_fd: i32, output_fd: i32) -> i32 {
            if sock_fd < 0 || output_fd < 0 || sock_fd == output_fd {
                return 2;
            }
            // SAFETY: by this function's contract the runner hands over two
            // distinct descriptors it keeps no other handle to; ownership
            // moves here exactly once each.
            let (fd, output) = unsafe {
                (
                    <::std::os::fd::OwnedFd as ::std::os::fd::FromRawFd>::from_raw_fd(sock_fd),
                    <::std::os::fd::OwnedFd as ::std::os::fd::FromRawFd>::from_raw_fd(output_fd),
                )
            };
            $crate::__run::<$module>(fd, output)
        }
    };
}
