//! `cargo build -p iolite-example-hello && cargo run -- serve --module /hello=target/debug/libhello.so`
//! then `curl http://127.0.0.1:8080/hello/world?x=1`.
//!
//! The smallest module: a text greeting written straight into the output
//! pool (nothing copied: the module bench's subject).
#![deny(unsafe_code)]

use std::fmt::Write as _;

use iolite_sdk::{Ctx, HttpError, Module, Request, Response};

/// Greets the last segment of the path it was asked for.
#[derive(Debug, Default)]
pub struct Hello;

impl Module for Hello {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let who = req.path().rsplit('/').find(|s| !s.is_empty());
        let mut out = ctx.writer();
        writeln!(out, "Hello, {}!", who.unwrap_or("world"))?;
        if !req.query().is_empty() {
            writeln!(out, "query: {}", req.query())?;
        }
        Ok(Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(out.finish()))
    }
}

iolite_sdk::export!(Hello);
