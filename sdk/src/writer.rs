//! [`Writer`]: bytes a module produces, written once into its output
//! pool, in chunks that grow as the answer does.

use iolite_ipc::{Agg, BufMut, Pool};

/// The first chunk a [`Writer`] allocates; later chunks double up to
/// [`MAX_CHUNK`].
const MIN_CHUNK: usize = 4096;
const MAX_CHUNK: usize = 1 << 20;

/// Writes into the output pool in chunks; [`finish`](Writer::finish) turns
/// what was written into an [`Agg`]. Implements [`std::io::Write`] and
/// [`std::fmt::Write`] (so `write!` works); writes fail only when the pool
/// is exhausted.
#[derive(Debug)]
pub struct Writer<'a> {
    pool: &'a Pool,
    cur: Option<BufMut>,
    done: Agg,
    written: usize,
}

impl<'a> Writer<'a> {
    /// A writer into `pool`.
    pub(crate) fn new(pool: &'a Pool) -> Self {
        Writer {
            pool,
            cur: None,
            done: Agg::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// What was written, as an aggregate of output-pool buffers.
    pub fn finish(mut self) -> Agg {
        if let Some(cur) = self.cur.take() {
            self.done.push(cur.freeze());
        }
        std::mem::take(&mut self.done)
    }

    fn room(&mut self, want: usize) -> std::io::Result<&mut BufMut> {
        let full = self.cur.as_ref().is_none_or(|c| c.remaining() == 0);
        if full {
            if let Some(cur) = self.cur.take() {
                self.done.push(cur.freeze());
            }
            let size = self
                .written
                .clamp(MIN_CHUNK, MAX_CHUNK)
                .max(want.min(MAX_CHUNK));
            let buf = self
                .pool
                .alloc(size)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
            self.cur = Some(buf);
        }
        Ok(self.cur.as_mut().expect("a chunk was just ensured"))
    }
}

impl std::io::Write for Writer<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let cur = self.room(data.len())?;
        let n = cur.remaining().min(data.len());
        cur.extend_from_slice(&data[..n])
            .map_err(std::io::Error::other)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        std::io::Write::write_all(self, s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn writer(pool: &Pool) -> Writer<'_> {
        Writer::new(pool)
    }

    #[test]
    fn the_writer_keeps_every_byte_in_order_table() {
        let pool = Pool::new(16 << 20).unwrap();
        let cases: &[&[usize]] = &[
            &[],
            &[1],
            &[4096],
            &[4097],
            &[3, 4093, 1, 5000],
            &[1 << 20, 1, (1 << 20) + 7],
            &[100; 200],
        ];
        for sizes in cases {
            let mut w = writer(&pool);
            let mut want = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let chunk: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                w.write_all(&chunk).unwrap();
                want.extend_from_slice(&chunk);
            }
            assert_eq!(w.len(), want.len());
            let agg = w.finish();
            assert_eq!(agg.copy_to_vec(), want, "{sizes:?}");
            // Chunks grow: never more buffers than writes plus doublings.
            assert!(agg.bufs().len() <= sizes.len() + 12, "{sizes:?}");
        }
    }

    #[test]
    fn the_writer_formats_and_fails_cleanly_when_the_pool_is_full() {
        let pool = Pool::new(64 << 10).unwrap();
        let mut w = writer(&pool);
        std::fmt::Write::write_fmt(&mut w, format_args!("{}-{}", 1, "a")).unwrap();
        assert_eq!(w.finish().copy_to_vec(), b"1-a");
        let mut w = writer(&pool);
        let big = vec![7u8; 1 << 20];
        let err = w.write_all(&big).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
        assert!(std::fmt::Write::write_str(&mut writer(&pool), &"x".repeat(1 << 20)).is_err());
    }
}
