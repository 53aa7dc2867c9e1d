//! Answer bodies from a descriptor ([`FdBody`]) over loopback TCP: 64 MiB
//! from a pipe and from a unix socket arrive intact, with a length and
//! chunked, with no body byte copied in user space; a client that stops
//! reading holds the producer back with the server's memory bounded; a
//! producer that stops short closes the connection; a framed (chunked)
//! source has only its payload sent; bytes read before are sent first and
//! counted; an answer may be an internal redirect instead.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iolite_core::fd_body::ChunkedFrames;
use iolite_core::handler::{Handler, Outcome, PendingResponse, RequestCtx, ResponseFuture};
use iolite_core::{Body, Error, FdBody, HeaderLines, Mount, Response};
use support::{fnv, read_response, serve};

const MIB: u64 = 1 << 20;

/// The byte at offset `i` of every test body.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn pattern_fnv(len: u64) -> u64 {
    let bytes: Vec<u8> = (0..len).map(pattern).collect();
    fnv(&bytes)
}

/// How a test source produces its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Pipe,
    Unix,
}

/// Writes `len` pattern bytes (from `from`) into `w` on a thread, counting
/// them in `written`; `stop_at` ends it early (a producer that dies).
fn produce(w: OwnedFd, from: u64, len: u64, stop_at: u64, framed: bool, written: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut w = std::fs::File::from(w);
        let mut at = from;
        let end = from + len.min(stop_at);
        let mut block = vec![0u8; 256 << 10];
        while at < end {
            let n = (end - at).min(block.len() as u64) as usize;
            for (k, b) in block[..n].iter_mut().enumerate() {
                *b = pattern(at + k as u64);
            }
            let ok = if framed {
                w.write_all(format!("{n:x}\r\n").as_bytes()).is_ok()
                    && w.write_all(&block[..n]).is_ok()
                    && w.write_all(b"\r\n").is_ok()
            } else {
                w.write_all(&block[..n]).is_ok()
            };
            if !ok {
                return;
            }
            at += n as u64;
            written.fetch_add(n as u64, Ordering::Relaxed);
        }
        if framed && at == from + len {
            let _ = w.write_all(b"0\r\n\r\n");
        }
    });
}

/// `/body?src=pipe|unix&len=N&framing=len|open|framed&short=M&prefix=K`;
/// `/redirect`, `/loop`.
struct Bodies {
    written: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Later(Response);

impl PendingResponse for Later {
    fn respond(self: Box<Self>) -> ResponseFuture {
        Box::pin(async move { Ok(self.0) })
    }
}

impl Handler for Bodies {
    fn name(&self) -> &'static str {
        "bodies"
    }

    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        match req.path.as_slice() {
            b"/redirect" => return Ok(Outcome::Done(Response::internal_redirect(b"/static.txt"))),
            // Through a pending answer, as a CGI program's would come.
            b"/redirect-later" => {
                return Ok(Outcome::Pending(Box::new(Later(
                    Response::internal_redirect(b"/redirect"),
                ))));
            }
            b"/loop" => return Ok(Outcome::Done(Response::internal_redirect(b"/loop"))),
            _ => {}
        }
        let query = String::from_utf8_lossy(req.query()).into_owned();
        let arg = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let num = |k: &str| arg(k).map_or(0, |v| v.parse::<u64>().unwrap());
        let len = num("len");
        let prefix = num("prefix");
        let framing = arg("framing").unwrap_or_default();
        let short = arg("short")
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or(u64::MAX);
        let source = if arg("src").as_deref() == Some("unix") {
            Source::Unix
        } else {
            Source::Pipe
        };
        let (r, w): (OwnedFd, OwnedFd) = match source {
            Source::Pipe => rustix::pipe::pipe().map_err(|e| Error::Io(e.into()))?,
            Source::Unix => {
                let (a, b) = std::os::unix::net::UnixStream::pair()?;
                (a.into(), b.into())
            }
        };
        self.written.store(0, Ordering::Relaxed);
        let framed = framing == "framed";
        produce(w, prefix, len - prefix, short, framed, self.written.clone());
        let known = (framing == "len").then_some(len);
        let mut body = FdBody::new(r, known, Duration::from_secs(10))?;
        if prefix > 0 {
            body = body.with_prefix((0..prefix).map(pattern).collect());
        }
        if framed {
            body = body.framed(Box::<ChunkedFrames>::default());
        }
        Ok(Outcome::Done(Response::new(
            200,
            HeaderLines::Static(b"Content-Type: application/octet-stream\r\n"),
            Body::Fd(Arc::new(body)),
        )))
    }
}

fn start(written: &Arc<AtomicU64>) -> support::Running {
    let written = written.clone();
    serve(move |mut server| {
        for prefix in ["/body", "/redirect", "/redirect-later", "/loop"] {
            let written = written.clone();
            server = server
                .mount(Mount::content(
                    prefix,
                    Arc::new(move || {
                        Box::new(Bodies {
                            written: written.clone(),
                        })
                    }),
                ))
                .unwrap();
        }
        server
    })
}

