//! Several byte ranges (RFC 9110 §14.6, `multipart/byteranges`) answered
//! as nginx answers them: a real nginx (the benchmark's configuration,
//! bench/lib/nginx.sh) and iolite serve the same files, and for a table of
//! `Range` headers their statuses, `Content-Range` and bodies agree byte
//! for byte once each one's boundary is replaced by the same word. Files
//! below and above the size sent with sendfile (cache pool and file
//! paths); no body byte copied; 200 overlapping ranges do not amplify.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Iolite, Response, connect, read_response};

/// nginx in the foreground with bench/lib/nginx.sh's configuration,
/// stopped by its master's pid.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(dir: &Path, root: &Path) -> Nginx {
        // A free port (nginx cannot report the one it bound to port 0).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/lib/nginx.sh");
        let wrote = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {script} && nginx_write_conf {} {addr} {} 1",
                dir.display(),
                root.display()
            ))
            .status()
            .unwrap();
        assert!(wrote.success());
        let child = Command::new("nginx")
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start nginx");
        // The fact waited on: nginx accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nginx never listened on {addr}");
            std::thread::yield_now();
        }
        Nginx { child, addr }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Fast shutdown: the master stops its workers, then exits.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn ask(addr: SocketAddr, path: &str, fields: &str) -> Response {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n{fields}\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), false)
}

/// The answer's body with its multipart boundary (if any) replaced by
/// `BOUNDARY`, and its status, `Content-Range` and media type family.
fn normalized(r: &Response) -> (u16, Option<String>, String, Vec<u8>) {
    let content_type = r.header("content-type").unwrap_or("").to_string();
    let body = match content_type.strip_prefix("multipart/byteranges; boundary=") {
        Some(boundary) => {
            assert!(!boundary.is_empty());
            let text = String::from_utf8_lossy(&r.body);
            assert!(text.contains(boundary));
            replace(&r.body, boundary.as_bytes(), b"BOUNDARY")
        }
        None => r.body.clone(),
    };
    assert_eq!(
        r.header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(r.body.len())
    );
    let family = content_type.split(';').next().unwrap_or("").to_string();
    (
        r.status,
        r.header("content-range").map(str::to_string),
        family,
        body,
    )
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Bytes that differ from offset to offset (so a wrong range shows).
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + i / 26) % 26) as u8)
        .collect()
}

