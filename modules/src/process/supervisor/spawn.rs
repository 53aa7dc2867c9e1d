//! Starting a runner. [`runner_command`] is the one place that writes a
//! runner's command line, for a runner that serves ([`spawn_runner`]:
//! then [`handshake`], and its output forwarded to the log) and for the
//! throw-away one that checks a library before it is used, at start and
//! at each reload (`check`).

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iolite_ipc::{Peer, RemotePool};
use iolite_sdk::wire::{ABI_VERSION, Msg};

use super::SlotConfig;
use super::library::Snapshot;
use crate::runner::SandboxSpec;

/// Time a new runner has to load its module and say `Ready`.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest a runner may take to finish a frame it started on its control
/// socket, or to take one: past it, the runner is replaced (a slot thread
/// never blocks on a stuck runner for longer).
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// What a runner is started for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Purpose {
    /// Serving the module over the inherited control socket `socket_fd`;
    /// `shared_bytes` of pools it will map on top of the module's memory,
    /// an output pool of `output_pool` bytes.
    Serve {
        socket_fd: RawFd,
        shared_bytes: u64,
        output_pool: u64,
    },
    /// `--check`: load and check the library under its sandbox, print the
    /// report and the feature bits, exit.
    Check,
}

/// `exe runner` for the module library `library` (the snapshot: hold it
/// until the runner has opened it) named `name` under `sandbox`: stdin
/// closed, stdout and stderr piped.
pub(super) fn runner_command(
    exe: &Path,
    library: &Snapshot,
    name: &str,
    sandbox: &SandboxSpec,
    purpose: Purpose,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("runner");
    match purpose {
        Purpose::Serve { socket_fd, .. } => cmd.arg("--socket-fd").arg(socket_fd.to_string()),
        Purpose::Check => cmd.arg("--check"),
    };
    cmd.arg("--module")
        .arg(library.open_path())
        .arg("--shown-as")
        .arg(library.origin())
        .arg("--name")
        .arg(name);
    if let Purpose::Serve {
        shared_bytes,
        output_pool,
        ..
    } = purpose
    {
        cmd.arg("--shared-bytes").arg(shared_bytes.to_string());
        cmd.arg("--output-pool").arg(output_pool.to_string());
    }
    cmd.args(sandbox.to_args())
        .envs(sandbox.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts a runner of `library` to serve on an inherited control socket;
/// its stdout and stderr go to the log. Returns the server's end of the
/// socket.
pub(super) fn spawn_runner(
    cfg: &SlotConfig,
    library: &Snapshot,
) -> std::io::Result<(Child, Option<UnixStream>)> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = runner_command(
        &cfg.exe,
        library,
        &cfg.name,
        &cfg.sandbox,
        Purpose::Serve {
            socket_fd: theirs.as_raw_fd(),
            shared_bytes: shared_bytes(cfg),
            output_pool: cfg.output_pool,
        },
    );
    if cfg.sandbox.memory.is_some() && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // glibc reserves 64 MiB of address space per malloc arena, one per
        // thread that allocates: under an address-space limit, each new
        // runner thread's arena fails, and every allocation it makes then
        // tries (and fails) to map one first. Two arenas fit any limit.
        cmd.env("MALLOC_ARENA_MAX", "2");
    }
    // Its own process group: a terminal's ^C stops the server, which then
    // closes the socket; the runner ends when it sees that.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = iolite_sandbox::spawn_inheriting(&mut cmd, theirs.as_fd())?;
    drop(theirs);
    let pid = child.id();
    if let Some(out) = child.stdout.take() {
        forward_log(&cfg.name, pid, "stdout", out);
    }
    if let Some(err) = child.stderr.take() {
        forward_log(&cfg.name, pid, "stderr", err);
    }
    Ok((child, Some(ours)))
}

/// Bytes of shared memory the runner will map: the request pool, its output
/// pool and the cache pool. An address-space limit must leave room for them
/// on top of the module's own memory.
fn shared_bytes(cfg: &SlotConfig) -> u64 {
    cfg.pool.memfd_size()
        + cfg.output_pool
        + cfg.cache.as_ref().map_or(0, |c| c.pool().memfd_size())
}

/// Longest line of a runner's output the log takes; the rest of the line
/// is cut (and counted): a line without end must not grow the server.
pub(crate) const LOG_LINE_MAX: usize = 4096;
/// Lines of one runner's stream logged at once before the rate applies.
const LOG_BURST: u32 = 200;
/// Lines a second of one runner's stream logged past the burst; the others
/// are read and dropped (counted in the next line logged), so a module
/// cannot flood the log nor stall on a full pipe.
const LOG_RATE: u32 = 100;

