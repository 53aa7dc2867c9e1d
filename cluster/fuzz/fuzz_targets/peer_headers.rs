//! What a node's peer listener parses: a request head, as anyone could
//! send it, through core's head parser and then the signature check
//! (`dispatch::auth`); then the same request signed with the key as a
//! member signs it, which must pass exactly once.
#![no_main]

use iolite_cluster::dispatch::auth::{Hop, Outgoing, PeerSigner, PeerVerifier, Refusal};
use iolite_cluster::membership::packet::ReplayGuard;
use iolite_core::http::request::{Limits, Span, parse_head_fields};
use libfuzzer_sys::fuzz_target;

const NOW_US: u64 = 1_800_000_000_000_000;
const WINDOW_US: u64 = 10_000_000;
const KEY: &[u8] = &[0x5a; 32];

fuzz_target!(|data: &[u8]| {
    let verifier = PeerVerifier::new(KEY);
    let mut guard = ReplayGuard::new(WINDOW_US);
    let mut fields: Vec<(Span, Span)> = Vec::new();
    let Ok(Some(head)) = parse_head_fields(data, &Limits::default(), &mut fields) else {
        return;
    };
    let get = |s: Span| s.get(data);
    let headers = fields.iter().map(|(n, v)| (get(*n), get(*v)));
    let method = get(head.method_token);
    let target = get(head.target);

    // As received from anyone: never admitted, nothing remembered.
    match verifier.verify(method, target, headers, NOW_US, &mut guard) {
        Ok(c) => panic!("an unsigned head was admitted: {c:?}"),
        Err(Refusal::Malformed | Refusal::BadSig) => {}
        Err(other) => panic!("an unauthenticated head got as far as {other:?}"),
    }
    assert!(guard.is_empty());

    // Signed as a member signs it (the values the parser found).
    let out = Outgoing {
        method,
        target,
        host: head.host.map_or(&b"n2"[..], get),
        range: head.range.map(get),
        if_range: head.if_range.map(get),
        if_none_match: head.if_none_match.map(get),
        if_modified_since: head.if_modified_since.map(get),
        body: None,
    };
    let signed = PeerSigner::new(KEY, "n1").sign(&out, Hop::Serve, NOW_US, 42);
    let mut again = Vec::new();
    again.extend_from_slice(method);
    again.push(b' ');
    again.extend_from_slice(target);
    again.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    again.extend_from_slice(out.host);
    again.extend_from_slice(b"\r\n");
    for (name, v) in [
        ("range", out.range),
        ("if-range", out.if_range),
        ("if-none-match", out.if_none_match),
        ("if-modified-since", out.if_modified_since),
    ] {
        if let Some(v) = v {
            again.extend_from_slice(name.as_bytes());
            again.extend_from_slice(b": ");
            again.extend_from_slice(v);
            again.extend_from_slice(b"\r\n");
        }
    }
    again.extend_from_slice(signed.as_bytes());
    again.extend_from_slice(b"\r\n");
    let Ok(Some(h2)) = parse_head_fields(&again, &Limits::default(), &mut fields) else {
        // The head the parser took, signed, is refused only for its size:
        // the signature's fields pushed it past a limit.
        let limits = Limits::default();
        assert!(
            again.len() > limits.max_head - 400 || data.len() > limits.max_head - 400 || fields.len() + 6 > limits.max_headers,
            "a signed head no longer parses"
        );
        return;
    };
    let get2 = |s: Span| s.get(&again);
    let verdict = |guard: &mut ReplayGuard| {
        verifier.verify(
            get2(h2.method_token),
            get2(h2.target),
            fields.iter().map(|(n, v)| (get2(*n), get2(*v))),
            NOW_US,
            guard,
        )
    };
    match verdict(&mut guard) {
        Ok(c) => assert_eq!((c.node.as_str(), c.hop), ("n1", Hop::Serve)),
        Err(e) => panic!("a signed head was refused: {e:?}"),
    }
    assert_eq!(verdict(&mut guard), Err(Refusal::Replay));
});
