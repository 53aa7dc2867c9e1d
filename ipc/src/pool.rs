//! Pools, as their users hold them: [`Pool`] (owned, sealed memfd, the
//! only source of writable buffers) and [`RemotePool`] (another process's,
//! mapped read-only). The memfd layout and the regions allocated in it are
//! `arena`'s.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::arena::Shared;
use crate::buf::BufMut;
use crate::error::{Error, Result};

/// A pool: one sealed memfd arena that this process owns and writes.
///
/// Cheap to clone (all clones are the same pool). Buffers keep the pool's
/// memory alive, so dropping every `Pool` handle while buffers live is fine.
#[derive(Debug, Clone)]
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
}

/// A snapshot of a pool's space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of the data area.
    pub capacity: usize,
    /// Bytes taken by live allocations (each rounded up to its slot or pages).
    pub allocated: usize,
    /// `capacity - allocated`.
    pub free: usize,
    /// Bytes in free whole-page runs (room for large buffers).
    pub free_pages: usize,
    /// Number of live allocations.
    pub live: usize,
}

impl Pool {
    /// Creates a pool whose data area holds `capacity` bytes (rounded up to
    /// whole pages). The memfd is sealed (FUTURE_WRITE, SHRINK, GROW, SEAL)
    /// before this returns, so its fd can be sent at once.
    pub fn new(capacity: usize) -> Result<Pool> {
        Pool::with_name("iolite-pool", capacity)
    }

    /// As [`Pool::new`], naming the memfd (visible in `/proc/PID/fd`).
    pub fn with_name(name: &str, capacity: usize) -> Result<Pool> {
        Ok(Pool {
            shared: Arc::new(Shared::create(name, capacity)?),
        })
    }

    /// A memfd for a pool of `capacity` bytes that another process will
    /// own ([`Pool::adopt`]): sized, sealed against shrinking and growing,
    /// nothing written yet. A runner makes its module's output pool this
    /// way, before its sandbox forbids `memfd_create`.
    pub fn memfd(name: &str, capacity: usize) -> Result<std::os::fd::OwnedFd> {
        crate::arena::memfd_for(name, capacity)
    }

    /// Makes the memfd `fd` ([`Pool::memfd`] with the same `capacity`) a
    /// pool this process owns: maps it, writes its header, adds the seals
    /// that make it shareable. Refuses a memfd of another size, or one
    /// already sealed otherwise.
    pub fn adopt(fd: std::os::fd::OwnedFd, capacity: usize) -> Result<Pool> {
        Ok(Pool {
            shared: Arc::new(Shared::adopt(fd, capacity)?),
        })
    }

    /// The pool's id, unique on this host while the pool lives.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> usize {
        self.shared.data_len
    }

    /// The sealed memfd (for sending to other processes, or as the source of
    /// `sendfile`: a buffer's [`Buf::fd_offset`](crate::Buf::fd_offset) is its
    /// position in this file).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.map.fd()
    }

    /// Size of the memfd (header and data area).
    pub fn memfd_size(&self) -> u64 {
        self.shared.map.len() as u64
    }

    /// Reserves a writable buffer of at least `capacity` bytes. Small requests
    /// (≤ 2048) share pages in size-class slabs; larger ones get whole pages.
    ///
    /// # Errors
    /// [`Error::PoolExhausted`] when there is no room: the caller backs off.
    pub fn alloc(&self, capacity: usize) -> Result<BufMut> {
        self.shared.alloc(capacity).map(BufMut::new)
    }

    /// A snapshot of the pool's space.
    pub fn stats(&self) -> PoolStats {
        let Some(a) = self.shared.allocator() else {
            return PoolStats {
                capacity: self.capacity(),
                allocated: 0,
                free: self.capacity(),
                free_pages: 0,
                live: 0,
            };
        };
        PoolStats {
            capacity: a.capacity(),
            allocated: a.allocated(),
            free: a.capacity() - a.allocated(),
            free_pages: a.free_run_bytes(),
            live: a.live(),
        }
    }

    /// Free bytes of the data area (`stats().free`).
    pub fn free_bytes(&self) -> usize {
        self.stats().free
    }
}

/// A read-only mapping of a pool another process owns, as received over a
/// [`Peer`](crate::Peer).
#[derive(Debug, Clone)]
pub struct RemotePool {
    pub(crate) shared: Arc<Shared>,
}

impl RemotePool {
    /// The pool's id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The received memfd (sealed; checked before mapping).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.map.fd()
    }

    /// Size of the memfd.
    pub fn memfd_size(&self) -> u64 {
        self.shared.map.len() as u64
    }

    /// Bytes of the data area (what its owner asked for, rounded up to
    /// whole pages).
    pub fn capacity(&self) -> usize {
        self.shared.data_len
    }

    /// Address of the read-only mapping (for tests that probe its protection).
    pub fn mapping_addr(&self) -> std::ptr::NonNull<u8> {
        self.shared.map.addr()
    }

    /// Copies raw bytes at `offset` (absolute in the memfd) with volatile
    /// reads, published or not. A diagnostic: it counts as copied bytes.
    pub fn read_raw(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.shared.map.len()) {
            return Err(Error::RangeOutOfBounds {
                start: offset,
                end: end.unwrap_or(usize::MAX),
                len: self.shared.map.len(),
            });
        }
        crate::copied::add(len);
        Ok(self.shared.map.read_volatile(offset, len))
    }
}

impl AsFd for Pool {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}
