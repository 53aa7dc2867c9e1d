//! Process modules through the real binary and real runner processes: the
//! example cdylibs (hello, echo, template, jsonapi) and fixtures (faulty,
//! abi-mismatch) answer through the server, a 64 MiB body is echoed by reference, a
//! 64 MiB cached file is included by reference, a crash or a hang fails
//! only its own request and the runner comes back, a library built for
//! another ABI is refused at start-up, copy mode answers the same bytes and
//! counts what it copies, a cancelled request the runner has not started
//! is skipped, and each module has its own figures on /metrics.

mod support;

use std::io::Write;
use std::process::Command;

use support::{Iolite, read_response};

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

fn lib(name: &str) -> String {
    support::module_lib(MODULES, name)
}

/// The sandbox of a module that opens the test's named pipe: the pipe lives
/// in a private temporary directory that the strict profile (user
/// `nobody`, no path reachable under landlock) cannot open.
const UNCONFINED: &str = "[module.sandbox]\nprofile = \"none\"\n";

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), b"<h1>static</h1>\n").unwrap();
    dir
}

fn get(server: &Iolite, target: &str) -> support::Response {
    request(server, "GET", target, b"")
}

fn request(server: &Iolite, method: &str, target: &str, body: &[u8]) -> support::Response {
    let mut s = server.connect();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s, &mut Vec::new(), method == "HEAD")
}

#[test]
fn hello_and_echo_answer_through_the_server() {
    let root = site();
    let server = Iolite::start(
        root.path(),
        &[
            "--module",
            &format!("/hello={}", lib("hello")),
            "--module",
            &format!("/echo={}", lib("echo")),
        ],
    );
    // (method, target, request body, status, response body)
    type Case = (
        &'static str,
        &'static str,
        &'static [u8],
        u16,
        &'static [u8],
    );
    let table: &[Case] = &[
        (
            "GET",
            "/hello/bob?x=1",
            b"",
            200,
            b"Hello, bob!\nquery: x=1\n",
        ),
        ("GET", "/hello", b"", 200, b"Hello, hello!\n"),
        ("POST", "/echo", b"some body bytes", 200, b"some body bytes"),
        ("POST", "/echo/deeper", b"", 200, b""),
        ("GET", "/", b"", 200, b"<h1>static</h1>\n"),
        ("GET", "/hellox", b"", 404, b"404 Not Found\n"),
    ];
    for (method, target, body, status, want) in table {
        let r = request(&server, method, target, body);
        assert_eq!(r.status, *status, "{method} {target}");
        assert_eq!(r.body, *want, "{method} {target}");
    }
    let r = request(&server, "POST", "/echo", b"x");
    assert_eq!(r.header("content-type"), Some("text/x-test"));
    let r = request(&server, "HEAD", "/hello/ann", b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some("12"));
    // A chunked body reaches echo in parts (it takes bodies so), and its
    // answer, whose length echo cannot know, goes out chunked; the
    // connection stays usable.
    let mut s = server.connect();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, world"[..]));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    s.write_all(b"GET /hello/z HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, z!\n"[..]));
    // Keep-alive and pipelining across module requests on one connection.
    let mut s = server.connect();
    s.write_all(b"GET /hello/a HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyzGET /hello/c HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|_| read_response(&mut s, &mut buf, false).body)
        .collect();
    assert_eq!(
        bodies,
        [&b"Hello, a!\n"[..], b"xyz", b"Hello, c!\n"].map(<[u8]>::to_vec)
    );
    assert!(server.stop().success());
}

#[test]
fn a_64_mib_echo_copies_no_body_bytes() {
    let root = site();
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/echo={}", lib("echo"))],
    );
    let len = 64u64 << 20;
    let before = server.metric("iolite_body_bytes_copied_total");
    // Echo takes a body this large in parts and answers each part as it
    // comes (full duplex): the client reads while it sends.
    assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    let copied = server.metric("iolite_body_bytes_copied_total") - before;
    // Only the body bytes that arrived in the same read as the head are
    // copied (from the connection's head buffer into the request pool);
    // the other 64 MiB are read(2) into the pool and sent from it.
    assert!(copied <= 64 << 10, "{copied} body bytes copied");
    assert!(server.stop().success());
}

/// `method target` with `body` sent only after the server's
/// `100 Continue`, so that no body byte arrives with the head (the server
/// then copies none of it into the request pool): what the copy counter
/// shows is the module path's alone.
fn request_after_continue(
    server: &Iolite,
    method: &str,
    target: &str,
    body: &[u8],
) -> support::Response {
    use std::io::Read;
    let mut s = server.connect();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    if !body.is_empty() {
        let want = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        s.write_all(body).unwrap();
    }
    read_response(&mut s, &mut Vec::new(), false)
}

