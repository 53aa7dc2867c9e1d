//! The body as the send path sees it: [`Chunk`]s in order — bytes of
//! this process, slices of pool buffers, file ranges — gathered by the
//! plain path into writev and sendfile, copied by the TLS path into
//! records. Bodies whose parts come later (streams, descriptors) have no
//! chunks: the send path waits for them itself.

use std::os::fd::{AsFd, BorrowedFd};

use crate::response::Body;

/// One piece of a body as the send path sees it.
#[derive(Debug, Clone, Copy)]
pub enum Chunk<'a> {
    /// Bytes of this process's own memory (a static text, generated
    /// bytes, a multipart head).
    Mem(&'a [u8]),
    /// `len` bytes from `start` of a pool buffer: the plain send path
    /// hands them to the kernel by address ([`Buf::io_vec_range`]); the
    /// TLS one copies them out ([`Buf::copy_into`]), never viewing a
    /// module's pool as a `&[u8]`.
    ///
    /// [`Buf::io_vec_range`]: iolite_ipc::Buf::io_vec_range
    /// [`Buf::copy_into`]: iolite_ipc::Buf::copy_into
    Pool {
        buf: &'a iolite_ipc::Buf,
        start: usize,
        len: usize,
    },
    /// `len` bytes of a file (or memfd) from `offset`.
    File {
        fd: BorrowedFd<'a>,
        offset: u64,
        len: u64,
    },
}

impl Body {
    /// The body as send-path chunks, in order.
    pub fn chunks(&self) -> Chunks<'_> {
        match self {
            Body::Empty => Chunks::One(None),
            Body::Static(b) => Chunks::One(Some(Chunk::Mem(b))),
            Body::Bytes(b) => Chunks::One(Some(Chunk::Mem(b))),
            Body::File(f) => Chunks::One(Some(Chunk::File {
                fd: f.file.as_fd(),
                offset: f.offset,
                len: f.len,
            })),
            Body::Cached { body, offset, len } => Chunks::Pool {
                bufs: body.agg().bufs(),
                skip: *offset,
                left: *len,
            },
            Body::Agg(agg) => Chunks::Pool {
                bufs: agg.bufs(),
                skip: 0,
                left: agg.len() as u64,
            },
            Body::Multipart(m) => {
                let (parts, tail) = m.pieces();
                Chunks::Parts(Box::new(PartChunks {
                    parts: Box::new(parts),
                    current: Chunks::One(None),
                    tail: Some(tail),
                }))
            }
            // Their parts arrive later: see `send_response_framed`.
            Body::Stream(_) | Body::Fd(_) => Chunks::One(None),
        }
    }
}

/// The chunks of a [`Body`]: at most one for most bodies, one per slice of
/// the range for a cached body or an aggregate.
///
/// Pool slices (the cache's, a module's) are written from memory: the
/// kernel copies them into the socket during the write, no copy in user
/// space. They are not handed to the socket by page reference (`sendfile`
/// from the pool's memfd): the socket keeps such pages after the call
/// returns — in its queue until the peer acknowledges them and, for a peer
/// on this host (loopback, veth), in the peer's receive queue until it
/// reads them — while a pool reuses the space as soon as the last
/// [`Buf`](iolite_ipc::Buf) into it is dropped (a module's pools at the
/// next request, the cache after an eviction): a slow reader would receive
/// what was written there since (tests/modules.rs and tests/cache.rs show
/// it). By reference needs the buffers held until the kernel has released
/// their pages, which only `MSG_ZEROCOPY` completions report.
#[derive(Debug)]
pub enum Chunks<'a> {
    One(Option<Chunk<'a>>),
    Pool {
        bufs: &'a [iolite_ipc::Buf],
        /// Bytes still to skip before the range starts.
        skip: u64,
        /// Bytes of the range still to yield.
        left: u64,
    },
    /// A multipart body: each part's head, then its chunks, then the close
    /// delimiter.
    Parts(Box<PartChunks<'a>>),
}

/// Where [`Chunks::Parts`] is in a [`crate::response::MultipartBody`].
pub struct PartChunks<'a> {
    parts: Box<dyn Iterator<Item = (&'a [u8], &'a Body)> + 'a>,
    /// The chunks of the part whose head went out last.
    current: Chunks<'a>,
    /// The close delimiter, until it has gone.
    tail: Option<&'a [u8]>,
}

impl std::fmt::Debug for PartChunks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartChunks")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl<'a> PartChunks<'a> {
    fn next(&mut self) -> Option<Chunk<'a>> {
        if let Some(chunk) = self.current.next() {
            return Some(chunk);
        }
        match self.parts.next() {
            Some((head, body)) => {
                self.current = body.chunks();
                Some(Chunk::Mem(head))
            }
            None => self.tail.take().map(Chunk::Mem),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        match self {
            Chunks::One(chunk) => chunk.take(),
            Chunks::Parts(parts) => parts.next(),
            Chunks::Pool { bufs, skip, left } => loop {
                if *left == 0 {
                    return None;
                }
                let (buf, rest) = bufs.split_first()?;
                *bufs = rest;
                let blen = buf.len() as u64;
                if *skip >= blen {
                    *skip -= blen;
                    continue;
                }
                let start = *skip as usize;
                let take = (blen - *skip).min(*left) as usize;
                *skip = 0;
                *left -= take as u64;
                return Some(Chunk::Pool {
                    buf,
                    start,
                    len: take,
                });
            },
        }
    }
}
