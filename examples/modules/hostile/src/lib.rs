//! `cargo build -p iolite-example-hostile && cargo run -- serve --module /hostile=target/debug/libhostile.so`
//! then `curl --data x http://127.0.0.1:8080/hostile/write`.
//!
//! A module that attacks the shared memory it was given, for the isolation
//! tests. Each attack on the request body's pages must fail: then the
//! module aborts (the server answers 502 and restarts it). If an attack
//! ever succeeds, the module answers `200 attack succeeded`, which the
//! tests refuse.
//!
//! - `/hostile/write`: store a byte into the request body (read-only
//!   mapping: SIGSEGV).
//! - `/hostile/mprotect`: make the body's page writable (EACCES).
//! - `/hostile/truncate`: shrink the request pool's memfd (sealed: EPERM).
//! - anything else: `ok`.
//!
//! The attacks need `unsafe`; this crate exists to run them.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use iolite_sdk::{Ctx, Module, Request, Response};

/// Attacks its request body's pool.
#[derive(Debug, Default)]
pub struct Hostile;

fn succeeded() -> Response {
    Response::new(200).header("X-Attack", "succeeded")
}

impl Module for Hostile {
    fn handle(&self, req: &Request, _ctx: &mut Ctx<'_>) -> Response {
        let attack = req.path().rsplit('/').next().unwrap_or("");
        if !matches!(attack, "write" | "mprotect" | "truncate") {
            return Response::new(204);
        }
        let Some(buf) = req.body().bufs().first() else {
            panic!("hostile: {attack} needs a request body");
        };
        let addr = buf.as_slice().as_ptr();
        match attack {
            "write" => {
                // SAFETY: not safe at all: a store through a read-only shared
                // mapping. The kernel must stop it (SIGSEGV ends the process).
                unsafe { std::ptr::write_volatile(addr.cast_mut(), 0xAA) };
                succeeded()
            }
            "mprotect" => {
                let page = (addr as usize) & !4095;
                // SAFETY: mprotect on a page of our own mapping; it must fail
                // (the memfd was opened read-only and sealed).
                let r = unsafe {
                    libc::mprotect(
                        page as *mut libc::c_void,
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                    )
                };
                if r == 0 {
                    return succeeded();
                }
                panic!(
                    "hostile: mprotect refused: {}",
                    std::io::Error::last_os_error()
                );
            }
            _ => {
                // SAFETY: ftruncate on a descriptor this process holds; the
                // seals must refuse it.
                let r = unsafe { libc::ftruncate(buf.fd().as_raw_fd(), 0) };
                if r == 0 {
                    return succeeded();
                }
                panic!(
                    "hostile: ftruncate refused: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

iolite_sdk::export!(Hostile);
