//! `cargo build -p iolite-example-faulty && cargo run -- serve --module /faulty=target/debug/libfaulty.so`
//!
//! A module that misbehaves on request, for the supervision tests:
//! `/faulty/panic` panics (the process aborts: 502 for that request, the
//! runner restarts), `/faulty/sleep` never answers in time (504, the
//! process is replaced), `/faulty/exit` exits, anything else answers `ok`
//! with the runner's pid so a test can see a restart.
#![deny(unsafe_code)]

use std::fmt::Write as _;

use iolite_sdk::{Ctx, Module, Request, Response};

/// Fails in the ways its path names.
#[derive(Debug, Default)]
pub struct Faulty;

impl Module for Faulty {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        match req.path().rsplit('/').next().unwrap_or("") {
            "panic" => panic!("faulty module: asked to panic"),
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            "exit" => std::process::exit(7),
            _ => {}
        }
        let mut out = ctx.writer();
        if writeln!(out, "ok pid {}", std::process::id()).is_err() {
            return Response::new(503);
        }
        Response::new(200)
            .header("Content-Type", "text/plain")
            .body(out.finish())
    }
}

iolite_sdk::export!(Faulty);
