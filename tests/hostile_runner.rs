//! A hostile runner fails only itself (issue 14: attacks 2, 4, 5 and the
//! server's side of 6). Each test mounts a fixture that attacks
//! (`fixtures/modules`: sharer, flooder, hoarder, impostor, each speaking
//! the wire protocol itself) beside the hello module and static files
//! under load, and checks that the load answers 200 throughout (none
//! slower than [`LOAD_TIMEOUT`]), that the server's descriptors and
//! resident memory stay within [`FD_SLACK`] and [`RSS_SLACK_KIB`] of what
//! they were before the attack, that the attacker's requests fail (502 or
//! 503; 504 where only the module's timeout can end what it does) and
//! that its runner is replaced.

#[path = "support/mod.rs"]
mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::{Iolite, LOAD_TIMEOUT, Load, Site, Watch, fd_count, get_discarding, proc_status_kib};

/// The module crates these tests mount.
const MODULES: &[&str] = &[
    "iolite-example-hello",
    "iolite-fixture-sharer",
    "iolite-fixture-flooder",
    "iolite-fixture-hoarder",
    "iolite-fixture-impostor",
];

/// Descriptors the server may gain during an attack: the load's
/// connections, and the sockets, pipes and pidfd of runners started
/// again (an attack that got a share held would add thousands).
const FD_SLACK: usize = 128;
/// Resident memory the server may gain during an attack, in KiB: a
/// link's bounds (copy mode gathers at most one output pool, 64 MiB)
/// with room to spare.
const RSS_SLACK_KIB: u64 = 256 << 10;
/// The hostile requests' own limit: past it, the server is stuck.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(30);

fn lib(name: &str) -> String {
    support::module_lib(MODULES, name)
}

/// A server with two workers for the site, the hello module at `/hello`,
/// and the hostile module sections `hostile` of its config file.
fn start(site: &Site, hostile: &str) -> Iolite {
    let config = site.dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[module]]\nprefix = \"/hello\"\npath = \"{}\"\n{hostile}",
            lib("hello")
        ),
    )
    .unwrap();
    Iolite::start(&site.root(), &["--config", config.to_str().unwrap()])
}

/// Keys for a fixture that crafts pools by hand: `memfd_create` is one of
/// the calls the sandbox's seccomp filter refuses a module (its runner
/// makes the output pool before the filter), so with the filter on such
/// an attack dies of SIGSYS before the server sees it. Off here, the
/// attack reaches the server, whose own bounds must hold — for a module
/// that got past its filter, or one an operator runs without it.
const NO_SECCOMP: &str = "[module.sandbox]\nseccomp = false";

/// A hostile module's section: `name`'s library at `prefix`, one runner,
/// with `extra` keys.
fn hostile(prefix: &str, name: &str, extra: &str) -> String {
    format!(
        "[[module]]\nprefix = \"{prefix}\"\npath = \"{}\"\nprocesses_max = 1\n{extra}\n",
        lib(name)
    )
}

/// Runs `attack` under load (hello and static files, on new connections
/// all along), watching the server; then checks the load and the watch.
fn under_load(server: &Iolite, attack: impl FnOnce()) {
    // Every kind of request once, so that what the first one opens
    // (links, cache entries) is in the baseline.
    for target in ["/hello/warm", "/hello.txt", "/big.bin"] {
        assert_eq!(get(server, target), 200, "{target}");
    }
    let base_fds = fd_count(server.pid());
    let base_rss = proc_status_kib(server.pid(), "VmRSS");
    let watch = Watch::start(server.pid());
    let load = Load::start(server.addr, &["/hello/load", "/hello.txt", "/big.bin"], 4);
    attack();
    let report = load.stop();
    let (fds, rss) = watch.stop();
    assert!(
        report.failures.is_empty() && report.slowest < LOAD_TIMEOUT,
        "the load suffered: {} answered, slowest {:?}, failures {:?}",
        report.ok,
        report.slowest,
        &report.failures[..report.failures.len().min(10)]
    );
    assert!(report.ok > 0, "the load never got an answer");
    assert!(
        fds <= base_fds + FD_SLACK,
        "the server held {fds} descriptors, {base_fds} before the attack"
    );
    assert!(
        rss <= base_rss + RSS_SLACK_KIB,
        "the server grew to {rss} KiB resident, {base_rss} KiB before the attack"
    );
}

/// `GET target`'s status (the body read and dropped).
fn get(server: &Iolite, target: &str) -> u16 {
    get_discarding(server.addr, target, ATTACK_TIMEOUT)
        .unwrap_or_else(|e| panic!("{target}: {e}"))
        .0
}

/// Sends `target`, which attacks; its status must say the module failed.
fn attack_fails(server: &Iolite, target: &str, allowed: &[u16]) {
    let status = get_discarding(server.addr, target, ATTACK_TIMEOUT)
        .unwrap_or_else(|e| panic!("{target}: no answer ({e}): the server is stuck"))
        .0;
    assert!(
        allowed.contains(&status),
        "{target} got {status}, not one of {allowed:?}"
    );
}

/// Waits until module `prefix` has had `n` runners started again.
fn replaced(server: &Iolite, prefix: &str, n: u64) {
    server.wait_for_module_metric("iolite_module_restarts_total", prefix, n);
}