/// The value of `name{module="prefix"}` on /metrics.
fn module_metric(server: &Iolite, name: &str, prefix: &str) -> u64 {
    let page = String::from_utf8(server.admin_get("/metrics").body).unwrap();
    let key = format!("{name}{{module=\"{prefix}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("{key} missing:\n{page}"))
        .parse()
        .unwrap()
}

#[test]
fn copy_mode_answers_the_same_bytes_and_counts_every_copied_byte() {
    let root = site();
    let config = root.path().join("iolite.toml");
    let mut toml = String::new();
    for (prefix, name, transfer) in [
        ("/echo", "echo", "shared"),
        ("/echo-copy", "echo", "copy"),
        ("/blob", "blob", "shared"),
        ("/blob-copy", "blob", "copy"),
        ("/stream", "stream", "shared"),
        ("/stream-copy", "stream", "copy"),
    ] {
        toml.push_str(&format!(
            "[[module]]\nprefix = \"{prefix}\"\npath = \"{}\"\ntransfer = \"{transfer}\"\n",
            lib(name)
        ));
    }
    std::fs::write(&config, toml).unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    const CHUNK: u64 = iolite_sdk::wire::DATA_CHUNK as u64;
    // Copy mode copies each request byte twice (out of the request pool,
    // into its frame) and each answer byte once as it is decoded, and once
    // more as the chunks after the first are gathered.
    let answer = |n: u64| n + n.saturating_sub(CHUNK);
    let posted: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 256) as u8).collect();
    // (method, shared target, copy target, body, copies in copy mode)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8], u64);
    let table: &[Case<'_>] = &[
        (
            "POST",
            "/echo",
            "/echo-copy",
            &posted,
            2 * 600_000 + answer(600_000),
        ),
        ("POST", "/echo", "/echo-copy", b"tiny", 2 * 4 + answer(4)),
        ("POST", "/echo", "/echo-copy", b"", 0),
        (
            "GET",
            "/blob?kib=300",
            "/blob-copy?kib=300",
            b"",
            answer(300 << 10),
        ),
        (
            "GET",
            "/blob?kib=1",
            "/blob-copy?kib=1",
            b"",
            answer(1 << 10),
        ),
    ];
    for (method, shared, copy, body, copies) in table {
        // The blob module writes its answer on the first request: not timed.
        request_after_continue(&server, method, copy, body);
        let before = server.metric("iolite_body_bytes_copied_total");
        let a = request_after_continue(&server, method, shared, body);
        let between = server.metric("iolite_body_bytes_copied_total");
        let b = request_after_continue(&server, method, copy, body);
        let after = server.metric("iolite_body_bytes_copied_total");
        assert_eq!(a.status, 200, "{method} {shared}");
        assert_eq!(
            (b.status, b.header("content-type")),
            (a.status, a.header("content-type")),
            "{method} {copy}"
        );
        assert!(a.body == b.body, "{method} {copy}: the answers differ");
        assert_eq!(between - before, 0, "{method} {shared} copied bytes");
        assert_eq!(after - between, *copies, "{method} {copy} copied bytes");
    }
    // A streamed answer in copy mode: the same bytes, every one copied.
    let before = server.metric("iolite_body_bytes_copied_total");
    let a = get(&server, "/stream?mib=3");
    let b = get(&server, "/stream-copy?mib=3");
    assert_eq!((a.status, b.status), (200, 200));
    assert!(a.body == b.body, "streamed answers differ");
    let copied = server.metric("iolite_body_bytes_copied_total") - before;
    assert!(copied >= b.body.len() as u64, "{copied} bytes copied");
    assert!(server.stop().success());
}

#[test]
fn a_crash_fails_only_its_request_and_the_runner_restarts() {
    let root = site();
    let server = Iolite::start(
        root.path(),
        &[
            "--module",
            &format!("/faulty={}", lib("faulty")),
            "--module",
            &format!("/hello={}", lib("hello")),
        ],
    );
    let first = get(&server, "/faulty/x");
    assert_eq!(first.status, 200);
    for crash in ["/faulty/panic", "/faulty/exit"] {
        assert_eq!(get(&server, crash).status, 502, "{crash}");
        // Another module is untouched.
        assert_eq!(get(&server, "/hello/z").body, b"Hello, z!\n");
        // The next request waits for the new runner and succeeds.
        let next = get(&server, "/faulty/x");
        assert_eq!(next.status, 200, "after {crash}");
        assert_ne!(next.body, first.body, "a new process answers");
    }
    assert!(server.stop().success());
}

#[test]
fn a_request_past_its_timeout_gets_504_and_a_new_runner() {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\ntimeout = \"300ms\"\n",
            lib("faulty")
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    // The deadline also covers waiting for a (re)starting runner, which a
    // loaded machine can make longer than 300 ms: those requests get 504
    // too (without replacing anything), so ask until one is answered.
    let until_ok = || {
        (0..100)
            .map(|_| get(&server, "/faulty/x"))
            .find(|r| r.status != 504)
            .expect("an answer within 100 tries")
    };
    let first = until_ok();
    assert_eq!(first.status, 200);
    assert_eq!(get(&server, "/faulty/sleep").status, 504);
    let next = until_ok();
    assert_eq!(next.status, 200);
    assert_ne!(next.body, first.body, "the hung process was replaced");
    assert!(module_metric(&server, "iolite_module_timeouts_total", "/faulty") >= 1);
    assert!(module_metric(&server, "iolite_module_restarts_total", "/faulty") >= 1);
    assert!(server.stop().success());
}

#[test]
fn a_module_built_for_another_abi_is_refused_naming_both_versions() {
    let root = site();
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "none",
            "--root",
        ])
        .arg(root.path())
        .arg("--module")
        .arg(format!("/old={}", lib("abi_mismatch")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing was announced");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("module at /old:")
            && stderr.contains("module ABI version 9999")
            && stderr.contains(&format!(
                "this server speaks ABI version {}",
                iolite_sdk::wire::ABI_VERSION
            )),
        "{stderr}"
    );
}

#[test]
fn template_and_json_modules_answer() {
    let root = site();
    std::fs::create_dir(root.path().join("parts")).unwrap();
    std::fs::write(root.path().join("parts/header.html"), b"<header>\n").unwrap();
    std::fs::write(root.path().join("parts/footer.html"), b"<footer>\n").unwrap();
    let server = Iolite::start(
        root.path(),
        &[
            "--module",
            &format!("/template={}", lib("template")),
            "--module",
            &format!("/api={}", lib("jsonapi")),
        ],
    );
    let r = get(&server, "/template?rows=3");
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "<header>\n<tr><td>1</td><td>1</td></tr>\n<tr><td>2</td><td>4</td></tr>\n<tr><td>3</td><td>9</td></tr>\n<footer>\n"
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get(&server, "/template?rows=x").status, 400);
    assert_eq!(get(&server, "/template/include?path=/nope").status, 404);
    assert_eq!(
        get(&server, "/template/include?path=/../etc/passwd").status,
        404
    );

    let table: &[(&str, &str, &[u8], u16, &str)] = &[
        (
            "POST",
            "/api/sum",
            b"1 2 3.5",
            200,
            "{\"sum\":6.5,\"count\":3}",
        ),
        (
            "POST",
            "/api/sum",
            b"1,x",
            400,
            "{\"error\":\"not a number\",\"token\":\"x\"}",
        ),
        (
            "GET",
            "/api/sum",
            b"",
            405,
            "{\"error\":\"method not allowed\"}",
        ),
        (
            "GET",
            "/api/nope",
            b"",
            404,
            "{\"error\":\"no such endpoint\"}",
        ),
    ];
    for (method, target, body, status, want) in table {
        let r = request(&server, method, target, body);
        assert_eq!(
            (r.status, String::from_utf8(r.body).unwrap()),
            (*status, want.to_string()),
            "{method} {target}"
        );
    }
    // A module that takes bodies whole gets a chunked one whole.
    let mut s = server.connect();
    s.write_all(b"POST /api/sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n1 \r\n3;x=y\r\n2 3\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(
        (r.status, String::from_utf8(r.body).unwrap().as_str()),
        (200, "{\"sum\":6,\"count\":3}")
    );
    let r = get(&server, "/api/info?q=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info["method"], "GET");
    assert_eq!(info["path"], "/api/info");
    assert_eq!(info["query"], "q=1");
    assert_eq!(info["body_bytes"], 0);
    assert!(info["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(info["headers"][0], serde_json::json!(["Host", "t"]));
    assert!(server.stop().success());
}

#[test]
fn a_64_mib_cached_file_included_by_a_module_copies_nothing() {
    let root = site();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.path().join("big.bin"), &big).unwrap();
    let server = Iolite::start(
        root.path(),
        &[
            "--cache-size",
            "1G",
            "--module",
            &format!("/template={}", lib("template")),
        ],
    );
    let before = server.metric("iolite_body_bytes_copied_total");
    for _ in 0..2 {
        let r = get(&server, "/template/include?path=/big.bin");
        assert_eq!(r.status, 200);
        assert!(r.body == big, "included body differs");
    }
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), before);
    assert!(server.stop().success());
}

