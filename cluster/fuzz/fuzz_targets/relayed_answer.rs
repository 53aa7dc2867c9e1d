//! What a node reads from a peer it forwarded to: the answer's head (the
//! bytes on the pooled connection up to its blank line, the rest being
//! body bytes read along with it), parsed as the relay parses it
//! (`dispatch::forward::relayed_head`). Properties: never a panic; an
//! accepted head has a status of three digits, a framing that is one of
//! length, chunked or until close (never both), no more body read along
//! than its length, and relays only well-formed header lines, none of them
//! a field the relaying server writes itself (framing, connection, date,
//! server) or the owner's redirection; those lines, put under a status
//! line again, parse to the same head (nothing a peer sends can split or
//! add a field on the way to the client).
#![no_main]

use iolite_cluster::dispatch::forward::{answer_head_end, relayed_head};
use libfuzzer_sys::fuzz_target;

const SERVER_WRITES: [&[u8]; 6] = [
    b"server",
    b"date",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"keep-alive",
];

fuzz_target!(|data: &[u8]| {
    let Some(end) = answer_head_end(data) else {
        return;
    };
    let (head, rest) = data.split_at(end);
    let Ok(a) = relayed_head(head, rest.to_vec()) else {
        return;
    };
    assert!((100..=999).contains(&a.status), "status {}", a.status);
    assert!(!(a.chunked && a.length.is_some()), "two framings");
    if let Some(n) = a.length {
        assert!(
            a.prefix as u64 <= n,
            "{} body bytes past a length of {n}",
            a.prefix
        );
    }
    // Every relayed line is `name: value\r\n`, the name a token.
    let mut lines = a.headers.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            assert!(line.is_empty(), "a relayed line without its end");
            break;
        }
        let line = line
            .strip_suffix(b"\r")
            .expect("a bare LF in relayed lines");
        assert!(!line.contains(&b'\r'), "a CR inside a relayed line");
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .expect("a line without a name");
        let name = &line[..colon];
        assert!(!name.is_empty(), "an empty name");
        assert!(
            !SERVER_WRITES.iter().any(|f| name.eq_ignore_ascii_case(f)),
            "relayed a field the server writes: {:?}",
            String::from_utf8_lossy(name)
        );
        assert!(
            !name.eq_ignore_ascii_case(b"x-iolite-peer-go"),
            "relayed the owner's redirection"
        );
    }
    // The relayed lines under a status line again: the same head.
    let mut again = format!("HTTP/1.1 {} X\r\n", a.status).into_bytes();
    again.extend_from_slice(&a.headers);
    again.extend_from_slice(b"\r\n");
    let b = relayed_head(&again, Vec::new()).expect("the relayed head parses again");
    assert_eq!(
        b.headers, a.headers,
        "the relayed lines changed on a second parse"
    );
    assert_eq!(b.status, a.status);
    assert!(b.go.is_none());
});
