//! `Peer`: one process on the other end of a channel, with the pools shared
//! each way and the leases between them.
//!
//! The envelope [`Wire`] carries three kinds of frame: a pool announcement
//! (its memfd attached), a batch of releases, and an application message `M`
//! (which embeds [`AggDesc`]s to hand over aggregates). Releases are batched:
//! dropping an imported buffer only queues its lease; the queue is sent before
//! this side blocks in [`Peer::recv`], when it reaches the batch size in
//! [`Peer::send`], with the next [`Peer::queue`]d message, or on
//! [`Peer::flush_releases`].
//!
//! Two ways to drive a peer: blocking ([`Peer::send`], [`Peer::recv`]), or
//! from an event loop over a non-blocking socket ([`Peer::queue`],
//! [`Peer::flush`], [`Peer::try_recv_event`]). Several channels to the same
//! process may share the pools already shared on one of them
//! ([`Peer::adopt_pool`], [`Peer::adopt_remote`]): each keeps its own leases.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agg::Agg;
use crate::arena::{Region, RegionKind, Shared};
use crate::buf::Buf;
use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::lease::LeaseTable;
use crate::pool::{Pool, RemotePool};
use crate::release::ReleaseQueue;

/// Names one slice of a pool for another process: (pool, offset, len,
/// generation), plus the lease that keeps it alive and the offset of the
/// region (allocation) whose generation it carries. Offsets are absolute in
/// the pool's memfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufDesc {
    /// Pool id.
    pub pool: u64,
    /// Lease id, unique per sending peer.
    pub lease: u64,
    /// Offset of the region the slice lies in.
    pub region: u64,
    /// Offset of the slice's first byte.
    pub offset: u64,
    /// Length of the slice.
    pub len: u64,
    /// Generation of the region.
    pub generation: u32,
}

/// An aggregate as it travels: its slices' descriptors, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggDesc {
    /// The slices.
    pub bufs: Vec<BufDesc>,
}

impl AggDesc {
    /// Total length of the described bytes.
    pub fn len(&self) -> u64 {
        self.bufs.iter().map(|b| b.len).sum()
    }

    /// Whether it describes no bytes.
    pub fn is_empty(&self) -> bool {
        self.bufs.iter().all(|b| b.len == 0)
    }
}

/// Most lease ids in one release frame (keeps it far below the frame limit).
pub const RELEASES_PER_FRAME: usize = 4096;

/// Pools a peer accepts from the other side over its life unless told
/// otherwise ([`Peer::set_pool_limit`]): each holds a descriptor and a
/// mapping here for as long as the peer lives.
pub const DEFAULT_POOL_LIMIT: usize = 8;

/// The frame payload envelope.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Wire<M> {
    /// A pool is shared; its memfd is the one descriptor attached to this frame.
    SharePool {
        /// Pool id (also in the memfd's header).
        pool: u64,
        /// Size of the memfd.
        size: u64,
    },
    /// The sender is done with these leases.
    Release {
        /// Lease ids.
        leases: Vec<u64>,
    },
    /// An application message.
    Msg(M),
}

/// What [`Peer::recv_event`] saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<M> {
    /// An application message.
    Message(M),
    /// The peer shared a pool (checked and mapped read-only).
    PoolShared(RemotePool),
    /// The peer released this many leases.
    Released(usize),
}

