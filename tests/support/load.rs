//! Load beside an attack: clients that keep asking for pages that must
//! keep answering (`Load`), the server's descriptors and memory watched
//! meanwhile (`Watch`), and a request whose body is read and dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest a load request may take before it counts as timed out.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest any load runs, whatever the test does.
const LOAD_LIMIT: Duration = Duration::from_secs(180);

/// What the load saw: per target, answers with status 200, and every other
/// outcome (a status, a timeout, a closed connection) with what it was.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: usize,
    pub failures: Vec<String>,
    pub slowest: Duration,
}

/// Threads asking for `targets` in turn, each request on a new connection
/// to 127.0.0.1, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(addr: SocketAddr, targets: &[&str], threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|i| {
                let stop = stop.clone();
                let targets: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut report = LoadReport::default();
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
                        let target = &targets[n % targets.len()];
                        n += 1;
                        let t0 = Instant::now();
                        match get_status(addr, target, LOAD_TIMEOUT) {
                            Ok(200) => report.ok += 1,
                            Ok(status) => report.failures.push(format!("{target}: {status}")),
                            Err(e) => report.failures.push(format!("{target}: {e}")),
                        }
                        report.slowest = report.slowest.max(t0.elapsed());
                    }
                    report
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients; what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadReport::default();
        for t in self.threads {
            let r = t.join().unwrap();
            all.ok += r.ok;
            all.failures.extend(r.failures);
            all.slowest = all.slowest.max(r.slowest);
        }
        all
    }
}

/// `GET target` on a new connection: the status, the body read and
/// dropped; a read that waits longer than `timeout` is an error.
pub fn get_status(addr: SocketAddr, target: &str, timeout: Duration) -> std::io::Result<u16> {
    let (status, _) = get_discarding(addr, target, timeout)?;
    Ok(status)
}

/// `GET target` on a new connection; the status and the body's length
/// (read to the connection's end, dropped as it comes: a body of any size
/// costs the test nothing).
pub fn get_discarding(
    addr: SocketAddr,
    target: &str,
    timeout: Duration,
) -> std::io::Result<(u16, u64)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the head's end",
            ));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad head {text:?}")))?;
    let mut body = 0u64;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok((status, body)),
            Ok(n) => body += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok((status, body));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The number of descriptors process `pid` holds open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The most descriptors and resident memory a process was seen with,
/// sampled every few milliseconds until stopped.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, u64)>,
}

impl Watch {
    pub fn start(pid: i32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut fds, mut rss) = (0, 0);
            while !flag.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
                fds = fds.max(fd_count(pid));
                rss = rss.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            (fds, rss)
        });
        Watch { stop, thread }
    }

    /// The most descriptors, and the most resident KiB, seen.
    pub fn stop(self) -> (usize, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Resident memory of process `pid` in KiB; None once it is gone.
fn rss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
}
