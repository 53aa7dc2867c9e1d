//! A 206 `multipart/byteranges` answer for several ranges of one file
//! (RFC 9110 §14.6): the part heads and boundaries are the only bytes
//! written here; each part is a slice of the cached body or a range of the
//! file, sent by reference like a single range.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use crate::http::multipart::{boundary, push_content_type, push_part_head, push_tail};
use crate::http::range::RangeSet;
use crate::response::{Body, HeaderLines, MultipartBody, Response};

thread_local! {
    /// This thread's boundaries: a per-process random start (so no file
    /// can be written to contain the boundary of its own answer), then one
    /// more per answer.
    static NEXT_BOUNDARY: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64));
}

/// The 206 answer for `set` over a file of `len` bytes whose type is
/// `content_type`; `lines` are its other header lines (validators,
/// `Accept-Ranges`: no `Content-Type`), `part` gives the bytes of one
/// range (offset, length) by reference. `None` when the framing would
/// outweigh the file (tiny parts of a tiny file): the caller sends the
/// whole file, so an answer is never more than twice the file.
pub(super) fn respond(
    set: &RangeSet,
    len: u64,
    content_type: &str,
    lines: &[u8],
    part: impl Fn(u64, u64) -> Body,
) -> Option<Response> {
    let n = NEXT_BOUNDARY.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n
    });
    let boundary = boundary(n);
    let mut head = Vec::with_capacity(lines.len() + 80);
    push_content_type(&mut head, &boundary);
    head.extend_from_slice(lines);
    let mut framing = Vec::with_capacity((set.len() + 1) * (100 + content_type.len()));
    let mut parts = Vec::with_capacity(set.len());
    for &(first, last) in set.ranges() {
        push_part_head(
            &mut framing,
            &boundary,
            content_type.as_bytes(),
            (first, last),
            len,
        );
        parts.push((framing.len(), part(first, last - first + 1)));
    }
    push_tail(&mut framing, &boundary);
    if framing.len() as u64 > len {
        return None;
    }
    Some(Response::new(
        206,
        HeaderLines::Owned(head),
        Body::Multipart(Arc::new(MultipartBody::new(framing, parts))),
    ))
}
