//! `cargo bench --bench module_rtt` (after `cargo build --release --workspace`,
//! which builds the hello module next to the binary): the round trip of an
//! empty request through the real module path, server → runner → server,
//! against a bare unix-socket ping-pong between two processes, measured in
//! the same run, in interleaved rounds.
//!
//! The module side is a [`ProcessModule`] started as `iolite serve` starts
//! it (the `iolite` binary re-executed as `iolite runner`, the hello cdylib
//! loaded there, its control socket and a data link), driven by a
//! [`DirectClient`] on a tokio current-thread runtime, as a worker thread
//! drives it: one `GET /hello/x` at a time, no body, the answer imported
//! and checked. The floor is this binary re-executed as an echo child: 64
//! bytes written, 64 bytes read back, over a blocking unix socket. A
//! second floor does the same with both ends polling the socket 16 times
//! (yielding the CPU) before they block, as both ends of a module link do:
//! on a virtual machine a blocked reader's idle CPU is slow to wake, which
//! the blocking ping-pong pays twice per round trip and the module path
//! mostly avoids, so the polling floor is the like-for-like one.
//!
//! Prints one line per round and a summary line `RTT rounds=N
//! module_us=MEDIAN pingpong_us=MEDIAN ratio=R polling_us=MEDIAN
//! polling_ratio=R` (medians of every timed round trip) that
//! `bench/modules.sh` reads.
//!
//! Options (after `--`): `--rounds N` (default 5), `--iters N` round trips
//! per side per round (default 5000). Run by `cargo test --all-targets`
//! (no `--bench` argument), it makes a short smoke run instead (1 round of
//! 200), or says it skipped when the hello module is not built.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iolite_core::Body;
use iolite_core::config::ModuleConfig;
use iolite_modules::ProcessModule;

const CHILD_ARG: &str = "--pingpong-child";
const PING: usize = 64;
/// Non-blocking reads (with a yield after each) before a polling end blocks.
const POLLS: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD_ARG) {
        let fd: i32 = args[i + 1].parse().expect("fd");
        pingpong_child(fd, args.get(i + 2).is_some_and(|m| m == "poll"));
        return;
    }
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let benching = args.iter().any(|a| a == "--bench");
    let rounds = if benching { opt("--rounds", 5) } else { 1 };
    let iters = if benching { opt("--iters", 5000) } else { 200 };

    let exe = PathBuf::from(env!("CARGO_BIN_EXE_iolite"));
    let library = exe.parent().expect("target dir").join("libhello.so");
    if !library.is_file() {
        assert!(
            !benching,
            "{} is missing: cargo build --release --workspace first",
            library.display()
        );
        println!("module_rtt: {} not built; skipped", library.display());
        return;
    }
    let cfg = ModuleConfig {
        prefix: "/hello".into(),
        path: library,
        processes_min: 1,
        processes_max: 1,
        ..ModuleConfig::default()
    };
    let module = ProcessModule::start(&cfg, &exe, 1 << 20, None).expect("start the module");

    let (mut ours, mut child) = echo_child("block");
    let (mut ours_poll, mut child_poll) = echo_child("poll");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let client = local.block_on(&rt, async { module.direct_client() });

    let mut module_all = Vec::with_capacity(rounds * iters);
    let mut ping_all = Vec::with_capacity(rounds * iters);
    let mut poll_all = Vec::with_capacity(rounds * iters);
    // Warm-up: the link is made, pages touched, caches filled.
    local.block_on(&rt, module_times(&client, iters / 5 + 1));
    ping_times(&mut ours, iters / 5 + 1, false);
    ping_times(&mut ours_poll, iters / 5 + 1, true);
    for round in 1..=rounds {
        // The module first in odd rounds, last in even ones.
        let mut m = Vec::new();
        if round % 2 == 1 {
            m = local.block_on(&rt, module_times(&client, iters));
        }
        let p = ping_times(&mut ours, iters, false);
        let q = ping_times(&mut ours_poll, iters, true);
        if round % 2 == 0 {
            m = local.block_on(&rt, module_times(&client, iters));
        }
        println!(
            "round {round}: module {:.2} µs, ping-pong {:.2} µs, polling ping-pong {:.2} µs (medians of {iters})",
            median_us(&mut m.clone()),
            median_us(&mut p.clone()),
            median_us(&mut q.clone())
        );
        module_all.extend(m);
        ping_all.extend(p);
        poll_all.extend(q);
    }
    drop((ours, ours_poll));
    let _ = (child.wait(), child_poll.wait());
    let m = median_us(&mut module_all);
    let p = median_us(&mut ping_all);
    let q = median_us(&mut poll_all);
    println!(
        "RTT rounds={rounds} module_us={m:.2} pingpong_us={p:.2} ratio={:.2} polling_us={q:.2} polling_ratio={:.2}",
        m / p,
        m / q
    );
}

/// This binary re-executed as an echo child (`mode`: `block` or `poll`).
fn echo_child(mode: &str) -> (UnixStream, std::process::Child) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
    cmd.arg(CHILD_ARG)
        .arg(theirs.as_raw_fd().to_string())
        .arg(mode);
    let child = iolite_sandbox::spawn_inheriting(&mut cmd, std::os::fd::AsFd::as_fd(&theirs))
        .expect("spawn the ping-pong child");
    (ours, child)
}

/// Reads exactly `buf.len()` bytes; with `poll`, first tries [`POLLS`]
/// non-blocking reads, yielding the CPU after each that finds nothing.
fn read_all(sock: &mut UnixStream, buf: &mut [u8], poll: bool) -> std::io::Result<()> {
    let mut got = 0;
    if poll {
        for _ in 0..POLLS {
            match nix::sys::socket::recv(
                sock.as_raw_fd(),
                &mut buf[got..],
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    got += n;
                    if got == buf.len() {
                        return Ok(());
                    }
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                    std::thread::yield_now()
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    sock.read_exact(&mut buf[got..])
}

async fn module_times(client: &iolite_modules::DirectClient, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get("/hello/x").await;
        out.push(t.elapsed());
        let ok = r.status == 200 && matches!(&r.body, Body::Agg(a) if a.len() == 10);
        assert!(ok, "the module answered {} {:?}", r.status, r.body);
    }
    out
}

fn ping_times(sock: &mut UnixStream, n: usize, poll: bool) -> Vec<Duration> {
    let mut buf = [7u8; PING];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sock.write_all(&buf).expect("ping");
        read_all(sock, &mut buf, poll).expect("pong");
        out.push(t.elapsed());
    }
    out
}

fn pingpong_child(fd: i32, poll: bool) {
    let sock = iolite_sandbox::take_inherited_socket(fd).expect("inherited socket");
    let mut sock = UnixStream::from(sock);
    let mut buf = [0u8; PING];
    while read_all(&mut sock, &mut buf, poll).is_ok() {
        if sock.write_all(&buf).is_err() {
            break;
        }
    }
}

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}
