//! iolite-ipc owns IO-Lite's buffer layer for Linux: pools (sealed memfd
//! arenas), immutable reference-counted `Buf`s, buffer aggregates (`Agg`),
//! leases held by other processes, and the unix-socket channel that carries
//! postcard frames with file descriptors (SCM_RIGHTS). All memfd and mmap
//! `unsafe` code of the project lives here. It must not know HTTP, routing or
//! anything about modules: it moves bytes by reference and nothing more.
//!
//! ```
//! use iolite_ipc::{Agg, Pool};
//! use std::io::Write;
//!
//! let pool = Pool::new(1 << 20)?;            // sealed memfd arena
//! let mut b = pool.alloc(64)?;               // only the owner writes...
//! write!(b, "hello, world")?;
//! let buf = b.freeze();                      // ...then it is immutable
//! let agg = Agg::from(buf.clone()).concat(&Agg::from(buf.slice(5..)?));
//! assert_eq!(agg.len(), 19);
//! assert_eq!(agg.slice(7..12)?.copy_to_vec(), b"world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Between processes, a [`Peer`] shares pools ([`Peer::share_pool`]), turns
//! aggregates into descriptors ([`Peer::export`], granting leases) and back
//! ([`Peer::import`], checked against the pool's bounds and generation table),
//! and carries the application's messages. Consumers get bytes with
//! [`Buf::as_slice`], or send them with `sendfile(sock, buf.fd(),
//! buf.fd_offset(), buf.len())` straight from the memfd.
//!
//! # Layout
//! - [`copied`]: the process-wide counter of body bytes copied in user space.
//! - `error`: [`Error`], the crate's one error enum.
//! - `sys`: the audited `unsafe` (mmap, views into a mapping).
//! - `alloc`: the pool allocator (page runs + sub-page slabs), pure bookkeeping.
//! - `arena`: a pool's memfd as mapped here (header, generation table,
//!   allocator) and the regions (allocations) that buffers and leases hold.
//! - `release`: release queues (receiver): leases held here, releases to send.
//! - `pool`: [`Pool`] (owned, sealed memfd), [`RemotePool`] (received,
//!   checked, mapped read-only).
//! - `buf`: [`BufMut`] (the owner's builder) and [`Buf`] (immutable slice).
//! - `agg`: [`Agg`], the buffer aggregate.
//! - `lease`: lease tables (sender).
//! - [`frame`]: the wire format as pure functions over bytes (fuzzed in `fuzz/`).
//! - `channel`: [`Channel`], frames + fds over a `UnixStream`: blocking, or
//!   queued and flushed in one `sendmsg` and received without waiting (for
//!   an event loop over a non-blocking socket).
//! - `peer`: [`Peer`] (pools shared or adopted from a sibling channel,
//!   leases, blocking or event-loop use), [`Wire`], [`AggDesc`]/[`BufDesc`],
//!   [`Event`].
//! - `probe` (hidden): the protocol of `iolite-ipc-probe`, the child process
//!   of the cross-process tests and benches (the fixture `fixtures/probes`,
//!   which the tests build on demand; the type stays here because those
//!   tests speak it too).
//!
//! # Performance
//! `cargo bench -p iolite-ipc --bench handoff` (criterion medians; 2-core
//! x86_64 Debian 12 VM under load, 2026-11-27; details in `ipc/README.md`).
//! Another process reads every byte of the aggregate:
//!
//! | size | by descriptor | through the socket | speed-up |
//! |---|---|---|---|
//! | 4 KiB | 13.9 µs | 10.9 µs | 0.8x |
//! | 64 KiB | 23.2 µs | 25.1 µs | 1.1x |
//! | 1 MiB | 38.0 µs | 245.8 µs | 6.5x (target ≥ 5x) |
//! | 16 MiB | 1.13 ms | 7.87 ms | 7.0x (target ≥ 20x, not met: one read of 16 MiB alone takes 0.58 ms here) |
//!
//! Descriptor round trip (send, receive, release): 12.0 µs (4 KiB, 1 slice)
//! and 14.0 µs (16 MiB, 16 slices) against 8.7 µs for a bare 64-byte
//! unix-socket ping-pong between the same processes: 1.37x and 1.60x (target ≤ 2x).

pub mod copied;

mod agg;
mod alloc;
mod arena;
mod buf;
mod channel;
mod error;
pub mod frame;
pub mod iov;
mod lease;
mod peer;
mod pool;
#[doc(hidden)]
pub mod probe;
mod release;
mod sys;

pub use agg::Agg;
pub use arena::MAX_POOL_BYTES;
pub use buf::{Buf, BufMut};
pub use channel::{Channel, MAX_FDS_PER_FRAME};
pub use error::{Error, Result};
pub use iov::IoVec;
pub use peer::{AggDesc, BufDesc, Event, Peer, RELEASES_PER_FRAME, Wire};
pub use pool::{Pool, PoolStats, RemotePool};
