//! `cargo build -p iolite-example-hello && cargo run -- serve --module /hello=target/debug/libhello.so`
//! then `curl http://127.0.0.1:8080/hello/world?x=1`.
//!
//! The smallest module: a text greeting written into the output pool.
#![deny(unsafe_code)]

use std::fmt::Write as _;

use iolite_sdk::{Ctx, Module, Request, Response};

/// Greets the path it was asked for.
#[derive(Debug, Default)]
pub struct Hello;

impl Module for Hello {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        let mut out = ctx.writer();
        let who = req
            .path()
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("world");
        let written = writeln!(out, "Hello, {who}!");
        let written = written.and_then(|()| {
            if req.query().is_empty() {
                Ok(())
            } else {
                writeln!(out, "query: {}", req.query())
            }
        });
        if written.is_err() {
            return Response::new(503);
        }
        Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(out.finish())
    }
}

iolite_sdk::export!(Hello);
