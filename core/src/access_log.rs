//! The access log in combined log format, to stdout or a file.
//!
//! ```text
//! 127.0.0.1 - - [27/Nov/2026:05:07:13 +0000] "GET /index.html HTTP/1.1" 200 1043 "-" "curl/8.5.0"
//! ```
//!
//! The hot path is [`AccessLogWriter::log`]: it formats one line straight
//! into the writer's own buffer (no allocation once the buffer has grown, a
//! cached date string, no `fmt` machinery but for the client address) and
//! returns. Each writer has its own buffer behind its own mutex, which only
//! the flusher thread ever contends for, once a second; the output itself is
//! locked once per flush, never per line. A buffer past 32 KiB is written at
//! once by the writer that filled it; the flusher thread writes every
//! buffer at least once a second; [`AccessLog::shutdown`] (or dropping the
//! [`AccessLog`]) writes whatever is left. A writer may be dropped at any
//! time: its last lines go out with the next flush. After a log rotation,
//! [`AccessLog::reopen`] opens the file again by its path.
//!
//! Escaping: in the request line, the referer, the user agent and the user,
//! `"` and `\` are escaped with a backslash, and every byte outside printable
//! ASCII (controls, DEL, bytes ≥ 0x80) is written as `\xHH`, so a line is
//! always one line of printable ASCII. Dates are UTC. The size field is the
//! body bytes sent (`0` when none). A request answered with an error gets
//! one more field after the user agent, naming the side that caused it —
//! `error=client`, `error=upstream` (a module, CGI program, FastCGI peer,
//! guest or peer node) or `error=internal` — so a 503 of a busy module and
//! a 503 of a full request pool can be told apart; parsers of the combined
//! format ignore trailing fields.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::AccessLogTarget;

/// A writer's buffer is written out as soon as it holds this much.
const FLUSH_BYTES: usize = 32 << 10;
/// The longest a line waits in a buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One finished request, as the access log records it. Every byte string is
/// taken as sent by the client and escaped when written.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The client's address (IPv4-mapped IPv6 addresses print as IPv4).
    pub client: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a [u8]>,
    /// When the request was received.
    pub time: SystemTime,
    /// The request method; empty when no request line could be read (the
    /// request line then prints as `-`).
    pub method: &'a [u8],
    /// The request target as sent (`/path?query`).
    pub target: &'a [u8],
    /// `HTTP/1.1`, `HTTP/1.0`; empty to leave it out.
    pub version: &'a str,
    /// The response status.
    pub status: u16,
    /// Body bytes sent (the head not included).
    pub body_bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// The side that caused the error the request was answered with.
    pub error: Option<crate::error::Side>,
}

/// The process's access log. Hand one [`AccessLogWriter`] to each worker
/// (or each connection); keep this to shut it down.
#[derive(Debug)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
    flusher: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    out: Mutex<Output>,
    buffers: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    stop: Mutex<bool>,
    wake: Condvar,
    write_errors: AtomicU64,
}

#[derive(Debug)]
enum Output {
    Stdout,
    File(File, PathBuf),
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Output {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(data)?;
                out.flush()
            }
            Output::File(f, _) => f.write_all(data),
            #[cfg(test)]
            Output::Memory(m) => {
                lock(m).extend_from_slice(data);
                Ok(())
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked mid-line leaves at worst a partial line; the
    // log stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Err(e) = lock(&self.out).write_all(data)
            && self.write_errors.fetch_add(1, Relaxed) == 0
        {
            eprintln!("iolite: cannot write the access log: {e}");
        }
    }

    /// Writes out every buffer and forgets the ones whose writer is gone.
    fn flush_all(&self, scratch: &mut Vec<u8>) {
        let buffers: Vec<Arc<Mutex<Vec<u8>>>> = {
            let mut list = lock(&self.buffers);
            let now = list.clone();
            // Only this registry holds a buffer whose writer was dropped;
            // its last lines are taken below, then it is forgotten.
            list.retain(|b| Arc::strong_count(b) > 2);
            now
        };
        for b in &buffers {
            std::mem::swap(&mut *lock(b), scratch);
            self.write(scratch);
            scratch.clear();
        }
    }
}