#[test]
fn several_ranges_are_answered_as_nginx_answers_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // Below FILE_SEND_MIN (32 KiB): from the cache pool; above: sendfile.
    std::fs::write(root.join("small.bin"), content(10_000)).unwrap();
    std::fs::write(root.join("large.bin"), content(100_000)).unwrap();
    let ngx_dir = dir.path().join("nginx");
    std::fs::create_dir(&ngx_dir).unwrap();
    let nginx = Nginx::start(&ngx_dir, &root);
    let server = Iolite::start(&root, &[]);
    let copied = server.metric("iolite_body_bytes_copied_total");

    let overlapping_200 = format!("bytes={}", vec!["0-"; 200].join(","));
    let table: Vec<(&str, String, u16)> = vec![
        ("two ranges", "bytes=0-99,200-299".into(), 206),
        ("with spaces", "bytes= 0-99 , 200-299".into(), 206),
        ("suffix ranges", "bytes=-100,-5".into(), 206),
        ("open-ended and suffix", "bytes=9000-,-5".into(), 206),
        ("overlapping", "bytes=0-499,100-599".into(), 206),
        ("out of order", "bytes=9000-9099,0-9".into(), 206),
        ("one-byte parts", "bytes=0-0,2-2,4-4,9999-9999".into(), 206),
        (
            "unsatisfiable mixed with satisfiable",
            "bytes=200000-,0-9,9990-,300000-300001".into(),
            206,
        ),
        (
            "one satisfiable left: a plain 206",
            "bytes=200000-,0-9".into(),
            206,
        ),
        ("a single range", "bytes=5-10".into(), 206),
        ("a single suffix range", "bytes=-3".into(), 206),
        (
            "all unsatisfiable",
            "bytes=200000-300000,400000-".into(),
            416,
        ),
        ("more bytes than the file", "bytes=0-,0-".into(), 200),
        ("200 overlapping ranges", overlapping_200.clone(), 200),
    ];
    for file in ["/small.bin", "/large.bin"] {
        let first = ask(server.addr, file, "");
        let etag = first.header("etag").unwrap().to_string();
        let ngx_first = ask(nginx.addr, file, "");
        let ngx_etag = ngx_first.header("etag").unwrap().to_string();
        let mut rows: Vec<(String, String, String, u16)> = table
            .iter()
            .map(|(what, range, status)| {
                let fields = format!("Range: {range}\r\n");
                (what.to_string(), fields.clone(), fields, *status)
            })
            .collect();
        // If-Range: each server's own validator.
        rows.push((
            "If-Range with the current ETag".into(),
            format!("Range: bytes=0-9,20-29\r\nIf-Range: {etag}\r\n"),
            format!("Range: bytes=0-9,20-29\r\nIf-Range: {ngx_etag}\r\n"),
            206,
        ));
        rows.push((
            "If-Range with another ETag".into(),
            "Range: bytes=0-9,20-29\r\nIf-Range: \"other\"\r\n".into(),
            "Range: bytes=0-9,20-29\r\nIf-Range: \"other\"\r\n".into(),
            200,
        ));
        for (what, ours, theirs, status) in &rows {
            let mine = normalized(&ask(server.addr, file, ours));
            let want = normalized(&ask(nginx.addr, file, theirs));
            assert_eq!(mine.0, *status, "{file} {what}: iolite's status");
            assert_eq!(
                (mine.0, &mine.1),
                (want.0, &want.1),
                "{file} {what}: status, Content-Range"
            );
            if mine.0 == 416 {
                continue; // error pages differ in type and wording
            }
            assert_eq!(mine.2, want.2, "{file} {what}: media type");
            assert!(
                mine.3 == want.3,
                "{file} {what}: bodies differ\n iolite: {:?}\n nginx:  {:?}",
                String::from_utf8_lossy(&mine.3[..mine.3.len().min(400)]),
                String::from_utf8_lossy(&want.3[..want.3.len().min(400)]),
            );
        }
    }
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), copied);
    drop(nginx);
    assert!(server.stop().success());
}

#[test]
fn many_or_overlapping_ranges_do_not_amplify() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), content(10_000)).unwrap();
    std::fs::write(dir.path().join("tiny.bin"), content(300)).unwrap();
    let server = Iolite::start(dir.path(), &[]);
    // 200 small overlapping ranges (2,000 bytes in all, each part head
    // ~90 bytes: nginx sends 20 KB for this): the file once, with 200.
    let small = format!("bytes={}", vec!["0-9"; 200].join(","));
    let bytes_before = server.metric("iolite_http_response_bytes_total");
    let r = ask(server.addr, "/f.bin", &format!("Range: {small}\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, content(10_000));
    // The counter moves once the answer is written: wait for that fact.
    let sent = server.wait_for_metric("iolite_http_response_bytes_total", bytes_before + 10_000)
        - bytes_before;
    assert!(
        sent < 10_000 + 1_000,
        "{sent} bytes sent for a 10,000-byte file"
    );
    // At the bound: 16 ranges are one part each.
    let sixteen: Vec<String> = (0..16)
        .map(|i| format!("{}-{}", i * 100, i * 100 + 9))
        .collect();
    let r = ask(
        server.addr,
        "/f.bin",
        &format!("Range: bytes={}\r\n", sixteen.join(",")),
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        String::from_utf8_lossy(&r.body)
            .matches("Content-Range: ")
            .count(),
        16
    );
    let seventeen = format!("Range: bytes={},1700-1709\r\n", sixteen.join(","));
    assert_eq!(ask(server.addr, "/f.bin", &seventeen).status, 200);
    // Framing heavier than a tiny file: the file itself.
    let r = ask(server.addr, "/tiny.bin", "Range: bytes=0-0,5-5,9-9\r\n");
    assert_eq!((r.status, r.body.len()), (200, 300));
    assert!(server.stop().success());
}
