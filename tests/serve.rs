//! `iolite serve` end to end: the real binary on port 0, raw request bytes
//! in, status and key headers out (a table), then the behaviours a table
//! cannot show — pipelining, 100-continue, slowloris, graceful shutdown,
//! revalidation, the copy counter — and curl as a real client.

mod support;

use std::io::Write;

use support::{Iolite, Site, closed, read_response};

/// What the connection must do after the response.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    /// Still usable: a follow-up request on it gets 200.
    KeepAlive,
    /// Closed by the server.
    Close,
}
use After::{Close, KeepAlive};

struct Case {
    name: &'static str,
    request: String,
    status: u16,
    /// (header, substring its value must contain); "!" prefix: must be absent.
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static [u8]>,
    after: After,
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn with(path: &str, header: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n")
}

fn table() -> Vec<Case> {
    let case = |name, request: String, status, headers, body, after| Case {
        name,
        request,
        status,
        headers,
        body,
        after,
    };
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000));
    let huge_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(400)
    );
    vec![
        // Static serving.
        case("plain file", get("/hello.txt"), 200, &[("content-type", "text/plain"), ("content-length", "13"), ("server", "iolite"), ("date", " GMT"), ("etag", "\""), ("last-modified", " GMT"), ("accept-ranges", "bytes"), ("!connection", "")], Some(b"hello, world\n"), KeepAlive),
        case("HEAD has length, no body", "HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(), 200, &[("content-length", "13")], Some(b""), KeepAlive),
        case("root index", get("/"), 200, &[("content-type", "text/html")], Some(b"<!doctype html><title>root</title>\n"), KeepAlive),
        case("directory index", get("/dir/"), 200, &[("content-type", "text/html")], Some(b"<!doctype html><title>dir</title>\n"), KeepAlive),
        case("directory without slash", get("/dir"), 301, &[("location", "/dir/")], None, KeepAlive),
        case("redirect keeps query", get("/dir?x=1"), 301, &[("location", "/dir/?x=1")], None, KeepAlive),
        case("directory without index", get("/emptydir/"), 404, &[], None, KeepAlive),
        case("missing", get("/missing.txt"), 404, &[("content-type", "text/plain")], None, KeepAlive),
        case("file with slash", get("/hello.txt/"), 404, &[], None, KeepAlive),
        case("empty file", get("/empty.txt"), 200, &[("content-length", "0")], Some(b""), KeepAlive),
        case("percent-decoded", get("/a%20b.txt"), 200, &[], Some(b"space\n"), KeepAlive),
        case("dot segments inside root", get("/dir/../hello.txt"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("encoded dots inside root", get("/dir/%2e%2e/hello.txt"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("absolute-form target", get("http://t/hello.txt?q"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("query ignored", get("/hello.txt?v=2"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("symlink inside root", get("/link-in"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("mime css", get("/style.css"), 200, &[("content-type", "text/css")], None, KeepAlive),
        case("mime svg", get("/logo.svg"), 200, &[("content-type", "image/svg+xml")], None, KeepAlive),
        case("mime default", get("/noext"), 200, &[("content-type", "application/octet-stream")], None, KeepAlive),
        case("large file", get("/big.bin"), 200, &[("content-length", "300000")], None, KeepAlive),
        case("GET with a body", "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde".into(), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("GET with a chunked body", "GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n".into(), 200, &[], Some(b"hello, world\n"), KeepAlive),
        // Connection handling.
        case("HTTP/1.0 closes", "GET /hello.txt HTTP/1.0\r\n\r\n".into(), 200, &[("connection", "close")], Some(b"hello, world\n"), Close),
        case("HTTP/1.0 keep-alive", "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into(), 200, &[("connection", "keep-alive")], Some(b"hello, world\n"), KeepAlive),
        case("Connection: close", with("/hello.txt", "Connection: close"), 200, &[("connection", "close")], Some(b"hello, world\n"), Close),
        // Conditional requests.
        case("If-None-Match *", with("/hello.txt", "If-None-Match: *"), 304, &[("etag", "\""), ("!content-length", "")], Some(b""), KeepAlive),
        case("If-None-Match other", with("/hello.txt", "If-None-Match: \"nope\""), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("If-Modified-Since future", with("/hello.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"), 304, &[("last-modified", "GMT")], Some(b""), KeepAlive),
        case("If-Modified-Since past", with("/hello.txt", "If-Modified-Since: Mon, 01 Jan 1990 00:00:00 GMT"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("If-Modified-Since junk", with("/hello.txt", "If-Modified-Since: yesterday"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        // Ranges.
        case("range", with("/hello.txt", "Range: bytes=0-4"), 206, &[("content-range", "bytes 0-4/13"), ("content-length", "5")], Some(b"hello"), KeepAlive),
        case("suffix range", with("/hello.txt", "Range: bytes=-6"), 206, &[("content-range", "bytes 7-12/13")], Some(b"world\n"), KeepAlive),
        case("open range", with("/hello.txt", "Range: bytes=7-"), 206, &[("content-range", "bytes 7-12/13")], Some(b"world\n"), KeepAlive),
        case("range past the end", with("/hello.txt", "Range: bytes=13-"), 416, &[("content-range", "bytes */13")], None, KeepAlive),
        case("several ranges of a tiny file: whole", with("/hello.txt", "Range: bytes=0-1,3-4"), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("several ranges: multipart", with("/big.bin", "Range: bytes=0-1,3-4"), 206, &[("content-type", "multipart/byteranges; boundary="), ("!content-range", "")], None, KeepAlive),
        case("stale If-Range: whole", "GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4\r\nIf-Range: \"old\"\r\n\r\n".into(), 200, &[], Some(b"hello, world\n"), KeepAlive),
        case("HEAD ignores range", "HEAD /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4\r\n\r\n".into(), 200, &[("content-length", "13")], Some(b""), KeepAlive),
        // Methods.
        case("POST with body", "POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde".into(), 405, &[("allow", "GET, HEAD")], None, KeepAlive),
        case("DELETE", "DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(), 405, &[("allow", "GET, HEAD")], None, KeepAlive),
        case("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".into(), 200, &[("allow", "GET, HEAD"), ("content-length", "0")], Some(b""), KeepAlive),
        case("unknown method", "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n".into(), 501, &[], None, Close),
        // Paths that leave the root: 403, never opened.
        case("dot-dot above root", get("/../secret.txt"), 403, &[], None, KeepAlive),
        case("encoded dot-dot", get("/%2e%2e/secret.txt"), 403, &[], None, KeepAlive),
        case("mixed-case encoded dot-dot", get("/dir/%2E%2e/%2e%2E/secret.txt"), 403, &[], None, KeepAlive),
        case("encoded slash", get("/dir%2f..%2f..%2fsecret.txt"), 403, &[], None, KeepAlive),
        case("NUL", get("/hello.txt%00.html"), 403, &[], None, KeepAlive),
        case("absolute symlink out", get("/link-out"), 403, &[], None, KeepAlive),
        case("relative symlink out", get("/link-out-rel"), 403, &[], None, KeepAlive),
        case("symlink to /", get("/link-slash/etc/passwd"), 403, &[], None, KeepAlive),
        // Bad input: a precise status, then close.
        case("garbage", "GARBAGE\r\n\r\n".into(), 400, &[("connection", "close")], None, Close),
        case("no Host", "GET / HTTP/1.1\r\n\r\n".into(), 400, &[], None, Close),
        case("bad version", "GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 400, &[], None, Close),
        case("asterisk target", "GET * HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400, &[], None, Close),
        case("bad percent-encoding", get("/a%zz"), 400, &[], None, Close),
        case("CL and TE", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, &[], None, Close),
        case("differing CLs", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(), 400, &[], None, Close),
        case("obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  b\r\n\r\n".into(), 400, &[], None, Close),
        case("bare CR", "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n".into(), 400, &[], None, Close),
        case("invalid chunk size", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), 400, &[], None, Close),
        case("unknown transfer coding", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501, &[], None, Close),
        case("TE in HTTP/1.0", "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, &[], None, Close),
        case("URI too long", long_uri, 414, &[], None, Close),
        case("head too large", huge_head, 431, &[], None, Close),
        case("body too large", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n".into(), 413, &[], None, Close),
        case("chunked body too large", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5000000\r\n".into(), 413, &[], None, Close),
        case("unknown expectation", with("/", "Expect: teapot"), 417, &[], None, Close),
    ]
}

#[test]
fn request_table() {
    let site = Site::new();
    let server = Iolite::start(&site.root(), &[]);
    let mut failures = Vec::new();
    for case in table() {
        eprintln!("row: {}", case.name);
        let mut s = server.connect();
        s.write_all(case.request.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let head_request = case.request.starts_with("HEAD");
        let r = read_response(&mut s, &mut buf, head_request);
        let mut problems = Vec::new();
        if r.status != case.status {
            problems.push(format!("status {} (want {})", r.status, case.status));
        }
        for (name, want) in case.headers {
            match (
                name.strip_prefix('!'),
                r.header(name.trim_start_matches('!')),
            ) {
                (Some(_), Some(v)) => problems.push(format!("{name} present: {v:?}")),
                (None, None) => problems.push(format!("{name} missing")),
                (None, Some(v)) if !v.contains(want) => {
                    problems.push(format!("{name}: {v:?} lacks {want:?}"))
                }
                _ => {}
            }
        }
        if let Some(body) = case.body
            && r.body != body
        {
            problems.push(format!("body {:?}", String::from_utf8_lossy(&r.body)));
        }
        match case.after {
            KeepAlive => {
                s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                let next = read_response(&mut s, &mut buf, false);
                if next.status != 200 || next.body != b"hello, world\n" {
                    problems.push(format!("follow-up got {}", next.status));
                }
            }
            Close => {
                if r.header("connection") != Some("close") {
                    problems.push("no Connection: close".into());
                }
                if !buf.is_empty() || !closed(&mut s) {
                    problems.push("connection left open".into());
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "failing rows:\n{}",
        failures.join("\n")
    );
    // Nothing was copied in user space, and every row was counted.
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), 0);
    assert!(server.metric("iolite_http_response_bytes_total") > 300_000);
    assert!(server.stop().success());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let site = Site::new();
    let server = Iolite::start(&site.root(), &[]);
    let mut s = server.connect();
    s.write_all(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody\
          HEAD /dir/ HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n\
          GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let statuses: Vec<(u16, usize)> = [false, false, true, false, false, false]
        .into_iter()
        .map(|head| {
            let r = read_response(&mut s, &mut buf, head);
            (r.status, r.body.len())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (200, 13),
            (405, 23),
            (200, 0),
            (404, 14),
            (200, 13),
            (200, 7)
        ]
    );
    assert!(closed(&mut s));
    assert!(server.stop().success());
}

#[test]
fn expect_100_continue() {
    let site = Site::new();
    let server = Iolite::start(&site.root(), &[]);
    let mut s = server.connect();
    s.write_all(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, false).status, 100);
    s.write_all(b"abcde").unwrap();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"hello, world\n".as_slice())
    );
    // A request that will fail is answered at once, without 100, and the
    // body that never comes does not desynchronize anything: it closes.
    let mut s = server.connect();
    s.write_all(
        b"PUT /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut s));
    assert!(server.stop().success());
}

#[test]
fn slowloris_gets_408_and_cannot_hold_the_worker() {
    let site = Site::new();
    let server = Iolite::start(&site.root(), &["--workers", "1", "--header-timeout", "1s"]);
    let mut slow = server.connect();
    slow.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let mut trickle = slow.try_clone().unwrap();
    let dripper = std::thread::spawn(move || {
        // One header byte at a time: each keeps the socket busy, none
        // extends the deadline for the whole head.
        for _ in 0..100 {
            if trickle.write_all(b"X").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    // Meanwhile the single worker serves others.
    let mut other = server.connect();
    other
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut other, &mut Vec::new(), false).status,
        200
    );
    let r = read_response(&mut slow, &mut Vec::new(), false);
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut slow));
    dripper.join().unwrap();
    assert!(server.stop().success());
}

#[test]
fn graceful_shutdown_finishes_the_response_in_flight() {
    let site = Site::new();
    let big = site.root().join("huge.bin");
    let len = 64u64 << 20;
    std::fs::File::create(&big).unwrap().set_len(len).unwrap();
    let mut server = Iolite::start(&site.root(), &[]);
    let mut s = server.connect();
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Read the head and a little body: the response is in flight, the
    // socket buffers are full, the rest waits for us.
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = std::io::Read::read(&mut s, &mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    server.terminate();
    let mut body = (buf.len() - head_end) as u64;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut s, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        body += n as u64;
    }
    assert_eq!(
        body, len,
        "the whole body arrived, then the connection closed"
    );
    assert!(server.wait().success(), "exit status 0 after SIGTERM");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "no longer accepting"
    );
}

#[test]
fn sigint_closes_idle_keepalive_connections_at_once() {
    let site = Site::new();
    let mut server = Iolite::start(&site.root(), &[]);
    let mut idle = server.connect();
    idle.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, &mut Vec::new(), false).status, 200);
    server.signal(nix::sys::signal::Signal::SIGINT);
    assert!(closed(&mut idle));
    assert!(server.wait().success());
}

#[test]
fn changed_file_is_served_fresh_with_revalidate_0() {
    let site = Site::new();
    let server = Iolite::start(&site.root(), &["--revalidate", "0"]);
    let mut s = server.connect();
    let mut buf = Vec::new();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s, &mut buf, false);
    assert_eq!(first.body, b"hello, world\n");
    // Replace the file (a new inode) and then rewrite it in place.
    let tmp = site.root().join("hello.tmp");
    std::fs::write(&tmp, b"replaced\n").unwrap();
    std::fs::rename(&tmp, site.root().join("hello.txt")).unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let second = read_response(&mut s, &mut buf, false);
    assert_eq!(second.body, b"replaced\n");
    assert_ne!(first.header("etag"), second.header("etag"));
    std::fs::write(site.root().join("hello.txt"), b"rewritten in place\n").unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut buf, false).body,
        b"rewritten in place\n"
    );
    std::fs::remove_file(site.root().join("hello.txt")).unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).status, 404);
    // Where the file was, now a directory: redirected, then its index.
    std::fs::create_dir(site.root().join("hello.txt")).unwrap();
    std::fs::write(
        site.root().join("hello.txt/index.html"),
        b"now a directory\n",
    )
    .unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).status, 301);
    s.write_all(b"GET /hello.txt/ HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut buf, false).body,
        b"now a directory\n"
    );
    assert!(server.stop().success());
}

#[test]
fn curl_fetches_pages_and_ranges() {
    let site = Site::new();
    let server = Iolite::start(&site.root(), &[]);
    let curl = |args: &[&str]| {
        let (status, out, err) = support::curl(args);
        assert!(status.success(), "curl {args:?}: {err}");
        out
    };
    let base = format!("http://{}", server.addr);
    assert_eq!(curl(&[&format!("{base}/hello.txt")]), b"hello, world\n");
    assert_eq!(
        curl(&["-r", "7-11", &format!("{base}/hello.txt")]),
        b"world"
    );
    assert_eq!(
        curl(&["-L", &format!("{base}/dir")]),
        b"<!doctype html><title>dir</title>\n"
    );
    assert_eq!(
        curl(&["--http1.0", &format!("{base}/big.bin")]).len(),
        300_000
    );
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--path-as-is",
        &format!("{base}/../secret.txt"),
    ]);
    assert_eq!(code, b"403");
    let metrics = String::from_utf8(curl(&[&format!("http://{}/metrics", server.admin)])).unwrap();
    assert!(
        metrics.contains("iolite_http_requests_total{status=\"200\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("\niolite_body_bytes_copied_total 0\n"),
        "{metrics}"
    );
    let status = String::from_utf8(curl(&[&format!("http://{}/status", server.admin)])).unwrap();
    assert!(
        status.contains("<b>0</b><span>body bytes copied in user space"),
        "{status}"
    );
    assert!(server.stop().success());
}
