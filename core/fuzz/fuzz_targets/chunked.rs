//! `cargo +nightly fuzz run chunked`: the chunked decoder fed the input in
//! pieces whose sizes come from the first byte. Properties: no panic; the
//! decoded bytes and the consumed count are the same however the input is
//! split; data handed out is a sub-slice of the input; decoded length never
//! exceeds the limit. The same input as a descriptor body's framing
//! (`ChunkedFrames`, driven as the send path drives it: framing read a
//! frame at a time, payload skipped over) finds the same payload, ends at
//! the same byte, and fails exactly when the decoder does.
#![no_main]

use iolite_core::fd_body::{ChunkedFrames, Deframe, Frame};
use iolite_core::http::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 1 << 16;

fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), u16> {
    let mut d = ChunkedDecoder::new(LIMIT);
    let mut body = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let end = (at + step).min(input.len());
        let piece = &input[at..end];
        let p = d
            .feed(piece, |data| {
                let base = piece.as_ptr() as usize;
                let ptr = data.as_ptr() as usize;
                assert!(ptr >= base && ptr + data.len() <= base + piece.len());
                body.extend_from_slice(data);
            })
            .map_err(|e| e.status())?;
        assert!(p.consumed <= piece.len());
        at += p.consumed;
        if p.done {
            return Ok((body, at, true));
        }
        assert_eq!(p.consumed, piece.len());
    }
    assert!(d.decoded_len() <= LIMIT);
    Ok((body, at, false))
}

/// The payload `ChunkedFrames` finds, where it stopped, and whether the
/// body ended; Err when the framing is invalid.
fn frames(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ()> {
    let mut f = ChunkedFrames::default();
    let mut body = Vec::new();
    let mut at = 0;
    let mut framing: &[u8] = &[];
    loop {
        match f.next(framing).map_err(drop)? {
            Frame::Header(n) => {
                if at + n > input.len() {
                    return Ok((body, at, false));
                }
                framing = &input[at..at + n];
                at += n;
            }
            Frame::Payload(n) => {
                let want = usize::try_from(n).unwrap_or(usize::MAX);
                let end = at.saturating_add(want).min(input.len());
                body.extend_from_slice(&input[at..end]);
                if end - at < want {
                    return Ok((body, end, false));
                }
                at = end;
                framing = &[];
            }
            Frame::Skip(_) => unreachable!("chunked framing has no padding"),
            Frame::End => return Ok((body, at, true)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let split = run(input, usize::from(first % 16) + 1);
    assert_eq!(whole, split);
    match (&whole, frames(input)) {
        // Over the decoder's limit: the framing has none.
        (Err(413), _) => {}
        (Err(_), framed) => assert!(framed.is_err(), "{framed:?}"),
        (Ok(decoded), framed) => assert_eq!(Ok(decoded.clone()), framed),
    }
});
