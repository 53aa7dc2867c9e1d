//! `cargo +nightly fuzz run cgi_header corpus/cgi_header seeds/cgi_header`:
//! a CGI program's output (untrusted: a program the server did not write)
//! through the header block's parser (`iolite_modules::cgi::header`).
//!
//! Input: the first byte picks the header limit (64 to 16,384 bytes) and a
//! split point; the rest is the program's output.
//!
//! Properties: no panic; the block ends at the same byte whether the output
//! arrives whole or split in two (the second call starting where the first
//! stopped); the end is within the limit and just past an empty line; a
//! parsed block's fields hold no CR, LF, NUL or other control character
//! but tab, have token names, and never include `Status`, `Content-Length`
//! or a field the connection owns; the status is 100..=999; a local
//! redirect names an absolute path, a client redirect carries exactly one
//! `Location`; every refusal is one line of text.
#![no_main]

use iolite_modules::cgi::header::{self, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, out)) = data.split_first() else {
        return;
    };
    let limit = 64usize << (knob % 9);
    let cut = if out.is_empty() {
        0
    } else {
        (knob as usize * 31) % (out.len() + 1)
    };
    let whole = header::find_end(out, 0, limit);
    let split = match header::find_end(&out[..cut], 0, limit) {
        Ok(None) => header::find_end(out, cut, limit),
        other => other,
    };
    // A split can only see a too-long block no later than the whole does.
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("whole {a:?}, split at {cut}: {b:?}"),
    }
    let end = match whole {
        Ok(Some(end)) => end,
        Ok(None) => {
            assert!(out.len() < limit);
            return;
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'));
            return;
        }
    };
    assert!(end <= limit && end <= out.len());
    assert_eq!(out[end - 1], b'\n');
    let before = &out[..end - 1];
    assert!(before.is_empty() || before == b"\r" || before.ends_with(b"\n") || before.ends_with(b"\n\r"));
    match header::parse(&out[..end]) {
        Err(e) => assert!(!e.to_string().contains('\n')),
        Ok(h) => {
            assert!((100..=999).contains(&h.status));
            for (name, value) in &h.fields {
                assert!(!name.is_empty());
                assert!(name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
                assert!(value.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
                let lower = name.to_ascii_lowercase();
                assert!(
                    ![
                        "status",
                        "content-length",
                        "connection",
                        "keep-alive",
                        "transfer-encoding",
                        "te",
                        "trailer",
                        "upgrade",
                        "proxy-connection"
                    ]
                    .contains(&lower.as_str()),
                    "{name}"
                );
            }
            let locations = h
                .fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
                .count();
            match &h.kind {
                Kind::LocalRedirect(p) => {
                    assert!(p.starts_with(b"/") && !p.starts_with(b"//"));
                    assert_eq!(locations, 0);
                }
                Kind::ClientRedirect(_) => assert_eq!(locations, 1),
                Kind::Document => assert_eq!(locations, 0),
            }
        }
    }
});
