//! The stable hash every hashing policy uses.
//!
//! `std`'s `RandomState` is seeded per process, so two nodes (or two runs)
//! would place targets differently. Dispatch needs a hash every node and
//! every release computes the same way, so iolite fixes it here:
//!
//! `stable_hash(bytes) = fmix64(fnv1a64(bytes))`
//!
//! - FNV-1a 64-bit: offset basis `0xcbf29ce484222325`, prime
//!   `0x100000001b3`, one byte at a time (xor, then multiply).
//! - `fmix64` is MurmurHash3's 64-bit finaliser (xor-shift 33, multiply by
//!   `0xff51afd7ed558ccd`, xor-shift 33, multiply by `0xc4ceb9fe1a85ec53`,
//!   xor-shift 33). FNV-1a alone leaves the high bits of short keys poorly
//!   mixed, and ring positions depend on the high bits.
//!
//! Changing either step moves targets between nodes in a running cluster;
//! the golden vectors in `tests/golden.rs` fail if anyone does.

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit
/// over every output bit.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The stable hash of a byte string: `fmix64(fnv1a64(bytes))`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a64(bytes))
}

/// A `Hasher` for maps keyed by values that are already stable hashes
/// ([`crate::TargetKey`]): it passes the key through, so map lookups on the
/// dispatch path cost no hashing and no per-process seed.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys that are not a single u64; fold them stably.
        self.0 = stable_hash(bytes) ^ self.0.rotate_left(5);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// `BuildHasher` for [`PassThroughHasher`].
pub type PassThroughBuild = std::hash::BuildHasherDefault<PassThroughHasher>;
