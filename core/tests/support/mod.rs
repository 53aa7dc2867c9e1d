//! What core's integration tests share: a server with handlers mounted in
//! code, on port 0, stopped on demand; a small HTTP/1.1 response reader.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;

use iolite_core::{Server, ServerOptions};

/// A server running on its own thread.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: std::sync::Arc<iolite_core::metrics::Metrics>,
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), iolite_core::Error>>,
    _root: tempfile::TempDir,
}

impl Running {
    /// Stops the server and waits for it.
    pub fn stop(self) {
        self.stop.send(()).unwrap();
        self.thread.join().unwrap().unwrap();
    }
}

/// Serves an empty root with two workers (16 MiB body limit); `mount`
/// adds the test's handlers.
pub fn serve(mount: impl FnOnce(Server) -> Server) -> Running {
    serve_with(|_| {}, mount)
}

/// [`serve`] with options changed by `opts`.
pub fn serve_with(
    opts: impl FnOnce(&mut ServerOptions),
    mount: impl FnOnce(Server) -> Server,
) -> Running {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("static.txt"), b"a static file\n").unwrap();
    let mut o = ServerOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        root: root.path().to_path_buf(),
        workers: 2,
        admin: None,
        ..ServerOptions::default()
    };
    o.limits.max_body = 16 << 20;
    opts(&mut o);
    let server = mount(Server::bind(o).unwrap());
    let addr = server.local_addr();
    let metrics = server.metrics().clone();
    let (stop, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        server.run_until(async move {
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .ok();
        })
    });
    Running {
        addr,
        metrics,
        stop,
        thread,
        _root: root,
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// The body was chunked.
    pub chunked: bool,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response from `s` (bytes past it stay in `buf`): its body by
/// `Content-Length`, chunks, or up to the close. Panics on a malformed one.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Response {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(
            fill(s, buf) > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(buf)
        );
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let status: u16 = head[9..12].parse().unwrap();
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
        chunked: false,
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return r;
    }
    if let Some(len) = r
        .header("content-length")
        .map(|v| v.parse::<usize>().unwrap())
    {
        while buf.len() < len {
            assert!(fill(s, buf) > 0, "closed inside a body");
        }
        r.body = buf.drain(..len).collect();
    } else if r.header("transfer-encoding") == Some("chunked") {
        r.chunked = true;
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                assert!(fill(s, buf) > 0, "closed inside a chunk size line");
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                assert!(fill(s, buf) > 0, "closed inside a chunk");
            }
            if size == 0 {
                buf.drain(..2);
                break;
            }
            r.body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    } else {
        while fill(s, buf) > 0 {}
        r.body = std::mem::take(buf);
    }
    r
}

/// Whether the connection answers one more request (a GET of the static
/// file) — false when the server closed it.
pub fn serves_again(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    use std::io::Write;
    if s.write_all(b"GET /static.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .is_err()
    {
        return false;
    }
    loop {
        if find(buf, b"\r\n\r\n").is_some() {
            return read_response(s, buf, false).status == 200;
        }
        if fill(s, buf) == 0 {
            return false;
        }
    }
}

fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 65536];
    match s.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// FNV-1a 64: a checksum the tests compare bodies by.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
