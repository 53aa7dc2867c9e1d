//! Process modules through the real binary and real runner processes: the
//! example cdylibs (hello, echo, template, jsonapi, stream, blob) and the
//! fixtures (faulty, hostile, forger, abi-mismatch), one file a concern:
//! - `answers`: modules answer, copy mode, per-module metrics and logs;
//! - `failures`: crashes, timeouts, attacks, forgeries, a wrong ABI;
//! - `supervision`: how many runners, and when one is recycled;
//! - `queueing`: requests behind a busy runner, lanes, cancellation;
//! - `uploads`: request bodies in parts, full duplex, curl, copy mode;
//! - `streams`: answers in parts, chunked, slow readers, the send timeout.
//!
//! This file holds what several of them use: the module libraries, the
//! site, and servers started in a known state.

#[path = "../support/mod.rs"]
mod support;

mod answers;
mod failures;
mod queueing;
mod streams;
mod supervision;
mod uploads;

use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

use support::{Iolite, Response, open_fifo_writer, request};

/// The module crates these tests mount.
const MODULES: &[&str] = &[
    "iolite-example-hello",
    "iolite-example-echo",
    "iolite-example-template",
    "iolite-example-jsonapi",
    "iolite-example-stream",
    "iolite-example-blob",
    "iolite-fixture-faulty",
    "iolite-fixture-abi-mismatch",
    "iolite-fixture-hostile",
    "iolite-fixture-forger",
];

/// The path of `libNAME.so`, one of [`MODULES`] (all built at first use).
fn lib(name: &str) -> String {
    support::module_lib(MODULES, name)
}

/// The sandbox of a module that opens the test's named pipe: the pipe lives
/// in a private temporary directory that the strict profile (user
/// `nobody`, no path reachable under landlock) cannot open.
const UNCONFINED: &str = "[module.sandbox]\nprofile = \"none\"\n";

/// A document root with one static page.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), b"<h1>static</h1>\n").unwrap();
    dir
}

/// `GET target` sent as these tests send every request (with a
/// Content-Type and a Content-Length of 0), and its response.
fn get(server: &Iolite, target: &str) -> Response {
    request(server, "GET", target, b"")
}

/// The pid in a faulty module's `ok pid N` or `spun pid N` answer.
fn answer_pid(r: &Response) -> i32 {
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let text = String::from_utf8_lossy(&r.body);
    text.trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// One worker, one faulty runner (`processes_max = 1`, `in_flight = 4`,
/// unconfined, plus `module_keys` and `sandbox_keys`), whose first answer
/// gave its pid, and a request held in it: it reads a named pipe until the
/// test drops `pipe`.
struct Held {
    _root: tempfile::TempDir,
    server: Iolite,
    pid: i32,
    held: TcpStream,
    pipe: File,
}

fn start_with_a_held_request(module_keys: &str, sandbox_keys: &str) -> Held {
    let (root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_max = 1\nin_flight = 4\n{module_keys}{UNCONFINED}{sandbox_keys}",
            lib("faulty")
        ),
        &["--workers", "1"],
    );
    let pid = answer_pid(&get(&server, "/faulty/x"));
    let (held, pipe) = hold_a_request(&server, root.path());
    Held {
        _root: root,
        server,
        pid,
        held,
        pipe,
    }
}

/// A server for a [`site`] with the modules `mounts` (prefix, library
/// name) and the `extra` flags.
fn start_with_modules(mounts: &[(&str, &str)], extra: &[&str]) -> (tempfile::TempDir, Iolite) {
    let root = site();
    let mounts: Vec<String> = mounts
        .iter()
        .map(|(prefix, name)| format!("{prefix}={}", lib(name)))
        .collect();
    let mut args: Vec<&str> = mounts.iter().flat_map(|m| ["--module", m]).collect();
    args.extend_from_slice(extra);
    let server = Iolite::start(root.path(), &args);
    (root, server)
}

/// A server for a [`site`] whose config file holds `toml`, with the
/// `extra` flags.
fn start_with_config(toml: &str, extra: &[&str]) -> (tempfile::TempDir, Iolite) {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(&config, toml).unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = Iolite::start(root.path(), &args);
    (root, server)
}

/// Sends a request that `/faulty` holds until the test drops the returned
/// pipe: it reads a named pipe (made in `dir`) to its end. Returns once the
/// runner is busy with it (opening the write end waits for the module to
/// open the read end), with the client's connection.
fn hold_a_request(server: &Iolite, dir: &Path) -> (TcpStream, File) {
    let fifo = dir.join("hold");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut held = server.connect();
    write!(
        held,
        "GET /faulty/fifo?path={} HTTP/1.1\r\nHost: t\r\n\r\n",
        fifo.display()
    )
    .unwrap();
    (held, open_fifo_writer(&fifo))
}

/// The module at `prefix` kept its runner: none was replaced, restarted,
/// or blamed for a stall, and nothing was logged at WARN or ERROR.
fn assert_runner_kept(server: &Iolite, prefix: &str) {
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", prefix),
        0
    );
    let warned: Vec<_> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warned.is_empty(), "{warned:?}");
}

/// The byte at offset `i` of the test uploads.
fn pattern_at(i: u64) -> u8 {
    (i % 251) as u8
}
