//! `BufMut`, the owner's builder, and `Buf`, the immutable shared slice it
//! freezes into.

use std::fmt;
use std::ops::{Bound, Deref, DerefMut, RangeBounds};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::arena::Region;
use crate::error::{Error, Result};

/// Resolves `range` against `len`, or says why it does not fit.
pub(crate) fn resolve(range: impl RangeBounds<usize>, len: usize) -> Result<(usize, usize)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    if start > end || end > len {
        return Err(Error::RangeOutOfBounds { start, end, len });
    }
    Ok((start, end))
}

/// A writable buffer in a pool this process owns: the only way bytes get into
/// a pool. Fill it (`Write`, `extend_from_slice`, or `spare_mut` + `advance`
/// for `read(2)` straight into the pool), then [`freeze`](BufMut::freeze) it.
///
/// Writing into a `BufMut` is where data *enters* the pool; a caller that
/// fills it from another user-space buffer of body bytes should count that
/// with [`copied::add`](crate::copied::add).
pub struct BufMut {
    region: Region,
    len: usize,
}

impl BufMut {
    pub(crate) fn new(region: Region) -> Self {
        BufMut { region, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total room of the allocation (at least what was asked for).
    pub fn capacity(&self) -> usize {
        self.region.cap
    }

    /// Offset of the buffer's first byte in the pool's memfd.
    pub fn fd_offset(&self) -> u64 {
        self.region.base as u64
    }

    /// The id of the pool the buffer lives in.
    pub fn pool_id(&self) -> u64 {
        self.region.shared.id
    }

    /// Room left after what has been written.
    pub fn remaining(&self) -> usize {
        self.region.cap - self.len
    }

    fn whole_mut(&mut self) -> &mut [u8] {
        // SAFETY: this BufMut owns the region exclusively: a region reaches a
        // Buf (or any descriptor) only through `freeze`, which consumes self,
        // and `&mut self` makes this view unique within the process. The owner's
        // mapping is writable and the region lies inside it.
        unsafe {
            self.region
                .shared
                .map
                .bytes_mut(self.region.base, self.region.cap)
        }
    }

    /// The unwritten rest of the allocation, to be filled (for example by
    /// `read(2)`) and then committed with [`advance`](BufMut::advance). Its
    /// bytes hold whatever a previous buffer left there.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.whole_mut()[len..]
    }

    /// Marks `n` more bytes of [`spare_mut`](BufMut::spare_mut) as written.
    pub fn advance(&mut self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(Error::RangeOutOfBounds {
                start: self.len,
                end: self.len.saturating_add(n),
                len: self.region.cap,
            });
        }
        self.len += n;
        Ok(())
    }

    /// Appends `data`, or fails without writing if it does not fit.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> Result<()> {
        if data.len() > self.remaining() {
            return Err(Error::RangeOutOfBounds {
                start: self.len,
                end: self.len.saturating_add(data.len()),
                len: self.region.cap,
            });
        }
        self.spare_mut()[..data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(())
    }

    /// Forgets what was written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Moves the 2 MiB chunks of the pool that this buffer touches into
    /// huge pages (`MADV_COLLAPSE`, Linux 6.1+), whatever the system's shmem
    /// THP setting; returns the bytes of those chunks now in huge pages (0
    /// where the kernel cannot, or in a pool under 2 MiB). Chunks already
    /// moved cost an atomic load; a chunk is moved at most once in the
    /// pool's life. Neighbouring buffers in the same chunk keep their bytes.
    ///
    /// For pools of long-lived buffers sent many times with `sendfile`, such
    /// as a file cache: the kernel then looks pages up once per 2 MiB
    /// instead of once per 4 KiB. Moving a chunk costs about one copy of it
    /// and backs all of it with memory, so it suits pools that are meant to
    /// fill up; the pool's data area starts on a 2 MiB boundary, and buffers
    /// of 2 MiB and more are placed on one where a free run allows.
    pub fn collapse_huge_pages(&self) -> usize {
        self.region
            .shared
            .collapse_chunks(self.region.base, self.region.cap)
    }

    /// Ends writing: the bytes written become an immutable [`Buf`].
    pub fn freeze(self) -> Buf {
        let len = self.len;
        let region = Arc::new(self.region);
        Buf {
            start: region.base,
            len,
            region,
        }
    }
}

impl Deref for BufMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: as in `whole_mut`, the region is exclusively ours; a shared
        // borrow of self means no mutable view is alive.
        unsafe { self.region.shared.map.bytes(self.region.base, self.len) }
    }
}

impl DerefMut for BufMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.whole_mut()[..len]
    }
}

impl std::io::Write for BufMut {
    /// Writes what fits; `Ok(0)` once full (so `write_all` fails with `WriteZero`).
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.remaining());
        self.spare_mut()[..n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for BufMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufMut")
            .field("pool", &format_args!("{:#x}", self.region.shared.id))
            .field("offset", &self.region.base)
            .field("len", &self.len)
            .field("capacity", &self.region.cap)
            .finish()
    }
}

