//! How many runners a module has, and when one is replaced: none until
//! the first request with `processes_min = 0`, another for a busy module up
//! to `processes_max`, one recycled after `max_requests`, near its CPU time
//! limit, when idle above `processes_min` or on SIGHUP (a library that does
//! not load keeps the old one), without failing a request even under
//! concurrent load.

use std::io::Write;

use crate::support::{Iolite, Response, children, read_response};
use crate::{
    Held, UNCONFINED, answer_pid, get, hold_a_request, lib, site, start_with_a_held_request,
    start_with_config,
};

#[test]
fn processes_min_zero_starts_the_runner_on_the_first_request() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_min = 0\n\n[[module]]\nprefix = \"/hello\"\npath = \"{}\"\nprocesses_min = 2\n",
            lib("faulty"),
            lib("hello")
        ),
        &[],
    );
    // Two runners for /hello from the start, none for /faulty yet.
    assert_eq!(children(server.pid()).len(), 2);
    let r = get(&server, "/faulty/x");
    assert_eq!(r.status, 200);
    let pid: i32 = String::from_utf8(r.body).unwrap()["ok pid ".len()..]
        .trim()
        .parse()
        .unwrap();
    let now = children(server.pid());
    assert_eq!(now.len(), 3);
    assert!(now.contains(&pid));
    assert!(server.stop().success());
}

#[test]
fn a_busy_module_gets_another_runner_up_to_processes_max() {
    let (root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nin_flight = 1\nprocesses_min = 1\nprocesses_max = 2\n{UNCONFINED}",
            lib("faulty")
        ),
        &[],
    );
    let first = get(&server, "/faulty/x");
    assert_eq!(first.status, 200);
    let (mut held, pipe) = hold_a_request(&server, root.path());
    // The only runner is held: this request gets a second one.
    let second = get(&server, "/faulty/x");
    assert_eq!(second.status, 200);
    assert_ne!(second.body, first.body, "a second process answered");
    assert_eq!(children(server.pid()).len(), 2);
    drop(pipe);
    assert_eq!(read_response(&mut held, &mut Vec::new(), false).status, 200);
    assert!(server.stop().success());
}

#[test]
fn max_requests_recycles_the_runner_and_the_old_one_answers_what_it_holds() {
    // One worker: one link per runner, so the third request queues in the
    // old runner behind the held one.
    let Held {
        _root,
        server,
        pid: old,
        mut held,
        pipe,
    } = start_with_a_held_request("max_requests = 3\n", "");
    // The third request: sent to the old runner, which is then recycled.
    let mut queued = server.connect();
    write!(queued, "GET /faulty/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    server.wait_for_lines(1, |l| {
        l.contains("draining the runner")
            && l.contains(&format!("pid={old}"))
            && l.contains("max_requests")
    });
    // New requests go to the successor while the old one still holds two.
    let new = answer_pid(&get(&server, "/faulty/x"));
    assert_ne!(new, old);
    drop(pipe);
    let r = read_response(&mut held, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"read 0 bytes\n");
    assert_eq!(
        answer_pid(&read_response(&mut queued, &mut Vec::new(), false)),
        old
    );
    // Then the old runner exits by itself (status 0), and is reaped.
    server.wait_for_lines(1, |l| {
        l.contains("runner exited (drained)")
            && l.contains(&format!("pid={old}"))
            && l.contains("exit status: 0")
    });
    assert_eq!(children(server.pid()), vec![new]);
    assert_eq!(
        server.module_metric("iolite_module_recycled_total", "/faulty"),
        1
    );
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/faulty"),
        0
    );
    assert_eq!(
        server.module_metric("iolite_module_bad_gateway_total", "/faulty"),
        0
    );
    assert!(!server.log_lines().iter().any(|l| l.contains("WARN")));
    assert!(server.stop().success());
}

#[test]
fn a_runner_near_its_cpu_time_limit_is_recycled_before_the_limit_kills_it() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_max = 1\n[module.sandbox]\ncpu_time = \"2s\"\n",
            lib("faulty")
        ),
        &[],
    );
    let recycled = |server: &Iolite| {
        server
            .log_lines()
            .iter()
            .filter(|l| l.contains("draining the runner") && l.contains("cpu_time"))
            .count()
    };
    // Two clients keep the runner spinning (at most 50 ms of CPU a
    // request) until it has been recycled twice: at 1.5 s of CPU each,
    // which leaves it 0.5 s for what it holds.
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if recycled(&server) >= 2 {
            break;
        }
        let answers: Vec<Response> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..2)
                .map(|_| s.spawn(|| get(&server, "/faulty/spin?ms=50")))
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for r in &answers {
            assert_eq!(r.status, 200, "{:#?}", server.log_lines());
            pids.insert(answer_pid(r));
        }
    }
    assert!(recycled(&server) >= 2, "{:#?}", server.log_lines());
    // Recycled twice: the next request is the third runner's.
    pids.insert(answer_pid(&get(&server, "/faulty/x")));
    assert!(pids.len() >= 3, "answered by {pids:?}");
    // No runner was killed by the limit (SIGXCPU, then SIGKILL): each
    // drained one exited by itself.
    server.wait_for_lines(2, |l| l.contains("runner exited (drained)"));
    let log = server.log_lines();
    assert!(!log.iter().any(|l| l.contains("WARN")), "{log:#?}");
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/faulty"),
        0
    );
    assert!(server.stop().success());
}

