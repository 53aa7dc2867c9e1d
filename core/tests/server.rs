//! The server as a library: `Server::bind` with `ServerOptions` filled in
//! code (limits the command line does not expose), `run_until` stopped by
//! a channel. Raw bytes over TcpStream; no fixed ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use iolite_core::http::Limits;
use iolite_core::{Server, ServerOptions};

fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn limits_from_options_and_run_until() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"0123456789").unwrap();
    let opts = ServerOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        root: root.path().to_path_buf(),
        workers: 2,
        admin: None,
        limits: Limits {
            max_head: 256,
            max_uri: 64,
            max_body: 16,
            max_headers: 100,
        },
        ..ServerOptions::default()
    };
    let server = Server::bind(opts).unwrap();
    let addr = server.local_addr();
    assert_eq!(server.admin_addr(), None);
    let metrics = server.metrics().clone();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let running = std::thread::spawn(move || {
        server.run_until(async move {
            // Wait for the test's word without blocking the control runtime.
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .ok();
        })
    });
    let table: &[(&[u8], &str)] = &[
        (b"GET /a.txt HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\n"),
        (b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 16\r\nConnection: close\r\n\r\n0123456789abcdef", "HTTP/1.1 200 OK\r\n"),
        (b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n0123456789abcdefg", "HTTP/1.1 413 "),
        (b"GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n012345678\r\n8\r\n01234567\r\n0\r\n\r\n", "HTTP/1.1 413 "),
        (b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.0\r\n\r\n", "HTTP/1.1 414 "),
    ];
    for (request, want) in table {
        let got = exchange(addr, request);
        assert!(
            got.starts_with(want),
            "{:?} -> {got:?}",
            String::from_utf8_lossy(request)
        );
    }
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "y".repeat(300)
    );
    assert!(exchange(addr, big_head.as_bytes()).starts_with("HTTP/1.1 431 "));
    stop_tx.send(()).unwrap();
    running.join().unwrap().unwrap();
    let s = metrics.snapshot();
    assert_eq!(s.requests_total(), 6);
    assert_eq!(s.connections_open, 0);
    assert_eq!(s.body_bytes_copied, 0);
    assert!(TcpStream::connect(addr).is_err());
}

/// A rewrite, an access rule and a content handler, mounted through
/// `Server::mount`, run in their phases ahead of the static files.
mod extra {
    use iolite_core::handler::{Handler, Outcome, RequestCtx};
    use iolite_core::{Body, Error, HeaderLines, Response};

    pub struct Alias;
    impl Handler for Alias {
        fn name(&self) -> &'static str {
            "alias"
        }
        fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
            if req.path.as_slice() == b"/alias" {
                req.path.clear();
                req.path.extend_from_slice(b"/a.txt");
                return Ok(Outcome::Continue);
            }
            Ok(Outcome::Declined)
        }
    }

    pub struct Private;
    impl Handler for Private {
        fn name(&self) -> &'static str {
            "private"
        }
        fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
            if req.path.starts_with(b"/private") {
                return Err(Error::Forbidden("private"));
            }
            Ok(Outcome::Declined)
        }
    }

    pub struct Hello;
    impl Handler for Hello {
        fn name(&self) -> &'static str {
            "hello"
        }
        fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
            if req.path.as_slice() != b"/hello" {
                return Ok(Outcome::Declined);
            }
            let lines = HeaderLines::Static(b"Content-Type: text/plain\r\n");
            Ok(Outcome::Done(Response::new(
                200,
                lines,
                Body::Static(b"hi from a handler\n"),
            )))
        }
    }
}

#[test]
fn extra_handlers_run_in_their_phases_before_static() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"0123456789").unwrap();
    std::fs::write(root.path().join("private.txt"), b"secret").unwrap();
    let opts = ServerOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        root: root.path().to_path_buf(),
        workers: 1,
        admin: None,
        ..ServerOptions::default()
    };
    use iolite_core::Mount;
    use iolite_core::phases::Phase;
    let server = Server::bind(opts)
        .unwrap()
        .mount(Mount::content(
            "/hello",
            std::sync::Arc::new(|| Box::new(extra::Hello)),
        ))
        .unwrap()
        .mount(Mount::new(
            Phase::Access,
            "/",
            std::sync::Arc::new(|| Box::new(extra::Private)),
        ))
        .unwrap()
        .mount(Mount::new(
            Phase::Rewrite,
            "/",
            std::sync::Arc::new(|| Box::new(extra::Alias)),
        ))
        .unwrap();
    let addr = server.local_addr();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let running = std::thread::spawn(move || {
        server.run_until(async move {
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .ok();
        })
    });
    let table: &[(&str, &str, &str)] = &[
        ("/hello", "HTTP/1.1 200 OK\r\n", "hi from a handler\n"),
        ("/alias", "HTTP/1.1 200 OK\r\n", "0123456789"),
        ("/a.txt", "HTTP/1.1 200 OK\r\n", "0123456789"),
        ("/private.txt", "HTTP/1.1 403 ", "403 Forbidden\n"),
        ("/nothing", "HTTP/1.1 404 ", "404 Not Found\n"),
    ];
    for (path, status, body) in table {
        let got = exchange(addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        assert!(
            got.starts_with(status) && got.ends_with(body),
            "{path} -> {got:?}"
        );
    }
    stop_tx.send(()).unwrap();
    running.join().unwrap().unwrap();
}
