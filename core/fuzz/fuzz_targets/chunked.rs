//! `cargo +nightly fuzz run chunked`: the chunked decoder fed the input in
//! pieces whose sizes come from the first byte. Properties: no panic; the
//! decoded bytes and the consumed count are the same however the input is
//! split; data handed out is a sub-slice of the input; decoded length never
//! exceeds the limit.
#![no_main]

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

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let split = run(input, usize::from(first % 16) + 1);
    assert_eq!(whole, split);
});
