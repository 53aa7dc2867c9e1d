//! A pool's arena as this process maps it: the memfd's header and
//! generation table, the owner's allocator, and the regions (allocations)
//! that buffers and leases hold. `pool`, `buf` and `lease` all sit on top of
//! it, so none of them needs another's types.
//!
//! Memfd layout (all offsets absolute in the memfd, which is what descriptors
//! and `sendfile` use):
//!
//! | offset | what |
//! |---|---|
//! | 0 | magic `IOLITEP1` (u64) |
//! | 8 | layout version (u64) |
//! | 16 | pool id (u64) |
//! | 24 | memfd size (u64) |
//! | 32 | data offset (u64) |
//! | 40 | data length (u64) |
//! | 48 | granule (u64) |
//! | 64 | generation table: one u32 per granule of the data area |
//! | data offset | the data area (page-aligned; 2 MiB-aligned when it is at least 2 MiB) |
//!
//! The owner bumps a region's generation word when it allocates the region
//! and again when it frees it, so a live region's generation differs from every
//! generation it had before; receivers read the same word through their
//! read-only mapping to reject stale descriptors.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use memfd::{FileSeal, MemfdOptions};

use crate::alloc::{Allocator, GRANULE, PAGE};
use crate::error::{Error, Result};
use crate::release::ReleaseQueue;
use crate::sys::{HUGE_PAGE, Mapping};

const MAGIC: u64 = u64::from_le_bytes(*b"IOLITEP1");
const LAYOUT_VERSION: u64 = 2;
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_ID: usize = 16;
const H_SIZE: usize = 24;
const H_DATA_OFF: usize = 32;
const H_DATA_LEN: usize = 40;
const H_GRANULE: usize = 48;
const TABLE_OFF: usize = 64;

/// The seals every shared pool carries.
pub(crate) const REQUIRED_SEALS: i32 =
    libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Largest data area a pool may have (the allocator counts pages in u32 and
/// the generation table must stay a small fraction of memory).
pub const MAX_POOL_BYTES: usize = 1 << 40;

fn header_len(data_len: usize) -> usize {
    (TABLE_OFF + 4 * (data_len / GRANULE)).next_multiple_of(PAGE)
}

/// Where the data area starts: after the header, and at a multiple of
/// [`HUGE_PAGE`] when the area can hold one, so that large buffers can be
/// aligned to huge pages (the pages in between are never touched: a memfd
/// hole costs no memory).
fn data_offset(data_len: usize) -> usize {
    let header = header_len(data_len);
    if data_len >= HUGE_PAGE {
        header.next_multiple_of(HUGE_PAGE)
    } else {
        header
    }
}

/// The data offset, data length and memfd size of a pool of `capacity`.
fn layout(capacity: usize) -> Result<(usize, usize, usize)> {
    if capacity == 0 || capacity > MAX_POOL_BYTES {
        return Err(Error::InvalidConfig(
            "pool capacity must be 1 byte ..= 1 TiB",
        ));
    }
    if nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        != Some(PAGE as _)
    {
        return Err(Error::InvalidConfig("system page size is not 4096"));
    }
    let data_len = capacity.next_multiple_of(PAGE);
    let data_off = data_offset(data_len);
    Ok((data_off, data_len, data_off + data_len))
}

/// A memfd for a pool of `capacity` bytes, sized and sealed against
/// shrinking and growing, not yet written: the process that makes it can
/// hand it to another one (a runner to its module) that makes it its pool
/// ([`Shared::adopt`]) without being able to make memfds itself.
pub(crate) fn memfd_for(name: &str, capacity: usize) -> Result<OwnedFd> {
    let (_, _, size) = layout(capacity)?;
    let memfd = MemfdOptions::default()
        .allow_sealing(true)
        .close_on_exec(true)
        .create(name)
        .map_err(memfd_error)?;
    memfd.as_file().set_len(size as u64)?;
    memfd
        .add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow])
        .map_err(memfd_error)?;
    Ok(memfd.into_file().into())
}

/// A pool id: a random half drawn once per process, then a count. Not the
/// pid: runners each live in a PID namespace of their own, where every
/// runner is pid 2, and a runner's ids must not be taken for the server's
/// (a pool shared under one of this side's ids is refused).
fn new_pool_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    static HIGH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let high = *HIGH.get_or_init(|| {
        // RandomState's keys come from the OS's random source.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        (h.finish() >> 32).max(1)
    });
    (high << 32) | u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One mapping of a pool: the owner's (writable, with its allocator) or a
