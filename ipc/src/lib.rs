//! iolite-ipc owns IO-Lite's buffer layer for Linux: pools (sealed memfd
//! arenas), immutable reference-counted `Buf`s, buffer aggregates (`Agg`),
//! leases held by other processes, and the unix-socket channel that carries
//! postcard frames with file descriptors (SCM_RIGHTS). All memfd and mmap
//! `unsafe` code of the project lives here. It must not know HTTP, routing or
//! anything about modules: it moves bytes by reference and nothing more.
//!
//! # Layout
//! - [`copied`]: the process-wide counter of body bytes copied in user space.
//! - `error`: [`Error`], the crate's one error enum.
//! - `sys`: the audited `unsafe` (mmap, views into a mapping).
//! - `alloc`: the pool allocator (page runs + sub-page slabs), pure bookkeeping.
//! - `pool`: [`Pool`] (owned, sealed memfd), [`RemotePool`] (received, read-only).
//! - `buf`: [`BufMut`] (the owner's builder) and [`Buf`] (immutable slice).
//! - `agg`: [`Agg`], the buffer aggregate.
//! - `lease`: lease tables and release queues.

pub mod copied;

mod agg;
mod alloc;
mod buf;
mod channel;
mod error;
pub mod frame;
mod lease;
mod peer;
mod pool;
#[doc(hidden)]
pub mod probe;
mod sys;

pub use agg::Agg;
pub use buf::{Buf, BufMut};
pub use channel::{Channel, MAX_FDS_PER_FRAME};
pub use error::{Error, Result};
pub use peer::{AggDesc, BufDesc, Event, Peer, Wire};
pub use pool::{MAX_POOL_BYTES, Pool, PoolStats, RemotePool};
