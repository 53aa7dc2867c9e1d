//! A hostile module fails only itself: attacks on the sandbox from the
//! library's own code, through the real binary. Each test serves a
//! hostile module beside another module (hello) and a static file, keeps
//! those two under load from other threads for the whole attack, and
//! checks that every one of their answers is a 200 while the attacker's
//! requests fail (502 with its runner replaced, or 503 for a module
//! refused at start).
//!
//! - a constructor that sleeps forever (`ctor-sleep`): the server starts,
//!   the module is refused naming its library and the `check_timeout`;
//! - a constructor that reads a file and forks (`ctor-fork`): it runs
//!   under landlock (the read is refused) and seccomp (the fork kills the
//!   check runner by SIGSYS): the module is refused, no child exists;
//! - `fcntl(F_SETOWN/F_SETSIG)`, `memfd_create`, a private socket pair to
//!   park descriptors in flight (`hostile`): SIGSYS, 502, replaced;
//! - a file grown past the module's memory (RLIMIT_FSIZE: EFBIG);
//! - a stderr flood with a line of 1 MiB: lines cut and rate-bounded;
//! - the runner's scheduling class (SCHED_BATCH, nice 10) and descriptors the server
//!   inherited (none reach a runner);
//! - each module's runners as a uid of their own (`runner_uids`, root);
//! - a PID namespace per runner: with seccomp off, a module's kill() of
//!   another module's runner (or the server) finds no such process.
//!
//! `sandbox/README.md` has the table of attacks and these tests.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{Iolite, get};

const PACKAGES: &[&str] = &[
    "iolite-example-hello",
    "iolite-fixture-hostile",
    "iolite-fixture-ctor-fork",
    "iolite-fixture-ctor-sleep",
];

fn lib(name: &str) -> String {
    support::module_lib(PACKAGES, name)
}

/// A server with a static `index.html`, hello at /hello and each
/// `(prefix, library, extra [[module]] lines)`.
fn start(modules: &[(&str, &str, &str)]) -> (tempfile::TempDir, Iolite) {
    start_with("", modules)
}

/// [`start`] with `top` (top-level keys) first in the file.
fn start_with(top: &str, modules: &[(&str, &str, &str)]) -> (tempfile::TempDir, Iolite) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), b"static\n").unwrap();
    let mut config = format!(
        "{top}\n[[module]]\nprefix = \"/hello\"\npath = \"{}\"\n",
        lib("hello")
    );
    for (prefix, library, extra) in modules {
        config += &format!(
            "\n[[module]]\nprefix = \"{prefix}\"\npath = \"{}\"\nmemory_limit = \"64M\"\n{extra}\n",
            lib(library)
        );
    }
    let file = root.path().join("iolite.toml");
    std::fs::write(&file, config).unwrap();
    let server = Iolite::start(root.path(), &["--config", file.to_str().unwrap()]);
    (root, server)
}

/// Requests to hello and the static file from two threads until stopped;
/// counts the answers and keeps every one that was not a 200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let threads = ["/hello/z", "/index.html"]
            .into_iter()
            .map(|target| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match status_of(addr, target) {
                            Ok(200) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => failures.push(format!("{target}: {other}")),
                            Err(e) => failures.push(format!("{target}: {e}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        Load { stop, ok, threads }
    }

    /// Waits until `n` more answers came (the load really ran during what
    /// came before), stops, and asserts that every answer was a 200.
    fn finish(self, n: u64) {
        let start = self.ok.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.ok.load(Ordering::Relaxed) < start + n && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        self.stop.store(true, Ordering::Relaxed);
        let failures: Vec<String> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(failures.is_empty(), "under load: {failures:?}");
        assert!(
            self.ok.load(Ordering::Relaxed) >= start + n,
            "the load stalled"
        );
    }
}

/// The status of `GET target` on a new connection (10 s at most).
fn status_of(addr: SocketAddr, target: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))
}

/// The pid of the `n`-th runner of `module` to be ready.
fn runner_pid(server: &Iolite, module: &str, n: usize) -> u32 {
    let tag = format!("module={module} ");
    let lines = server.wait_for_lines(n, |l| l.contains("runner ready") && l.contains(&tag));
    let line = &lines[n - 1];
    let rest = &line[line.find(" pid=").expect("a pid field") + 5..];
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// Whether a process whose command line holds `needle` is alive.
fn process_with(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
    })
}

