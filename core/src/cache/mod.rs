//! The unified file cache (IO-Lite's file cache): a file's bytes, read once
//! into the cache pool (a sealed memfd that every module maps read-only), kept
//! as an [`Agg`] within a byte budget and evicted by Greedy-Dual-Size-Frequency
//! (or LRU, for comparison).
//!
//! Entries are keyed by the file's identity (device, inode) and validated by
//! its size and modification time, so one file reached through two paths is
//! held once and a changed file is never answered from its old bytes. Path
//! resolution, revalidation (`stat` at most every `revalidate` interval) and
//! response heads are the static handler's per-worker caches (Flash's
//! pathname-translation and response-head caches); this cache is the shared
//! part that holds bytes.
//!
//! An entry in use by an in-flight send is never recycled under it: eviction
//! drops the cache's reference, and the pool reuses the space only when the
//! last [`Buf`](iolite_ipc::Buf) into it is dropped — when the send is done.
//!
//! "Done" means the last write returned, which is why entries are written
//! to sockets from memory (the kernel copies them into the socket), not
//! handed over by page reference with `sendfile`: pages sent so stay in
//! socket queues after the call (until acknowledged, or until a peer on
//! this host reads them), and space reused after an eviction would change
//! them under a slow reader (`send::Chunks`). Open-file entries of the
//! workers hold cached bodies weakly, so an evicted entry's space comes back
//! as soon as the sends using it end.
//!
//! Entries are backed by 2 MiB huge pages as the pool fills
//! ([`iolite_ipc::BufMut::collapse_huge_pages`]), measured when entries
//! went out with `sendfile` from the pool; not measured again for the copy
//! path.
//!
//! A file's compressed variants (derived data, IO-Lite's "keyed by buffer
//! and generation") are entries of their own, keyed by the file and the
//! coding and validated by the same version: they count against the
//! budget, compete for it under the same policy, and a changed file drops
//! them on their next lookup ([`FileCache::get_variant`],
//! [`FileCache::store_variant`]).
//!
//! **Benchmarks only:** [`SlowDisk`] (`IOLITE_BENCH_DISK_DELAY`, off by
//! default) makes every miss wait its turn on one simulated disk per
//! process and then a fixed delay, so that misses cost time that is not
//! CPU on a machine whose files all sit in the page cache
//! (`bench/cluster.sh`).
//!
//! # Layout
//! - [`replacement`]: Greedy-Dual-Size-Frequency and LRU bookkeeping. Its
//!   entries carry a miss cost (1 here) and find keys through a pluggable
//!   map, because the cluster simulator runs the same code over numbered
//!   objects with disk time as the cost.

pub mod replacement;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use iolite_ipc::{Agg, Pool};

use crate::http::accept_encoding::Coding;
use crate::metrics::Metrics;
use replacement::{Policy, Replacement};

/// Which file a cached body is: (device, inode).
pub type FileKey = (u64, u64);

/// What a cached body was read from: (size, mtime seconds, mtime nanoseconds).
/// A file whose version differs is read again.
pub type FileVersion = (u64, i64, i64);

/// An entry: the file, and 0 for its bytes or a coding's
/// [`index`](crate::http::accept_encoding::Coding::index) for a variant.
type Slot = (FileKey, u8);

/// A file's bytes (or a variant's) in the cache pool.
#[derive(Debug)]
pub struct CachedBody {
    agg: Agg,
    version: FileVersion,
    evicted: AtomicBool,
}

impl CachedBody {
    /// The bytes, as slices of the cache pool.
    pub fn agg(&self) -> &Agg {
        &self.agg
    }

    /// The file version the bytes were read from.
    pub fn version(&self) -> FileVersion {
        self.version
    }