/// One runner, held busy by a request that reads a named pipe; a second
/// request whose client leaves before it is answered; then the pipe ends.
/// `in_flight` decides where the second waits: 1 — in the server (no
/// credit), 2 with one worker — in the runner, behind the first on the
/// worker's one link. Either way it is cancelled: no answer, and the module
/// counts only the held request and the count requests. Returns the server
/// (still running) for further checks.
fn cancel_while_held(in_flight: u32, extra: &[&str]) -> (tempfile::TempDir, Iolite) {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nin_flight = {in_flight}\nprocesses_max = 1\n{UNCONFINED}",
            lib("faulty")
        ),
    )
    .unwrap();
    let fifo = root.path().join("hold");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = Iolite::start(root.path(), &args);
    let base: u64 = String::from_utf8(get(&server, "/faulty/count").body)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Opening the write end returns only when the module has opened the
    // read end, so the runner is busy with this request now.
    let mut held = server.connect();
    write!(
        held,
        "GET /faulty/fifo?path={} HTTP/1.1\r\nHost: t\r\n\r\n",
        fifo.display()
    )
    .unwrap();
    let pipe = support::open_fifo_writer(&fifo);
    // The client leaves; the server closes the connection only after it
    // cancelled the request.
    let mut gone = server.connect();
    gone.write_all(b"GET /faulty/count HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    gone.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut gone, &mut rest).unwrap();
    assert!(rest.is_empty(), "no answer for a cancelled request");
    drop(pipe);
    assert_eq!(
        read_response(&mut held, &mut Vec::new(), false).body,
        b"read 0 bytes\n"
    );
    // The runner handled the held request and this one, never the
    // cancelled one.
    let count = get(&server, "/faulty/count").body;
    assert_eq!(
        String::from_utf8(count).unwrap().trim(),
        (base + 2).to_string()
    );
    (root, server)
}

#[test]
fn a_client_that_goes_away_cancels_its_queued_request() {
    let (_root, server) = cancel_while_held(1, &[]);
    assert!(server.stop().success());
}

#[test]
fn a_cancelled_request_the_runner_has_not_started_is_skipped() {
    // One worker: one link, one runner thread, so with two credits the
    // second request goes to the runner at once and waits there.
    let (_root, server) = cancel_while_held(2, &["--workers", "1"]);
    assert_eq!(
        module_metric(&server, "iolite_module_cancelled_total", "/faulty"),
        1
    );
    assert_eq!(
        module_metric(&server, "iolite_module_requests_total", "/faulty"),
        4
    );
    assert!(server.stop().success());
}

#[test]
fn each_module_has_its_own_figures_on_metrics() {
    let root = site();
    let server = Iolite::start(
        root.path(),
        &[
            "--module",
            &format!("/faulty={}", lib("faulty")),
            "--module",
            &format!("/hello={}", lib("hello")),
        ],
    );
    assert_eq!(get(&server, "/faulty/x").status, 200);
    assert_eq!(get(&server, "/faulty/panic").status, 502);
    // The next request waits for the new runner.
    assert_eq!(get(&server, "/faulty/x").status, 200);
    assert_eq!(get(&server, "/hello/a").status, 200);
    // (name, module, value)
    let table: &[(&str, &str, u64)] = &[
        ("iolite_module_requests_total", "/faulty", 3),
        ("iolite_module_bad_gateway_total", "/faulty", 1),
        ("iolite_module_timeouts_total", "/faulty", 0),
        ("iolite_module_restarts_total", "/faulty", 1),
        ("iolite_module_runners", "/faulty", 1),
        ("iolite_module_requests_total", "/hello", 1),
        ("iolite_module_bad_gateway_total", "/hello", 0),
        ("iolite_module_restarts_total", "/hello", 0),
        ("iolite_module_runners", "/hello", 1),
    ];
    for (name, module, want) in table {
        assert_eq!(
            module_metric(&server, name, module),
            *want,
            "{name} {module}"
        );
    }
    assert!(server.stop().success());
}

/// The pids of `parent`'s child processes.
fn children(parent: i32) -> Vec<i32> {
    support::processes()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .map(|p| p.pid)
        .collect()
}

#[test]
fn processes_min_zero_starts_the_runner_on_the_first_request() {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_min = 0\n\n[[module]]\nprefix = \"/hello\"\npath = \"{}\"\nprocesses_min = 2\n",
            lib("faulty"),
            lib("hello")
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    // Two runners for /hello from the start, none for /faulty yet.
    assert_eq!(children(server.pid()).len(), 2);
    let r = get(&server, "/faulty/x");
    assert_eq!(r.status, 200);
    let pid: i32 = String::from_utf8(r.body).unwrap()["ok pid ".len()..]
        .trim()
        .parse()
        .unwrap();
    let now = children(server.pid());
    assert_eq!(now.len(), 3);
    assert!(now.contains(&pid));
    assert!(server.stop().success());
}

