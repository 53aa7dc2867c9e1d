//! The audited `unsafe` of the crate: mapping a memfd and viewing the mapping.
//!
//! Every other module works through [`Mapping`]'s methods. Three invariants
//! make the views sound, and the callers in `arena.rs` (regions) and
//! `buf.rs` (the views) uphold them:
//! - a `Mapping` is never unmapped while a view of it is alive (views borrow
//!   the `Mapping`, which lives in an `Arc` held by every buffer);
//! - bytes of a frozen (published) region are never written by this process
//!   until the region is freed, which happens only after its last `Buf` is gone;
//! - a region under construction (a `BufMut`) is reachable from exactly one
//!   `BufMut`, so its mutable view is unique.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use nix::sys::mman::{MapFlags, ProtFlags};

use crate::error::{Error, Result};

/// One `MAP_SHARED` mapping of a whole memfd, with the fd it maps.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    fd: OwnedFd,
}

// SAFETY: a Mapping is a raw pointer to shared memory plus an fd. The pointer
// stays valid until Drop; all access goes through methods whose callers uphold
// the module invariants (no writes to frozen regions, one writer per
// unfrozen region), so sharing the Mapping between threads adds no data race
// that the same accesses from one thread would not have.
unsafe impl Send for Mapping {}
// SAFETY: see the `Send` impl above; `&Mapping` only hands out views under the
// same invariants, and the generation table is accessed through atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps all `len` bytes of `fd` shared, read-write for the owner or
    /// read-only for a receiver.
    pub(crate) fn new(fd: OwnedFd, len: usize, writable: bool) -> Result<Self> {
        let size = NonZeroUsize::new(len).ok_or(Error::BadPool("empty pool"))?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        let ptr = if len >= HUGE_PAGE {
            map_huge_aligned(&fd, size, prot)?
        } else {
            // SAFETY: we map a fresh region chosen by the kernel (addr = None),
            // so no existing Rust object is aliased or replaced; the fd is a
            // memfd whose size the caller has checked (fstat) to be at least
            // `len`, and its seals forbid shrinking, so accesses below `len`
            // never fault with SIGBUS.
            unsafe { nix::sys::mman::mmap(None, size, prot, MapFlags::MAP_SHARED, &fd, 0) }?.cast()
        };
        Ok(Mapping {
            ptr,
            len,
            writable,
            fd,
        })
    }

    /// Length of the mapping in bytes (the memfd's size).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The memfd this mapping maps.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Address of the first byte (for tests that poke at the mapping itself).
    pub(crate) fn addr(&self) -> NonNull<u8> {
        self.ptr
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "mapping view {off}+{len} outside 0..{}",
            self.len
        );
    }

    /// A shared view of `off..off + len`.
    ///
    /// # Safety
    /// Nobody in this process writes these bytes while the view is alive (the
    /// region is frozen, or is the header). Bytes written by another process
    /// through its own mapping are outside Rust's model; pools are written
    /// only by their owner, and only before a region is published.
    pub(crate) unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        self.check(off, len);
        // SAFETY: the range is inside the live mapping (checked above), the
        // memory is initialised (mapped file pages read as their contents or
        // zero), and the caller guarantees no writer in this process.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }

    /// An exclusive, writable view of `off..off + len`.
    ///
    /// # Safety
    /// The caller owns this range exclusively (an unfrozen region held by one
    /// `BufMut`) for the lifetime of the view, and the mapping is writable.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        self.check(off, len);
        assert!(self.writable, "write view of a read-only mapping");
        // SAFETY: in range and initialised as above; the mapping is PROT_WRITE;
        // the caller guarantees exclusive access to the range.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), len) }
    }

    /// The naturally aligned `u32` at `off`, for the generation table.
    pub(crate) fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4);
        assert!(off.is_multiple_of(4), "unaligned atomic");
        // SAFETY: in range, 4-aligned (the mapping is page-aligned), valid for
        // the mapping's lifetime which bounds the returned reference. All
        // accesses to these words are atomic. On a read-only mapping only
        // `load` is ever called (atomic loads of at most pointer size are
        // allowed on read-only memory).
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The naturally aligned `u64` at `off`, for the pool header.
    pub(crate) fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        assert!(off.is_multiple_of(8), "unaligned atomic");
        // SAFETY: as for `atomic_u32`, with 8-byte alignment.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// Asks the kernel to back the whole huge pages inside `off..off + len`
    /// with huge pages (`MADV_COLLAPSE`); returns the bytes now in such
    /// pages, 0 where the kernel cannot (before Linux 6.1, no memory).
    ///
    /// The contents do not change, even for bytes other threads are writing
    /// through this mapping meanwhile: the kernel copies the small pages
    /// into a new huge page and swaps it in under the pages' locks, as
    /// khugepaged does behind every process's back.
    pub(crate) fn collapse(&self, off: usize, len: usize) -> usize {
        self.check(off, len);
        let start = off.next_multiple_of(HUGE_PAGE);
        let end = (off + len) / HUGE_PAGE * HUGE_PAGE;
        let addr = self.ptr.as_ptr() as usize;
        if end <= start || !addr.is_multiple_of(HUGE_PAGE) {
            return 0;
        }
        // SAFETY: the range is inside our live mapping (checked above), and
        // MADV_COLLAPSE neither unmaps it nor changes its bytes; on failure
        // the mapping is left as it was.
        let rc = unsafe {
            libc::madvise(
                addr.wrapping_add(start) as *mut libc::c_void,
                end - start,
                libc::MADV_COLLAPSE,
            )
        };
        if rc == 0 { end - start } else { 0 }
    }

    /// The address of byte `off` and `len` bytes from it, for the kernel to
    /// read ([`IoVec`](crate::IoVec)): no view is made.
    pub(crate) fn raw(&self, off: usize, len: usize) -> crate::IoVec<'_> {
        self.check(off, len);
        crate::iov::IoVec::from_raw(self.ptr.as_ptr().cast_const().wrapping_add(off), len)
    }

    /// Appends `off..off + len` of the memfd to `out`, copied by the kernel
    /// (`pread`): for bytes another process may be writing right now, which
    /// this process must not view.
    pub(crate) fn copy_out(&self, off: usize, len: usize, out: &mut Vec<u8>) -> Result<()> {
        self.check(off, len);
        let start = out.len();
        out.resize(start + len, 0);
        let mut done = 0;
        while done < len {
            match nix::sys::uio::pread(&self.fd, &mut out[start + done..], (off + done) as i64) {
                Ok(0) => {
                    out.truncate(start);
                    return Err(Error::BadPool("memfd shorter than its mapping"));
                }
                Ok(n) => done += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    out.truncate(start);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Copies `off..off + len` with volatile reads: for bytes another process
    /// may be writing right now (an unpublished region).
    pub(crate) fn read_volatile(&self, off: usize, len: usize) -> Vec<u8> {
        self.check(off, len);
        (0..len)
            .map(|i| {
                // SAFETY: in range (checked above) and the mapping is alive; a
                // volatile read makes no claim that the byte is unchanging.
                unsafe { self.ptr.as_ptr().add(off + i).read_volatile() }
            })
            .collect()
    }
}

/// Size of a PMD huge page on x86-64 and 4 KiB-page arm64: the unit
/// `MADV_COLLAPSE` works in.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Maps `fd` shared at an address that is a multiple of [`HUGE_PAGE`], so
/// that file offsets that are multiples of it are too and whole huge pages
/// of the file can be mapped by one page-table entry.
fn map_huge_aligned(fd: &OwnedFd, size: NonZeroUsize, prot: ProtFlags) -> Result<NonNull<u8>> {
    let room = size
        .checked_add(HUGE_PAGE)
        .ok_or(Error::BadPool("pool too large"))?;
    // SAFETY: a fresh, inaccessible, private anonymous reservation chosen by
    // the kernel; nothing aliases it.
    let reserve = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            room,
            ProtFlags::PROT_NONE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
        )
    }?;
    let base = reserve.as_ptr() as usize;
    let aligned = base.next_multiple_of(HUGE_PAGE);
    let head = aligned - base;
    let tail = room.get() - head - size.get();
    let at = NonZeroUsize::new(aligned).ok_or(Error::BadPool("null mapping"))?;
    // SAFETY: `aligned..aligned + size` lies inside the reservation made
    // above, which only this function knows about, so MAP_FIXED replaces
    // nothing but our own PROT_NONE pages. The fd's size was checked by the
    // caller as for an unaligned mapping.
    let mapped = unsafe {
        nix::sys::mman::mmap(
            Some(at),
            size,
            prot,
            MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
            fd,
            0,
        )
    };
    let release = |addr: usize, len: usize| {
        if let (Some(p), true) = (NonNull::new(addr as *mut libc::c_void), len > 0) {
            // SAFETY: the range is part of our reservation outside the file
            // mapping (or, on failure, the whole reservation): no Rust object
            // points into it.
            let _ = unsafe { nix::sys::mman::munmap(p, len) };
        }
    };
    match mapped {
        Ok(p) => {
            release(base, head);
            release(aligned + size.get(), tail);
            Ok(p.cast())
        }
        Err(e) => {
            release(base, room.get());
            Err(e.into())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no view outlives the
        // Mapping (views borrow it), so nothing can touch the range after this.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}