/// An immutable, reference-counted slice of a pool: (pool, offset, len,
/// generation). Cloning and slicing never touch the bytes; the region is freed
/// (or its lease released) when the last `Buf` into it is dropped.
#[derive(Clone)]
pub struct Buf {
    region: Arc<Region>,
    start: usize,
    len: usize,
}

impl Buf {
    pub(crate) fn from_region(region: Arc<Region>, start: usize, len: usize) -> Self {
        Buf { region, start, len }
    }

    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    ///
    /// # Panics
    /// For a buffer of an untrusted peer's pool ([`Buf::is_untrusted`]):
    /// its owner may write them at any time, so they are never viewed as a
    /// `&[u8]` here. Send them with [`io_vec`](Buf::io_vec), or copy them
    /// with [`copy_into`](Buf::copy_into).
    pub fn as_slice(&self) -> &[u8] {
        self.try_as_slice().unwrap_or_else(|| {
            panic!("a slice of an untrusted peer's pool: use io_vec or copy_into")
        })
    }

    /// The bytes, unless the buffer is of an untrusted peer's pool (see
    /// [`as_slice`](Buf::as_slice)).
    pub fn try_as_slice(&self) -> Option<&[u8]> {
        if self.region.untrusted() {
            return None;
        }
        // SAFETY: the range lies inside the region (kept by construction and
        // by `slice`), the region is frozen, and `self.region` keeps both the
        // region (so it is not freed and rewritten) and the mapping alive.
        // The pool's owner is this process or a peer trusted not to write
        // published regions (the untrusted case returned above).
        Some(unsafe { self.region.shared.map.bytes(self.start, self.len) })
    }

    /// Whether the buffer is of a pool whose owner this process does not
    /// trust ([`Peer::distrust`](crate::Peer::distrust)): it offers no
    /// `&[u8]`, only [`io_vec`](Buf::io_vec) and [`copy_into`](Buf::copy_into).
    pub fn is_untrusted(&self) -> bool {
        self.region.untrusted()
    }

    /// The bytes as an [`IoVec`](crate::IoVec), for the kernel to read
    /// ([`iov::send`](crate::iov::send)): any buffer, an untrusted one
    /// included.
    pub fn io_vec(&self) -> crate::IoVec<'_> {
        self.region.shared.map.raw(self.start, self.len)
    }

    /// `len` bytes from `start` of the buffer as an [`IoVec`](crate::IoVec).
    ///
    /// # Panics
    /// If the range is not inside the buffer.
    pub fn io_vec_range(&self, start: usize, len: usize) -> crate::IoVec<'_> {
        assert!(
            start.checked_add(len).is_some_and(|e| e <= self.len),
            "range {start}+{len} outside a buffer of {}",
            self.len
        );
        self.region.shared.map.raw(self.start + start, len)
    }

    /// Appends the bytes to `out`, and counts them in
    /// [`copied`](crate::copied): the copy-out for the few paths that need
    /// body bytes in user space. An untrusted buffer's bytes are copied by
    /// the kernel (`pread` from its memfd), never viewed.
    pub fn copy_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match self.try_as_slice() {
            Some(bytes) => out.extend_from_slice(bytes),
            None => self.region.shared.map.copy_out(self.start, self.len, out)?,
        }
        crate::copied::add(self.len);
        Ok(())
    }

    /// A sub-slice sharing the same memory; nothing is copied.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Buf> {
        let (s, e) = resolve(range, self.len)?;
        Ok(Buf {
            region: self.region.clone(),
            start: self.start + s,
            len: e - s,
        })
    }

    /// The id of the pool the bytes live in.
    pub fn pool_id(&self) -> u64 {
        self.region.shared.id
    }

    /// Offset of the first byte in the pool's memfd (for `sendfile` from
    /// [`fd`](Buf::fd)).
    pub fn fd_offset(&self) -> u64 {
        self.start as u64
    }

    /// The pool's memfd, for `sendfile(sock, buf.fd(), buf.fd_offset(), buf.len())`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.shared.map.fd()
    }

    /// The generation of the region: (pool, offset, generation) names these
    /// bytes uniquely, so derived data can be cached under it.
    pub fn generation(&self) -> u32 {
        self.region.generation
    }

    /// Offset of the region (allocation) this slice points into.
    pub fn region_offset(&self) -> u64 {
        self.region.base as u64
    }

    /// Whether this is the last handle to its region: no other `Buf` (in
    /// this process: a peer's lease of it included) points into it, so
    /// dropping it frees the space (or releases the lease).
    pub fn is_unique(&self) -> bool {
        Arc::strong_count(&self.region) == 1
    }

    /// Whether `other` is the same bytes of the same region (not just equal bytes).
    pub fn same_as(&self, other: &Buf) -> bool {
        std::ptr::eq(self.region.origin(), other.region.origin())
            && self.start == other.start
            && self.len == other.len
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf")
            .field("pool", &format_args!("{:#x}", self.pool_id()))
            .field("offset", &self.start)
            .field("len", &self.len)
            .field("generation", &self.generation())
            .finish()
    }
}
