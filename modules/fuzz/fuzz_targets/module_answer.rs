//! `cargo +nightly fuzz run module_answer corpus/module_answer seeds/module_answer`:
//! what a runner process (untrusted: the module's code) sends on a data
//! link, through the server's real receive path and answer checks
//! (`iolite_modules::fuzzing::run`: frame decoding, `Msg` decoding, pool
//! announcements and releases, descriptor imports against real pools,
//! copy-mode data, streams, then `to_response`). Input format: see that
//! module's doc.
//!
//! Properties: no panic; every request in flight gets exactly one response;
//! a request the runner did not answer (or that died with the link) is a
//! 502; a status is never below 200 (no 1xx a module could use to switch
//! protocols); the module's header lines are well-formed fields that can
//! neither split the response nor frame it (no CR, LF, NUL or other
//! control character, no `Content-Length`, `Transfer-Encoding`,
//! `Connection`); the head the server writes with them parses as exactly
//! one complete response whose only framing field is the server's (the
//! `Content-Length` equal to the body's length, or `Transfer-Encoding:
//! chunked` for a stream of unknown length), with the status the module
//! chose (any of 200..=999, with or without a reason phrase); a body's bytes
//! can be read (imports stay inside their pools); a stream never delivers
//! more than it announced, and a stream of unknown length is ended only by
//! its last (empty) part; descriptors the input attaches (pools sparse or
//! unsealed, the server's own pools again, sockets, pipes, in any count)
//! are all closed once the link ends: the process holds as many
//! descriptors after a run as before it.
#![no_main]

use iolite_core::Body;
use iolite_core::http::response::{ConnectionHeader, Framing, status_has_body, write_head_framed};
use iolite_modules::fuzzing::{self, Outcome, SERVER_FIELDS};
use libfuzzer_sys::fuzz_target;

const DATE: &[u8] = b"Thu, 01 Jan 1970 00:00:00 GMT";

fuzz_target!(|data: &[u8]| {
    // The harness's pools are made by the first run: count after them.
    fuzzing::pool_ids();
    let fds = open_fds();
    let run = fuzzing::run(data);
    assert!(!run.ended.is_empty());
    let ids: Vec<u64> = run.outcomes.iter().map(|o| o.id).collect();
    assert_eq!(ids, (1..=fuzzing::IN_FLIGHT).collect::<Vec<_>>());
    for o in &run.outcomes {
        check(o);
    }
    // The answers hold the pools they name until they are sent; then
    // nothing is left.
    drop(run);
    let after = open_fds();
    assert!(
        after.len() == fds.len(),
        "descriptors outlived their link: {:?}",
        after.iter().filter(|f| !fds.contains(f)).collect::<Vec<_>>()
    );
});

/// Descriptors this process holds, each with what it names.
fn open_fds() -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| {
            let to = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                to.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

fn check(o: &Outcome) {
    let r = &o.response;
    assert!((200..=999).contains(&r.status), "status {}", r.status);
    if !o.answered {
        assert_eq!(r.status, 502);
    }
    assert!(!r.close, "a module answer does not close by itself");
    let lines = r.headers.as_bytes();
    let mut module_fields = 0;
    if !lines.is_empty() {
        let body = lines
            .strip_suffix(b"\r\n")
            .expect("header lines end in CRLF");
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':').expect("name: value");
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            assert!(!name.is_empty());
            assert!(
                name.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
                "{name:?}"
            );
            let name = std::str::from_utf8(name).expect("a token is ASCII");
            assert!(
                !SERVER_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)),
                "{name} from the module"
            );
            assert!(
                value
                    .iter()
                    .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f)),
                "{name}: {value:?}"
            );
            module_fields += 1;
        }
    }

    let len = r.body.len();
    let open = r.body.is_open_ended();
    let mut head = Vec::new();
    write_head_framed(
        &mut head,
        r.status,
        DATE,
        lines,
        if open {
            Framing::Chunked
        } else {
            Framing::Length(len)
        },
        ConnectionHeader::Default,
    );
    let mut fields = vec![httparse::EMPTY_HEADER; module_fields + 8];
    let mut parsed = httparse::Response::new(&mut fields);
    assert_eq!(
        parsed.parse(&head),
        Ok(httparse::Status::Complete(head.len())),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(
        parsed.code,
        Some(r.status),
        "the client sees the status sent"
    );
    let framing = usize::from(status_has_body(r.status));
    assert_eq!(parsed.headers.len(), 2 + module_fields + framing);
    let named = |n: &str| {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    let content_length = named("content-length");
    let chunked = named("transfer-encoding");
    if open {
        assert!(content_length.is_empty());
        assert_eq!(chunked.len(), framing);
        if framing == 1 {
            assert_eq!(chunked[0], b"chunked");
        }
    } else {
        assert!(chunked.is_empty());
        assert_eq!(content_length.len(), framing);
        if framing == 1 {
            assert_eq!(content_length[0], len.to_string().as_bytes());
        }
    }
    assert!(named("connection").is_empty());
    assert_eq!(named("date").len(), 1);
    assert_eq!(named("server"), [b"iolite"]);

    match &r.body {
        Body::Agg(agg) => assert_eq!(agg.copy_to_vec().len(), agg.len()),
        Body::Stream(_) => {
            let mut got = 0u64;
            for (i, part) in o.parts.iter().enumerate() {
                assert_eq!(part.copy_to_vec().len(), part.len());
                got += part.len() as u64;
                if open && part.is_empty() {
                    assert_eq!(i + 1, o.parts.len(), "a part after the end");
                }
            }
            if !open {
                assert!(got <= len, "{got} bytes streamed of {len}");
            }
        }
        _ => {}
    }
}
