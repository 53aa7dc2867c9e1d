//! The unified file cache (IO-Lite's file cache): path → the file's bytes as
//! an aggregate in the cache pool, its precomputed response head and
//! validators, within a byte budget.
//!
//! # Layout
//! - [`replacement`]: Greedy-Dual-Size-Frequency and LRU bookkeeping.

pub mod replacement;
