//! `cargo build -p iolite-example-echo && cargo run -- serve --module /echo=target/debug/libecho.so`
//! then `curl --data-binary @file http://127.0.0.1:8080/echo`.
//!
//! Answers the request body by reference: the response body is the very
//! slices of the request pool the server read the body into; not one byte
//! is copied on the way back. A large body comes in parts
//! ([`Module::BODY_IN_PARTS`]): the answer then streams, each part sent
//! back as it came while the rest of the upload is still arriving (full
//! duplex), so an upload of any size goes through the fixed request pool.
//! The client must read the answer while it sends (curl does); one that
//! sends a large body whole before it reads stalls once the socket buffers
//! and the few parts in flight are full, and the server's timeouts end the
//! exchange (bodies up to 1 MiB come whole and are answered after).
//!
//! `?max=N` refuses a body over `N` bytes with 413 before reading any of
//! it (the server then stops reading the upload and closes the
//! connection after the answer); a chunked upload, whose length is not
//! announced, is echoed whatever its size (up to the server's `max_body`).
#![deny(unsafe_code)]

use iolite_sdk::{Ctx, HttpError, Module, Request, Response};

/// Echoes the body (and its content type).
#[derive(Debug, Default)]
pub struct Echo;

impl Module for Echo {
    const BODY_IN_PARTS: bool = true;

    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let max = req.query_params().parse_value::<u64>("max")?;
        if max.is_some_and(|max| req.body_len().is_some_and(|len| len > max)) {
            // Empty: the client is still sending, and may not read a body.
            return Ok(Response::new(413));
        }
        let content_type = req.header("content-type");
        let head = Response::new(200).header(
            "Content-Type",
            content_type.unwrap_or(b"application/octet-stream"),
        );
        if !req.body_in_parts() {
            return Ok(head.body(req.body().clone()));
        }
        // A chunked upload's length is known only at its end: the answer
        // goes out chunked as well.
        let mut stream = match req.body_len() {
            Some(len) => ctx.stream(head, len)?,
            None => ctx.stream_open_ended(head)?,
        };
        // Each part goes back by reference and is dropped before the next
        // is read, so the server can read on. An error (the client went
        // away, the link broke) cuts the stream.
        while let Some(part) = stream.body_part()? {
            stream.send(&part)?;
        }
        Ok(Response::new(200))
    }
}

iolite_sdk::export!(Echo);
