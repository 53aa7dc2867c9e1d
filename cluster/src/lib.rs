//! iolite-cluster owns what spans nodes: the dispatch policies (LARD, LARD/R
//! and the baselines they are measured against), membership, forwarding, the
//! peer cache protocol, replication control and the trace-driven simulator.
//! It must not reimplement gossip or failure detection (that comes from a
//! membership library), and the policies themselves do no I/O, so the live
//! cluster and the simulator run the very same code.
//!
//! # Layout
//! (filled in by the cluster issue.)
#![forbid(unsafe_code)]
