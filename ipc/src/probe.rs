//! The protocol of `iolite-ipc-probe` (`fixtures/probes`), the child
//! process that this crate's cross-process tests and benches talk to. Not
//! part of the stable API.

use serde::{Deserialize, Serialize};

use crate::peer::AggDesc;

/// Requests to the probe and its replies (a `Peer<Probe>` on both sides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// Import, add up every byte, reply `Summed`, drop.
    Sum(AggDesc),
    /// Import and keep; reply `Held(len)`.
    Hold(AggDesc),
    /// Import, drop, send the release at once; no reply.
    Touch(AggDesc),
    /// Import and reply `Done`, or `Rejected(error)`.
    Import(AggDesc),
    /// Reply `Bytes` with raw bytes of a shared pool (volatile reads).
    Peek {
        /// Pool id.
        pool: u64,
        /// Offset in the memfd.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Try `mprotect(PROT_READ|PROT_WRITE)` on the pool's mapping.
    TryMprotectWrite(u64),
    /// Try a new `MAP_SHARED` writable mapping of the pool's fd.
    TryMmapWrite(u64),
    /// Try `ftruncate` (shrink, then grow) on the pool's fd.
    TryFtruncate(u64),
    /// Try `pwrite` on the pool's fd.
    TryPwrite(u64),
    /// Store a byte through the read-only mapping (the probe should die of SIGSEGV).
    Store {
        /// Pool id.
        pool: u64,
        /// Offset in the memfd.
        offset: u64,
    },
    /// Reply `Done`, then echo `rounds` raw 64-byte messages on the socket,
    /// bypassing framing.
    PingPong(u64),
    /// Reply `Done`, then `rounds` times: read `len` raw bytes, add them up,
    /// answer the 8-byte sum.
    Stream {
        /// Bytes per round.
        len: u64,
        /// Rounds.
        rounds: u64,
    },
    /// Reply: the sum of the bytes.
    Summed(u64),
    /// Reply: bytes held.
    Held(u64),
    /// Reply: raw bytes.
    Bytes(Vec<u8>),
    /// Reply: the call failed with this errno.
    Errno(i32),
    /// Reply: done (a `Try*` call succeeded, or an import worked).
    Done,
    /// Reply: the import was rejected with this error.
    Rejected(String),
}

/// Adds up every byte (wrapping); both sides of every bench use it.
pub fn sum_bytes(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(64);
    let mut lanes = [0u64; 8];
    for block in &mut words {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let w: [u8; 8] = w.try_into().unwrap_or_default();
            *lane = lane.wrapping_add(u64::from_le_bytes(w));
        }
    }
    let mut acc = lanes.iter().fold(0u64, |a, &l| a.wrapping_add(l));
    let mut tail = words.remainder().chunks_exact(8);
    for w in &mut tail {
        let w: [u8; 8] = w.try_into().unwrap_or_default();
        acc = acc.wrapping_add(u64::from_le_bytes(w));
    }
    tail.remainder()
        .iter()
        .fold(acc, |a, &b| a.wrapping_add(u64::from(b)))
}