#[test]
fn a_constructor_that_never_returns_refuses_its_module_alone() {
    let library = lib("ctor_sleep");
    let (_root, server) = start(&[("/sleepy", "ctor_sleep", "check_timeout = \"2s\"")]);
    let load = Load::start(server.addr);
    let line = server
        .wait_for_lines(1, |l| l.contains("module refused"))
        .remove(0);
    assert!(line.contains(&library), "{line}");
    assert!(line.contains("check_timeout of 2s"), "{line}");
    let r = get(&server, "/sleepy/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("x-attack"), None);
    // The checking runner was killed with what it started.
    assert!(
        !process_with(&library),
        "a check of {library} is still running"
    );
    // A reload does not wait for it again: the outcome is kept per library.
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_lines(1, |l| {
        l.contains("module=/sleepy") && l.contains("not checked again")
    });
    assert_eq!(get(&server, "/sleepy/x").status, 503);
    load.finish(50);
}

#[test]
fn a_constructor_runs_inside_landlock_and_seccomp() {
    let (_root, server) = start(&[("/forker", "ctor_fork", "")]);
    let load = Load::start(server.addr);
    let line = server
        .wait_for_lines(1, |l| l.contains("module refused"))
        .remove(0);
    assert!(line.contains("killed by SIGSYS"), "{line}");
    assert!(line.contains(&lib("ctor_fork")), "{line}");
    let log = server.log_lines().join("\n");
    // The constructor ran (it printed), under landlock: no file outside
    // the module's library; under seccomp: its fork killed it, so no
    // child ever printed.
    assert!(log.contains("ctor-fork: forking"), "{log}");
    if iolite_sandbox::landlock_abi().is_ok() {
        assert!(
            log.contains("ctor-fork: read /etc/passwd: Permission denied"),
            "{log}"
        );
    }
    assert!(!log.contains("ctor-fork: forked child"), "{log}");
    assert!(!log.contains("ctor-fork child:"), "{log}");
    let r = get(&server, "/forker/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-attack"), None);
    load.finish(50);
}

#[test]
fn signals_by_fcntl_memfds_and_descriptors_parked_in_flight_kill_only_the_attacker() {
    let (_root, server) = start(&[("/hostile", "hostile", "")]);
    // Each worker's links to both modules open at their first requests.
    for _ in 0..8 {
        assert_eq!(get(&server, "/hostile/nothing").status, 204);
        assert_eq!(get(&server, "/hello/z").status, 200);
    }
    let baseline = open_fds(server.pid());
    let load = Load::start(server.addr);
    for (i, attack) in ["setown", "memfd", "park"].into_iter().enumerate() {
        let r = get(&server, &format!("/hostile/{attack}"));
        assert_eq!(r.header("x-attack"), None, "{attack} succeeded");
        assert_eq!(r.status, 502, "{attack}");
        server.wait_for_lines(i + 1, |l| {
            l.contains("module=/hostile") && l.contains("runner exited") && l.contains("SIGSYS")
        });
        assert_eq!(
            get(&server, "/hostile/nothing").status,
            204,
            "replaced after {attack}"
        );
    }
    load.finish(50);
    // The server's descriptors come back to where they were (three
    // runners replaced; the load's connections closed).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while open_fds(server.pid()) > baseline + 4 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    let now = open_fds(server.pid());
    assert!(
        now <= baseline + 4,
        "{now} descriptors, {baseline} at start"
    );
}

/// How many descriptors process `pid` holds.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn a_runner_flooding_its_stderr_is_cut_and_rate_bounded() {
    let (_root, server) = start(&[("/hostile", "hostile", "")]);
    let load = Load::start(server.addr);
    assert_eq!(get(&server, "/hostile/stderr").status, 204);
    server.wait_for_lines(1, |l| {
        l.contains("module=/hostile") && l.contains("lines dropped")
    });
    let lines = server.log_lines();
    let long = lines
        .iter()
        .find(|l| l.contains("hostile: long line"))
        .expect("the long line, cut");
    assert!(long.contains("more bytes cut]"), "{}", &long[..200]);
    let longest = lines.iter().map(String::len).max().unwrap();
    assert!(longest < 8192, "a log line of {longest} bytes");
    let flood = lines
        .iter()
        .filter(|l| l.contains("hostile: flood line"))
        .count();
    assert!(flood < 5000, "all {flood} lines logged");
    assert_eq!(get(&server, "/hostile/nothing").status, 204);
    load.finish(50);
}

