//! A CGI program's process: started with iolite-sandbox's [`Spawn`] in
//! its own folder and session, with the request's meta-variables and no
//! other environment, its stdio on pipes; its stderr logged line by line;
//! and its end ([`Program`]): killed as a group when the request fails or
//! the client leaves, allowed to exit by itself when the answer was
//! sent, always reaped.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use iolite_core::{Error, UpstreamFailure};
use iolite_sandbox::{Spawn, Spawned};
use nix::fcntl::OFlag;
use tokio::sync::OwnedSemaphorePermit;

use super::mount::{Cgi, Script};
use crate::cgi::env::Var;

/// The longest stderr line logged whole (longer ones are cut).
const STDERR_LINE: usize = 1024;
/// The stdout pipe's size asked for.
const STDOUT_PIPE: i32 = 1 << 20;
/// stderr lines logged per program and second; the rest are counted.
const STDERR_RATE: u32 = 20;

/// A running program, the leader of its process group, holding its
/// mount's process slot until it is reaped.
#[derive(Debug)]
pub(super) struct Program {
    child: Spawned,
    _slot: OwnedSemaphorePermit,
}

impl Program {
    /// Whether the program has exited (not reaped yet: dropping does it).
    pub fn has_exited(&self) -> bool {
        self.child.has_exited()
    }

    /// Waits up to `grace` for the program to exit by itself (its answer
    /// was sent whole), then kills what is left of its group and reaps it.
    pub async fn finish(self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.child.exited()).await;
        // Dropped: the group killed, the program reaped (Spawned's drop).
    }
}

/// The descriptors the server keeps of a started program.
#[derive(Debug)]
pub(super) struct Started {
    pub program: Program,
    /// The write end of stdin, when the request has a body.
    pub stdin: Option<OwnedFd>,
    /// The read end of stdout.
    pub stdout: OwnedFd,
}

/// `/dev/null`, stdin of a program whose request has no body.
fn dev_null() -> std::io::Result<&'static File> {
    static NULL: OnceLock<File> = OnceLock::new();
    if let Some(f) = NULL.get() {
        return Ok(f);
    }
    let f = File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| f))
}

/// Starts `script` with the environment `vars` (the request's, then the
/// mount's fixed ones) and `query`'s search words as arguments; `with_body`:
/// its stdin is a pipe. `name` names the program in errors and the log.
pub(super) fn start(
    cgi: &Cgi,
    script: &Script,
    vars: &[Var],
    query: &[u8],
    with_body: bool,
    slot: OwnedSemaphorePermit,
    name: &Arc<str>,
) -> Result<Started, Error> {
    let failed = |what: &str, e: std::io::Error| {
        tracing::warn!(cgi = %name, "cannot start the program: {what}: {e}");
        Cgi::error(name, UpstreamFailure::Crashed)
    };
    let mut spawn = match &script.interpreter {
        Some(interpreter) => {
            let mut s = Spawn::new(interpreter).map_err(|e| failed("spawn", e))?;
            s.arg(&script.filename).map_err(|e| failed("argv", e))?;
            s
        }
        None => Spawn::new(&script.filename).map_err(|e| failed("spawn", e))?,
    };
    for word in search_words(query) {
        spawn
            .arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&word))
            .map_err(|e| failed("argv", e))?;
    }
    for (n, v) in vars
        .iter()
        .filter(|(n, _)| !cgi.fixed_env().iter().any(|(f, _)| f == n))
        .chain(cgi.fixed_env())
    {
        spawn.env(n, v).map_err(|e| failed("environment", e))?;
    }
    if let Some(dir) = script.filename.parent() {
        spawn.dir(dir).map_err(|e| failed("folder", e))?;
    }
    spawn.rlimit(rlimit_core(), 0);
    if let Some((uid, gid)) = cgi.user() {
        spawn.user(uid, gid);
    }
    if let Some(cgroup) = cgi.cgroup() {
        spawn.cgroup(cgroup);
    }
    if let Some(rules) = cgi.landlock() {
        spawn.landlock(rules);
    }
    if let Some(filter) = cgi.seccomp() {
        spawn.seccomp(filter);
    }
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| failed("pipe", e.into()));
    let (out_r, out_w) = pipe()?;
    // A large answer moves in pipe-fulls: 1 MiB where the kernel allows
    // it (pipe-user-pages-soft), else its default 64 KiB.
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&out_w),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(STDOUT_PIPE),
    );
    let (err_r, err_w) = pipe()?;
    let (stdin, child) = if with_body {
        let (in_r, in_w) = pipe()?;
        let child = spawn.spawn(in_r.as_fd(), out_w.as_fd(), err_w.as_fd());
        (Some(in_w), child)
    } else {
        let null = dev_null().map_err(|e| failed("/dev/null", e))?;
        let child = spawn.spawn(null.as_fd(), out_w.as_fd(), err_w.as_fd());
        (None, child)
    };
    let child = child.map_err(|e| failed("spawn", e))?;
    log_stderr(err_r, name.clone());
    Ok(Started {
        program: Program { child, _slot: slot },
        stdin,
        stdout: out_r,
    })
}