/// The module's stdout and stderr go to the server's log, line by line,
/// under the module's name (at INFO; a panic's two lines at WARN): lines cut at [`LOG_LINE_MAX`] bytes, at most
/// [`LOG_BURST`] at once and [`LOG_RATE`] a second.
fn forward_log(name: &str, pid: u32, stream: &'static str, from: impl Read + Send + 'static) {
    let name = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("iolite-module-log-{pid}"))
        .spawn(move || {
            let mut reader = BufReader::new(from);
            let mut bucket = Bucket::new();
            let mut dropped = 0u64;
            let mut after_panic = false;
            while let Some((line, cut)) = bounded_line(&mut reader) {
                if !bucket.take() {
                    dropped += 1;
                    continue;
                }
                if dropped > 0 {
                    tracing::warn!(module = %name, pid, stream, "{dropped} lines dropped (more than {LOG_RATE} a second)");
                    dropped = 0;
                }
                // A panic's first line, and the message on the next one,
                // are warnings: the module failed.
                let panic = line.starts_with("thread '") && line.contains(" panicked at ");
                let warn = panic || std::mem::take(&mut after_panic);
                after_panic = panic;
                let cut = if cut > 0 {
                    format!(" [{cut} more bytes cut]")
                } else {
                    String::new()
                };
                if warn {
                    tracing::warn!(module = %name, pid, stream, "{line}{cut}");
                } else {
                    tracing::info!(module = %name, pid, stream, "{line}{cut}");
                }
            }
            if dropped > 0 {
                tracing::warn!(module = %name, pid, stream, "{dropped} lines dropped (more than {LOG_RATE} a second)");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot forward a runner's output");
    }
}

/// A token bucket of [`LOG_BURST`] lines refilled at [`LOG_RATE`] a second.
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: f64::from(LOG_BURST),
            at: std::time::Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(LOG_RATE);
        self.tokens = (self.tokens + refill).min(f64::from(LOG_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The next line of `reader` without its end, cut at [`LOG_LINE_MAX`]
/// bytes, and how many bytes were cut; None at the end (or on an error).
/// Holds at most [`LOG_LINE_MAX`] bytes however long the line.
pub(crate) fn bounded_line(reader: &mut impl BufRead) -> Option<(String, u64)> {
    let mut kept = Vec::new();
    let mut cut = 0u64;
    let mut any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = LOG_LINE_MAX - kept.len();
        kept.extend_from_slice(&part[..part.len().min(room)]);
        cut += part.len().saturating_sub(room) as u64;
        let used = end.unwrap_or(chunk.len());
        reader.consume(used);
        if end.is_some() {
            break;
        }
    }
    any.then(|| (String::from_utf8_lossy(&kept).into_owned(), cut))
}

/// The runner's sandbox report, then the protocol's Hello/Ready; returns
/// the peer, the runner's output pool and the report.
pub(super) fn handshake(
    cfg: &SlotConfig,
    sock: Option<UnixStream>,
) -> Result<(Peer<Msg>, RemotePool, String), String> {
    let sock = sock.ok_or("no socket")?;
    sock.set_read_timeout(Some(HANDSHAKE))
        .map_err(|e| e.to_string())?;
    let sandbox = crate::runner::read_report(&sock)?;
    sock.set_write_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut peer: Peer<Msg> = Peer::new(sock);
    peer.share_pool(&cfg.pool).map_err(|e| e.to_string())?;
    if let Some(cache) = &cfg.cache {
        peer.share_pool(cache.pool()).map_err(|e| e.to_string())?;
    }
    peer.send(&Msg::Hello {
        abi: ABI_VERSION,
        name: cfg.name.clone(),
        output_pool: cfg.output_pool,
        in_flight: cfg.in_flight,
        transfer: cfg.transfer,
    })
    .map_err(|e| e.to_string())?;
    let output = match peer.recv() {
        Ok(Msg::Ready { abi, output_pool }) if abi == ABI_VERSION => peer
            .remote_pool(output_pool)
            .cloned()
            .ok_or("the runner's Ready names a pool it did not share")?,
        Ok(Msg::Ready { abi, .. }) => {
            return Err(format!(
                "runner speaks module ABI {abi}, the server {ABI_VERSION}"
            ));
        }
        Ok(_) => return Err("the runner's first message is not Ready".into()),
        Err(e) => return Err(format!("no Ready from the runner: {e}")),
    };
    // From now on the socket is read only when poll says a frame started.
    peer.channel()
        .stream()
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok((peer, output, sandbox))
}

#[cfg(test)]
mod tests {
    use super::{LOG_LINE_MAX, bounded_line};

    #[test]
    fn lines_are_cut_at_the_bound_and_the_rest_counted() {
        let long = "y".repeat(3 * LOG_LINE_MAX + 5);
        let input = format!("short\n{long}\nlast");
        let mut r = std::io::BufReader::with_capacity(100, input.as_bytes());
        assert_eq!(bounded_line(&mut r), Some(("short".into(), 0)));
        let (line, cut) = bounded_line(&mut r).unwrap();
        assert_eq!(line.len(), LOG_LINE_MAX);
        assert_eq!(cut, (2 * LOG_LINE_MAX + 5) as u64);
        assert_eq!(bounded_line(&mut r), Some(("last".into(), 0)));
        assert_eq!(bounded_line(&mut r), None);
    }
}
