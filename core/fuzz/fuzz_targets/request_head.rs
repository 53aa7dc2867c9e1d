//! `cargo +nightly fuzz run request_head`: the request-head parser, then the
//! target normalization and the header interpreters the server runs on the
//! parsed head. Properties: no panic; spans stay inside the input; a parsed
//! head never claims more bytes than were given; a normalized path starts
//! with `/` and has no `.`/`..`/empty segment.
#![no_main]

use iolite_core::http::conditional::{RangeRequest, none_match, parse_range};
use iolite_core::http::{Limits, parse_head, target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_head: 4096,
        max_uri: 1024,
        max_body: 1 << 20,
        max_headers: 100,
    };
    let Ok(Some(head)) = parse_head(data, &limits) else {
        return;
    };
    assert!(head.head_len <= data.len());
    let t = head.target.get(data);
    for span in [
        head.host,
        head.range,
        head.if_none_match,
        head.if_modified_since,
        head.if_range,
    ]
    .into_iter()
    .flatten()
    {
        let _ = span.get(data);
    }
    if let Some(range) = head.range {
        for len in [0u64, 1, 100, u64::MAX] {
            if let RangeRequest::Partial { start, end } = parse_range(range.get(data), len) {
                assert!(start <= end && end < len);
            }
        }
    }
    if let Some(inm) = head.if_none_match {
        let _ = none_match(inm.get(data), b"\"abc\"");
    }
    let Ok(path) = target::target_path(t) else {
        return;
    };
    let mut out = Vec::new();
    if target::normalize(path, &mut out).is_ok() {
        assert_eq!(out[0], b'/');
        for seg in out[1..].split(|&b| b == b'/').rev().skip(1) {
            assert!(!seg.is_empty() && seg != b"." && seg != b"..");
        }
        assert!(!out.contains(&0));
    }
});
