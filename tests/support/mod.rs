//! Test fixtures for the `iolite serve` integration tests: the running
//! binary, a document root, and a raw HTTP/1.1 response reader.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running `iolite serve` on port 0.
pub struct Iolite {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The log so far, and a signal for each line added.
    stderr: Arc<(Mutex<Vec<String>>, Condvar)>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Iolite {
    /// Starts the binary serving `root`, with `extra` flags.
    pub fn start(root: &Path, extra: &[&str]) -> Iolite {
        Self::start_as(root, extra, None)
    }

    /// [`Iolite::start`], as user `uid` (its own group) when given: the
    /// test must run as root for that.
    pub fn start_as(root: &Path, extra: &[&str], uid: Option<u32>) -> Iolite {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iolite"));
        if let Some(uid) = uid {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        }
        let mut child = cmd
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--root",
            ])
            .arg(root)
            .args(if extra.contains(&"--workers") {
                &[][..]
            } else {
                &["--workers", "2"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iolite");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line: {line:?}"));
        let addr = addr.parse().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let admin = line
            .trim()
            .strip_prefix("admin on http://")
            .unwrap_or_else(|| panic!("second line: {line:?}"));
        let admin = admin.parse().unwrap();
        let stderr = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Iolite {
            child,
            addr,
            admin,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A client connection with a generous read timeout (a hang fails the
    /// test instead of blocking it forever).
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate();
        self.wait()
    }

    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the exit; then the whole log is in, and it must hold no
    /// ERROR line.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        let errors = self.error_lines();
        assert!(errors.is_empty(), "the server logged errors: {errors:#?}");
        status
    }

    /// Every line the server logged so far (all of them after [`Iolite::wait`]).
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Waits until the log holds `n` lines matching `pred` (20 s at most,
    /// then the test fails showing the log); returns the matching lines.
    pub fn wait_for_lines(&self, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (lines, added) = &*self.stderr;
        let mut lines = lines.lock().unwrap();
        loop {
            let found: Vec<String> = lines.iter().filter(|l| pred(l)).cloned().collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{n} matching log lines never came; the log:\n{}",
                lines.join("\n")
            );
            lines = added.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Lines the server logged at ERROR level so far.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("ERROR"))
            .cloned()
            .collect()
    }

    /// One admin page's body.
    pub fn admin_get(&self, path: &str) -> Response {
        let mut s = connect(self.admin);
        write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
        read_response(&mut s, &mut Vec::new(), false)
    }

    /// The value of a metric without labels (or with the given label set).
    pub fn metric(&self, name: &str) -> u64 {
        let page = self.admin_get("/metrics");
        let text = String::from_utf8(page.body).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

impl Drop for Iolite {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

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

/// A document root inside a temporary directory, with a file outside it.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let w = |p: &str, body: &[u8]| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        };
        w("hello.txt", b"hello, world\n");
        w("index.html", b"<!doctype html><title>root</title>\n");
        w("dir/index.html", b"<!doctype html><title>dir</title>\n");
        w("a b.txt", b"space\n");
        w("style.css", b"body{}\n");
        w("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>\n");
        w("noext", b"bytes\n");
        w("empty.txt", b"");
        std::fs::create_dir_all(root.join("emptydir")).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        w("big.bin", &big);
        std::fs::write(dir.path().join("secret.txt"), b"outside the root\n").unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("link-in")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link-out")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("link-out-rel")).unwrap();
        std::os::unix::fs::symlink("/", root.join("link-slash")).unwrap();
        Site { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// The path of `libNAME.so`, the library of one of the module crates
/// `packages` (examples `iolite-example-*`, fixtures `iolite-fixture-*`),
/// which are built first, once per test binary, next to the iolite binary
/// under test.
pub fn module_lib(packages: &[&str], name: &str) -> String {
    iolite_fixtures::build(packages)
        .join(format!("lib{name}.so"))
        .to_string_lossy()
        .into_owned()
}

/// `GET target` on a new connection, and its response.
pub fn get(server: &Iolite, target: &str) -> Response {
    let mut s = server.connect();
    write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), false)
}

/// Opens the write end of the named pipe `path` once its reader (a module
/// under test) has opened it, failing the test after 10 s instead of
/// blocking forever when the reader never comes.
pub fn open_fifo_writer(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
        {
            Ok(file) => {
                // Writes after this block as usual.
                let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
                let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
                let flags =
                    nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
                return file;
            }
            // ENXIO: no reader yet.
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENXIO as i32) => {
                assert!(
                    Instant::now() < deadline,
                    "nobody opened {} for reading within 10 s",
                    path.display()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    pub pid: i32,
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Every process of the machine that `/proc` shows now (those that exit
/// while it is read are left out).
pub fn processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let mut fields = after.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap();
        let ppid = fields.next().unwrap().parse().unwrap();
        let pgrp = fields.next().unwrap().parse().unwrap();
        out.push(ProcInfo {
            pid,
            state,
            ppid,
            pgrp,
        });
    }
    out
}