#[test]
fn attacks_on_the_shared_pages_fail_only_their_own_request() {
    let root = site();
    let server = Iolite::start(
        root.path(),
        &[
            "--module",
            &format!("/hostile={}", lib("hostile")),
            "--module",
            &format!("/echo={}", lib("echo")),
        ],
    );
    for attack in ["write", "mprotect", "truncate"] {
        let r = request(
            &server,
            "POST",
            &format!("/hostile/{attack}"),
            b"victim bytes",
        );
        assert_eq!(r.header("x-attack"), None, "{attack} succeeded");
        assert_eq!(r.status, 502, "{attack}");
        // The other module, and the pool's bytes, are untouched.
        let r = request(&server, "POST", "/echo", b"still here");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"still here"[..]));
        // The attacker's runner comes back.
        assert_eq!(
            get(&server, "/hostile/nothing").status,
            204,
            "after {attack}"
        );
    }
    assert!(server.stop().success());
}

#[test]
fn forged_response_descriptors_are_refused() {
    let root = site();
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/forger={}", lib("forger"))],
    );
    for forgery in ["pool", "range", "lease"] {
        let r = request(
            &server,
            "POST",
            &format!("/forger/{forgery}"),
            b"0123456789abcdef",
        );
        assert_eq!(r.status, 502, "{forgery}");
        // The replaced runner answers honestly.
        assert_eq!(
            get(&server, "/forger/honest").status,
            200,
            "after {forgery}"
        );
    }
    assert!(server.stop().success());
}

#[test]
fn module_output_goes_to_the_server_log_under_its_name() {
    use std::io::{BufRead, BufReader, Read};
    let root = site();
    let mut child = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "none",
            "--workers",
            "1",
            "--root",
        ])
        .arg(root.path())
        .arg("--module")
        .arg(format!("/faulty={}", lib("faulty")))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    let ask = |target: &str| {
        let mut s = support::connect(addr);
        write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(&mut s, &mut Vec::new(), false).status
    };
    assert_eq!(ask("/faulty/panic"), 502);
    assert_eq!(ask("/faulty/x"), 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let panic_line = log
        .lines()
        .find(|l| l.contains("faulty module: asked to panic"))
        .unwrap_or_else(|| panic!("no panic message in the log:\n{log}"));
    assert!(panic_line.contains("module=/faulty"), "{panic_line}");
    assert!(
        panic_line.contains("stream=\"stderr\"") || panic_line.contains("stream=stderr"),
        "{panic_line}"
    );
    assert!(log.contains("runner exited"), "{log}");
}

#[test]
fn a_body_over_1_gib_streams_through_a_fixed_pool() {
    use std::io::Read;
    let root = site();
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/stream={}", lib("stream"))],
    );
    const PART: usize = (1 << 20) / 251 * 251;
    let parts = 1100; // 1.07 GiB, 16 times the runner's output pool
    let mut s = server.connect();
    write!(s, "GET /stream?mib={parts} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Read the head byte by byte (the body is too large to buffer).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let len = (PART * parts) as u64;
    assert!(
        head.contains(&format!("Content-Length: {len}\r\n")),
        "{head}"
    );
    let pattern: Vec<u8> = (0..PART).map(|i| (i % 251) as u8).collect();
    let mut chunk = vec![0u8; PART];
    for i in 0..parts {
        s.read_exact(&mut chunk).unwrap();
        assert!(chunk == pattern, "part {i} differs");
    }
    // The connection stays usable after a streamed answer.
    write!(s, "GET /stream?mib=1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!((r.status, r.body.len()), (200, PART));
    // HEAD: the length, no body; the parts are dropped (and released) and
    // the connection and the runner go on.
    write!(s, "HEAD /stream?mib=64 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), true);
    let want = (64 * PART).to_string();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some(want.as_str()))
    );
    write!(s, "GET /stream?mib=2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!((r.status, r.body.len()), (200, 2 * PART));
    // A stream that ends short closes the connection after what it sent.
    let mut s = server.connect();
    write!(s, "GET /stream?mib=3&short=1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - body_at, 2 * PART);
    assert!(server.stop().success());
}

#[test]
fn a_busy_module_gets_another_runner_up_to_processes_max() {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nin_flight = 1\nprocesses_min = 1\nprocesses_max = 2\n{UNCONFINED}",
            lib("faulty")
        ),
    )
    .unwrap();
    let fifo = root.path().join("hold");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    let first = get(&server, "/faulty/x");
    assert_eq!(first.status, 200);
    let mut held = server.connect();
    write!(
        held,
        "GET /faulty/fifo?path={} HTTP/1.1\r\nHost: t\r\n\r\n",
        fifo.display()
    )
    .unwrap();
    let pipe = support::open_fifo_writer(&fifo);
    // The only runner is held: this request gets a second one.
    let second = get(&server, "/faulty/x");
    assert_eq!(second.status, 200);
    assert_ne!(second.body, first.body, "a second process answered");
    assert_eq!(children(server.pid()).len(), 2);
    drop(pipe);
    assert_eq!(read_response(&mut held, &mut Vec::new(), false).status, 200);
    assert!(server.stop().success());
}

/// The pid in a faulty module's `ok pid N` or `spun pid N` answer.
fn answer_pid(r: &support::Response) -> i32 {
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
    held: std::net::TcpStream,
    pipe: std::fs::File,
}

fn start_with_a_held_request(module_keys: &str, sandbox_keys: &str) -> Held {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_max = 1\nin_flight = 4\n{module_keys}{UNCONFINED}{sandbox_keys}",
            lib("faulty")
        ),
    )
    .unwrap();
    let fifo = root.path().join("hold");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let server = Iolite::start(
        root.path(),
        &["--config", config.to_str().unwrap(), "--workers", "1"],
    );
    let pid = answer_pid(&get(&server, "/faulty/x"));
    let mut held = server.connect();
    write!(
        held,
        "GET /faulty/fifo?path={} HTTP/1.1\r\nHost: t\r\n\r\n",
        fifo.display()
    )
    .unwrap();
    let pipe = support::open_fifo_writer(&fifo);
    Held {
        _root: root,
        server,
        pid,
        held,
        pipe,
    }
}