/// One connected process: the channel to it, the pools shared each way and
/// the leases each side holds. When the channel closes (the peer died, hung up
/// or misbehaved), every lease it held is reclaimed.
#[derive(Debug)]
pub struct Peer<M> {
    chan: Channel,
    leases: LeaseTable,
    given: HashMap<u64, Pool>,
    remote: HashMap<u64, RemotePool>,
    releases: Arc<ReleaseQueue>,
    release_batch: usize,
    /// Pools received on this channel, and how many may be.
    pools_received: usize,
    pool_limit: usize,
    /// The peer is not trusted: see [`Peer::distrust`].
    untrusted: bool,
    /// Most slices of the peer's pools (and quotes of this side's) that
    /// imports may hold at once.
    held_limit: usize,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M: Serialize + DeserializeOwned> Peer<M> {
    /// A peer over a connected unix stream socket.
    pub fn new(sock: UnixStream) -> Self {
        Peer::with_channel(Channel::new(sock))
    }

    /// A peer over a channel configured by the caller (payload limit).
    pub fn with_channel(chan: Channel) -> Self {
        Peer {
            chan,
            leases: LeaseTable::default(),
            given: HashMap::new(),
            remote: HashMap::new(),
            releases: Arc::default(),
            release_batch: 64,
            pools_received: 0,
            pool_limit: DEFAULT_POOL_LIMIT,
            untrusted: false,
            held_limit: usize::MAX,
            _msg: PhantomData,
        }
    }

    /// Sets how many pools this side accepts from the peer on this channel
    /// in all, those received so far included ([`DEFAULT_POOL_LIMIT`] at
    /// first): one more closes the channel with [`Error::TooManyPools`]
    /// (its descriptor closed, nothing mapped). A server sets it to what
    /// the handshake brought once it is over, and to 0 on channels that
    /// take no pool.
    pub fn set_pool_limit(&mut self, n: usize) {
        self.pool_limit = n;
    }

    /// Pools the peer shared on this channel.
    pub fn pools_received(&self) -> usize {
        self.pools_received
    }

    /// Treats the peer as untrusted from now on (a module's runner, as the
    /// server sees it): buffers imported from its pools
    /// ([`Buf::is_untrusted`]) offer no `&[u8]`, since it may write them at
    /// any time, only [`Buf::io_vec`] and [`Buf::copy_into`]; and a
    /// descriptor must name pages it wrote (a hole of its memfd would be
    /// allocated here when read: [`Error::NotWritten`]).
    pub fn distrust(&mut self) {
        self.untrusted = true;
    }

    /// Sets how many slices imports may hold at once: of the peer's pools
    /// (each holds a lease) and quotes of this side's (unlimited at
    /// first). An import past it fails with [`Error::TooManyHeld`].
    pub fn set_held_limit(&mut self, n: usize) {
        self.held_limit = n;
    }

    /// Slices imports hold now: of the peer's pools and quotes of this
    /// side's (see [`set_held_limit`](Peer::set_held_limit)).
    pub fn slices_held(&self) -> usize {
        self.releases.held() + self.releases.quoted()
    }

    /// Sets how many releases [`send`](Peer::send) lets queue up before it
    /// sends them first (default 64).
    pub fn set_release_batch(&mut self, n: usize) {
        self.release_batch = n.max(1);
    }

    /// The channel (for raw access when both sides agreed to bypass framing).
    pub fn channel(&mut self) -> &mut Channel {
        &mut self.chan
    }

    /// Leases this side granted that the peer still holds.
    pub fn leases_outstanding(&self) -> usize {
        self.leases.len()
    }

    /// Leases of the peer's pools that this side holds.
    pub fn leases_held(&self) -> usize {
        self.releases.held()
    }

    /// Releases queued but not yet sent.
    pub fn releases_pending(&self) -> usize {
        self.releases.pending()
    }

    /// A pool the peer shared with this side.
    pub fn remote_pool(&self, id: u64) -> Option<&RemotePool> {
        self.remote.get(&id)
    }

    /// Every pool the peer shared with this side.
    pub fn remote_pools(&self) -> impl Iterator<Item = &RemotePool> + '_ {
        self.remote.values()
    }

