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

use iolite_sdk::{Ctx, Module, Request, Response};

const MIB: u64 = 1 << 20;

/// Streams a pattern.
#[derive(Debug, Default)]
pub struct Stream;

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

impl Module for Stream {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        let mib = param(req.query(), "mib").unwrap_or(1).min(1 << 20);
        let short = param(req.query(), "short") == Some(1);
        let open = param(req.query(), "open") == Some(1);
        // Whole periods, so that every part continues the pattern.
        let period_bytes = (MIB / 251) * 251;
        let mut out = ctx.writer();
        let pattern: Vec<u8> = (0..period_bytes).map(|i| (i % 251) as u8).collect();
        if out.write_all(&pattern).is_err() {
            return Response::new(503);
        }
        let part = out.finish();
        let len = mib * period_bytes;
        let head = Response::new(200).header("Content-Type", "application/octet-stream");
        let stream = if open {
            ctx.stream_open_ended(head)
        } else {
            ctx.stream(head, len)
        };
        let Ok(mut stream) = stream else {
            return Response::new(500);
        };
        let parts = if short { mib.saturating_sub(1) } else { mib };
        for _ in 0..parts {
            if stream.send(&part).is_err() {
                return Response::new(200);
            }
        }
        // Returning would end an open-ended body as complete.
        assert!(
            !(open && short),
            "stream example: failing mid-way, as asked"
        );
        Response::new(200)
    }
}

iolite_sdk::export!(Stream);
