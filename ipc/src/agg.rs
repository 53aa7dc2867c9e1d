//! `Agg`, the buffer aggregate: an ordered list of `Buf` slices.

use std::io::IoSlice;
use std::ops::RangeBounds;

use crate::buf::{Buf, resolve};
use crate::error::Result;

/// An ordered list of [`Buf`]s read as one byte string. Every operation here
/// moves references, never bytes (except [`copy_to_vec`](Agg::copy_to_vec),
/// which counts what it copies). Empty slices are never stored.
#[derive(Clone, Default, Debug)]
pub struct Agg {
    bufs: Vec<Buf>,
    len: usize,
}

impl Agg {
    /// An empty aggregate.
    pub fn new() -> Self {
        Agg::default()
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices, in order (none empty).
    pub fn bufs(&self) -> &[Buf] {
        &self.bufs
    }

    /// Appends a buffer.
    pub fn push(&mut self, buf: Buf) {
        if !buf.is_empty() {
            self.len += buf.len();
            self.bufs.push(buf);
        }
    }

    /// Moves every slice of `other` to the end of `self`, leaving `other` empty.
    pub fn append(&mut self, other: &mut Agg) {
        self.len += other.len;
        self.bufs.append(&mut other.bufs);
        other.len = 0;
    }

    /// A new aggregate: `self` followed by `other`.
    pub fn concat(&self, other: &Agg) -> Agg {
        let mut bufs = Vec::with_capacity(self.bufs.len() + other.bufs.len());
        bufs.extend_from_slice(&self.bufs);
        bufs.extend_from_slice(&other.bufs);
        Agg {
            bufs,
            len: self.len + other.len,
        }
    }

    /// The bytes in `range`, as a new aggregate sharing the same buffers.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Agg> {
        let (start, end) = resolve(range, self.len)?;
        let mut out = Agg::new();
        let mut pos = 0;
        for b in &self.bufs {
            let (b_start, b_end) = (pos, pos + b.len());
            pos = b_end;
            if b_end <= start {
                continue;
            }
            if b_start >= end {
                break;
            }
            let s = start.saturating_sub(b_start);
            let e = end.min(b_end) - b_start;
            out.push(if s == 0 && e == b.len() {
                b.clone()
            } else {
                b.slice(s..e)?
            });
        }
        Ok(out)
    }

    /// Splits into `[0, at)` and `[at, len)`.
    pub fn split_at(&self, at: usize) -> Result<(Agg, Agg)> {
        Ok((self.slice(..at)?, self.slice(at..)?))
    }

    /// Iterates over the bytes, one slice per buffer.
    ///
    /// # Panics
    /// On a buffer of an untrusted peer's pool ([`Buf::as_slice`]).
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.bufs.iter().map(Buf::as_slice)
    }

    /// `IoSlice`s for `writev`, one per buffer.
    ///
    /// # Panics
    /// On a buffer of an untrusted peer's pool: use
    /// [`io_vecs`](Agg::io_vecs).
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        self.iter().map(IoSlice::new).collect()
    }

    /// [`IoVec`](crate::IoVec)s for [`iov::send`](crate::iov::send), one
    /// per buffer (untrusted ones included).
    pub fn io_vecs(&self) -> Vec<crate::IoVec<'_>> {
        self.bufs.iter().map(Buf::io_vec).collect()
    }

    /// Copies every byte into a new `Vec` (and counts them in
    /// [`copied`](crate::copied)): for tests and for consumers that truly need
    /// contiguous bytes. An untrusted buffer's bytes are copied by the
    /// kernel ([`Buf::copy_into`]); if that fails (it cannot while the
    /// buffer lives), the copy ends short.
    pub fn copy_to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for b in &self.bufs {
            if b.copy_into(&mut v).is_err() {
                break;
            }
        }
        v
    }
}

impl From<Buf> for Agg {
    fn from(buf: Buf) -> Self {
        let mut a = Agg::new();
        a.push(buf);
        a
    }
}

impl FromIterator<Buf> for Agg {
    fn from_iter<I: IntoIterator<Item = Buf>>(iter: I) -> Self {
        let mut a = Agg::new();
        for b in iter {
            a.push(b);
        }
        a
    }
}

impl<'a> IntoIterator for &'a Agg {
    type Item = &'a [u8];
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Buf>, fn(&'a Buf) -> &'a [u8]>;
    fn into_iter(self) -> Self::IntoIter {
        self.bufs
            .iter()
            .map(Buf::as_slice as fn(&'a Buf) -> &'a [u8])
    }
}
