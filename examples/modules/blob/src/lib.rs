//! `cargo build -p iolite-example-blob && cargo run -- serve --module /blob=target/debug/libblob.so`
//! then `curl -o /dev/null 'http://127.0.0.1:8080/blob?kib=1024'`.
//!
//! A large answer, for the module bench (`bench/modules.sh`): `?kib=N`
//! (default 1024, at most 16384) answers N KiB where byte `i` is
//! `i % 251`. The bytes are written into the output pool once per size and
//! process, on the first request, and every later answer names that same
//! buffer: what is measured is moving 1 MiB from a module to a client, not
//! producing it.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;

use iolite_sdk::{Agg, Ctx, Module, Request, Response};

/// Answers a pattern of the asked size.
#[derive(Debug, Default)]
pub struct Blob {
    /// Written bodies, by size in KiB.
    made: Mutex<HashMap<u64, Agg>>,
}

fn kib(query: &str) -> Option<u64> {
    if query.is_empty() {
        return Some(1024);
    }
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "kib")
        .and_then(|(_, v)| v.parse().ok())
        .filter(|n| (1..=16384).contains(n))
}

impl Module for Blob {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        let Some(kib) = kib(req.query()) else {
            return Response::new(400);
        };
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        let body = match made.get(&kib) {
            Some(body) => body.clone(),
            None => {
                let len = (kib << 10) as usize;
                let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let mut out = ctx.writer();
                if out.write_all(&bytes).is_err() {
                    return Response::new(503);
                }
                let body = out.finish();
                made.insert(kib, body.clone());
                body
            }
        };
        Response::new(200)
            .header("Content-Type", "application/octet-stream")
            .body(body)
    }
}

iolite_sdk::export!(Blob);
