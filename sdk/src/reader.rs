//! [`BodyReader`]: a request body (an aggregate of slices in the request
//! pool) read with [`std::io::Read`] and [`std::io::BufRead`], slice after
//! slice, in place.

use std::io::{BufRead, Read};

use iolite_ipc::{Agg, Buf};

/// Reads an aggregate's bytes in order. [`BufRead::fill_buf`] hands out
/// the slices themselves (nothing copied: `lines`, `read_until` and
/// parsers that take a `BufRead` look at the request pool's pages);
/// [`Read::read`] copies into the caller's buffer, as `Read` must (counted
/// in the runner's `iolite_ipc::copied::total`).
#[derive(Debug, Clone)]
pub struct BodyReader<'a> {
    bufs: &'a [Buf],
    /// Bytes of `bufs[0]` already consumed.
    offset: usize,
}

impl<'a> BodyReader<'a> {
    /// A reader at the start of `body`.
    pub fn new(body: &'a Agg) -> Self {
        BodyReader {
            bufs: body.bufs(),
            offset: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        let all: usize = self.bufs.iter().map(Buf::len).sum();
        all - self.offset
    }
}

impl BufRead for BodyReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while let Some((first, rest)) = self.bufs.split_first() {
            if self.offset < first.len() {
                let bytes = first.try_as_slice().ok_or_else(|| {
                    std::io::Error::other("a body in a pool this process does not trust")
                })?;
                return Ok(&bytes[self.offset..]);
            }
            self.bufs = rest;
            self.offset = 0;
        }
        Ok(&[])
    }

    fn consume(&mut self, amt: usize) {
        let len = self.bufs.first().map_or(0, Buf::len);
        self.offset = (self.offset + amt).min(len);
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        iolite_ipc::copied::add(n);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::agg;
    use iolite_ipc::Pool;

    #[test]
    fn reads_every_byte_across_slices_table() {
        let pool = Pool::new(1 << 20).unwrap();
        let cases: &[&[&[u8]]] = &[
            &[],
            &[b""],
            &[b"one"],
            &[b"ab", b"", b"cd", b"e"],
            &[b"line 1\nli", b"ne 2\n", b"", b"last"],
        ];
        for parts in cases {
            let body = agg(&pool, parts);
            let want = parts.concat();
            // Read with a 3-byte buffer.
            let mut r = BodyReader::new(&body);
            assert_eq!(r.remaining(), want.len());
            let mut got = Vec::new();
            let mut buf = [0u8; 3];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, want, "{parts:?}");
            assert_eq!(r.remaining(), 0);
            // BufRead: lines across slice boundaries.
            let lines: Vec<String> = BodyReader::new(&body).lines().map(Result::unwrap).collect();
            let want_lines: Vec<String> = String::from_utf8(want.clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(lines, want_lines, "{parts:?}");
        }
    }

    #[test]
    fn fill_buf_hands_out_the_pool_slices_themselves() {
        let pool = Pool::new(1 << 20).unwrap();
        let body = agg(&pool, &[b"abc", b"defg"]);
        let mut r = BodyReader::new(&body);
        let first = r.fill_buf().unwrap();
        assert_eq!(first.as_ptr(), body.bufs()[0].as_slice().as_ptr());
        r.consume(2);
        assert_eq!(r.fill_buf().unwrap(), b"c");
        // Consuming past a slice stops at its end.
        r.consume(10);
        let second = r.fill_buf().unwrap();
        assert_eq!(second.as_ptr(), body.bufs()[1].as_slice().as_ptr());
        assert_eq!(second, b"defg");
        let mut rest = Vec::new();
        r.read_until(b'x', &mut rest).unwrap();
        assert_eq!(rest, b"defg");
        assert_eq!(r.fill_buf().unwrap(), b"");
    }
}
