//! The unified cache end to end: files served from the cache pool are the
//! files' bytes, whole and in ranges, no body byte is copied in user space,
//! the budget holds under eviction, large files bypass the cache, and a
//! changed file is not served stale past the revalidation interval.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Iolite, connect_slow_reader, read_response, wait_until_queued};

/// Deterministic, position-dependent bytes, so a misplaced slice shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect()
}

fn write_files(root: &Path, files: &[(&str, usize)]) -> Vec<Vec<u8>> {
    files
        .iter()
        .enumerate()
        .map(|(i, (name, len))| {
            let data = pattern(*len, i as u8 + 1);
            std::fs::write(root.join(name), &data).unwrap();
            data
        })
        .collect()
}

fn get(
    server: &Iolite,
    s: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    req: &str,
) -> support::Response {
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(s, buf, false);
    assert!(
        server.error_lines().is_empty(),
        "{:?}",
        server.error_lines()
    );
    r
}

#[test]
fn cached_files_are_served_whole_and_in_ranges_with_nothing_copied() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("b100", 100),
        ("k1", 1024),
        ("k16", 16 * 1024),
        ("k256", 256 * 1024),
        ("m4", 4 << 20),
        ("empty", 0),
    ];
    let data = write_files(dir.path(), &files);
    let server = Iolite::start(dir.path(), &["--cache-size", "64M"]);
    let mut s = server.connect();
    let mut buf = Vec::new();
    for round in 0..3 {
        for ((name, _), bytes) in files.iter().zip(&data) {
            let req = format!("GET /{name} HTTP/1.1\r\nHost: t\r\n\r\n");
            let r = get(&server, &mut s, &mut buf, &req);
            assert_eq!(r.status, 200, "{name} round {round}");
            assert!(r.body == *bytes, "{name} round {round}: body differs");
        }
    }
    // Ranges inside cached files (written from the pool) and inside files
    // over FILE_SEND_MIN (32 KiB: sent from the file).
    for (name, idx, start, end) in [
        ("k256", 3, 1000, 200_000),
        ("m4", 4, 40_000, 4_000_000),
        ("k1", 1, 5, 6),
    ] {
        let req = format!("GET /{name} HTTP/1.1\r\nHost: t\r\nRange: bytes={start}-{end}\r\n\r\n");
        let r = get(&server, &mut s, &mut buf, &req);
        assert_eq!(r.status, 206);
        assert!(r.body == data[idx][start..=end], "{name} {start}-{end}");
    }
    let from_cache = |len: usize| (len as u64) <= iolite_core::static_files::FILE_SEND_MIN;
    let cached = files.iter().filter(|(_, l)| from_cache(*l)).count() as u64;
    assert_eq!(server.metric("iolite_cache_misses_total"), cached);
    // The empty file holds no bytes but is an entry.
    assert!(server.metric("iolite_cache_hits_total") >= 2 * (cached - 1));
    assert_eq!(
        server.metric("iolite_cache_bytes"),
        files
            .iter()
            .filter(|(_, l)| from_cache(*l))
            .map(|(_, l)| *l as u64)
            .sum::<u64>()
    );
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), 0);
    assert!(server.stop().success());
}

#[test]
fn files_above_the_threshold_bypass_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB budget: the threshold is 128 KiB.
    let data = write_files(dir.path(), &[("small", 4000), ("large", 300_000)]);
    let server = Iolite::start(dir.path(), &["--cache-size", "1M"]);
    let mut s = server.connect();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let r = get(
            &server,
            &mut s,
            &mut buf,
            "GET /large HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert!(r.status == 200 && r.body == data[1]);
        let r = get(
            &server,
            &mut s,
            &mut buf,
            "GET /small HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert!(r.status == 200 && r.body == data[0]);
    }
    assert_eq!(server.metric("iolite_cache_entries"), 1);
    assert_eq!(server.metric("iolite_cache_bytes"), 4000);
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), 0);
    assert!(server.stop().success());
}

#[test]
fn the_budget_holds_under_eviction_and_every_body_stays_right() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..24).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 30_000)).collect();
    let data = write_files(dir.path(), &files);
    let budget = 256 * 1024;
    let server = Iolite::start(dir.path(), &["--cache-size", "256K"]);
    let mut conns = [server.connect(), server.connect()];
    let mut buf = Vec::new();
    for round in 0..4 {
        for (i, (name, _)) in files.iter().enumerate() {
            // Skewed: low-numbered files are asked for more often.
            for _ in 0..(1 + 3 * usize::from(i < 4)) {
                let s = &mut conns[i % 2];
                let r = get(
                    &server,
                    s,
                    &mut buf,
                    &format!("GET /{name} HTTP/1.1\r\nHost: t\r\n\r\n"),
                );
                assert!(r.status == 200 && r.body == data[i], "{name} round {round}");
            }
        }
        assert!(server.metric("iolite_cache_bytes") <= budget);
    }
    assert!(server.metric("iolite_cache_evictions_total") > 0);
    assert!(server.metric("iolite_cache_hits_total") > 0);
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), 0);
    assert!(server.stop().success());
}