    fn closed_check<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() && self.chan.is_closed() {
            self.leases.reclaim_all();
        }
        r
    }

    /// Counts `pool` as shared with the peer without sending it: the peer
    /// process already received it on another channel and adopts it there
    /// ([`adopt_remote`](Peer::adopt_remote)).
    pub fn adopt_pool(&mut self, pool: &Pool) {
        self.given.entry(pool.id()).or_insert_with(|| pool.clone());
    }

    /// Accepts descriptors into `pool`, a pool the peer process shared on
    /// another channel to this process (the mapping is shared, not made
    /// again). Adopting a pool twice is a no-op.
    pub fn adopt_remote(&mut self, pool: &RemotePool) {
        self.remote.entry(pool.id()).or_insert_with(|| pool.clone());
    }

    /// Gives the peer read-only access to `pool` (its sealed memfd goes over
    /// SCM_RIGHTS). Sharing a pool twice is a no-op.
    pub fn share_pool(&mut self, pool: &Pool) -> Result<()> {
        if self.given.contains_key(&pool.id()) {
            return Ok(());
        }
        let wire = Wire::<&M>::SharePool {
            pool: pool.id(),
            size: pool.memfd_size(),
        };
        let r = self.chan.send(&wire, &[pool.fd()]);
        self.closed_check(r)?;
        self.given.insert(pool.id(), pool.clone());
        Ok(())
    }

    /// Describes `agg` for the peer and grants it one lease per slice: the
    /// regions stay alive until the peer releases them (or goes away).
    ///
    /// # Errors
    /// [`Error::PoolNotShared`] if a slice lives in a pool the peer was not given.
    pub fn export(&mut self, agg: &Agg) -> Result<AggDesc> {
        for b in agg.bufs() {
            let shared = &b.region().shared;
            let ok = self
                .given
                .get(&shared.id)
                .is_some_and(|p| Arc::ptr_eq(&p.shared, shared));
            if !ok {
                return Err(Error::PoolNotShared { pool: shared.id });
            }
        }
        let bufs = agg
            .bufs()
            .iter()
            .map(|b| BufDesc {
                pool: b.pool_id(),
                lease: self.leases.grant(b.region().clone()),
                region: b.region_offset(),
                offset: b.fd_offset(),
                len: b.len() as u64,
                generation: b.generation(),
            })
            .collect();
        Ok(AggDesc { bufs })
    }

    /// Turns descriptors from the peer into an aggregate, without copying.
    /// Descriptors into the peer's pools are checked against the pool's
    /// bounds and generation table; descriptors into this side's own pools
    /// must name a lease this side granted and still holds.
    ///
    /// Bounds are checked against the pool (the unit of access control), not
    /// the allocation. On an error, the leases of the descriptors that were
    /// not imported stay granted until [`discard`](Peer::discard) or until the
    /// channel closes.
    ///
    /// # Errors
    /// [`Error::UnknownPool`], [`Error::DescriptorOutOfRange`],
    /// [`Error::StaleGeneration`], [`Error::UnknownLease`],
    /// [`Error::DuplicateLease`].
    pub fn import(&mut self, desc: &AggDesc) -> Result<Agg> {
        if self.slices_held().saturating_add(desc.bufs.len()) > self.held_limit {
            return Err(Error::TooManyHeld {
                limit: self.held_limit,
            });
        }
        let mut agg = Agg::new();
        for d in &desc.bufs {
            agg.push(self.import_one(d)?);
        }
        Ok(agg)
    }

    fn import_one(&mut self, d: &BufDesc) -> Result<Buf> {
        if let Some(rp) = self.remote.get(&d.pool) {
            rp.shared
                .check_descriptor(d.region, d.offset, d.len, d.generation)?;
            if self.untrusted {
                rp.shared.check_written(d.offset, d.len)?;
            }
            self.releases.import(d.lease)?;
            let region = Region {
                shared: rp.shared.clone(),
                base: d.region as usize,
                cap: (d.offset + d.len - d.region) as usize,
                generation: d.generation,
                kind: RegionKind::Remote {
                    lease: d.lease,
                    releases: self.releases.clone(),
                    untrusted: self.untrusted,
                },
            };
            return Ok(Buf::from_region(
                Arc::new(region),
                d.offset as usize,
                d.len as usize,
            ));
        }
        if self.given.contains_key(&d.pool) {
            let region = self
                .leases
                .get(d.lease)
                .ok_or(Error::UnknownLease { lease: d.lease })?;
            if region.shared.id != d.pool || region.base as u64 != d.region {
                return Err(Error::UnknownLease { lease: d.lease });
            }
            if region.generation != d.generation {
                return Err(Error::StaleGeneration {
                    pool: d.pool,
                    offset: d.region,
                    found: d.generation,
                    current: region.generation,
                });
            }
            let end = d.offset.checked_add(d.len);
            if d.offset < d.region || end.is_none_or(|e| e > d.region + region.cap as u64) {
                return Err(Error::DescriptorOutOfRange {
                    pool: d.pool,
                    offset: d.offset,
                    len: d.len,
                });
            }
            // A quote of its own, counted among the slices held for the
            // peer while it lives.
            self.releases.quote();
            let quote = Region {
                shared: region.shared.clone(),
                base: region.base,
                cap: region.cap,
                generation: region.generation,
                kind: RegionKind::Quoted {
                    of: region.clone(),
                    releases: self.releases.clone(),
                },
            };
            return Ok(Buf::from_region(
                Arc::new(quote),
                d.offset as usize,
                d.len as usize,
            ));
        }
        Err(Error::UnknownPool { pool: d.pool })
    }

    /// Sends an application message (releases queued past the batch size,
    /// and messages queued by [`queue`](Peer::queue), go first, in the same
    /// `sendmsg`).
    pub fn send(&mut self, msg: &M) -> Result<()> {
        if self.releases.pending() >= self.release_batch {
            self.queue_releases()?;
        }
        let r = self
            .chan
            .queue(&Wire::Msg(msg))
            .and_then(|()| self.chan.flush(true).map(drop));
        self.closed_check(r)
    }

    /// Sends an application message with descriptors attached (what is
    /// queued goes first); the peer takes them with
    /// [`Channel::take_fds`] after receiving the message.
    pub fn send_with_fds(&mut self, msg: &M, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<()> {
        let r = self.chan.send(&Wire::Msg(msg), fds);
        self.closed_check(r)
    }

    /// Queues an application message for the next [`flush`](Peer::flush);
    /// releases waiting to be sent are queued in front of it, so they travel
    /// in the same `sendmsg`.
    pub fn queue(&mut self, msg: &M) -> Result<()> {
        if self.releases.pending() > 0 {
            self.queue_releases()?;
        }
        let r = self.chan.queue(&Wire::Msg(msg));
        self.closed_check(r)
    }

    /// Writes what [`queue`](Peer::queue) queued: with `wait`, all of it;
    /// without, what the socket takes now. True when nothing is left.
    pub fn flush(&mut self, wait: bool) -> Result<bool> {
        let r = self.chan.flush(wait);
        self.closed_check(r)
    }

    /// Queues the releases not yet sent, without writing them.
    pub fn queue_releases(&mut self) -> Result<usize> {
        let leases = self.releases.take();
        for chunk in leases.chunks(RELEASES_PER_FRAME) {
            let r = self.chan.queue(&Wire::<&M>::Release {
                leases: chunk.to_vec(),
            });
            self.closed_check(r)?;
        }
        Ok(leases.len())
    }

    /// Sends every queued release (one frame per [`RELEASES_PER_FRAME`]),
    /// and whatever else was queued; returns how many releases.
    pub fn flush_releases(&mut self) -> Result<usize> {
        let n = self.queue_releases()?;
        if self.chan.queued() > 0 {
            let r = self.chan.flush(true);
            self.closed_check(r)?;
        }
        Ok(n)
    }

    /// Gives back, unused, the leases of descriptors received from the peer
    /// (a request that will not be read, a rejected aggregate); leases this
    /// side holds through imported buffers are left alone. Returns how many
    /// releases were queued.
    pub fn discard(&mut self, desc: &AggDesc) -> usize {
        desc.bufs
            .iter()
            .filter(|d| self.remote.contains_key(&d.pool))
            .filter(|d| self.releases.queue_unheld(d.lease))
            .count()
    }

    /// Waits for the next application message, handling pool announcements
    /// and releases on the way. Queued releases are sent before blocking.
    pub fn recv(&mut self) -> Result<M> {
        loop {
            if let Event::Message(m) = self.recv_event()? {
                return Ok(m);
            }
        }
    }

    /// Waits for the next frame and handles it. Before this side would
    /// block, queued releases and messages are sent; while whole frames are
    /// already buffered they wait, so answers to a burst of requests leave
    /// together.
    pub fn recv_event(&mut self) -> Result<Event<M>> {
        if !self.chan.has_frame() {
            self.flush_releases()?;
        }
        let r = self
            .chan
            .recv::<Wire<M>>()
            .and_then(|w| self.handle_wire(w));
        self.closed_check(r)
    }

    /// Handles the next frame if one has arrived; never waits and sends
    /// nothing (for a non-blocking socket driven by an event loop).
    pub fn try_recv_event(&mut self) -> Result<Option<Event<M>>> {
        let r = match self.chan.try_recv::<Wire<M>>() {
            Ok(Some(w)) => self.handle_wire(w).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        self.closed_check(r)
    }

    /// Whether a whole frame is buffered (receiving it will not wait).
    pub fn has_frame(&self) -> bool {
        self.chan.has_frame()
    }

    /// See [`Channel::drained`].
    pub fn drained(&self) -> bool {
        self.chan.drained()
    }

    /// See [`Channel::clear_drained`].
    pub fn clear_drained(&mut self) {
        self.chan.clear_drained();
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.chan.queued()
    }

    /// See [`Channel::written`].
    pub fn written(&self) -> u64 {
        self.chan.written()
    }

    /// See [`Channel::queued_end`].
    pub fn queued_end(&self) -> u64 {
        self.chan.queued_end()
    }

    fn handle_wire(&mut self, wire: Wire<M>) -> Result<Event<M>> {
        match wire {
            Wire::Msg(m) => Ok(Event::Message(m)),
            Wire::Release { leases } => {
                for &lease in &leases {
                    if let Err(e) = self.leases.release(lease) {
                        return Err(self.chan.close_with(e));
                    }
                }
                Ok(Event::Released(leases.len()))
            }
            Wire::SharePool { pool, size } => {
                let fd = self.chan.take_fds(1)?.pop().ok_or(Error::MissingFds {
                    needed: 1,
                    available: 0,
                })?;
                if self.pools_received >= self.pool_limit {
                    let limit = self.pool_limit;
                    return Err(self.chan.close_with(Error::TooManyPools { limit }));
                }
                if self.remote.contains_key(&pool) {
                    return Err(self.chan.close_with(Error::BadPool("pool shared twice")));
                }
                // Under one of this side's own ids, its descriptors would be
                // taken for slices of this side's pool and skip the lease
                // check (`import_one` looks at the peer's pools first).
                if self.given.contains_key(&pool) {
                    return Err(self
                        .chan
                        .close_with(Error::BadPool("pool shared under an id of this side's")));
                }
                self.pools_received += 1;
                let shared = match Shared::open_remote(fd, pool, size) {
                    Ok(s) => s,
                    Err(e) => return Err(self.chan.close_with(e)),
                };
                let rp = RemotePool {
                    shared: Arc::new(shared),
                };
                self.remote.insert(pool, rp.clone());
                Ok(Event::PoolShared(rp))
            }
        }
    }

    /// Closes the channel and reclaims every lease the peer held.
    pub fn close(&mut self) {
        let _ = self.chan.close_with(Error::Closed);
        self.leases.reclaim_all();
    }
}