/// receiver's (read-only).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) map: Mapping,
    pub(crate) data_off: usize,
    pub(crate) data_len: usize,
    alloc: Option<Mutex<Allocator>>,
    /// Owner only: one flag per whole 2 MiB chunk of the data area, set
    /// once the chunk has been moved into a huge page.
    huge: Box<[AtomicBool]>,
    /// Receivers that check what a descriptor names ([`check_written`]):
    /// one bit per page of the memfd, set once the page was found written
    /// (made when first needed).
    ///
    /// [`check_written`]: Shared::check_written
    written: OnceLock<Box<[AtomicU64]>>,
}

impl Shared {
    /// Moves the whole 2 MiB chunks of the data area that `base..base + len`
    /// (absolute) touches into huge pages, skipping those already moved;
    /// returns the bytes of the range's chunks now in huge pages.
    pub(crate) fn collapse_chunks(&self, base: usize, len: usize) -> usize {
        if len == 0 || self.huge.is_empty() {
            return 0;
        }
        let first = (base - self.data_off) / HUGE_PAGE;
        let last = (base - self.data_off + len - 1) / HUGE_PAGE;
        let mut done = 0;
        for (i, flag) in self.huge.iter().enumerate().take(last + 1).skip(first) {
            if flag.load(Ordering::Relaxed)
                || self.map.collapse(self.data_off + i * HUGE_PAGE, HUGE_PAGE) == HUGE_PAGE
            {
                flag.store(true, Ordering::Relaxed);
                done += HUGE_PAGE;
            }
        }
        done
    }

    fn generation_word(&self, base: usize) -> &AtomicU32 {
        self.map
            .atomic_u32(TABLE_OFF + 4 * ((base - self.data_off) / GRANULE))
    }

    /// The current generation of the region starting at `base` (absolute).
    pub(crate) fn generation(&self, base: usize) -> u32 {
        self.generation_word(base).load(Ordering::Acquire)
    }

    fn bump_generation(&self, base: usize) -> u32 {
        let word = self.generation_word(base);
        let mut next = word.load(Ordering::Relaxed).wrapping_add(1);
        if next == 0 {
            next = 1;
        }
        word.store(next, Ordering::Release);
        next
    }

