//! `cargo build -p iolite-example-stream && cargo run -- serve --module /stream=target/debug/libstream.so`
//! then `curl -o /dev/null 'http://127.0.0.1:8080/stream?mib=2048'`.
//!
//! A streamed answer of any size through a fixed output pool: `?mib=N`
//! (default 1, at most 1 TiB) answers N parts of 1,048,328 bytes (a whole
//! number of 251-byte periods, just under 1 MiB) that all name the same
//! buffer, written once; `?short=1` stops one part early (the server then
//! closes the connection). Byte `i` of the body is `i % 251`. `?open=1`
//! streams the same parts without announcing the length
//! (`Ctx::stream_open_ended`: chunked to HTTP/1.1 clients, until close to
//! HTTP/1.0 ones); with `short=1` it then fails mid-way (a panic: the
//! client sees the body cut short).
#![deny(unsafe_code)]

use std::io::Write as _;

use iolite_sdk::{Ctx, HttpError, Module, Request, Response};

/// Whole 251-byte periods in a part, so that every part continues the
/// pattern.
const PART: u64 = ((1 << 20) / 251) * 251;

/// Streams a pattern.
#[derive(Debug, Default)]
pub struct Stream;

impl Module for Stream {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let query = req.query_params();
        let mib = query.parse_value::<u64>("mib")?.unwrap_or(1).min(1 << 20);
        let short = query.get("short") == Some("1");
        let open = query.get("open") == Some("1");
        let pattern: Vec<u8> = (0..PART).map(|i| (i % 251) as u8).collect();
        let mut out = ctx.writer();
        out.write_all(&pattern)?;
        let part = out.finish();
        let head = Response::new(200).header("Content-Type", "application/octet-stream");
        let mut stream = if open {
            ctx.stream_open_ended(head)?
        } else {
            ctx.stream(head, mib * PART)?
        };
        for _ in 0..mib.saturating_sub(u64::from(short)) {
            stream.send(&part)?;
        }
        // Returning would end an open-ended body as complete.
        assert!(
            !(open && short),
            "stream example: failing mid-way, as asked"
        );
        Ok(Response::new(200))
    }
}

iolite_sdk::export!(Stream);
