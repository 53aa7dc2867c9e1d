//! `cargo +nightly fuzz run accept_encoding corpus/accept_encoding`:
//! `Accept-Encoding` values (`iolite_core::http::accept_encoding`).
//!
//! Input: the first byte's low three bits choose the codings offered; the
//! rest is the field's value.
//!
//! Properties: no panic; the choice is one of those offered; offering
//! all three never gives the identity where a smaller offer gave a
//! coding; and when the choice from all three is in the smaller offer,
//! the smaller offer chooses it too.
#![no_main]

use iolite_core::http::accept_encoding::{Coding, preferred};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&bits, value)) = data.split_first() else {
        return;
    };
    let offered: Vec<Coding> = Coding::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| c)
        .collect();
    let some = preferred(value, &offered);
    if let Some(c) = some {
        assert!(offered.contains(&c));
    }
    let all = preferred(value, &Coding::ALL);
    if some.is_some() {
        assert!(all.is_some(), "more offered, nothing chosen");
    }
    if let Some(best) = all
        && offered.contains(&best)
    {
        assert_eq!(some, Some(best), "the best overall is offered but not chosen");
    }
});
