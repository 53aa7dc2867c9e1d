//! iolite-sdk is what a content-module author depends on: the [`Module`]
//! trait, the [`Request`] view over a body in shared memory, the output-pool
//! [`Writer`], [`Response`], and the [`export!`] macro that makes the C-ABI
//! entry points. It also owns the wire contract between the server and a
//! runner process ([`wire`]). It depends on iolite-ipc and never on
//! iolite-core (the server).
//!
//! # Writing a module
//!
//! `cargo new --lib mymod`, then in its `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! iolite-sdk = "0.1"
//! ```
//!
//! and in `src/lib.rs`:
//!
//! ```
//! use std::fmt::Write as _;
//! use iolite_sdk::{Ctx, Module, Request, Response};
//!
//! #[derive(Default)]
//! struct Greeter;
//!
//! impl Module for Greeter {
//!     fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
//!         // Bytes written here land once in the output pool; the server
//!         // sends them from the same pages.
//!         let mut out = ctx.writer();
//!         let _ = writeln!(out, "hello from {} {}", req.method(), req.path());
//!         let mut body = out.finish();
//!         // The request body goes back by reference, never copied.
//!         body.append(&mut req.body().clone());
//!         Response::new(200)
//!             .header("Content-Type", "text/plain; charset=utf-8")
//!             .body(body)
//!     }
//! }
//!
//! iolite_sdk::export!(Greeter);
//! ```
//!
//! Build it (`cargo build --release`) and mount it:
//! `iolite serve --module /greet=target/release/libmymod.so`. The server
//! starts runner processes that load the library, check its ABI version
//! (a module built for another version is refused, both versions named)
//! and call its entry point with the socket they inherited.
//!
//! Files of the server's document root come from its unified cache by
//! reference, and a body of any size can be sent in parts through the
//! fixed output pool:
//!
//! ```
//! use iolite_sdk::{Ctx, Module, Request, Response};
//!
//! #[derive(Default)]
//! struct Page;
//!
//! impl Module for Page {
//!     fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
//!         if req.path().ends_with("/big") {
//!             // 1 GiB in 1 MiB parts, all naming one buffer written once.
//!             let mut w = ctx.writer();
//!             let _ = std::io::Write::write_all(&mut w, &[b'x'; 1 << 20]);
//!             let part = w.finish();
//!             let head = Response::new(200).header("Content-Type", "text/plain");
//!             if let Ok(mut stream) = ctx.stream(head, 1 << 30) {
//!                 while stream.remaining() > 0 && stream.send(&part).is_ok() {}
//!             }
//!             return Response::new(200); // ignored after a stream
//!         }
//!         // Header and footer from the cache, never copied.
//!         match (ctx.cached("/header.html"), ctx.cached("/footer.html")) {
//!             (Some(mut page), Some(mut footer)) => {
//!                 page.append(&mut footer);
//!                 Response::new(200).body(page)
//!             }
//!             _ => Response::new(404),
//!         }
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
//! use std::fmt::Write as _;
//! use iolite_sdk::{Ctx, Module, Request, Response};
//!
//! #[derive(Default)]
//! struct Sum;
//!
//! impl Module for Sum {
//!     const BODY_IN_PARTS: bool = true;
//!
//!     fn handle(&self, _req: &Request, ctx: &mut Ctx<'_>) -> Response {
//!         let mut sum = 0u64;
//!         loop {
//!             match ctx.body_part() {
//!                 Ok(Some(part)) => {
//!                     sum += part.iter().flatten().map(|&b| u64::from(b)).sum::<u64>();
//!                 }
//!                 Ok(None) => break,
//!                 // The client went away (nobody reads this), or the
//!                 // server broke the protocol.
//!                 Err(_) => return Response::new(400),
//!             }
//!         }
//!         let mut out = ctx.writer();
//!         let _ = writeln!(out, "{sum}");
//!         Response::new(200).body(out.finish())
//!     }
//! }
//!
//! iolite_sdk::export!(Sum);
//! ```
//!
//! A streamed answer can go out while the body still comes in
//! ([`BodyStream::body_part`]): `examples/modules/echo` sends each part
//! back by reference as it arrives.
//!
//! A module crate cannot `forbid(unsafe_code)`: the entry point the macro
//! makes takes ownership of a raw descriptor (one `unsafe` block with its
//! `SAFETY` comment, allowed on that item only). `deny` works.
//!
//! # Layout
//! - [`wire`]: the ABI version, entry-point symbols and protocol messages.
//! - `module`: [`Module`], [`Init`], [`Request`], [`Ctx`], [`Writer`],
//!   [`Response`], [`BodyStream`] (answers produced in parts).
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
mod parts;
mod runtime;
mod transfer;
pub mod wire;

pub use error::Error;
pub use iolite_ipc::{Agg, Buf, BufMut};
pub use module::{BodyStream, Ctx, Init, Module, Request, Response, Writer};

/// The largest part of a request body a module that takes bodies in parts
/// ([`Module::BODY_IN_PARTS`]) gets; bodies up to this size come whole.
pub const BODY_PART: u64 = 1 << 20;

#[doc(hidden)]
pub use runtime::run as __run;

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
