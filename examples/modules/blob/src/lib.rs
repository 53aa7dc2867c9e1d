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
use std::collections::hash_map::Entry;
use std::io::Write as _;
use std::sync::Mutex;

use iolite_sdk::{Agg, Ctx, HttpError, Module, Request, Response};

/// Answers a pattern of the asked size.
#[derive(Debug, Default)]
pub struct Blob {
    /// Written bodies, by size in KiB.
    made: Mutex<HashMap<u64, Agg>>,
}

impl Module for Blob {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let kib = req.query_params().parse_value("kib")?.unwrap_or(1024);
        if !(1..=16384).contains(&kib) {
            return Err(HttpError::bad_request("kib must be 1 to 16384"));
        }
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        let body = match made.entry(kib) {
            Entry::Occupied(made) => made.get().clone(),
            Entry::Vacant(slot) => {
                let bytes: Vec<u8> = (0..kib << 10).map(|i| (i % 251) as u8).collect();
                let mut out = ctx.writer();
                out.write_all(&bytes)?;
                slot.insert(out.finish()).clone()
            }
        };
        Ok(Response::new(200)
            .header("Content-Type", "application/octet-stream")
            .body(body))
    }
}

iolite_sdk::export!(Blob);
