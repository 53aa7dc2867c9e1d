//! `cargo build -p iolite-example-faulty && cargo run -- serve --module /faulty=target/debug/libfaulty.so`
//!
//! A module that misbehaves on request, for the supervision tests:
//! `/faulty/panic` panics (the process aborts: 502 for that request, the
//! runner restarts), `/faulty/sleep` never answers in time (504, the
//! process is replaced), `/faulty/exit` exits, `/faulty/fifo?path=P`
//! answers only once it has read the named pipe `P` to its end (so a test
//! holds the runner busy for exactly as long as it likes), `/faulty/count`
//! answers how many requests this process has handled, this one included;
//! `/faulty/spin?ms=N` keeps the CPU busy for N ms (at most 10 s) and
//! answers `spun` with the runner's pid; anything else answers `ok` with
//! the runner's pid so a test can see a restart.
#![deny(unsafe_code)]

use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};

use iolite_sdk::{Ctx, Module, Request, Response};

/// Fails in the ways its path names.
#[derive(Debug, Default)]
pub struct Faulty {
    handled: AtomicU64,
}

impl Module for Faulty {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        let handled = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        let mut out = ctx.writer();
        let written = match req.path().rsplit('/').next().unwrap_or("") {
            "panic" => panic!("faulty module: asked to panic"),
            "sleep" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            "exit" => std::process::exit(7),
            "count" => writeln!(out, "{handled}"),
            "spin" => {
                let ms: u64 = req
                    .query()
                    .strip_prefix("ms=")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
                    .min(10_000);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                writeln!(out, "spun pid {}", std::process::id())
            }
            "fifo" => {
                let path = req.query().strip_prefix("path=").unwrap_or("");
                let mut sink = Vec::new();
                match std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut sink)) {
                    Ok(n) => writeln!(out, "read {n} bytes"),
                    Err(e) => writeln!(out, "fifo {path}: {e}"),
                }
            }
            _ => writeln!(out, "ok pid {}", std::process::id()),
        };
        if written.is_err() {
            return Response::new(503);
        }
        Response::new(200)
            .header("Content-Type", "text/plain")
            .body(out.finish())
    }
}

iolite_sdk::export!(Faulty);
