//! `cargo build -p iolite-example-echo && cargo run -- serve --module /echo=target/debug/libecho.so`
//! then `curl --data-binary @file http://127.0.0.1:8080/echo`.
//!
//! Answers the request body by reference: the response body is the very
//! slices of the request pool the server read the body into; not one byte
//! is copied on the way back.
#![deny(unsafe_code)]

use iolite_sdk::{Ctx, Module, Request, Response};

/// Echoes the body (and its content type).
#[derive(Debug, Default)]
pub struct Echo;

impl Module for Echo {
    fn handle(&self, req: &Request, _ctx: &mut Ctx<'_>) -> Response {
        let content_type = req
            .header("content-type")
            .unwrap_or(b"application/octet-stream")
            .to_vec();
        Response::new(200)
            .header("Content-Type", content_type)
            .body(req.body().clone())
    }
}

iolite_sdk::export!(Echo);
