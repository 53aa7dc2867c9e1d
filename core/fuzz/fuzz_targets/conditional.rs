//! `cargo +nightly fuzz run conditional corpus/conditional seeds/conditional`:
//! the precondition fields a client sends (`If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`, `If-Range`)
//! against a representation's validators (`iolite_core::http::conditional`).
//!
//! Input: five fields and an entity tag, separated by NUL bytes; the first
//! byte's low bits choose which fields are present and whether the
//! representation's tag is weak.
//!
//! Properties: no panic; a strong match is also a weak match; `*` matches
//! both ways; a weak representation passes `If-Match` only with `*`; the
//! verdict follows RFC 9110 §13.2.2's order — a failing `If-Match` is 412
//! whatever follows, a passing one makes `If-Unmodified-Since` irrelevant,
//! an `If-None-Match` makes `If-Modified-Since` irrelevant, a method other
//! than GET or HEAD never gets 304; `If-Range` never matches a weak tag.
#![no_main]

use iolite_core::http::conditional::{
    Preconditions, Verdict, evaluate, if_range_matches, none_match, strong_match,
};
use libfuzzer_sys::fuzz_target;

const MTIME: u64 = 784_111_777;

/// A field value without its optional white space (space and tab only, as
/// RFC 9110 has it; a CR never reaches a value: the head parser refuses it).
fn ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `v` when bit `bit` of `knob` is set.
fn on(knob: u8, bit: u8, v: &[u8]) -> Option<&[u8]> {
    (knob & bit != 0).then_some(v)
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0);
    let mut next = || parts.next().unwrap_or(b"");
    let (im, ius, inm, ims, ir, tag) = (next(), next(), next(), next(), next(), next());
    let mut etag = Vec::new();
    if knob & 32 != 0 {
        etag.extend_from_slice(b"W/");
    }
    etag.push(b'"');
    etag.extend(tag.iter().filter(|&&b| b != b'"'));
    etag.push(b'"');
    let p = Preconditions {
        if_match: on(knob, 1, im),
        if_unmodified_since: on(knob, 2, ius),
        if_none_match: on(knob, 4, inm),
        if_modified_since: on(knob, 8, ims),
    };
    let weak = etag.starts_with(b"W/");

    if strong_match(im, &etag) {
        assert!(none_match(im, &etag), "strong but not weak");
    }
    if weak {
        assert_eq!(strong_match(im, &etag), ows(im) == b"*");
    }
    if ows(im) == b"*" {
        assert!(strong_match(im, &etag) && none_match(im, &etag));
    }
    if weak && ows(ir).starts_with(b"\"") {
        assert!(!if_range_matches(ir, &etag, MTIME));
    }

    let get = evaluate(&p, &etag, MTIME, true);
    let put = evaluate(&p, &etag, MTIME, false);
    assert_ne!(put, Verdict::NotModified);
    if p.if_match.is_some_and(|v| !strong_match(v, &etag)) {
        assert_eq!((get, put), (Verdict::Failed, Verdict::Failed));
    }
    if p.if_match.is_some_and(|v| strong_match(v, &etag)) {
        let without = Preconditions {
            if_unmodified_since: None,
            ..p
        };
        assert_eq!(get, evaluate(&without, &etag, MTIME, true));
    }
    if p.if_none_match.is_some() {
        let without = Preconditions {
            if_modified_since: None,
            ..p
        };
        assert_eq!(get, evaluate(&without, &etag, MTIME, true));
    }
    // A GET that may not proceed fails or is not modified; the same for
    // another method fails.
    if get != Verdict::Proceed {
        assert_eq!(put == Verdict::Failed, get == Verdict::Failed || p.if_none_match.is_some());
    }
});