#[test]
fn max_requests_recycles_the_runner_and_the_old_one_answers_what_it_holds() {
    // One worker: one link per runner, so the third request queues in the
    // old runner behind the held one.
    let Held {
        _root,
        server,
        pid: old,
        mut held,
        pipe,
    } = start_with_a_held_request("max_requests = 3\n", "");
    // The third request: sent to the old runner, which is then recycled.
    let mut queued = server.connect();
    write!(queued, "GET /faulty/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    server.wait_for_lines(1, |l| {
        l.contains("draining the runner")
            && l.contains(&format!("pid={old}"))
            && l.contains("max_requests")
    });
    // New requests go to the successor while the old one still holds two.
    let new = answer_pid(&get(&server, "/faulty/x"));
    assert_ne!(new, old);
    drop(pipe);
    let r = read_response(&mut held, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"read 0 bytes\n");
    assert_eq!(
        answer_pid(&read_response(&mut queued, &mut Vec::new(), false)),
        old
    );
    // Then the old runner exits by itself (status 0), and is reaped.
    server.wait_for_lines(1, |l| {
        l.contains("runner exited (drained)")
            && l.contains(&format!("pid={old}"))
            && l.contains("exit status: 0")
    });
    assert_eq!(children(server.pid()), vec![new]);
    assert_eq!(
        module_metric(&server, "iolite_module_recycled_total", "/faulty"),
        1
    );
    assert_eq!(
        module_metric(&server, "iolite_module_restarts_total", "/faulty"),
        0
    );
    assert_eq!(
        module_metric(&server, "iolite_module_bad_gateway_total", "/faulty"),
        0
    );
    assert!(!server.log_lines().iter().any(|l| l.contains("WARN")));
    assert!(server.stop().success());
}

#[test]
fn a_runner_near_its_cpu_time_limit_is_recycled_before_the_limit_kills_it() {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_max = 1\n{UNCONFINED}cpu_time = \"2s\"\n",
            lib("faulty")
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    let recycled = |server: &Iolite| {
        server
            .log_lines()
            .iter()
            .filter(|l| l.contains("draining the runner") && l.contains("cpu_time"))
            .count()
    };
    // Two clients keep the runner spinning (at most 50 ms of CPU a
    // request) until it has been recycled twice: at 1.5 s of CPU each,
    // which leaves it 0.5 s for what it holds.
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if recycled(&server) >= 2 {
            break;
        }
        let answers: Vec<support::Response> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..2)
                .map(|_| s.spawn(|| get(&server, "/faulty/spin?ms=50")))
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for r in &answers {
            assert_eq!(r.status, 200, "{:#?}", server.log_lines());
            pids.insert(answer_pid(r));
        }
    }
    assert!(recycled(&server) >= 2, "{:#?}", server.log_lines());
    // Recycled twice: the next request is the third runner's.
    pids.insert(answer_pid(&get(&server, "/faulty/x")));
    assert!(pids.len() >= 3, "answered by {pids:?}");
    // No runner was killed by the limit (SIGXCPU, then SIGKILL): each
    // drained one exited by itself.
    server.wait_for_lines(2, |l| l.contains("runner exited (drained)"));
    let log = server.log_lines();
    assert!(!log.iter().any(|l| l.contains("WARN")), "{log:#?}");
    assert_eq!(
        module_metric(&server, "iolite_module_restarts_total", "/faulty"),
        0
    );
    assert!(server.stop().success());
}

#[test]
fn an_idle_runner_above_processes_min_ends_and_the_next_request_starts_one() {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_min = 0\nidle_timeout = \"300ms\"\n\n[[module]]\nprefix = \"/hello\"\npath = \"{}\"\nidle_timeout = \"300ms\"\n",
            lib("faulty"),
            lib("hello")
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    let kept = children(server.pid());
    assert_eq!(kept.len(), 1, "hello's one kept runner");
    let first = answer_pid(&get(&server, "/faulty/x"));
    server.wait_for_lines(1, |l| {
        l.contains("runner exited (drained)") && l.contains(&format!("pid={first}"))
    });
    // Scaled to zero; /hello's runner (processes_min = 1) stays.
    assert_eq!(children(server.pid()), kept);
    let second = answer_pid(&get(&server, "/faulty/x"));
    assert_ne!(second, first);
    assert_eq!(get(&server, "/hello/x").status, 200);
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|l| l.contains("draining") && l.contains("/hello"))
    );
    assert!(server.stop().success());
}