    pub(crate) fn allocator(&self) -> Option<MutexGuard<'_, Allocator>> {
        self.alloc
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poison| poison.into_inner()))
    }

    /// Checks a descriptor against this mapping: inside the data area, offset
    /// at or after a granule-aligned base, and the base's generation current.
    pub(crate) fn check_descriptor(
        &self,
        base: u64,
        offset: u64,
        len: u64,
        generation: u32,
    ) -> Result<()> {
        let out = || Error::DescriptorOutOfRange {
            pool: self.id,
            offset,
            len,
        };
        let (lo, hi) = (self.data_off as u64, (self.data_off + self.data_len) as u64);
        let end = offset.checked_add(len).ok_or_else(out)?;
        if base < lo
            || base >= hi
            || !(base - lo).is_multiple_of(GRANULE as u64)
            || offset < base
            || end > hi
        {
            return Err(out());
        }
        let current = self.generation(base as usize);
        if current != generation {
            return Err(Error::StaleGeneration {
                pool: self.id,
                offset: base,
                found: generation,
                current,
            });
        }
        Ok(())
    }

    /// Checks that every page of `offset..offset + len` (absolute, inside
    /// the memfd) holds bytes its owner wrote: a page never written is a
    /// hole of the memfd, and reading it through a mapping would make this
    /// process allocate it (a sparse pool of any size could be named into
    /// this process's memory). Holes are found with `lseek(SEEK_HOLE)`,
    /// which counts a written page that was swapped out as written; a page
    /// found written stays so (the seals forbid punching holes), so each
    /// page costs a system call at most once in the pool's life.
    pub(crate) fn check_written(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let pages = self.map.len().div_ceil(PAGE);
        let bits = self
            .written
            .get_or_init(|| (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
        let first = (offset / PAGE as u64) as usize;
        let end = offset.saturating_add(len);
        let last = ((end - 1) / PAGE as u64) as usize;
        let known = |p: usize| bits[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0;
        let Some(unknown) = (first..=last).find(|&p| !known(p)) else {
            return Ok(());
        };
        let from = (unknown * PAGE) as i64;
        let hole = nix::unistd::lseek(
            std::os::fd::AsRawFd::as_raw_fd(&self.map.fd()),
            from,
            nix::unistd::Whence::SeekHole,
        )
        .map_err(|e| Error::Io(e.into()))?;
        let data_end = (hole.max(from) as u64).min(end.next_multiple_of(PAGE as u64));
        for p in unknown..(data_end / PAGE as u64) as usize {
            bits[p / 64].fetch_or(1 << (p % 64), Ordering::Relaxed);
        }
        if (hole as u64) < end {
            return Err(Error::NotWritten {
                pool: self.id,
                offset: (hole as u64).max(offset),
            });
        }
        Ok(())
    }

    /// Creates, fills in the header of and seals the memfd of a new owned
    /// pool whose data area holds `capacity` bytes (behind
    /// [`Pool::with_name`](crate::Pool::with_name)).
    pub(crate) fn create(name: &str, capacity: usize) -> Result<Shared> {
        Shared::adopt(memfd_for(name, capacity)?, capacity)
    }

    /// Makes `fd`, a memfd from [`memfd_for`] for a pool of `capacity`
    /// bytes, this process's pool: maps it writable, fills in its header
    /// and adds the seals that make it shareable (behind
    /// [`Pool::adopt`](crate::Pool::adopt)).
    pub(crate) fn adopt(fd: OwnedFd, capacity: usize) -> Result<Shared> {
        let (data_off, data_len, size) = layout(capacity)?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let seals = nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_GET_SEALS)
            .map_err(|_| Error::MissingSeals { seals: 0 })?;
        let size_seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals & size_seals != size_seals
            || seals & (libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL) != 0
        {
            return Err(Error::BadPool("not a memfd made for a pool (its seals)"));
        }
        let st = nix::sys::stat::fstat(raw)?;
        if st.st_size < 0 || st.st_size as u64 != size as u64 {
            return Err(Error::BadPool("memfd size is not the pool's"));
        }
        let map = Mapping::new(fd, size, true)?;
        for (off, value) in [
            (H_MAGIC, MAGIC),
            (H_VERSION, LAYOUT_VERSION),
            (H_SIZE, size as u64),
            (H_DATA_OFF, data_off as u64),
            (H_DATA_LEN, data_len as u64),
            (H_GRANULE, GRANULE as u64),
        ] {
            map.atomic_u64(off).store(value, Ordering::Relaxed);
        }
        let id = new_pool_id();
        map.atomic_u64(H_ID).store(id, Ordering::Release);
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&map.fd()),
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::from_bits_truncate(
                REQUIRED_SEALS,
            )),
        )?;
        let pages =
            u32::try_from(data_len / PAGE).map_err(|_| Error::InvalidConfig("too many pages"))?;
        Ok(Shared {
            id,
            map,
            data_off,
            data_len,
            alloc: Some(Mutex::new(Allocator::new(pages))),
            huge: (0..data_len / HUGE_PAGE)
                .map(|_| AtomicBool::new(false))
                .collect(),
            written: OnceLock::new(),
        })
    }

    /// Allocates a region of at least `capacity` bytes in an owned pool and
    /// bumps its generation (behind [`Pool::alloc`](crate::Pool::alloc)).
    pub(crate) fn alloc(self: &Arc<Self>, capacity: usize) -> Result<Region> {
        let mut alloc = self
            .allocator()
            .ok_or(Error::InvalidConfig("not an owned pool"))?;
        let exhausted = |a: &Allocator| Error::PoolExhausted {
            requested: capacity,
            free: a.capacity() - a.allocated(),
        };
        if Allocator::rounded(capacity).is_none_or(|r| r > alloc.capacity()) {
            return Err(exhausted(&alloc));
        }
        let (off, cap) = alloc.alloc(capacity).ok_or_else(|| exhausted(&alloc))?;
        let base = self.data_off + off;
        let generation = self.bump_generation(base);
        drop(alloc);
        Ok(Region {
            shared: self.clone(),
            base,
            cap,
            generation,
            kind: RegionKind::Local,
        })
    }

    /// Maps a received pool fd read-only after checking its seals, its size
    /// against the announcement and its header.
    pub(crate) fn open_remote(fd: OwnedFd, id: u64, size: u64) -> Result<Shared> {
        let seals = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::fcntl::FcntlArg::F_GET_SEALS,
        )
        .map_err(|_| Error::MissingSeals { seals: 0 })?;
        if seals & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(Error::MissingSeals { seals });
        }
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        if st.st_size < 0 || st.st_size as u64 != size {
            return Err(Error::BadPool("memfd size differs from its announcement"));
        }
        let size = usize::try_from(size).map_err(|_| Error::BadPool("size"))?;
        if size < 2 * PAGE
            || size % PAGE != 0
            || size > MAX_POOL_BYTES + data_offset(MAX_POOL_BYTES)
        {
            return Err(Error::BadPool("memfd size is not a pool size"));
        }
        let map = Mapping::new(fd, size, false)?;
        let word = |off| map.atomic_u64(off).load(Ordering::Acquire);
        if word(H_MAGIC) != MAGIC || word(H_VERSION) != LAYOUT_VERSION {
            return Err(Error::BadPool("not an iolite pool"));
        }
        if word(H_ID) != id || word(H_SIZE) != size as u64 || word(H_GRANULE) != GRANULE as u64 {
            return Err(Error::BadPool("header does not match the announcement"));
        }
        let data_off =
            usize::try_from(word(H_DATA_OFF)).map_err(|_| Error::BadPool("data offset"))?;
        let data_len =
            usize::try_from(word(H_DATA_LEN)).map_err(|_| Error::BadPool("data length"))?;
        if data_len == 0
            || data_len % PAGE != 0
            || data_off != data_offset(data_len)
            || data_off.checked_add(data_len) != Some(size)
        {
            return Err(Error::BadPool("inconsistent layout"));
        }
        Ok(Shared {
            id,
            map,
            data_off,
            data_len,
            alloc: None,
            huge: Box::new([]),
            written: OnceLock::new(),
        })
    }
}

