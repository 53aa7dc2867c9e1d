//! `cargo build -p iolite-example-hostile && cargo run -- serve --module /hostile=target/debug/libhostile.so`
//! then `curl --data x http://127.0.0.1:8080/hostile/write`.
//!
//! A module that attacks the machine it runs on, for the isolation tests
//! (`tests/modules.rs`, `tests/isolation.rs`). Every attack must be stopped
//! by the runner's sandbox or the shared pages' protection: then the module
//! dies (the server answers 502 and restarts it). If an attack ever
//! succeeds, the module answers `200` with `X-Attack: succeeded`, which the
//! tests refuse (except under `profile = "none"`, where they expect it).
//!
//! On the request body's pages:
//! - `/hostile/write`: store a byte into the request body (read-only
//!   mapping: SIGSEGV).
//! - `/hostile/mprotect`: make the body's page writable (EACCES).
//! - `/hostile/truncate`: shrink the request pool's memfd (sealed: EPERM).
//!
//! On the machine (each panics, naming the limit it hit, when stopped by
//! an error rather than killed):
//! - `/hostile/threads`: start threads until the tasks limit refuses one.
//! - `/hostile/fds`: duplicate descriptors until EMFILE (open files limit).
//! - `/hostile/alloc`: allocate and touch memory until the address-space
//!   limit refuses more.
//! - `/hostile/socket`: open a TCP socket (seccomp: SIGSYS).
//! - `/hostile/ptrace`: `ptrace(PTRACE_TRACEME)` (seccomp: SIGSYS).
//! - `/hostile/fork`: fork one child (seccomp: SIGSYS).
//! - `/hostile/forkbomb`: fork children that never exit until the tasks
//!   limit refuses one (without seccomp; with it, the first fork is fatal).
//! - `/hostile/orphan`: fork a child that keeps the runner's socket open,
//!   then abort (without seccomp): the server must notice the death anyway.
//! - `/hostile/spin`: burn CPU until the CPU time limit ends the runner
//!   (SIGXCPU).
//! - `/hostile/read?path=P`: read the file `P`: `200` with the byte count,
//!   or `403` with the error (landlock leaves only the module's own
//!   library and the configured `read_paths` readable).
//! - `/hostile/create?path=P`: create the file `P`: `200` or `403` with
//!   the error (only under `write_paths`).
//! - anything else: `204`.
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
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        let attack = req.path().rsplit('/').next().unwrap_or("");
        match attack {
            "write" | "mprotect" | "truncate" => pool_attack(req, attack),
            "threads" => thread_bomb(),
            "fds" => fd_hog(),
            "alloc" => alloc_hog(),
            "socket" => network_socket(),
            "ptrace" => trace_me(),
            "fork" => fork_once(),
            "forkbomb" => fork_bomb(),
            "orphan" => orphan(),
            "spin" => spin(),
            "read" => read_file(req, ctx),
            "create" => create_file(req, ctx),
            _ => Response::new(204),
        }
    }
}

/// The error of the last failed libc call.
fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn thread_bomb() -> Response {
    let mut started = 0u64;
    loop {
        // Small stacks: the tasks limit, not the address space, must stop it.
        let spawned = std::thread::Builder::new().stack_size(64 << 10).spawn(|| {
            loop {
                std::thread::park();
            }
        });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => panic!("hostile: threads: stopped after {started} threads: {e}"),
        }
    }
}

fn fd_hog() -> Response {
    let mut opened = 0u64;
    loop {
        // SAFETY: dup of stderr, which this process holds; the copies leak
        // on purpose.
        if unsafe { libc::dup(2) } < 0 {
            panic!(
                "hostile: fds: stopped after {opened} descriptors: {}",
                errno()
            );
        }
        opened += 1;
    }
}

fn alloc_hog() -> Response {
    const STEP: usize = 16 << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if let Err(e) = block.try_reserve_exact(STEP) {
            let mib = held.len() * (STEP >> 20);
            // Not a panic: with RUST_BACKTRACE set, symbolizing the trace
            // needs memory the limit no longer gives. Free it, say why, die.
            drop(held);
            eprintln!("hostile: alloc: stopped after {mib} MiB: {e}");
            std::process::abort();
        }
        // Touch every page: the memory is really used, not only reserved.
        block.resize(STEP, 0xA5);
        held.push(block);
        if held.len() > 1 << 16 {
            return succeeded();
        }
    }
}

fn network_socket() -> Response {
    // SAFETY: socket(2) takes integers only.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd >= 0 {
        return succeeded();
    }
    panic!("hostile: socket refused: {}", errno());
}

fn trace_me() -> Response {
    // SAFETY: PTRACE_TRACEME reads no pointer argument.
    let r = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    if r == 0 {
        return succeeded();
    }
    panic!("hostile: ptrace refused: {}", errno());
}

fn fork_once() -> Response {
    // SAFETY: the child calls only _exit, which is async-signal-safe.
    match unsafe { libc::fork() } {
        // SAFETY: _exit takes an integer and never returns.
        0 => unsafe { libc::_exit(0) },
        -1 => panic!("hostile: fork refused: {}", errno()),
        child => {
            // SAFETY: waitpid on our own child, with a null status pointer.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            succeeded()
        }
    }
}

fn fork_bomb() -> Response {
    let mut forked = 0u64;
    loop {
        // SAFETY: the child calls only pause, which is async-signal-safe,
        // and never returns (the supervisor kills the process group).
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause takes no argument.
                unsafe { libc::pause() };
            },
            -1 => panic!(
                "hostile: forkbomb: stopped after {forked} processes: {}",
                errno()
            ),
            _ => forked += 1,
        }
    }
}

fn orphan() -> Response {
    // SAFETY: the child calls only pause (async-signal-safe), forever,
    // holding every descriptor the runner had, its socket included.
    match unsafe { libc::fork() } {
        0 => loop {
            // SAFETY: pause takes no argument.
            unsafe { libc::pause() };
        },
        -1 => panic!("hostile: orphan: fork refused: {}", errno()),
        _ => std::process::abort(),
    }
}

fn read_file(req: &Request, ctx: &mut Ctx<'_>) -> Response {
    use std::fmt::Write as _;
    let path = req.query().strip_prefix("path=").unwrap_or("");
    let mut out = ctx.writer();
    let (status, written) = match std::fs::read(path) {
        Ok(bytes) => (200, writeln!(out, "read {} bytes", bytes.len())),
        Err(e) => (403, writeln!(out, "{path}: {e}")),
    };
    if written.is_err() {
        return Response::new(503);
    }
    Response::new(status).body(out.finish())
}

fn create_file(req: &Request, ctx: &mut Ctx<'_>) -> Response {
    use std::fmt::Write as _;
    let path = req.query().strip_prefix("path=").unwrap_or("");
    let mut out = ctx.writer();
    let (status, written) = match std::fs::write(path, b"hostile\n") {
        Ok(()) => (200, writeln!(out, "created {path}")),
        Err(e) => (403, writeln!(out, "{path}: {e}")),
    };
    if written.is_err() {
        return Response::new(503);
    }
    Response::new(status).body(out.finish())
}

fn spin() -> Response {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn pool_attack(req: &Request, attack: &str) -> Response {
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

iolite_sdk::export!(Hostile);
