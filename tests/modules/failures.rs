//! A module that fails, fails only its own requests: a crash (502) or a
//! request past its timeout (504) gets the runner replaced while other
//! modules answer on; attacks on the shared pages and forged response
//! descriptors are refused; a library built for another ABI is refused at
//! start-up, naming both versions.

use std::io::Write;

use crate::support::{read_response, request, serve_refused};
use crate::{get, lib, site, start_with_config, start_with_modules};

#[test]
fn a_crash_fails_only_its_request_and_the_runner_restarts() {
    let (_root, server) = start_with_modules(&[("/faulty", "faulty"), ("/hello", "hello")], &[]);
    let first = get(&server, "/faulty/x");
    assert_eq!(first.status, 200);
    for crash in ["/faulty/panic", "/faulty/exit"] {
        assert_eq!(get(&server, crash).status, 502, "{crash}");
        // Another module is untouched.
        assert_eq!(get(&server, "/hello/z").body, b"Hello, z!\n");
        // The next request waits for the new runner and succeeds.
        let next = get(&server, "/faulty/x");
        assert_eq!(next.status, 200, "after {crash}");
        assert_ne!(next.body, first.body, "a new process answers");
    }
    assert!(server.stop().success());
}

/// A module's panic is a warning in the log under its name, and
/// `/status` shows each module's requests, errors by kind, runners,
/// restarts and latency.
#[test]
fn a_panic_is_logged_as_a_warning_and_status_shows_each_module() {
    let (_root, server) = start_with_modules(&[("/faulty", "faulty"), ("/hello", "hello")], &[]);
    assert_eq!(get(&server, "/faulty/panic").status, 502);
    let warned = server.wait_for_lines(2, |l| l.contains("WARN") && l.contains("module=/faulty"));
    assert!(
        warned.iter().any(|l| l.contains("panicked at")),
        "{warned:#?}"
    );
    assert!(
        warned
            .iter()
            .any(|l| l.contains("faulty module: asked to panic")),
        "{warned:#?}"
    );
    assert_eq!(get(&server, "/hello/x").status, 200);
    let page = String::from_utf8(server.admin_get("/status").body).unwrap();
    assert!(page.contains("Process modules"), "{page}");
    for cell in [
        "<td>/faulty</td>",
        "<td>/hello</td>",
        "503 no runner",
        "p99",
    ] {
        assert!(page.contains(cell), "{cell} not in {page}");
    }
    assert!(server.stop().success());
}

/// Issue 15's third problem: while a crashed module's runner waits out a
/// long restart pause, its requests get 503 with Retry-After at once
/// (counted as unavailable), not 504 after the module's timeout.
#[test]
fn requests_during_a_long_restart_pause_get_503_at_once() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\ntimeout = \"3s\"\nrestart_backoff = \"4s\"\nrestart_backoff_max = \"4s\"\n",
            lib("faulty")
        ),
        &[],
    );
    assert_eq!(get(&server, "/faulty/x").status, 200);
    assert_eq!(get(&server, "/faulty/panic").status, 502);
    for _ in 0..3 {
        let paused = get(&server, "/faulty/x");
        assert_eq!(
            paused.status,
            503,
            "{:?}",
            String::from_utf8_lossy(&paused.body)
        );
        assert_eq!(paused.header("retry-after"), Some("1"));
    }
    assert!(server.module_metric("iolite_module_unavailable_total", "/faulty") >= 3);
    assert_eq!(
        server.module_metric("iolite_module_timeouts_total", "/faulty"),
        0
    );
    assert_eq!(
        server.module_metric("iolite_module_busy_total", "/faulty"),
        0
    );
    // After the pause, a new runner serves.
    server.wait_for_lines(2, |l| l.contains("runner ready module=/faulty "));
    assert_eq!(get(&server, "/faulty/x").status, 200);
    assert!(server.stop().success());
}