fn get(addr: std::net::SocketAddr, target: &str, version: &str) -> (support::Response, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {target} {version}\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false);
    let reusable = version == "HTTP/1.1" && support::serves_again(&mut s, &mut buf);
    (r, reusable)
}

fn copied(server: &support::Running) -> u64 {
    server.metrics.snapshot().body_bytes_copied
}

/// One test, so that the process-wide copy counter is read with nothing
/// else running.
#[test]
fn descriptor_bodies_over_loopback_tcp() {
    let written = Arc::new(AtomicU64::new(0));
    let server = start(&written);
    let addr = server.addr;

    // 64 MiB from a pipe and from a unix socket, with a length and chunked,
    // nothing copied.
    let before = copied(&server);
    let len = 64 * MIB;
    let want = pattern_fnv(len);
    for src in ["pipe", "unix"] {
        for framing in ["len", "open"] {
            let (r, reusable) = get(
                addr,
                &format!("/body?src={src}&len={len}&framing={framing}"),
                "HTTP/1.1",
            );
            let label = format!("{src} {framing}");
            assert_eq!(r.status, 200, "{label}");
            assert_eq!(r.body.len() as u64, len, "{label}");
            assert_eq!(fnv(&r.body), want, "{label}");
            assert_eq!(r.chunked, framing == "open", "{label}: chunked");
            assert!(reusable, "{label}: the connection serves on");
        }
    }
    assert_eq!(copied(&server), before, "body bytes copied in user space");

    // Unknown length to an HTTP/1.0 client: until the connection closes.
    let (r, _) = get(
        addr,
        &format!("/body?src=pipe&len={}&framing=open", 3 * MIB + 5),
        "HTTP/1.0",
    );
    assert_eq!(
        (r.status, r.body.len() as u64, r.chunked),
        (200, 3 * MIB + 5, false)
    );
    assert_eq!(fnv(&r.body), pattern_fnv(3 * MIB + 5));

    // A framed source: only the payload goes out.
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let (r, _) = get(
            addr,
            &format!("/body?src=unix&len={}&framing=framed", 5 * MIB + 3),
            version,
        );
        assert_eq!(r.body.len() as u64, 5 * MIB + 3, "{version}");
        assert_eq!(fnv(&r.body), pattern_fnv(5 * MIB + 3), "{version}");
    }

    // Bytes already read go first, and are counted.
    let before = copied(&server);
    let (r, _) = get(
        addr,
        &format!("/body?src=pipe&len={}&framing=len&prefix=100", MIB),
        "HTTP/1.1",
    );
    assert_eq!(fnv(&r.body), pattern_fnv(MIB));
    assert_eq!(copied(&server) - before, 100);

    // A producer that stops short: the connection closes with a short body.
    for src in ["pipe", "unix"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET /body?src={src}&len={}&framing=len&short={} HTTP/1.1\r\nHost: t\r\n\r\n",
            4 * MIB,
            MIB
        )
        .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..head_end]);
        assert!(
            head.contains(&format!("Content-Length: {}", 4 * MIB)),
            "{head}"
        );
        assert_eq!(
            (got.len() - head_end) as u64,
            MIB,
            "{src}: the body stops where the producer did"
        );
    }

    slow_client_holds_the_producer_back(&server, &written);

    // Internal redirects: to a file, through a pending answer, and a loop.
    let (r, _) = get(addr, "/redirect", "HTTP/1.1");
    assert_eq!((r.status, r.text().as_str()), (200, "a static file\n"));
    let (r, _) = get(addr, "/redirect-later", "HTTP/1.1");
    assert_eq!((r.status, r.text().as_str()), (200, "a static file\n"));
    let (r, reusable) = get(addr, "/loop", "HTTP/1.1");
    assert_eq!(r.status, 500);
    assert!(!reusable);
    server.stop();
}

/// A client that stops reading a 64 MiB answer: the producer blocks on a
/// full pipe once the socket buffers are full, and the server (this
/// process) holds no more memory for it; reading again, the client gets
/// every byte.
fn slow_client_holds_the_producer_back(server: &support::Running, written: &Arc<AtomicU64>) {
    let len = 64 * MIB;
    let rss_before = rss_kib();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /body?src=pipe&len={len}&framing=len HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut first = vec![0u8; 64 << 10];
    let n = s.read(&mut first).unwrap();
    assert!(n > 0);
    // Wait until the producer stops making progress (it blocks).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = written.load(Ordering::Relaxed);
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(500) {
        assert!(Instant::now() < deadline, "the producer never stopped");
        std::thread::sleep(Duration::from_millis(20));
        let now = written.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    // Pipes (1 MiB each at most) and the loopback socket buffers hold the
    // rest: far less than the body.
    assert!(
        last < 24 * MIB,
        "the producer ran ahead: {last} bytes written"
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 << 10, "the server's memory grew by {grown} KiB");
    let mut got = first[..n].to_vec();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|h| (got.len() - h - 4) as u64 >= len)
        {
            break;
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(fnv(&got[head_end..]), pattern_fnv(len));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}
