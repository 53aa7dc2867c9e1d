//! Modules answer through the server: hello, echo, template and jsonapi
//! (tables of requests and answers, keep-alive, pipelining, chunked bodies
//! in and out), a 64 MiB cached file included by reference with nothing
//! copied, copy mode answering the same bytes as shared mode and counting
//! every byte it copies, each module's own figures on /metrics, and a
//! module's output in the server's log under its name.

use std::io::Write;
use std::process::Command;

use crate::support::{Iolite, Response, connect, read_response, request};
use crate::{get, lib, site, start_with_config, start_with_modules};

#[test]
fn hello_and_echo_answer_through_the_server() {
    let (_root, server) = start_with_modules(&[("/hello", "hello"), ("/echo", "echo")], &[]);
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

/// `method target` with `body` sent only after the server's
/// `100 Continue`, so that no body byte arrives with the head (the server
/// then copies none of it into the request pool): what the copy counter
/// shows is the module path's alone.
fn request_after_continue(server: &Iolite, method: &str, target: &str, body: &[u8]) -> Response {
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

#[test]
fn copy_mode_answers_the_same_bytes_and_counts_every_copied_byte() {
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
    let (_root, server) = start_with_config(&toml, &[]);
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
        ("GET", "/api/nope", b"", 404, "{\"error\":\"not found\"}"),
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
        (200, "{\"sum\":6.0,\"count\":3}")
    );
    // The router's 405 names the methods the path has.
    let r = request(&server, "DELETE", "/api/info", b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = get(&server, "/api/info?q=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Per-client data: no shared cache keeps it.
    assert_eq!(r.header("cache-control"), Some("no-store"));
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

#[test]
fn each_module_has_its_own_figures_on_metrics() {
    let (_root, server) = start_with_modules(&[("/faulty", "faulty"), ("/hello", "hello")], &[]);
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
        assert_eq!(server.module_metric(name, module), *want, "{name} {module}");
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
        let mut s = connect(addr);
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

/// Per-module settings: `max_body` (413 past it, chunked bodies too, while
/// another module takes more) and `env` (variables its runners see).
#[test]
fn a_module_has_its_own_max_body_and_environment() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/echo\"\npath = \"{}\"\nmax_body = \"1K\"\n\
             [[module]]\nprefix = \"/big\"\npath = \"{}\"\n\
             [[module]]\nprefix = \"/faulty\"\npath = \"{}\"\n[module.env]\nGREETING = \"hello from the config\"\n",
            lib("echo"),
            lib("echo"),
            lib("faulty")
        ),
        &[],
    );
    let small = vec![b'a'; 1024];
    let large = vec![b'b'; 1025];
    assert_eq!(request(&server, "POST", "/echo", &small).body, small);
    assert_eq!(request(&server, "POST", "/echo", &large).status, 413);
    assert_eq!(request(&server, "POST", "/big", &large).body, large);
    // Chunked: its length is known only as it comes.
    for (prefix, status) in [("/echo", 413), ("/big", 200)] {
        let mut s = server.connect();
        write!(
            s,
            "POST {prefix} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap();
        for _ in 0..3 {
            write!(s, "200\r\n").unwrap();
            s.write_all(&[b'c'; 0x200]).unwrap();
            write!(s, "\r\n").unwrap();
        }
        write!(s, "0\r\n\r\n").unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(r.status, status, "{prefix}");
    }
    assert_eq!(
        get(&server, "/faulty/env?name=GREETING").body,
        b"hello from the config\n"
    );
    assert!(server.stop().success());
}