#[test]
fn a_request_past_its_timeout_gets_504_and_a_new_runner() {
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/faulty\"\npath = \"{}\"\ntimeout = \"300ms\"\n",
            lib("faulty")
        ),
        &[],
    );
    // The deadline also covers waiting for a (re)starting runner, which a
    // loaded machine can make longer than 300 ms: those requests get 504
    // too (without replacing anything), so ask until one is answered.
    let until_ok = || {
        (0..100)
            .map(|_| get(&server, "/faulty/x"))
            .find(|r| r.status != 504)
            .expect("an answer within 100 tries")
    };
    let first = until_ok();
    assert_eq!(first.status, 200);
    assert_eq!(get(&server, "/faulty/sleep").status, 504);
    let next = until_ok();
    assert_eq!(next.status, 200);
    assert_ne!(next.body, first.body, "the hung process was replaced");
    assert!(server.module_metric("iolite_module_timeouts_total", "/faulty") >= 1);
    assert!(server.module_metric("iolite_module_restarts_total", "/faulty") >= 1);
    assert!(server.stop().success());
}

#[test]
fn a_module_built_for_another_abi_is_refused_naming_both_versions() {
    let root = site();
    let out = serve_refused(
        root.path(),
        &["--module", &format!("/old={}", lib("abi_mismatch"))],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing was announced");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("module at /old:")
            && stderr.contains("module ABI version 9999")
            && stderr.contains(&format!(
                "this server speaks ABI version {}",
                iolite_sdk::wire::ABI_VERSION
            )),
        "{stderr}"
    );
}

#[test]
fn attacks_on_the_shared_pages_fail_only_their_own_request() {
    let (_root, server) = start_with_modules(&[("/hostile", "hostile"), ("/echo", "echo")], &[]);
    for attack in ["write", "mprotect", "truncate"] {
        let r = request(
            &server,
            "POST",
            &format!("/hostile/{attack}"),
            b"victim bytes",
        );
        assert_eq!(r.header("x-attack"), None, "{attack} succeeded");
        assert_eq!(r.status, 502, "{attack}");
        // The other module, and the pool's bytes, are untouched.
        let r = request(&server, "POST", "/echo", b"still here");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"still here"[..]));
        // The attacker's runner comes back.
        assert_eq!(
            get(&server, "/hostile/nothing").status,
            204,
            "after {attack}"
        );
    }
    assert!(server.stop().success());
}

#[test]
fn forged_response_descriptors_are_refused() {
    let (_root, server) = start_with_modules(&[("/forger", "forger")], &[]);
    for forgery in ["pool", "range", "lease"] {
        let r = request(
            &server,
            "POST",
            &format!("/forger/{forgery}"),
            b"0123456789abcdef",
        );
        assert_eq!(r.status, 502, "{forgery}");
        // The replaced runner answers honestly.
        assert_eq!(
            get(&server, "/forger/honest").status,
            200,
            "after {forgery}"
        );
    }
    assert!(server.stop().success());
}

#[test]
fn failures_are_told_apart_by_side_on_metrics_and_in_the_access_log() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let (_root, server) = start_with_modules(
        &[("/faulty", "faulty")],
        &["--access-log", log.to_str().unwrap()],
    );
    let side = |s: &str| server.metric(&format!("iolite_request_errors_total{{side=\"{s}\"}}"));
    assert_eq!(get(&server, "/faulty/x").status, 200);
    // A module that crashes is the upstream's failure; a missing file and
    // a body over the limit are the client's.
    assert_eq!(get(&server, "/faulty/panic").status, 502);
    assert_eq!(get(&server, "/missing").status, 404);
    let mut s = server.connect();
    s.write_all(b"POST /faulty/x HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new(), false).status, 413);
    // Counted after the response has left: wait for them, then check that
    // no other side was blamed.
    server.wait_for_metric("iolite_request_errors_total{side=\"upstream\"}", 1);
    server.wait_for_metric("iolite_request_errors_total{side=\"client\"}", 2);
    assert_eq!(
        (side("upstream"), side("client"), side("internal")),
        (1, 2, 0)
    );
    assert!(server.stop().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {text}"))
    };
    assert!(line("GET /faulty/x ").ends_with('"'), "{text}");
    assert!(
        line("/faulty/panic").ends_with(" 502 16 \"-\" \"-\" error=upstream"),
        "{text}"
    );
    assert!(line("/missing").ends_with(" error=client"), "{text}");
    assert!(line("POST /faulty/x").ends_with(" error=client"), "{text}");
}
