//! The client side: connections, a strict reader of HTTP/1.1 responses
//! (lengths, chunks, pipelining), one-request helpers, a client slow to
//! read, and curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::server::Iolite;

/// A connection to `addr` with a generous read timeout (a hang fails the
/// test instead of blocking it forever).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `s`; `buf` carries bytes read past it (pipelined
/// responses). `head_request`: the request was HEAD, so no body follows.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Response {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = parsed.parse(buf).expect("valid response head") {
            let status = parsed.code.unwrap();
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let mut response = Response {
                status,
                headers,
                body: Vec::new(),
            };
            buf.drain(..n);
            let has_body =
                !head_request && !(100..200).contains(&status) && status != 204 && status != 304;
            if has_body && response.header("transfer-encoding") == Some("chunked") {
                assert!(response.header("content-length").is_none());
                response.body = read_chunks(s, buf);
                return response;
            }
            let len: usize = if has_body {
                response
                    .header("content-length")
                    .expect("content-length")
                    .parse()
                    .unwrap()
            } else {
                0
            };
            while buf.len() < len {
                fill(s, buf);
            }
            response.body = buf.drain(..len).collect();
            return response;
        }
        fill(s, buf);
    }
}

/// A chunked body (RFC 9112 7.1), checked strictly: hex sizes, CRLFs, no
/// trailers expected but skipped if present.
fn read_chunks(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let line = |s: &mut TcpStream, buf: &mut Vec<u8>| loop {
        if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
            let l: Vec<u8> = buf.drain(..at + 2).take(at).collect();
            return String::from_utf8(l).expect("a chunk line is ASCII");
        }
        fill(s, buf);
    };
    let mut body = Vec::new();
    loop {
        let size_line = line(s, buf);
        let hex = size_line.split(';').next().unwrap();
        let size =
            usize::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("chunk size {size_line:?}"));
        if size == 0 {
            while !line(s, buf).is_empty() {}
            return body;
        }
        while buf.len() < size + 2 {
            fill(s, buf);
        }
        body.extend(buf.drain(..size));
        assert_eq!(
            buf.drain(..2).collect::<Vec<u8>>(),
            b"\r\n",
            "chunk data ends in CRLF"
        );
    }
}

fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 65536];
    let n = s
        .read(&mut chunk)
        .expect("read (timeout means the server hung)");
    assert!(
        n > 0,
        "connection closed early; have {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// Whether the server closed the connection (after any bytes in flight).
pub fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// `GET target` on a new connection, and its response.
pub fn get(server: &Iolite, target: &str) -> Response {
    let mut s = server.connect();
    write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), false)
}

/// `method target` with `body` (its Content-Length, and a Content-Type of
/// `text/x-test`) on a new connection, and its response.
pub fn request(server: &Iolite, method: &str, target: &str, body: &[u8]) -> Response {
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

/// A connection to `addr` with room for 8 MiB in its receive queue: a
/// client that lets answers pile up there before it reads them.
pub fn connect_slow_reader(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8 << 20).unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.into()
}

/// Waits (10 s at most) until `len` bytes are queued for reading on `s`
/// (peeked: nothing is consumed); whether they are.
pub fn wait_until_queued(s: &TcpStream, len: usize) -> bool {
    let mut peek = vec![0; 2 * len];
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.peek(&mut peek).unwrap() < len && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.peek(&mut peek).unwrap() >= len
}

/// Runs curl (`-sS`, 60 s at most) with `args`; its exit status, stdout
/// and stderr.
pub fn curl(args: &[&str]) -> (ExitStatus, Vec<u8>, String) {
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

/// Runs curl with `body` on its standard input (`-T -`: a chunked upload);
/// its exit status and stderr.
pub fn curl_with_stdin(args: &[&str], body: &Path) -> (ExitStatus, String) {
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