/// RLIMIT_CORE, set to 0: a program's core dump could hold request data.
fn rlimit_core() -> i32 {
    nix::sys::resource::Resource::RLIMIT_CORE as i32
}

/// RFC 3875 §4.4: a query with no unencoded `=` is a search string, its
/// `+`-separated words (percent-decoded) the program's arguments. None
/// when a word does not decode, holds a NUL, or there are too many.
fn search_words(query: &[u8]) -> Vec<Vec<u8>> {
    if query.is_empty() || query.contains(&b'=') {
        return Vec::new();
    }
    let mut words = Vec::new();
    for raw in query.split(|&b| b == b'+') {
        match percent_decode(raw) {
            Some(w) if !w.contains(&0) => words.push(w),
            _ => return Vec::new(),
        }
        if words.len() > 64 {
            return Vec::new();
        }
    }
    words
}

fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Logs the program's stderr line by line under its name, each line cut
/// at [`STDERR_LINE`] bytes and at most [`STDERR_RATE`] lines a second
/// (the others counted in one line), until every writer closed it.
fn log_stderr(fd: OwnedFd, name: Arc<str>) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    tokio::task::spawn_local(async move {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let mut window = tokio::time::Instant::now();
        let (mut logged, mut dropped) = (0u32, 0u64);
        let mut skipping = false;
        let mut emit = |line: &[u8], logged: &mut u32, dropped: &mut u64| {
            let now = tokio::time::Instant::now();
            if now.duration_since(window) >= Duration::from_secs(1) {
                if *dropped > 0 {
                    tracing::warn!(cgi = %name, "stderr: {} more lines not logged", *dropped);
                }
                window = now;
                *logged = 0;
                *dropped = 0;
            }
            if *logged >= STDERR_RATE {
                *dropped += 1;
                return;
            }
            *logged += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let cut = line.len() > STDERR_LINE;
            let text = String::from_utf8_lossy(&line[..line.len().min(STDERR_LINE)]);
            let more = if cut { " [cut]" } else { "" };
            tracing::warn!(cgi = %name, "stderr: {}{more}", text.escape_debug());
        };
        loop {
            if pipe.readable().await.is_err() {
                break;
            }
            let n = match pipe.try_read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
            };
            let mut data = &chunk[..n];
            if skipping {
                // The rest of a line already logged cut.
                match data.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        data = &data[lf + 1..];
                        skipping = false;
                    }
                    None => continue,
                }
            }
            buf.extend_from_slice(data);
            while let Some(lf) = buf.iter().position(|&b| b == b'\n') {
                emit(&buf[..lf], &mut logged, &mut dropped);
                buf.drain(..=lf);
            }
            if buf.len() > STDERR_LINE {
                // A line longer than the limit: its start now, the rest
                // skipped up to its end.
                emit(&buf, &mut logged, &mut dropped);
                buf.clear();
                skipping = true;
            }
        }
        if !buf.is_empty() {
            emit(&buf, &mut logged, &mut dropped);
        }
        if dropped > 0 {
            tracing::warn!(cgi = %name, "stderr: {dropped} more lines not logged");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::search_words;

    #[test]
    fn search_style_queries_are_arguments() {
        let table: &[(&[u8], &[&[u8]])] = &[
            (b"", &[]),
            (b"a+b", &[b"a", b"b"]),
            (b"hello%20world+x", &[b"hello world", b"x"]),
            (b"a=b", &[]),
            (b"a%3Db", &[b"a=b"]),
            (b"bad%zz", &[]),
            (b"nul%00", &[]),
        ];
        for (query, want) in table {
            let got = search_words(query);
            let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(query));
        }
    }
}
