//! Requests behind a busy runner: a client that leaves while its request
//! waits (in the server, or already in the runner) cancels it; a slow
//! request does not hold up the next ones, which take another lane to the
//! same runner, unless the runner has no thread to spare.

use std::io::Write;

use crate::support::{Iolite, read_response};
use crate::{
    Held, UNCONFINED, answer_pid, get, hold_a_request, lib, start_with_a_held_request,
    start_with_config,
};

/// One runner, held busy by a request that reads a named pipe; a second
/// request whose client leaves before it is answered; then the pipe ends.
/// `in_flight` decides where the second waits: 1 — in the server (no
/// credit), 2 with one worker — in the runner, behind the first on the
/// worker's one link (no second lane however long the first is held).
/// Either way it is cancelled: no answer, and the module counts only the
/// held request and the count requests. Returns the server (still
/// running) for further checks.
fn cancel_while_held(in_flight: u32, extra: &[&str]) -> (tempfile::TempDir, Iolite) {
    let (root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nin_flight = {in_flight}\nprocesses_max = 1\nlane_stall = \"1h\"\n{UNCONFINED}",
            lib("faulty")
        ),
        extra,
    );
    let base: u64 = String::from_utf8(get(&server, "/faulty/count").body)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // One quick fifo request first: a request waits in the runner behind
    // another only when that one's target (here /faulty/fifo) is known to
    // be quick, as `lane_stall = "1h"` makes any.
    let (mut quick, pipe) = hold_a_request(&server, root.path());
    drop(pipe);
    read_response(&mut quick, &mut Vec::new(), false);
    std::fs::remove_file(root.path().join("hold")).unwrap();
    let (mut held, pipe) = hold_a_request(&server, root.path());
    // The client leaves; the server closes the connection only after it
    // cancelled the request.
    let mut gone = server.connect();
    gone.write_all(b"GET /faulty/count HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    gone.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut gone, &mut rest).unwrap();
    assert!(rest.is_empty(), "no answer for a cancelled request");
    drop(pipe);
    assert_eq!(
        read_response(&mut held, &mut Vec::new(), false).body,
        b"read 0 bytes\n"
    );
    // The runner handled the quick and the held request and this one,
    // never the cancelled one.
    let count = get(&server, "/faulty/count").body;
    assert_eq!(
        String::from_utf8(count).unwrap().trim(),
        (base + 3).to_string()
    );
    (root, server)
}

#[test]
fn a_client_that_goes_away_cancels_its_queued_request() {
    let (_root, server) = cancel_while_held(1, &[]);
    assert!(server.stop().success());
}

#[test]
fn a_cancelled_request_the_runner_has_not_started_is_skipped() {
    // One worker: one link, one runner thread, so with two credits the
    // second request goes to the runner at once and waits there.
    let (_root, server) = cancel_while_held(2, &["--workers", "1"]);
    assert_eq!(
        server.module_metric("iolite_module_cancelled_total", "/faulty"),
        1
    );
    assert_eq!(
        server.module_metric("iolite_module_requests_total", "/faulty"),
        5
    );
    assert!(server.stop().success());
}

#[test]
fn a_slow_request_does_not_hold_up_the_next_one_in_the_same_runner() {
    // One worker, one runner: before lanes, every request of the worker
    // waited behind the held one.
    let Held {
        _root,
        server,
        pid,
        mut held,
        pipe,
    } = start_with_a_held_request("lane_stall = \"0ms\"\nlane_idle = \"200ms\"\n", "");
    // The held request is being handled; with `lane_stall = 0` no request
    // queues behind another while a lane can be opened: the next requests
    // take another lane. (By default a quick module's request may join a
    // lane whose current request started within `lane_stall`.)
    for _ in 0..3 {
        let mut s = server.connect();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(s, "GET /faulty/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false);
        assert_eq!(answer_pid(&r), pid, "the same process answered");
    }
    assert_eq!(server.module_metric("iolite_module_links", "/faulty"), 2);
    drop(pipe);
    let r = read_response(&mut held, &mut Vec::new(), false);
    assert_eq!(r.body, b"read 0 bytes\n");
    // The runner's main thread and its two lanes' threads.
    let threads = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    assert_eq!(threads(), 3);
    // An extra lane idle for `lane_idle` is closed (at a next request):
    // its thread ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let links = || server.module_metric("iolite_module_links", "/faulty");
    while (threads() > 2 || links() > 1) && std::time::Instant::now() < deadline {
        assert_eq!(answer_pid(&get(&server, "/faulty/x")), pid);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(threads(), 2);
    assert_eq!(links(), 1);
    assert!(server.stop().success());
}

/// Issue 15's second problem: slow handlers (a 2 s wait on a database,
/// say) run in parallel, `in_flight` per runner on threads of its own and
/// across runners up to `processes_max`: 8 at once with 4 runners of 2
/// finish together, where one at a time would take 16 s.
#[test]
fn slow_requests_run_in_parallel_up_to_in_flight_per_runner_and_processes_max() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\nprocesses_min = 1\nprocesses_max = 4\nin_flight = 2\n",
            lib("faulty")
        ),
        &[],
    );
    answer_pid(&get(&server, "/faulty/x"));
    let server = std::sync::Arc::new(server);
    let start = std::time::Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || answer_pid(&get(&server, "/faulty/nap?ms=2000")))
        })
        .collect();
    let mut pids: Vec<i32> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "4 runners of 2 each: {pids:?}");
    let server = std::sync::Arc::into_inner(server).unwrap();
    assert!(server.stop().success());
}

#[test]
fn a_runner_without_a_thread_to_spare_refuses_a_lane_and_keeps_serving() {
    // Two tasks: the runner's main thread and one link thread.
    let Held {
        _root,
        server,
        pid,
        mut held,
        pipe,
    } = start_with_a_held_request("lane_stall = \"0ms\"\n", "tasks = 2\n");
    // This one asks for a second lane, which the runner cannot serve: it
    // waits behind the held request instead of failing.
    let mut next = server.connect();
    write!(next, "GET /faulty/x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    server.wait_for_lines(1, |l| l.contains("no thread for another link"));
    drop(pipe);
    assert_eq!(read_response(&mut held, &mut Vec::new(), false).status, 200);
    assert_eq!(
        answer_pid(&read_response(&mut next, &mut Vec::new(), false)),
        pid
    );
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/faulty"),
        0
    );
    assert!(!server.log_lines().iter().any(|l| l.contains("WARN")));
    assert!(server.stop().success());
}
