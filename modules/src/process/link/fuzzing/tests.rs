//! What each seed of the fuzz target does, and the seeds on disk kept in
//! step with [`seeds`].

use super::seeds::*;
use super::*;

fn seed(name: &str) -> Run {
    let (_, bytes) = seeds().into_iter().find(|(n, _)| *n == name).unwrap();
    run(&bytes)
}

fn statuses(r: &Run) -> Vec<(u16, bool)> {
    r.outcomes
        .iter()
        .map(|o| (o.response.status, o.answered))
        .collect()
}

fn bytes(body: &Body) -> Vec<u8> {
    match body {
        Body::Agg(agg) => agg.copy_to_vec(),
        Body::Bytes(b) => b.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_good_answer_is_served_and_a_bad_one_is_a_502() {
    let r = seed("whole");
    assert_eq!((r.ended.as_str(), r.replace), ("runner gone", false));
    assert_eq!(
        statuses(&r),
        [(200, true), (502, true), (201, true), (502, false)]
    );
    let first = &r.outcomes[0].response;
    assert_eq!(bytes(&first.body), OUTPUT_BODIES[0]);
    assert_eq!(
        first.headers.as_bytes(),
        b"Content-Type: text/plain\r\nX-Module: hello\r\n"
    );
    assert_eq!(bytes(&r.outcomes[2].response.body), REQUEST_BODY);
}

#[test]
fn streams_arrive_in_parts_and_may_end_short() {
    let r = seed("stream");
    assert_eq!(r.ended, "runner gone");
    assert_eq!(
        statuses(&r),
        [(200, true), (206, true), (502, true), (200, true)]
    );
    // A stream of unknown length: its parts, then the empty part that
    // ends it.
    let open = &r.outcomes[3];
    assert!(open.response.body.is_open_ended());
    let lens: Vec<usize> = open.parts.iter().map(Agg::len).collect();
    assert_eq!(lens, [OUTPUT_BODIES[1].len() / 4, 0]);
    let s = &r.outcomes[0];
    // The module's framing field is dropped: the server frames the body.
    assert_eq!(
        s.response.headers.as_bytes(),
        b"Content-Type: application/octet-stream\r\n"
    );
    assert_eq!(s.response.body.len(), OUTPUT_BODIES[1].len() as u64);
    let got: Vec<u8> = s.parts.iter().flat_map(Agg::copy_to_vec).collect();
    assert_eq!(got, OUTPUT_BODIES[1]);
    assert!(r.outcomes[1].parts.is_empty());
}

#[test]
fn copy_mode_gathers_inline_bytes() {
    let r = seed("copy");
    assert_eq!(r.ended, "runner gone");
    assert_eq!(
        statuses(&r),
        [(200, true), (200, true), (404, true), (502, false)]
    );
    assert_eq!(bytes(&r.outcomes[0].response.body), b"inline");
    let s = &r.outcomes[1];
    assert_eq!(s.response.headers.as_bytes(), b"");
    let got: Vec<u8> = s.parts.iter().flat_map(Agg::copy_to_vec).collect();
    assert_eq!(got, b"12345");
}

#[test]
fn protocol_errors_end_the_link_and_replace_the_runner() {
    for (name, why) in [
        ("release", "runner link: unknown lease 77"),
        ("stale", "bad response body descriptor: "),
        ("out_of_order", "request 1: answer out of order"),
        ("raw", "runner link: "),
    ] {
        let r = seed(name);
        assert!(r.replace, "{name}: {}", r.ended);
        assert!(r.ended.starts_with(why), "{name}: {}", r.ended);
    }
    // Releases of leases the server granted are fine; the answer before
    // the bad release got through.
    assert_eq!(
        statuses(&seed("release")),
        [(502, false), (502, false), (502, false), (204, true)]
    );
}

#[test]
fn bad_descriptors_are_refused() {
    let hello = OUTPUT_BODIES[0].len();
    let mut beyond = output_desc(0, 0..hello, 1);
    beyond.offset += 2 << 20;
    let mut foreign = output_desc(0, 0..hello, 1);
    foreign.pool = 7;
    let mut unknown_lease = request_desc(1);
    unknown_lease.lease = 99;
    let twice = vec![output_desc(0, 0..1, 5), output_desc(0, 1..2, 5)];
    for (bufs, why) in [
        (vec![beyond], "out of range"),
        (vec![foreign], "unknown pool"),
        (vec![unknown_lease], "unknown lease"),
        (twice, "one lease twice"),
    ] {
        let r = run(&input(false, &[msg_record(&response(1, 200, &[], bufs))]));
        assert!(r.replace, "{why}: {}", r.ended);
        assert!(
            r.ended.starts_with("bad response body descriptor: "),
            "{why}: {}",
            r.ended
        );
        assert!(r.outcomes.iter().all(|o| o.response.status == 502), "{why}");
    }
}

#[test]
fn descriptors_on_a_link_end_it() {
    let r = seed("fds_on_link");
    assert!(r.replace, "{}", r.ended);
    assert!(r.ended.contains("file descriptors"), "{}", r.ended);
    // The frame before them may come in the same read, which fails
    // whole: the runner broke the protocol, nothing of it counts.
    assert!(r.outcomes[1..].iter().all(|o| o.response.status == 502));
}

#[test]
fn pools_in_a_handshake_are_checked_and_only_written_pages_count() {
    let r = seed("handshake_pools");
    assert_eq!(statuses(&r)[0], (200, true), "{}", r.ended);
    assert_eq!(bytes(&r.outcomes[0].response.body), vec![b's'; 4096]);
    assert!(r.replace, "{}", r.ended);
    assert!(r.ended.contains("unwritten pages"), "{}", r.ended);
    for (name, why) in [
        ("unsealed_pool", "seal"),
        ("pool_under_own_id", "an id of this side's"),
        ("pools_past_the_limit", "pool shared"),
    ] {
        let r = seed(name);
        assert!(r.replace, "{name}: {}", r.ended);
        assert!(r.ended.to_lowercase().contains(why), "{name}: {}", r.ended);
        assert!(r.outcomes[1..].iter().all(|o| o.response.status == 502));
    }
}

#[test]
fn seeds_on_disk_are_current() {
    // IOLITE_WRITE_SEEDS=1 cargo test -p iolite-modules seeds_on_disk
    // writes them after a change here.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/module_answer");
    let write = std::env::var_os("IOLITE_WRITE_SEEDS").is_some();
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is stale: IOLITE_WRITE_SEEDS=1",
            path.display()
        );
    }
}