impl AccessLog {
    /// Opens the log (a file is created if missing and appended to) and
    /// starts its flusher thread; `Off` gives a log whose writers do nothing.
    pub fn open(target: &AccessLogTarget) -> io::Result<AccessLog> {
        Self::open_with(target, FLUSH_INTERVAL)
    }

    /// As [`AccessLog::open`], flushing every `interval` instead of every
    /// second.
    pub fn open_with(target: &AccessLogTarget, interval: Duration) -> io::Result<AccessLog> {
        let out = match target {
            AccessLogTarget::Off => {
                return Ok(AccessLog {
                    shared: None,
                    flusher: None,
                });
            }
            AccessLogTarget::Stdout => Output::Stdout,
            AccessLogTarget::File(path) => Output::File(open_append(path)?, path.clone()),
        };
        Ok(Self::start(out, interval))
    }

    fn start(out: Output, interval: Duration) -> AccessLog {
        let shared = Arc::new(Shared {
            out: Mutex::new(out),
            buffers: Mutex::new(Vec::new()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            write_errors: AtomicU64::new(0),
        });
        let s = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("iolite-access-log".into())
            .spawn(move || {
                let mut scratch = Vec::new();
                let mut stop = lock(&s.stop);
                while !*stop {
                    stop = s
                        .wake
                        .wait_timeout(stop, interval)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    drop(stop);
                    s.flush_all(&mut scratch);
                    stop = lock(&s.stop);
                }
            })
            .expect("spawn the access-log flusher thread");
        AccessLog {
            shared: Some(shared),
            flusher: Some(flusher),
        }
    }

    /// Whether lines go anywhere; when false a caller may skip building
    /// entries altogether.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// A writer with its own buffer.
    pub fn writer(&self) -> AccessLogWriter {
        let buf = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_BYTES + 1024)));
        if let Some(shared) = &self.shared {
            lock(&shared.buffers).push(buf.clone());
        }
        AccessLogWriter {
            shared: self.shared.clone(),
            buf,
            spare: Vec::new(),
            date: DateCache::default(),
        }
    }

    /// Writes whatever every writer holds now.
    pub fn flush(&self) {
        if let Some(s) = &self.shared {
            s.flush_all(&mut Vec::new());
        }
    }

    /// Writes what is buffered, then opens the log file again by its path
    /// (after a rotation moved it away); stdout and `Off` are left as they
    /// are. On error the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let Some(s) = &self.shared else {
            return Ok(());
        };
        s.flush_all(&mut Vec::new());
        let mut out = lock(&s.out);
        if let Output::File(file, path) = &mut *out {
            *file = open_append(path)?;
        }
        Ok(())
    }

    /// How many writes to the output failed (the first failure is also
    /// printed on stderr).
    pub fn write_errors(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.write_errors.load(Relaxed))
    }

    /// Stops the flusher thread and writes everything buffered. Lines
    /// logged afterwards by writers still alive are written when those
    /// writers fill up, flush or are dropped.
    pub fn shutdown(&mut self) {
        if let Some(s) = &self.shared {
            *lock(&s.stop) = true;
            s.wake.notify_all();
        }
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        self.flush();
    }

    #[cfg(test)]
    fn in_memory(interval: Duration) -> (AccessLog, Arc<Mutex<Vec<u8>>>) {
        let mem = Arc::new(Mutex::new(Vec::new()));
        (Self::start(Output::Memory(mem.clone()), interval), mem)
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A worker's handle on the access log: formats lines into its own buffer.
#[derive(Debug)]
pub struct AccessLogWriter {
    shared: Option<Arc<Shared>>,
    buf: Arc<Mutex<Vec<u8>>>,
    spare: Vec<u8>,
    date: DateCache,
}

impl AccessLogWriter {
    /// Appends one line for `e`; writes the buffer out if it is full.
    pub fn log(&mut self, e: &Entry<'_>) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut buf = lock(&self.buf);
        write_line(&mut buf, e, &mut self.date);
        if buf.len() >= FLUSH_BYTES {
            std::mem::swap(&mut *buf, &mut self.spare);
            drop(buf);
            shared.write(&self.spare);
            self.spare.clear();
        }
    }

    /// Writes this writer's buffered lines now.
    pub fn flush(&mut self) {
        if let Some(shared) = &self.shared {
            std::mem::swap(&mut *lock(&self.buf), &mut self.spare);
            shared.write(&self.spare);
            self.spare.clear();
        }
    }
}

/// Appends the combined-log-format line for `e` (with its `\n`) to `out`.
pub fn format_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    write_line(out, e, &mut DateCache::default());
}