#[test]
fn an_idle_runner_above_processes_min_ends_and_the_next_request_starts_one() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_min = 0\nidle_timeout = \"300ms\"\n\n[[module]]\nprefix = \"/hello\"\npath = \"{}\"\nidle_timeout = \"300ms\"\n",
            lib("faulty"),
            lib("hello")
        ),
        &[],
    );
    let kept = children(server.pid());
    assert_eq!(kept.len(), 1, "hello's one kept runner");
    let first = answer_pid(&get(&server, "/faulty/x"));
    server.wait_for_lines(1, |l| {
        l.contains("runner exited (drained)") && l.contains(&format!("pid={first}"))
    });
    // Scaled to zero; /hello's runner (processes_min = 1) stays.
    assert_eq!(children(server.pid()), kept);
    let second = answer_pid(&get(&server, "/faulty/x"));
    assert_ne!(second, first);
    assert_eq!(get(&server, "/hello/x").status, 200);
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|l| l.contains("draining") && l.contains("/hello"))
    );
    assert!(server.stop().success());
}

#[test]
fn sighup_reloads_a_rebuilt_module_and_keeps_the_old_one_when_the_new_is_refused() {
    let root = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libmod.so");
    // Replaced as a deploy would: a new file renamed over the old one.
    let deploy = |from: String| {
        let tmp = dir.path().join("libmod.so.new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    deploy(lib("hello"));
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/m={}", path.display())],
    );
    assert_eq!(get(&server, "/m/x").body, b"Hello, x!\n");
    // A library built for another ABI is refused: hello keeps answering.
    deploy(lib("abi_mismatch"));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = server.wait_for_lines(1, |l| l.contains("not reloaded"));
    assert!(refused[0].contains("9999"), "{refused:?}");
    assert_eq!(get(&server, "/m/x").body, b"Hello, x!\n");
    // A good one: the runner is recycled, and the next requests get it.
    deploy(lib("faulty"));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_lines(1, |l| {
        l.contains("draining the runner") && l.contains("reload")
    });
    answer_pid(&get(&server, "/m/x"));
    server.wait_for_lines(1, |l| l.contains("runner exited (drained)"));
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/m"),
        0
    );
    assert!(server.stop().success());
}

/// Issue 15's first problem: a library that does not load, written over
/// the mounted one (in place, as `cp` does: the same inode), is refused
/// at SIGHUP; when the running module then crashes, its runner restarts
/// from the copy that passed its check, not from the file on disk.
#[test]
fn a_crash_after_a_refused_reload_restarts_the_library_that_passed() {
    let root = site();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libmod.so");
    std::fs::copy(lib("faulty"), &path).unwrap();
    let server = Iolite::start(
        root.path(),
        &["--module", &format!("/m={}", path.display())],
    );
    let first = answer_pid(&get(&server, "/m/x"));
    std::fs::write(&path, std::fs::read(lib("abi_mismatch")).unwrap()).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = server.wait_for_lines(1, |l| l.contains("not reloaded"));
    assert!(refused[0].contains("9999"), "{refused:?}");
    assert_eq!(get(&server, "/m/panic").status, 502);
    // The next runner loads the checked copy: ready, and it answers.
    server.wait_for_lines(2, |l| l.contains("runner ready module=/m "));
    let second = answer_pid(&get(&server, "/m/x"));
    assert_ne!(first, second);
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/m"),
        1
    );
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|l| l.contains("runner did not start")),
        "{:?}",
        server.log_lines()
    );
    assert!(server.stop().success());
}

#[test]
fn runners_recycled_under_concurrent_load_fail_no_request() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/hello\"\npath = \"{}\"\nprocesses_max = 2\nin_flight = 8\nmax_requests = 40\n",
            lib("hello")
        ),
        &[],
    );
    // Four keep-alive clients, 100 requests each: a runner is recycled
    // every 40 requests while the others are in flight on its links.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let server = &server;
                s.spawn(move || {
                    let mut conn = server.connect();
                    let mut buf = Vec::new();
                    (0..100)
                        .map(|i| {
                            write!(conn, "GET /hello/c{c}r{i} HTTP/1.1\r\nHost: t\r\n\r\n")
                                .unwrap();
                            let r = read_response(&mut conn, &mut buf, false);
                            assert_eq!(r.body, format!("Hello, c{c}r{i}!\n").as_bytes());
                            r.status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(server.module_metric("iolite_module_recycled_total", "/hello") >= 5);
    assert_eq!(
        server.module_metric("iolite_module_bad_gateway_total", "/hello"),
        0
    );
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/hello"),
        0
    );
    let log = server.log_lines();
    assert!(!log.iter().any(|l| l.contains("WARN")), "{log:#?}");
    assert!(server.stop().success());
}
