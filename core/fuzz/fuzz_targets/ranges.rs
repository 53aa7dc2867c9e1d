//! `cargo +nightly fuzz run -O ranges corpus/ranges seeds/ranges`: the
//! `Range` header with one range or many
//! (`iolite_core::http::range::parse_range`) and the `multipart/byteranges`
//! framing written for a set of ranges (`iolite_core::http::multipart`).
//!
//! Input: eight bytes of representation length (little-endian; small
//! lengths are made likely by taking it modulo a size its first byte
//! picks), then the header value.
//!
//! Properties: no panic; the answer is the one a plain model of RFC 9110
//! §14.1.2 with nginx's choices computes (in i128, so no overflow hides);
//! every range lies inside the representation, first <= last; a multipart
//! answer has 2..=MAX_RANGES ranges selecting at most the representation's
//! length in all; its framing has one delimiter per part and a close
//! delimiter, each part head naming its range, and nothing else.
#![no_main]

use iolite_core::http::multipart::{boundary, push_part_head, push_tail};
use iolite_core::http::range::{MAX_RANGES, RangeRequest, parse_range};
use libfuzzer_sys::fuzz_target;

fn ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn digits(v: &[u8]) -> Option<i128> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// What the header asks, as a list of inclusive ranges: `None` for the
/// whole representation (200), an empty list for 416.
fn model(header: &[u8], len: u64) -> Option<Vec<(u64, u64)>> {
    let h = ows(header);
    if h.len() < 6 || !h[..6].eq_ignore_ascii_case(b"bytes=") {
        return None;
    }
    let len = i128::from(len);
    let mut out = Vec::new();
    let mut any = false;
    for spec in h[6..].split(|&b| b == b',').map(ows) {
        if spec.is_empty() {
            continue;
        }
        any = true;
        let dash = spec.iter().position(|&b| b == b'-')?;
        let (a, b) = (ows(&spec[..dash]), ows(&spec[dash + 1..]));
        let (first, last) = if a.is_empty() {
            let n = digits(b)?;
            (len - n.min(len), len - 1)
        } else {
            let first = digits(a)?;
            let last = if b.is_empty() {
                len - 1
            } else {
                let last = digits(b)?;
                if last < first {
                    return None; // invalid, whatever the length
                }
                last
            };
            (first, last.min(len - 1))
        };
        if first < len && first <= last {
            out.push((first as u64, last as u64));
        }
    }
    if !any || out.len() > MAX_RANGES {
        return None;
    }
    let total: i128 = out.iter().map(|(a, b)| i128::from(b - a + 1)).sum();
    if total > len {
        return None;
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (raw_len, header) = data.split_at(8);
    let raw = u64::from_le_bytes(raw_len.try_into().unwrap());
    let len = match raw_len[0] % 4 {
        0 => raw % 16,
        1 => raw % 4096,
        2 => raw % (1 << 40),
        _ => raw,
    };
    let got = parse_range(header, len);
    let want = model(header, len);
    let ranges: Vec<(u64, u64)> = match got {
        RangeRequest::Full => {
            assert_eq!(want, None, "{got:?}");
            return;
        }
        RangeRequest::Unsatisfiable => vec![],
        RangeRequest::Partial { start, end } => vec![(start, end)],
        RangeRequest::Multi(set) => {
            assert!((2..=MAX_RANGES).contains(&set.len()));
            assert!(set.total() <= len);
            set.ranges().to_vec()
        }
    };
    assert_eq!(Some(ranges.clone()), want, "{got:?}");
    for &(first, last) in &ranges {
        assert!(first <= last && last < len);
    }
    if ranges.len() < 2 {
        return;
    }
    let b = boundary(raw);
    let mut framing = Vec::new();
    let mut ends = Vec::new();
    for &r in &ranges {
        push_part_head(&mut framing, &b, b"text/plain", r, len);
        ends.push(framing.len());
    }
    push_tail(&mut framing, &b);
    let mut delimiter = b"\r\n--".to_vec();
    delimiter.extend_from_slice(&b);
    let count = framing
        .windows(delimiter.len())
        .filter(|w| *w == delimiter.as_slice())
        .count();
    assert_eq!(count, ranges.len() + 1);
    let mut start = 0;
    for (&end, &(first, last)) in ends.iter().zip(&ranges) {
        let head = std::str::from_utf8(&framing[start..end]).unwrap();
        let want = format!("Content-Range: bytes {first}-{last}/{len}\r\n\r\n");
        assert!(head.ends_with(&want), "{head:?}");
        start = end;
    }
    assert!(framing[start..].ends_with(b"--\r\n"));
});
