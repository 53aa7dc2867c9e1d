//! The sinks core supplies for whole bodies: [`Discard`] (a request
//! answered without its body), [`VecSink`] (into memory, for handlers that
//! parse the body themselves) and [`PoolSink`] (into a pool buffer: a
//! module's request pool, shared read-only with the module's processes).
//! The filled body is taken from the handle each returns with the sink
//! ([`VecBody`], [`PoolBody`]) once the pump finished it.

use std::cell::RefCell;
use std::rc::Rc;

use iolite_ipc::{Agg, BufMut, Pool};

use super::sink::{BodySink, FinishFuture, ReadyFuture};
use crate::error::Error;

/// Most bytes a whole sink of unknown length grows by at a time.
const GROW: usize = 64 << 10;

/// Reads the body and throws it away (the default for handlers that do not
/// want it).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl BodySink for Discard {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async { Ok(true) })
    }

    /// Never asked for: the pump drops discarded bytes in its own buffer.
    fn space(&mut self, _max: usize) -> &mut [u8] {
        &mut []
    }

    fn advance(&mut self, _n: usize) {}

    fn discards(&self) -> bool {
        true
    }
}

/// The body a [`VecSink`] filled, once it is complete.
#[derive(Debug, Clone, Default)]
pub struct VecBody(Rc<RefCell<Option<Vec<u8>>>>);

impl VecBody {
    /// The whole body; `None` until the body is complete (or if it ended
    /// short), and after it was taken.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.borrow_mut().take()
    }
}

/// A whole body into memory (read straight into the vector, not copied,
/// unless it came with the head or chunked).
#[derive(Debug)]
pub struct VecSink {
    bytes: Vec<u8>,
    /// Bytes of `bytes` filled (the rest is room handed out by `space`).
    filled: usize,
    /// Bytes still to come, when the length is known.
    left: Option<u64>,
    done: VecBody,
}

impl VecSink {
    /// A sink for a body of `len` bytes (None: unknown), and the handle the
    /// body is taken from once complete.
    pub fn new(len: Option<u64>) -> (VecSink, VecBody) {
        let done = VecBody::default();
        let capacity = len.map_or(0, |n| usize::try_from(n).unwrap_or(0).min(1 << 30));
        let sink = VecSink {
            bytes: Vec::with_capacity(capacity),
            filled: 0,
            left: len,
            done: done.clone(),
        };
        (sink, done)
    }
}

impl BodySink for VecSink {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async { Ok(true) })
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        let left = self
            .left
            .map_or(GROW, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let want = max.min(left).clamp(1, GROW);
        self.bytes.resize(self.filled + want, 0);
        &mut self.bytes[self.filled..]
    }

    fn advance(&mut self, n: usize) {
        self.filled += n;
        if let Some(left) = self.left.as_mut() {
            *left = left.saturating_sub(n as u64);
        }
    }

    fn finish(&mut self) -> FinishFuture<'_> {
        self.bytes.truncate(self.filled);
        *self.done.0.borrow_mut() = Some(std::mem::take(&mut self.bytes));
        Box::pin(async { Ok(()) })
    }
}

/// The body a [`PoolSink`] filled, once it is complete.
#[derive(Debug, Clone, Default)]
pub struct PoolBody(Rc<RefCell<Option<Agg>>>);

impl PoolBody {
    /// The whole body as slices of the pool; `None` until the body is
    /// complete (or if it ended short), and after it was taken.
    pub fn take(&self) -> Option<Agg> {
        self.0.borrow_mut().take()
    }
}

/// A whole body into a pool: one buffer of the body's length, or (chunked)
/// a buffer at a time of at least 64 KiB. Read straight into the pool with
/// `read(2)`; what came with the head, and chunked data, is copied in
/// (counted).
#[derive(Debug)]
pub struct PoolSink {
    pool: Pool,
    /// The buffer being filled.
    current: Option<BufMut>,
    /// Filled buffers of a chunked body.
    full: Agg,
    done: PoolBody,
    /// Why the pool has no room, when it has none.
    full_reason: &'static str,
}

impl PoolSink {
    /// A sink for a body of `len` bytes (None: unknown, chunked) in `pool`,
    /// and the handle the body is taken from once complete. A body of
    /// known length gets its buffer now: 503 (`full`, as the reason) when
    /// the pool has no room for it.
    pub fn new(
        pool: &Pool,
        len: Option<u64>,
        full: &'static str,
    ) -> Result<(PoolSink, PoolBody), Error> {
        let current = match len {
            Some(len) => {
                let len = usize::try_from(len).map_err(|_| Error::BodyTooLarge)?;
                Some(pool.alloc(len).map_err(|_| Error::Unavailable(full))?)
            }
            None => None,
        };
        let done = PoolBody::default();
        let sink = PoolSink {
            pool: pool.clone(),
            current,
            full: Agg::new(),
            done: done.clone(),
            full_reason: full,
        };
        Ok((sink, done))
    }
}

impl BodySink for PoolSink {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async move {
            if self.current.as_ref().is_some_and(|b| b.remaining() > 0) {
                return Ok(true);
            }
            // A chunked body's next buffer (a body of known length never
            // asks for more than its buffer holds).
            if let Some(filled) = self.current.take() {
                self.full.push(filled.freeze());
            }
            let buf = self
                .pool
                .alloc(GROW)
                .map_err(|_| Error::Unavailable(self.full_reason))?;
            self.current = Some(buf);
            Ok(true)
        })
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        match self.current.as_mut() {
            Some(buf) => {
                let spare = buf.spare_mut();
                let n = spare.len().min(max);
                &mut spare[..n]
            }
            None => &mut [],
        }
    }

    fn advance(&mut self, n: usize) {
        if let Some(buf) = self.current.as_mut() {
            // `n` came from a fill of `space`: it fits.
            let _ = buf.advance(n);
        }
    }

    fn finish(&mut self) -> FinishFuture<'_> {
        let mut body = std::mem::take(&mut self.full);
        if let Some(last) = self.current.take() {
            body.push(last.freeze());
        }
        *self.done.0.borrow_mut() = Some(body);
        Box::pin(async { Ok(()) })
    }
}