fn write_line(out: &mut Vec<u8>, e: &Entry<'_>, date: &mut DateCache) {
    use std::io::Write as _;
    match e.client.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_u64(out, u64::from(a));
            for octet in [b, c, d] {
                out.push(b'.');
                push_u64(out, u64::from(octet));
            }
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
    out.extend_from_slice(b" - ");
    match e.user {
        Some(u) if !u.is_empty() => push_escaped(out, u),
        _ => out.push(b'-'),
    }
    out.extend_from_slice(b" [");
    out.extend_from_slice(date.get(e.time));
    out.extend_from_slice(b"] \"");
    if e.method.is_empty() {
        out.push(b'-');
    } else {
        push_escaped(out, e.method);
        out.push(b' ');
        push_escaped(out, e.target);
        if !e.version.is_empty() {
            out.push(b' ');
            push_escaped(out, e.version.as_bytes());
        }
    }
    out.extend_from_slice(b"\" ");
    push_u64(out, u64::from(e.status));
    out.push(b' ');
    push_u64(out, e.body_bytes);
    for field in [e.referer, e.user_agent] {
        out.extend_from_slice(b" \"");
        match field {
            Some(f) => push_escaped(out, f),
            None => out.push(b'-'),
        }
        out.push(b'"');
    }
    if let Some(side) = e.error {
        out.extend_from_slice(b" error=");
        out.extend_from_slice(side.as_str().as_bytes());
    }
    out.push(b'\n');
}

fn push_escaped(out: &mut Vec<u8>, mut bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let plain = |b: &u8| matches!(b, 0x20..=0x7e) && *b != b'"' && *b != b'\\';
    // Copy runs of plain bytes at once; only the rare byte is escaped alone.
    while !bytes.is_empty() {
        let run = bytes.iter().position(|b| !plain(b)).unwrap_or(bytes.len());
        out.extend_from_slice(&bytes[..run]);
        let Some((&b, rest)) = bytes[run..].split_first() else {
            break;
        };
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        bytes = rest;
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `dd/Mon/yyyy:hh:mm:ss +0000`, recomputed only when the second changes.
#[derive(Debug, Default)]
struct DateCache {
    second: Option<u64>,
    text: [u8; 26],
}

impl DateCache {
    fn get(&mut self, t: SystemTime) -> &[u8] {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.second != Some(secs) {
            self.second = Some(secs);
            self.text = clf_date(secs);
        }
        &self.text
    }
}

fn clf_date(secs: u64) -> [u8; 26] {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (year, month, day) = crate::http::date::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    let mut out = [0u8; 26];
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[0..2].copy_from_slice(&two(day as u64));
    out[2] = b'/';
    out[3..6].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[6] = b'/';
    let y = year.clamp(0, 9999) as u64;
    out[7..9].copy_from_slice(&two(y / 100));
    out[9..11].copy_from_slice(&two(y % 100));
    out[11] = b':';
    out[12..14].copy_from_slice(&two(h));
    out[14] = b':';
    out[15..17].copy_from_slice(&two(m));
    out[17] = b':';
    out[18..20].copy_from_slice(&two(s));
    out[20..26].copy_from_slice(b" +0000");
    out
}

#[cfg(test)]
mod tests;