#[test]
fn runners_get_a_low_cpu_priority_and_none_of_the_servers_inherited_descriptors() {
    // A descriptor the server inherits without close-on-exec, as from a
    // shell or a service manager.
    let dir = tempfile::tempdir().unwrap();
    let leak = dir.path().join("inherited-by-the-server");
    let file = std::fs::File::create(&leak).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let (_root, server) = start(&[("/hostile", "hostile", "")]);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    let load = Load::start(server.addr);
    let held = |pid: i32| -> bool {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten()
                    .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == leak))
            })
            .unwrap_or(false)
    };
    assert!(
        held(server.pid()),
        "the server did not inherit the descriptor"
    );
    let pid = runner_pid(&server, "/hostile", 1);
    let mut runners = vec![pid];
    runners.extend(children(pid));
    runners.push(sandboxed(pid));
    for p in &runners {
        assert!(
            !held(*p as i32),
            "runner {p} holds the server's inherited descriptor"
        );
    }
    // SCHED_BATCH (policy 3, field 41 of /proc/PID/stat) at nice 10
    // (field 19) for the process that runs the module: a spinning module
    // yields to the server.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sandboxed(pid))).unwrap();
    let after: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!((after[38], after[16]), ("3", "10"), "{stat}");
    assert_eq!(get(&server, "/hostile/nothing").status, 204);
    load.finish(50);
    drop(file);
}

/// The children of `pid` (a runner in a pid namespace of its own is the
/// child of the process the server started).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The sandboxed process of a runner: the outer process's grandchild when
/// the runner has a PID namespace of its own (see sandbox's `pidns`).
fn sandboxed(outer: u32) -> u32 {
    children(outer)
        .first()
        .and_then(|init| children(*init).first().copied())
        .unwrap_or_else(|| panic!("runner {outer} has no process in a PID namespace"))
}

#[test]
fn each_runner_has_a_pid_namespace_of_its_own_and_signals_no_other_module() {
    // seccomp off: the kernel's PID namespaces alone must hold.
    let (_root, server) = start(&[("/lax", "hostile", "[module.sandbox]\nseccomp = false")]);
    let load = Load::start(server.addr);
    let hello = runner_pid(&server, "/hello", 1);
    let lax = runner_pid(&server, "/lax", 1);
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let (hello_in, lax_in) = (sandboxed(hello), sandboxed(lax));
    assert_ne!(ns(hello_in), ns(lax_in));
    assert_ne!(ns(hello_in), ns(server.pid() as u32));
    let status = std::fs::read_to_string(format!("/proc/{lax_in}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("2"), "{nspid}");
    for target in [hello, hello_in, server.pid() as u32] {
        let r = get(&server, &format!("/lax/kill?pid={target}"));
        assert_eq!(r.header("x-attack"), None, "kill {target} succeeded");
        assert_eq!(r.status, 403, "kill {target}");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(text.contains("No such process"), "{text}");
    }
    // kill(-1): every process it may signal is in its own namespace.
    let r = get(&server, "/lax/kill?pid=-1");
    assert_eq!(r.header("x-attack"), None);
    assert_eq!(get(&server, "/hello/z").body, b"Hello, z!\n");
    assert_eq!(runner_pid(&server, "/hello", 1), hello);
    assert!(std::fs::metadata(format!("/proc/{hello_in}")).is_ok());
    load.finish(50);
    let ready = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("runner ready module=/hello "))
        .count();
    assert_eq!(ready, 1, "hello's runner was replaced");
}

#[test]
fn a_root_server_runs_each_modules_runners_as_their_own_uid() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: runner_uids applies to a server run as root");
        return;
    }
    let (_root, server) = start_with(
        "runner_uids = \"61000-61099\"",
        &[("/hostile", "hostile", "")],
    );
    let load = Load::start(server.addr);
    let uid = |prefix: &str| -> String {
        let p = sandboxed(runner_pid(&server, prefix, 1));
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(uid("/hello"), "61000 61000 61000 61000");
    assert_eq!(uid("/hostile"), "61001 61001 61001 61001");
    let report = server
        .wait_for_lines(1, |l| l.contains("runner ready module=/hostile "))
        .remove(0);
    assert!(report.contains("user=61001("), "{report}");
    assert_eq!(get(&server, "/hostile/nothing").status, 204);
    load.finish(50);
}

#[test]
fn a_module_cannot_grow_a_file_past_its_memory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let extra = format!(
        "[module.sandbox]\nwrite_paths = [\"{}\"]",
        dir.path().display()
    );
    let (_root, server) = start(&[("/hostile", "hostile", &extra)]);
    let load = Load::start(server.addr);
    let file = dir.path().join("big");
    let r = get(&server, &format!("/hostile/grow?path={}", file.display()));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.header("x-attack"), None, "{text}");
    assert_eq!(r.status, 403, "{text}");
    assert!(text.contains("File too large"), "{text}");
    assert!(std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) <= 64 << 20);
    assert_eq!(get(&server, "/hostile/nothing").status, 204);
    load.finish(50);
}