#[test]
fn a_slow_request_does_not_hold_up_the_next_one_in_the_same_runner() {
    // One worker, one runner: before lanes, every request of the worker
    // waited behind the held one.
    let Held {
        _root,
        server,
        pid,
        mut held,
        pipe,
    } = start_with_a_held_request("", "");
    // The held request is being handled; once it has been for longer than
    // a lane may stall (50 ms), the next requests take another lane.
    std::thread::sleep(std::time::Duration::from_millis(150));
    for _ in 0..3 {
        let mut s = server.connect();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(s, "GET /faulty/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(answer_pid(&r), pid, "the same process answered");
    }
    assert_eq!(module_metric(&server, "iolite_module_links", "/faulty"), 2);
    drop(pipe);
    let r = read_response(&mut held, &mut Vec::new(), false);
    assert_eq!(r.body, b"read 0 bytes\n");
    // The runner's main thread and its two lanes' threads.
    let threads = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    assert_eq!(threads(), 3);
    // An extra lane idle for 2 s is closed (at the next request): its
    // thread ends.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(answer_pid(&get(&server, "/faulty/x")), pid);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let links = || module_metric(&server, "iolite_module_links", "/faulty");
    while (threads() > 2 || links() > 1) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(threads(), 2);
    assert_eq!(links(), 1);
    assert!(server.stop().success());
}

#[test]
fn a_runner_without_a_thread_to_spare_refuses_a_lane_and_keeps_serving() {
    // Two tasks: the runner's main thread and one link thread.
    let Held {
        _root,
        server,
        pid,
        mut held,
        pipe,
    } = start_with_a_held_request("", "tasks = 2\n");
    std::thread::sleep(std::time::Duration::from_millis(150));
    // This one asks for a second lane, which the runner cannot serve: it
    // waits behind the held request instead of failing.
    let mut next = server.connect();
    write!(next, "GET /faulty/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    server.wait_for_lines(1, |l| l.contains("no thread for another link"));
    drop(pipe);
    assert_eq!(read_response(&mut held, &mut Vec::new(), false).status, 200);
    assert_eq!(
        answer_pid(&read_response(&mut next, &mut Vec::new(), false)),
        pid
    );
    assert_eq!(
        module_metric(&server, "iolite_module_restarts_total", "/faulty"),
        0
    );
    assert!(!server.log_lines().iter().any(|l| l.contains("WARN")));
    assert!(server.stop().success());
}

#[test]
fn sighup_reloads_a_rebuilt_module_and_keeps_the_old_one_when_the_new_is_refused() {
    let root = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libmod.so");
    // Replaced as a deploy would: a new file renamed over the old one.
    let deploy = |from: String| {
        let tmp = dir.path().join("libmod.so.new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    deploy(lib("hello"));
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/m={}", path.display())],
    );
    assert_eq!(get(&server, "/m/x").body, b"Hello, x!\n");
    // A library built for another ABI is refused: hello keeps answering.
    deploy(lib("abi_mismatch"));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = server.wait_for_lines(1, |l| l.contains("not reloaded"));
    assert!(refused[0].contains("9999"), "{refused:?}");
    assert_eq!(get(&server, "/m/x").body, b"Hello, x!\n");
    // A good one: the runner is recycled, and the next requests get it.
    deploy(lib("faulty"));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_lines(1, |l| {
        l.contains("draining the runner") && l.contains("reload")
    });
    answer_pid(&get(&server, "/m/x"));
    server.wait_for_lines(1, |l| l.contains("runner exited (drained)"));
    assert_eq!(
        module_metric(&server, "iolite_module_restarts_total", "/m"),
        0
    );
    assert!(server.stop().success());
}

/// Bytes queued for reading on `s` (peeked: nothing is consumed).
fn queued(s: &std::net::TcpStream, buf: &mut [u8]) -> usize {
    s.peek(buf).unwrap()
}

#[test]
fn an_answer_queued_in_a_clients_socket_keeps_its_bytes_while_the_server_reuses_the_space() {
    // A body echoed by reference is sent with sendfile: the pages it names
    // sit in the client's receive queue until the client reads them. The
    // request pool must not hand that space to the next request meanwhile.
    const LEN: usize = 1 << 20;
    let root = site();
    let server = Iolite::start(
        root.path(),
        &[
            "--module",
            &format!("/echo={}", lib("echo")),
            "--workers",
            "1",
        ],
    );
    let addr = server.addr;
    // A client with room for the whole answer, which does not read yet.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8 << 20).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut slow: std::net::TcpStream = sock.into();
    write!(
        slow,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&vec![b'a'; LEN]).unwrap();
    // The whole answer is in its receive queue: the server is done with it.
    let mut peek = vec![0; 2 * LEN];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while queued(&slow, &mut peek) < LEN && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        queued(&slow, &mut peek) >= LEN,
        "the answer never arrived whole"
    );
    // Other requests of the same size, answered and read at once.
    for fill in [b'b', b'c', b'd'] {
        let r = request(&server, "POST", "/echo", &vec![fill; LEN]);
        assert_eq!(r.status, 200);
        assert!(r.body.iter().all(|&b| b == fill));
    }
    let r = read_response(&mut slow, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    let wrong = r.body.iter().filter(|&&b| b != b'a').count();
    assert_eq!(
        wrong, 0,
        "{wrong} bytes of the first answer changed after it was sent"
    );
    assert!(server.stop().success());
}

#[test]
fn runners_recycled_under_concurrent_load_fail_no_request() {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/hello\"\npath = \"{}\"\nprocesses_max = 2\nin_flight = 8\nmax_requests = 40\n",
            lib("hello")
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    // Four keep-alive clients, 100 requests each: a runner is recycled
    // every 40 requests while the others are in flight on its links.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let server = &server;
                s.spawn(move || {
                    let mut conn = server.connect();
                    let mut buf = Vec::new();
                    (0..100)
                        .map(|i| {
                            write!(conn, "GET /hello/c{c}r{i} HTTP/1.1\r\nHost: t\r\n\r\n")
                                .unwrap();
                            let r = read_response(&mut conn, &mut buf, false);
                            assert_eq!(r.body, format!("Hello, c{c}r{i}!\n").as_bytes());
                            r.status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(module_metric(&server, "iolite_module_recycled_total", "/hello") >= 5);
    assert_eq!(
        module_metric(&server, "iolite_module_bad_gateway_total", "/hello"),
        0
    );
    assert_eq!(
        module_metric(&server, "iolite_module_restarts_total", "/hello"),
        0
    );
    let log = server.log_lines();
    assert!(!log.iter().any(|l| l.contains("WARN")), "{log:#?}");
    assert!(server.stop().success());
}

/// The byte at offset `i` of the test uploads.
fn pattern_at(i: u64) -> u8 {
    (i % 251) as u8
}

/// A full-duplex client, as curl is: one thread POSTs `len` bytes of
/// [`pattern_at`] to `target` (announcing `len`, and sending only `send`
/// of them before it stops and closes when `send < len`), while this one
/// reads the answer and checks every echoed byte as it comes, without
/// holding the body. Returns the status and the body bytes checked.
fn duplex_upload(server: &Iolite, target: &str, len: u64, send: u64) -> (u16, u64) {
    use std::io::Read;
    let mut s = server.connect();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        const CHUNK: u64 = 256 * 251 * 16;
        let block: Vec<u8> = (0..CHUNK + 251).map(pattern_at).collect();
        let mut at = 0;
        while at < send {
            let n = (send - at).min(CHUNK);
            let from = (at % 251) as usize;
            if w.write_all(&block[from..from + n as usize]).is_err() {
                return;
            }
            at += n;
        }
        if send < len {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            writer.join().unwrap();
            return (0, 0);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let block: Vec<u8> = (0..(1u64 << 20) + 251).map(pattern_at).collect();
    let mut checked = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let from = (checked % 251) as usize;
        assert!(
            buf[..n] == block[from..from + n],
            "echoed bytes differ after {checked}"
        );
        checked += n as u64;
        if status != 200 || checked == len {
            break;
        }
    }
    writer.join().unwrap();
    (status, checked)
}
/// A kind of memory of process `pid` from /proc/PID/status, in KiB.
fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// A site whose config mounts echo with room for bodies of `max_body`.
fn echo_with_max_body(max_body: &str) -> (tempfile::TempDir, Iolite) {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nmax_body = \"{max_body}\"\n\n[[module]]\nprefix = \"/echo\"\npath = \"{}\"\n",
            lib("echo")
        ),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    (root, server)
}

#[test]
fn a_1_gib_upload_goes_to_the_module_in_parts_and_is_echoed_through_bounded_memory() {
    let (_root, server) = echo_with_max_body("2G");
    let len = 1u64 << 30;
    let copied_before = server.metric("iolite_body_bytes_copied_total");
    let shmem_before = proc_status_kib(server.pid(), "RssShmem");
    let (status, checked) = duplex_upload(&server, "/echo", len, len);
    assert_eq!((status, checked), (200, len));
    // The parts went through a few MiB of the request pool, reused: the
    // server never held the body (nor its answer) whole.
    let shmem = proc_status_kib(server.pid(), "RssShmem");
    assert!(
        shmem.saturating_sub(shmem_before) < 96 << 10,
        "shared memory grew from {shmem_before} to {shmem} KiB for a 1 GiB body"
    );
    // Read into the pool and sent from it: only what came with the head is
    // copied.
    let copied = server.metric("iolite_body_bytes_copied_total") - copied_before;
    assert!(copied <= 64 << 10, "{copied} body bytes copied");
    // The connection-level limits still hold: past max_body is 413.
    let mut s = server.connect();
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        3u64 << 30
    )
    .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 413);
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn a_client_that_leaves_mid_upload_cancels_its_request_and_frees_its_parts() {
    let (_root, server) = echo_with_max_body("256M");
    let len = 64u64 << 20;
    // Several clients give up halfway; each request is cancelled in the
    // module (its handler stops waiting for the next part) and the parts
    // it held go back to the pool.
    for _ in 0..6 {
        let (status, checked) = duplex_upload(&server, "/echo", len, len / 2);
        assert!(status == 200 || status == 0, "{status}");
        assert!(checked < len);
    }
    // The runner is the same one, and the pool has room for whole uploads.
    for _ in 0..3 {
        assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    }
    let r = request(&server, "POST", "/echo", b"small");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn a_module_that_refuses_an_upload_early_answers_before_the_body_and_keeps_serving() {
    let (_root, server) = echo_with_max_body("1G");
    let len = 256u64 << 20;
    for _ in 0..4 {
        // The client reads while it sends: the 413 comes long before the
        // body has, and the server stops reading it and closes.
        let (status, checked) = duplex_upload(&server, "/echo?max=1000", len, len);
        assert_eq!((status, checked), (413, 0));
    }
    // The runner was told each body ends there (no protocol error, no
    // restart), and its pool has room.
    assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    let r = request(&server, "POST", "/echo?max=1000", b"small");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

/// Runs curl (`-sS`, 60 s at most) with `args`; its exit status, stdout
/// and stderr.
fn curl(args: &[&str]) -> (std::process::ExitStatus, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        out.status,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_uploads_a_large_file_to_echo_and_gets_it_back_uncopied() {
    let (root, server) = echo_with_max_body("1G");
    let len = 96u64 << 20;
    let file = root.path().join("upload.bin");
    let body: Vec<u8> = (0..len).map(pattern_at).collect();
    std::fs::write(&file, &body).unwrap();
    let out = root.path().join("echoed.bin");
    let before = server.metric("iolite_body_bytes_copied_total");
    let url = format!("http://{}/echo", server.addr);
    let (status, _, err) = curl(&[
        "--fail",
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Content-Type: application/octet-stream",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert!(status.success(), "curl: {err}");
    assert!(std::fs::read(&out).unwrap() == body, "echoed file differs");
    let copied = server.metric("iolite_body_bytes_copied_total") - before;
    assert!(copied <= 64 << 10, "{copied} body bytes copied");
    assert!(server.stop().success());
}

#[test]
fn a_stream_of_unknown_length_goes_out_in_chunks_and_ends_cut_short_when_the_module_fails() {
    use std::io::Read;
    let root = site();
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/stream={}", lib("stream"))],
    );
    const PART: u64 = (1 << 20) / 251 * 251;
    let want: Vec<u8> = (0..5 * PART).map(pattern_at).collect();
    let base = format!("http://{}/stream", server.addr);
    // HTTP/1.1: chunked, and the connection is reused for the next one.
    let url = format!("{base}?mib=5&open=1");
    let (status, body, err) = curl(&[
        "-D",
        "-",
        "-w",
        "connects=%{num_connects}\n",
        &url,
        "-o",
        "/dev/null",
        &url,
    ]);
    assert!(status.success(), "{err}");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        text.matches("Transfer-Encoding: chunked\r\n").count(),
        2,
        "{text}"
    );
    assert!(!text.contains("Content-Length"), "{text}");
    assert!(text.contains("connects=0\n"), "not reused: {text}");
    let (status, body, err) = curl(&[&url]);
    assert!(status.success(), "{err}");
    assert!(body == want, "chunked body differs ({} bytes)", body.len());
    // HTTP/1.0: no chunks; the end of the connection ends the body.
    let (status, body, err) = curl(&["-0", "-D", "/dev/stderr", &url]);
    assert!(status.success(), "{err}");
    assert!(body == want, "HTTP/1.0 body differs ({} bytes)", body.len());
    assert!(
        !err.contains("Transfer-Encoding") && err.contains("Connection: close"),
        "{err}"
    );
    // A module that dies mid-way: the client sees the body cut short (no
    // terminal chunk), not a complete one.
    let (status, body, err) = curl(&[&format!("{base}?mib=5&open=1&short=1")]);
    assert!(!status.success(), "a cut body looked complete");
    assert!(body.len() as u64 <= 4 * PART, "{}: {err}", body.len());
    // A client that goes away mid-stream stops the module: it is told, and
    // ends the stream (a known length of 1 TiB would take hours).
    let mut s = server.connect();
    write!(s, "GET /stream?mib=1048576 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut some = vec![0u8; 4 << 20];
    s.read_exact(&mut some).unwrap();
    drop(s);
    server.wait_for_lines(1, |l| l.contains("bytes short"));
    assert!(server.stop().success());
}

/// The module at `prefix` kept its runner: none was replaced, restarted,
/// or blamed for a stall, and nothing was logged at WARN or ERROR.
fn assert_runner_kept(server: &Iolite, prefix: &str) {
    assert_eq!(
        module_metric(server, "iolite_module_restarts_total", prefix),
        0
    );
    let warned: Vec<_> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(warned.is_empty(), "{warned:?}");
}

/// A site whose config has `toml` and serves on one worker.
fn start_with_config(toml: &str) -> (tempfile::TempDir, Iolite) {
    let root = site();
    let config = root.path().join("iolite.toml");
    std::fs::write(&config, toml).unwrap();
    let server = Iolite::start(
        root.path(),
        &["--config", config.to_str().unwrap(), "--workers", "1"],
    );
    (root, server)
}

#[test]
fn a_client_slow_to_read_a_stream_holds_back_the_module_without_getting_it_replaced() {
    use std::io::Read;
    let (_root, server) = start_with_config(&format!(
        "[[module]]\nprefix = \"/stream\"\npath = \"{}\"\ntimeout = \"1s\"\n",
        lib("stream")
    ));
    const PART: usize = (1 << 20) / 251 * 251;
    let parts = 96;
    let mut s = server.connect();
    write!(s, "GET /stream?mib={parts} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // The runner fills what the server may hold of its output, then waits
    // for the client, for three times its time limit.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Not cut short: the whole body comes.
    let mut body = vec![0u8; parts * PART];
    s.read_exact(&mut body).unwrap();
    let want: Vec<u8> = (0..PART as u64).map(pattern_at).collect();
    assert!(body.chunks(PART).all(|c| c == want), "the body differs");
    assert_runner_kept(&server, "/stream");
    assert!(server.stop().success());
}

#[test]
fn a_client_that_sends_a_large_body_before_it_reads_is_dropped_by_the_send_timeout_not_the_runner()
{
    use std::io::Read;
    let (_root, server) = start_with_config(&format!(
        "[limits]\nmax_body = \"1G\"\nsend_timeout = \"3s\"\n\n[[module]]\nprefix = \"/echo\"\npath = \"{}\"\ntimeout = \"1s\"\n",
        lib("echo")
    ));
    // Sends all of a 256 MiB body before reading anything: the echo
    // streams back at once, the client takes none of it, so the server
    // stops reading the body; after send_timeout it drops the client.
    let mut s = server.connect();
    s.set_write_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let len = 256usize << 20;
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let sent = s.write_all(&vec![b'z'; len]);
    assert!(sent.is_err(), "the whole body was taken");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // The runner was told, and lives on.
    let r = request(&server, "POST", "/echo", b"after");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"after"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn copy_mode_uploads_are_held_back_not_queued_whole_in_the_server() {
    let (_root, server) = start_with_config(&format!(
        "[limits]\nmax_body = \"1G\"\n\n[[module]]\nprefix = \"/echo\"\npath = \"{}\"\ntransfer = \"copy\"\n",
        lib("echo")
    ));
    let before = proc_status_kib(server.pid(), "VmHWM");
    let len = 384u64 << 20;
    assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    // Parts go inline, and their buffers are free at once: the link's
    // queue to the runner is what must stay bounded.
    let peak = proc_status_kib(server.pid(), "VmHWM");
    assert!(
        peak.saturating_sub(before) < 128 << 10,
        "peak RSS grew from {before} to {peak} KiB for a 384 MiB upload"
    );
    assert!(server.stop().success());
}

/// Runs curl with `body` on its standard input (`-T -`: a chunked upload).
fn curl_with_stdin(args: &[&str], body: &std::path::Path) -> (std::process::ExitStatus, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .stdin(std::fs::File::open(body).unwrap())
        .output()
        .expect("curl is installed");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_chunked_upload_goes_to_the_module_in_parts_and_comes_back_chunked() {
    let (root, server) = echo_with_max_body("128M");
    let len = 96u64 << 20;
    let file = root.path().join("upload.bin");
    std::fs::write(&file, (0..len).map(pattern_at).collect::<Vec<u8>>()).unwrap();
    let out = root.path().join("echoed.bin");
    let url = format!("http://{}/echo", server.addr);
    let shmem_before = proc_status_kib(server.pid(), "RssShmem");
    // `-T -`: curl does not know the length, and sends chunks.
    let (status, err) = curl_with_stdin(
        &[
            "--fail",
            "-X",
            "POST",
            "-T",
            "-",
            "-D",
            "/dev/stderr",
            "-o",
            out.to_str().unwrap(),
            &url,
        ],
        &file,
    );
    assert!(status.success(), "curl: {err}");
    assert!(err.contains("Transfer-Encoding: chunked"), "{err}");
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&file).unwrap(),
        "echoed file differs"
    );
    let shmem = proc_status_kib(server.pid(), "RssShmem");
    assert!(
        shmem.saturating_sub(shmem_before) < 48 << 10,
        "shared memory grew from {shmem_before} to {shmem} KiB for a 96 MiB chunked body"
    );
    // Past max_body the upload is cut: the answer, already streaming,
    // is cut too (no terminal chunk), and the runner goes on.
    let big = root.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 160 << 20]).unwrap();
    let (status, err) = curl_with_stdin(&["-X", "POST", "-T", "-", "-o", "/dev/null", &url], &big);
    assert!(!status.success(), "a cut answer looked complete: {err}");
    let r = request(&server, "POST", "/echo", b"after");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"after"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}