    /// True once the cache let go of this body: holders may keep sending it,
    /// but should look it up again for the next request.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// Why a file is not served from the cache (it is then sent from the file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Larger than the threshold for caching (default: budget / 8).
    #[error("file of {len} bytes is above the caching threshold of {threshold}")]
    TooLarge { len: u64, threshold: u64 },
    /// No room in the pool even after evicting everything evictable (the
    /// rest is pinned by in-flight sends): backpressure, try again later.
    #[error("cache pool full: {0}")]
    PoolFull(iolite_ipc::Error),
    /// The file shrank, grew or failed while being read.
    #[error("reading the file: {0}")]
    Read(#[from] std::io::Error),
    /// The pool could not be created.
    #[error("cache pool: {0}")]
    Pool(iolite_ipc::Error),
}

struct Inner {
    bodies: HashMap<Slot, Arc<CachedBody>>,
    replacement: Replacement<Slot>,
}

/// FOR BENCHMARKS ONLY: a disk that takes `delay` per read, one read at a
/// time, standing in for a slow disk (the environment variable
/// `IOLITE_BENCH_DISK_DELAY`, a duration such as `8ms`; unset: off). With
/// it, a request that misses the cache waits for the disk's turn (without
/// holding its worker: other requests go on), then `delay`, then the file
/// is read into the cache and the request answered; and every file up to
/// the cache's threshold is served from the cache, so "in memory" means
/// the same for every size, as in `iolite sim`. Never set in production.
#[derive(Debug)]
pub struct SlowDisk {
    /// The time each read takes.
    pub delay: Duration,
    /// Held by the read in progress.
    pub turn: tokio::sync::Mutex<()>,
}

/// The environment variable that turns [`SlowDisk`] on.
pub const BENCH_DISK_DELAY: &str = "IOLITE_BENCH_DISK_DELAY";

impl SlowDisk {
    /// The slow disk `IOLITE_BENCH_DISK_DELAY` asks for: None when unset or
    /// empty; an error naming the variable when it is not a duration.
    pub fn from_env() -> Result<Option<SlowDisk>, String> {
        match std::env::var(BENCH_DISK_DELAY) {
            Err(_) => Ok(None),
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => crate::config::parse_duration(&v)
                .map(|delay| {
                    Some(SlowDisk {
                        delay,
                        turn: tokio::sync::Mutex::new(()),
                    })
                })
                .map_err(|e| format!("{BENCH_DISK_DELAY}={v:?}: {e}")),
        }
    }
}

/// The unified file cache, shared by every worker of the process.
pub struct FileCache {
    pool: Pool,
    threshold: u64,
    slow_disk: Option<SlowDisk>,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("FileCache")
            .field("budget", &inner.replacement.budget())
            .field("used", &inner.replacement.used())
            .field("entries", &inner.bodies.len())
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl FileCache {
    /// A cache of `budget` bytes in a new pool, caching files of at most
    /// `threshold` bytes.
    pub fn new(
        budget: u64,
        threshold: u64,
        policy: Policy,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CacheError> {
        let capacity = usize::try_from(budget.max(4096)).unwrap_or(usize::MAX);
        let pool = Pool::with_name("iolite-cache", capacity).map_err(CacheError::Pool)?;
        Ok(FileCache {
            pool,
            threshold: threshold.min(budget),
            slow_disk: None,
            inner: Mutex::new(Inner {
                bodies: HashMap::new(),
                replacement: Replacement::new(policy, budget),
            }),
            metrics,
        })
    }

    /// The cache pool (for sharing with module processes read-only).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Benchmarks only: misses go through `disk` ([`SlowDisk`]).
    pub fn with_slow_disk(mut self, disk: Option<SlowDisk>) -> Self {
        self.slow_disk = disk;
        self
    }

    /// The simulated slow disk, when a benchmark set one.
    pub fn slow_disk(&self) -> Option<&SlowDisk> {
        self.slow_disk.as_ref()
    }

    /// Files larger than this are not cached.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent state behind (every
        // mutation below is completed before anything that can panic), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached bytes of `key` at `version`, counting a hit or a miss. A
    /// cached body of another version is dropped (the file changed).
    pub fn get(&self, key: FileKey, version: FileVersion) -> Option<Arc<CachedBody>> {
        self.get_slot((key, 0), version, true)
    }

    /// The cached `coding` variant of `key` at `version` (not counted as a
    /// hit or a miss: those are the files').
    pub fn get_variant(
        &self,
        key: FileKey,
        coding: Coding,
        version: FileVersion,
    ) -> Option<Arc<CachedBody>> {
        self.get_slot((key, coding.index()), version, false)
    }

    fn get_slot(&self, key: Slot, version: FileVersion, count: bool) -> Option<Arc<CachedBody>> {
        let mut inner = self.lock();
        match inner.bodies.get(&key) {
            Some(body) if body.version == version => {
                let body = body.clone();
                inner.replacement.touch(&key);
                drop(inner);
                if count {
                    self.metrics.cache_hit();
                }
                Some(body)
            }
            Some(_) => {
                Self::forget(&mut inner, &key);
                self.publish_size(&inner);
                drop(inner);
                if count {
                    self.metrics.cache_miss();
                }
                None
            }
            None => {
                drop(inner);
                if count {
                    self.metrics.cache_miss();
                }
                None
            }
        }
    }

    /// Records a hit on a body a worker already holds (and found not
    /// evicted), so replacement sees every use without a map lookup.
    pub fn touch(&self, key: FileKey) {
        self.lock().replacement.touch(&(key, 0));
        self.metrics.cache_hit();
    }

    /// The same for a variant a worker holds (not counted as a hit).
    pub fn touch_variant(&self, key: FileKey, coding: Coding) {
        self.lock().replacement.touch(&(key, coding.index()));
    }

    /// Reads `len` bytes of `file` (identified by `key`, at `version`) into
    /// the pool and admits them, evicting lower-priority entries as needed.
    pub fn load(
        &self,
        key: FileKey,
        version: FileVersion,
        file: &File,
        len: u64,
    ) -> Result<Arc<CachedBody>, CacheError> {
        if len > self.threshold {
            return Err(CacheError::TooLarge {
                len,
                threshold: self.threshold,
            });
        }
        let agg = if len == 0 {
            Agg::new()
        } else {
            let size = len as usize;
            let mut buf = self.alloc_evicting(size)?;
            // Data lands once: read(2) straight into the pool's mapping. This
            // is the kernel filling the page, not a user-space copy.
            let spare = buf.spare_mut();
            let mut filled = 0;
            while filled < size {
                match file.read_at(&mut spare[filled..size], filled as u64) {
                    Ok(0) => {
                        return Err(CacheError::Read(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "file shrank while being cached",
                        )));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(CacheError::Read(e)),
                }
            }
            buf.advance(size).map_err(CacheError::PoolFull)?;
            // Huge pages were measured for `sendfile` from the pool (per-page
            // lookups gone); entries are now written by copy, for which they
            // were not measured again. Each 2 MiB chunk of the pool is moved
            // once in its life (about a copy of it); later entries there cost
            // an atomic load.
            buf.collapse_huge_pages();
            Agg::from(buf.freeze())
        };
        let body = Arc::new(CachedBody {
            agg,
            version,
            evicted: AtomicBool::new(false),
        });
        self.admit((key, 0), len, body.clone());
        Ok(body)
    }

    /// Stores `bytes`, the `coding` variant of `key` at `version`, in the
    /// pool (one copy, counted: the compressor's output is made once per
    /// variant, then sent by reference like any entry).
    pub fn store_variant(
        &self,
        key: FileKey,
        coding: Coding,
        version: FileVersion,
        bytes: &[u8],
    ) -> Result<Arc<CachedBody>, CacheError> {
        let len = bytes.len() as u64;
        if len > self.threshold {
            return Err(CacheError::TooLarge {
                len,
                threshold: self.threshold,
            });
        }
        let agg = if bytes.is_empty() {
            Agg::new()
        } else {
            let mut buf = self.alloc_evicting(bytes.len())?;
            buf.spare_mut()[..bytes.len()].copy_from_slice(bytes);
            iolite_ipc::copied::add(bytes.len());
            buf.advance(bytes.len()).map_err(CacheError::PoolFull)?;
            Agg::from(buf.freeze())
        };
        let body = Arc::new(CachedBody {
            agg,
            version,
            evicted: AtomicBool::new(false),
        });
        self.admit((key, coding.index()), len, body.clone());
        Ok(body)
    }

    /// Puts `body` under `key`, evicting what the policy says.
    fn admit(&self, key: Slot, len: u64, body: Arc<CachedBody>) {
        let mut inner = self.lock();
        Self::forget(&mut inner, &key);
        match inner.replacement.admit(key, len) {
            Ok(victims) => {
                for victim in victims {
                    if let Some(gone) = inner.bodies.remove(&victim) {
                        gone.evicted.store(true, Ordering::Relaxed);
                        self.metrics.cache_evicted(gone.agg.len() as u64);
                    }
                }
                inner.bodies.insert(key, body);
            }
            Err(_) => {
                // Larger than the budget: already refused by the threshold.
            }
        }
        self.publish_size(&inner);
    }

    /// Drops `key` and its variants (the file changed or disappeared).
    pub fn invalidate(&self, key: FileKey) {
        let mut inner = self.lock();
        let mut any = false;
        for index in 0..=Coding::ALL.len() as u8 {
            any |= Self::forget(&mut inner, &(key, index));
        }
        if any {
            self.publish_size(&inner);
        }
    }

    /// Entries and bytes held now.
    pub fn size(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.bodies.len(), inner.replacement.used())
    }

    fn forget(inner: &mut Inner, key: &Slot) -> bool {
        inner.replacement.remove(key);
        match inner.bodies.remove(key) {
            Some(gone) => {
                gone.evicted.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn publish_size(&self, inner: &Inner) {
        self.metrics
            .set_cache_size(inner.bodies.len() as u64, inner.replacement.used());
    }

    /// A writable buffer of `size` bytes, evicting the lowest-priority
    /// entries while the pool has no room. Space pinned by in-flight sends
    /// comes back when they finish; if nothing more can be evicted the
    /// caller serves from the file instead.
    fn alloc_evicting(&self, size: usize) -> Result<iolite_ipc::BufMut, CacheError> {
        loop {
            match self.pool.alloc(size) {
                Ok(buf) => return Ok(buf),
                Err(e @ iolite_ipc::Error::PoolExhausted { .. }) => {
                    let mut inner = self.lock();
                    let Some(victim) = inner.replacement.evict_one() else {
                        return Err(CacheError::PoolFull(e));
                    };
                    if let Some(gone) = inner.bodies.remove(&victim) {
                        gone.evicted.store(true, Ordering::Relaxed);
                        self.metrics.cache_evicted(gone.agg.len() as u64);
                    }
                    self.publish_size(&inner);
                }
                Err(e) => return Err(CacheError::Pool(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, FileKey, FileVersion) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        let m = f.as_file().metadata().unwrap();
        (f, (m.dev(), m.ino()), (m.len(), m.mtime(), m.mtime_nsec()))
    }

    fn cache(budget: u64, threshold: u64) -> FileCache {
        FileCache::new(budget, threshold, Policy::Gdsf, Arc::new(Metrics::new())).unwrap()
    }

    #[test]
    fn loads_once_then_hits_with_the_same_bytes_and_no_copy() {
        let c = cache(1 << 20, 1 << 17);
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let (f, key, version) = file_with(&data);
        let copied_before = iolite_ipc::copied::total();
        assert!(c.get(key, version).is_none());
        let loaded = c
            .load(key, version, f.as_file(), data.len() as u64)
            .unwrap();
        let hit = c.get(key, version).expect("a hit after the load");
        assert!(Arc::ptr_eq(&loaded, &hit));
        let bytes: Vec<u8> = hit.agg().iter().flatten().copied().collect();
        assert_eq!(bytes, data);
        assert_eq!(iolite_ipc::copied::total(), copied_before);
        let s = c.metrics.snapshot();
        assert_eq!((s.cache_hits, s.cache_misses), (1, 1));
        assert_eq!((s.cache_entries, s.cache_bytes), (1, data.len() as u64));
    }

    #[test]
    fn a_changed_version_is_a_miss_and_drops_the_old_body() {
        let c = cache(1 << 20, 1 << 17);
        let (f, key, version) = file_with(b"old bytes");
        let old = c.load(key, version, f.as_file(), 9).unwrap();
        let newer = (version.0, version.1 + 1, version.2);
        assert!(c.get(key, newer).is_none());
        assert!(old.is_evicted());
        assert_eq!(c.size(), (0, 0));
    }

    #[test]
    fn above_the_threshold_is_refused() {
        let c = cache(1 << 20, 1000);
        let (f, key, version) = file_with(&[7u8; 1001]);
        assert!(matches!(
            c.load(key, version, f.as_file(), 1001),
            Err(CacheError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_budget_holds_and_in_flight_bodies_stay_intact_after_eviction() {
        let budget = 256 * 1024;
        let c = cache(budget, budget / 4);
        let mut held = Vec::new();
        let mut files = Vec::new();
        for i in 0..40u8 {
            let data = vec![i; 60_000];
            let (f, key, version) = file_with(&data);
            let body = c
                .load(key, version, f.as_file(), data.len() as u64)
                .unwrap();
            assert!(c.size().1 <= budget);
            held.push((i, body));
            // Keep the files: a deleted file's inode may come back as the next.
            files.push(f);
            // Keep only the last few "in flight", like slow sends would.
            if held.len() > 2 {
                held.remove(0);
            }
            for (j, b) in &held {
                assert!(b.agg().iter().flatten().all(|x| x == j));
            }
        }
        assert!(c.metrics.snapshot().cache_evictions > 0);
    }
}