#[test]
fn pool_shares_past_the_handshake_fail_only_their_runner() {
    let site = Site::new();
    let server = start(
        &site,
        &hostile(
            "/sharer",
            "sharer",
            &format!("timeout = \"10s\"\n{NO_SECCOMP}"),
        ),
    );
    assert_eq!(get(&server, "/sharer/ok"), 200);
    under_load(&server, || {
        for (n, place) in ["link", "control"].into_iter().enumerate() {
            attack_fails(&server, &format!("/sharer/{place}"), &[502, 503]);
            replaced(&server, "/sharer", n as u64 + 1);
            assert_eq!(get(&server, "/sharer/ok"), 200, "after {place}");
        }
    });
    assert!(server.stop().success());
}

#[test]
fn a_flooding_runner_does_not_hold_its_worker() {
    let site = Site::new();
    let server = start(&site, &hostile("/flooder", "flooder", "timeout = \"2s\""));
    assert_eq!(get(&server, "/flooder/ok"), 200);
    under_load(&server, || {
        // Cache lookups past the one the contract allows: a protocol error.
        attack_fails(&server, "/flooder/lookups", &[502]);
        replaced(&server, "/flooder", 1);
        assert_eq!(get(&server, "/flooder/ok"), 200);
        // Valid frames that do nothing: only the timeout ends them, and
        // the worker keeps serving meanwhile.
        attack_fails(&server, "/flooder/noop", &[504]);
        replaced(&server, "/flooder", 2);
        assert_eq!(get(&server, "/flooder/ok"), 200);
    });
    assert!(server.stop().success());
}

#[test]
fn a_runner_cannot_make_the_server_hold_memory() {
    let site = Site::new();
    let server = start(
        &site,
        &[
            hostile("/hoarder", "hoarder", "timeout = \"5s\""),
            // Its memory limit (RLIMIT_AS and RLIMIT_FSIZE) above the
            // 64 GiB it crafts, so that the server, not the sandbox, is
            // what refuses the pool.
            hostile(
                "/sparse",
                "hoarder",
                &format!("timeout = \"2s\"\nmemory_limit = \"128G\"\n{NO_SECCOMP}"),
            ),
            hostile(
                "/copier",
                "hoarder",
                "timeout = \"10s\"\ntransfer = \"copy\"",
            ),
        ]
        .concat(),
    );
    assert_eq!(get(&server, "/hoarder/ok"), 200);
    assert_eq!(get(&server, "/copier/ok"), 200);
    under_load(&server, || {
        // Stream parts for a client that does not read.
        let mut slow = support::connect_slow_reader(server.addr);
        std::io::Write::write_all(&mut slow, b"GET /hoarder/parts HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        replaced(&server, "/hoarder", 1);
        ended(slow);
        assert_eq!(get(&server, "/hoarder/ok"), 200);
        // An answer naming pages the runner never wrote.
        attack_fails(&server, "/hoarder/hole", &[502]);
        replaced(&server, "/hoarder", 2);
        assert_eq!(get(&server, "/hoarder/ok"), 200);
        // Inline bytes past any answer's size.
        attack_fails(&server, "/copier/data", &[502]);
        replaced(&server, "/copier", 1);
        assert_eq!(get(&server, "/copier/ok"), 200);
        // A sparse output pool of 64 GiB: refused in the handshake, every
        // time.
        attack_fails(&server, "/sparse/x", &[502, 503]);
        replaced(&server, "/sparse", 1);
    });
    assert!(server.stop().success());
}

/// The server ended the connection (the stream was cut short): reading
/// it to its end does not wait past the attack's limit.
fn ended(mut slow: TcpStream) {
    slow.set_read_timeout(Some(ATTACK_TIMEOUT)).unwrap();
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut slow, &mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the stream was not ended: {e}"),
        }
    }
}

#[test]
fn forged_pools_and_descriptors_on_a_link_are_refused() {
    let site = Site::new();
    let server = start(
        &site,
        &hostile(
            "/impostor",
            "impostor",
            &format!("timeout = \"3s\"\n{NO_SECCOMP}"),
        ),
    );
    assert_eq!(get(&server, "/impostor/ok"), 200);
    under_load(&server, || {
        // A pool under the id of the server's request pool, and its bytes
        // named as the request pool's.
        attack_fails(&server, "/impostor/reshare", &[502]);
        replaced(&server, "/impostor", 1);
        assert_eq!(get(&server, "/impostor/ok"), 200);
        // Descriptors on a link, an answer after them.
        attack_fails(&server, "/impostor/fds", &[502]);
        replaced(&server, "/impostor", 2);
        assert_eq!(get(&server, "/impostor/ok"), 200);
    });
    assert!(server.stop().success());
}

#[test]
fn a_module_whose_runner_never_starts_answers_503_at_once() {
    // The crafted 64 GiB pool meets RLIMIT_FSIZE (the default memory
    // limit): every runner dies before its handshake. Its requests never
    // reach a runner: 503 with Retry-After, at once, not a 504 after the
    // module's timeout nor a 502 as if a runner had crashed with them.
    let site = Site::new();
    let server = start(
        &site,
        &hostile(
            "/sparse",
            "hoarder",
            &format!("timeout = \"10s\"\n{NO_SECCOMP}"),
        ),
    );
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = support::get(&server, "/sparse/x");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(get(&server, "/hello/x"), 200);
    }
    assert!(
        server
            .stop_expecting(|l| l.contains("module=/sparse") && l.contains("runner did not start"))
            .success()
    );
}
