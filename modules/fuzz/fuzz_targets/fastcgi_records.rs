//! `cargo +nightly fuzz run fastcgi_records corpus/fastcgi_records seeds/fastcgi_records`:
//! what a FastCGI peer (php-fpm, fcgiwrap, or anything listening where one
//! should be) sends for a request, through the client's record deframer
//! (`iolite_modules::fastcgi::record`), and name-value pairs.
//!
//! Input: the first byte picks how the bytes arrive (pieces of 1 to 256
//! bytes) and whether STDOUT content is moved without being read (as the
//! client splices it); the rest is the peer's bytes.
//!
//! Properties: no panic; the STDOUT and STDERR bytes, the end and the
//! error are the same however the input is split and whether STDOUT
//! content is read or skipped; a piece's range lies inside the input
//! given; nothing follows an END_REQUEST without an error; driven as the
//! send path drives it (core's `Deframe`: framing read, payload spliced),
//! from the start or from wherever `step` stopped, the deframer finds the
//! same STDOUT bytes and ends exactly when `step` saw the END_REQUEST, and
//! fails exactly when `step` does; `pairs` never reads past its input, and
//! pairs written by `params` read back the same.
#![no_main]

use iolite_core::fd_body::{Deframe, Frame};
use iolite_modules::fastcgi::record::{self, Deframer, Piece, RecordError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Seen {
    stdout: Vec<u8>,
    /// STDOUT bytes moved without being read.
    skipped: usize,
    stderr: Vec<u8>,
    end: Option<record::EndRequest>,
    error: Option<RecordError>,
}

fn run(input: &[u8], piece: usize, skip: bool) -> Seen {
    let mut d = Deframer::new(1);
    let mut seen = Seen {
        stdout: Vec::new(),
        skipped: 0,
        stderr: Vec::new(),
        end: None,
        error: None,
    };
    let mut at = 0;
    while at < input.len() {
        let chunk_end = (at + piece).min(input.len());
        if skip && let Some(left) = d.stdout_left() {
            let n = left.min(chunk_end - at);
            d.skip_content(n);
            seen.skipped += n;
            at += n;
            continue;
        }
        match d.step(&input[at..chunk_end]) {
            Err(e) => {
                seen.error = Some(e);
                return seen;
            }
            Ok((used, p)) => {
                assert!(used <= chunk_end - at);
                let slice = &input[at..chunk_end];
                match p {
                    Piece::None => assert_eq!(used, chunk_end - at),
                    Piece::Stdout(r) => {
                        assert!(r.end <= used && r.start < r.end);
                        seen.stdout.extend_from_slice(&slice[r]);
                    }
                    Piece::Stderr(r) => {
                        assert!(r.end <= used && r.start < r.end);
                        seen.stderr.extend_from_slice(&slice[r]);
                    }
                    Piece::End(e) => {
                        assert!(seen.end.is_none());
                        assert!(d.is_done());
                        seen.end = Some(e);
                    }
                }
                at += used;
            }
        }
    }
    seen
}

/// The send path's way: `step` over the first `head` bytes, then
/// `Deframe::next` over the rest. The STDOUT bytes, whether it ended, and
/// whether it failed.
fn send_path(input: &[u8], head: usize) -> (Vec<u8>, bool, bool) {
    let mut d = Deframer::new(1);
    let mut stdout = Vec::new();
    let mut at = 0;
    while at < head {
        match d.step(&input[at..head]) {
            Err(_) => return (stdout, false, true),
            Ok((used, p)) => {
                match p {
                    Piece::Stdout(r) => stdout.extend_from_slice(&input[at..head][r]),
                    Piece::End(_) => return (stdout, true, false),
                    Piece::Stderr(_) | Piece::None => {}
                }
                at += used;
            }
        }
    }
    let mut framing: &[u8] = &[];
    loop {
        match d.next(framing) {
            Err(_) => return (stdout, false, true),
            Ok(Frame::End) => return (stdout, true, false),
            Ok(Frame::Header(n)) => {
                assert!(n > 0);
                if input.len() - at < n {
                    return (stdout, false, false);
                }
                framing = &input[at..at + n];
                at += n;
                continue;
            }
            Ok(Frame::Payload(n)) => {
                let n = n as usize;
                if input.len() - at < n {
                    stdout.extend_from_slice(&input[at..]);
                    return (stdout, false, false);
                }
                stdout.extend_from_slice(&input[at..at + n]);
                at += n;
            }
            Ok(Frame::Skip(n)) => {
                let n = n as usize;
                if input.len() - at < n {
                    return (stdout, false, false);
                }
                at += n;
            }
        }
        framing = &[];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let piece = (knob as usize % 255) + 1;
    let whole = run(input, input.len().max(1), false);
    let split = run(input, piece, false);
    assert_eq!(whole, split, "split into {piece}-byte pieces");
    // Moving STDOUT content unread changes which bytes are read, nothing
    // else.
    let skipped = run(input, piece, knob & 1 == 1);
    assert_eq!(skipped.stdout.len() + skipped.skipped, whole.stdout.len());
    assert_eq!(
        (&skipped.stderr, &skipped.end, &skipped.error),
        (&whole.stderr, &whole.end, &whole.error)
    );
    // The send path, from the start and from a point `step` reached:
    // the same STDOUT bytes, the same end, the same failure.
    for head in [0, (knob as usize * 7) % (input.len() + 1)] {
        let (stdout, ended, failed) = send_path(input, head);
        assert_eq!(stdout, whole.stdout, "from {head}");
        let want = match (&whole.end, &whole.error) {
            (Some(_), _) => (true, false),
            (None, Some(_)) => (false, true),
            (None, None) => (false, false),
        };
        assert_eq!((ended, failed), want, "from {head}: {:?}", whole.error);
    }
    if let Ok(pairs) = record::pairs(input) {
        let mut out = Vec::new();
        record::params(1, pairs.iter().copied(), &mut out);
        // Back from the records, the same pairs.
        let mut stream = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let h = record::Header::decode(rest[..8].try_into().unwrap()).unwrap();
            let len = h.content_length as usize;
            stream.extend_from_slice(&rest[8..8 + len]);
            rest = &rest[8 + len + h.padding_length as usize..];
        }
        assert_eq!(record::pairs(&stream).unwrap(), pairs);
    }
});