/// What happens when the last `Buf` of a region goes away.
#[derive(Debug)]
pub(crate) enum RegionKind {
    /// Our own pool: free the space.
    Local,
    /// Another process's pool: queue a release of this lease. With
    /// `untrusted`, its owner may write the bytes at any time (a module's
    /// output pool, as the server sees it): they are reached only through
    /// raw addresses handed to the kernel, never as a `&[u8]`.
    Remote {
        lease: u64,
        releases: Arc<ReleaseQueue>,
        untrusted: bool,
    },
    /// A slice of this process's own pool that the peer quoted back under
    /// a lease it holds: `of` keeps the lease's region alive; its drop is
    /// counted in `releases` (the slices the peer made this side hold).
    Quoted {
        of: Arc<Region>,
        releases: Arc<ReleaseQueue>,
    },
}

/// One allocation, shared by every `Buf` that points into it.
#[derive(Debug)]
pub(crate) struct Region {
    pub(crate) shared: Arc<Shared>,
    pub(crate) base: usize,
    pub(crate) cap: usize,
    pub(crate) generation: u32,
    pub(crate) kind: RegionKind,
}

impl Region {
    /// The region itself, or the one a quote stands for.
    pub(crate) fn origin(&self) -> &Region {
        match &self.kind {
            RegionKind::Quoted { of, .. } => of.origin(),
            _ => self,
        }
    }

    /// Whether the bytes may be written by an owner this process does not
    /// trust, at any time (see [`RegionKind::Remote`]).
    pub(crate) fn untrusted(&self) -> bool {
        matches!(
            self.kind,
            RegionKind::Remote {
                untrusted: true,
                ..
            }
        )
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match &self.kind {
            RegionKind::Local => {
                if let Some(mut alloc) = self.shared.allocator() {
                    self.shared.bump_generation(self.base);
                    alloc.free(self.base - self.shared.data_off);
                }
            }
            RegionKind::Remote {
                lease, releases, ..
            } => releases.release(*lease),
            RegionKind::Quoted { releases, .. } => releases.unquote(),
        }
    }
}

fn memfd_error(e: memfd::Error) -> Error {
    let (memfd::Error::Create(e) | memfd::Error::AddSeals(e) | memfd::Error::GetSeals(e)) = e;
    Error::Io(e)
}