#[test]
fn a_changed_file_is_not_served_stale_past_the_revalidation_interval() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page"), b"version one\n").unwrap();
    let server = Iolite::start(dir.path(), &["--workers", "1"]); // default interval: 1 s
    let mut s = server.connect();
    let mut buf = Vec::new();
    let req = "GET /page HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(get(&server, &mut s, &mut buf, req).body, b"version one\n");
    assert_eq!(get(&server, &mut s, &mut buf, req).body, b"version one\n");
    let tmp = dir.path().join("page.new");
    std::fs::write(&tmp, b"version two, longer\n").unwrap();
    std::fs::rename(&tmp, dir.path().join("page")).unwrap();
    let changed = Instant::now();
    let interval = Duration::from_secs(1);
    // Scheduling slack on a loaded machine, not a performance bound.
    let slack = Duration::from_millis(500);
    loop {
        let asked = Instant::now();
        let body = get(&server, &mut s, &mut buf, req).body;
        if body == b"version two, longer\n" {
            break;
        }
        assert_eq!(body, b"version one\n");
        assert!(
            asked.duration_since(changed) < interval + slack,
            "stale {:?} after the change",
            asked.duration_since(changed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stop().success());
}

#[test]
fn an_answer_queued_in_a_clients_socket_keeps_its_bytes_when_its_space_is_evicted_and_reused() {
    // An answer's bytes sit in a slow client's receive queue after the
    // server is done with it. Evicting that file and caching others in its
    // space must not change them (they did while pool slices were handed
    // to sockets by page reference).
    const LEN: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), LEN)).collect();
    let data = write_files(dir.path(), &files);
    let server = Iolite::start(dir.path(), &["--cache-size", "256K", "--workers", "1"]);
    let mut slow = connect_slow_reader(server.addr);
    slow.write_all(b"GET /f0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(
        wait_until_queued(&slow, LEN),
        "the answer never arrived whole"
    );
    // Seven times the budget of other files: /f0 is evicted, its space reused.
    let mut s = server.connect();
    let mut buf = Vec::new();
    for (i, name) in names.iter().enumerate().skip(1) {
        let r = get(
            &server,
            &mut s,
            &mut buf,
            &format!("GET /{name} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert!(r.status == 200 && r.body == data[i], "{name}");
    }
    assert!(server.metric("iolite_cache_evictions_total") > 0);
    // Evicted bodies are not pinned by the workers' open files: the cache
    // still holds the latest files.
    assert!(server.metric("iolite_cache_entries") > 0);
    let r = read_response(&mut slow, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    let wrong = r.body.iter().zip(&data[0]).filter(|(a, b)| a != b).count();
    assert_eq!(
        wrong, 0,
        "{wrong} bytes of the first answer changed after it was sent"
    );
    assert!(server.stop().success());
}

/// Benchmarks only: with `IOLITE_BENCH_DISK_DELAY`, a miss waits for the
/// process's one simulated disk and its delay without holding its worker
/// (a hit on the same worker is answered meanwhile), then the file is in
/// the cache; a value that is not a duration stops the server with a
/// message naming the variable.
#[test]
fn the_bench_disk_delay_makes_misses_wait_without_holding_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = write_files(dir.path(), &[("a.bin", 5000), ("b.bin", 7000)]);
    let delay = Duration::from_secs(1);
    let server = Iolite::start_env(
        dir.path(),
        &["--workers", "1"],
        &[("IOLITE_BENCH_DISK_DELAY", "1s")],
    );
    let get = |addr: std::net::SocketAddr, path: &str| {
        let mut s = support::connect(addr);
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        read_response(&mut s, &mut buf, false)
    };
    let misses = || {
        let page = server.admin_get("/metrics");
        support::metric_in(
            &String::from_utf8_lossy(&page.body),
            "iolite_cache_misses_total",
        )
    };
    // A first miss: it takes the disk's delay, then the file is cached.
    let t0 = Instant::now();
    let b = get(server.addr, "/b.bin");
    assert_eq!((b.status, &b.body), (200, &bodies[1]));
    assert!(t0.elapsed() >= delay, "a miss took {:?}", t0.elapsed());
    // A miss in flight...
    let addr = server.addr;
    let t1 = Instant::now();
    let pending = std::thread::spawn(move || get(addr, "/a.bin"));
    support::wait_for("the second miss counted", Duration::from_secs(10), || {
        misses() == 2
    });
    // ...does not hold the one worker: a hit is answered meanwhile.
    let hit = get(server.addr, "/b.bin");
    assert_eq!((hit.status, &hit.body), (200, &bodies[1]));
    assert!(
        !pending.is_finished(),
        "the miss was answered before the hit"
    );
    let a = pending.join().unwrap();
    assert_eq!((a.status, &a.body), (200, &bodies[0]));
    assert!(
        t1.elapsed() >= delay,
        "the second miss took {:?}",
        t1.elapsed()
    );
    assert_eq!(misses(), 2);
    server.stop();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "none",
            "--root",
        ])
        .arg(dir.path())
        .env("IOLITE_BENCH_DISK_DELAY", "fast")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("IOLITE_BENCH_DISK_DELAY=\"fast\""), "{err}");
}
