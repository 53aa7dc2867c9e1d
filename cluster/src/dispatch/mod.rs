//! Dispatch: which node serves a request, and getting it there.
//!
//! The design is partitioned by target (`cluster/README.md` says why and
//! what it costs): every target has an *owner*, the node the consistent-hash
//! ring over the live members' names gives it, and only the owner runs the
//! dispatch policy for it (LARD/R by default, the very code of
//! `cluster/src/policy` that `iolite sim` runs). A client request for a
//! static target, on any node:
//!
//! - arrives at its owner: the owner decides, and serves it or forwards
//!   it to the node it chose (`X-Iolite-Peer-Hop: serve`);
//! - arrives elsewhere: forwarded to the owner (`hop: decide`), which
//!   decides and serves it, or answers (421, no body) with the chosen
//!   node's name (`X-Iolite-Peer-Go`); the first node then forwards it
//!   there (`hop: serve`; to its own peer listener when the choice is
//!   itself). A body is relayed at most once.
//!
//! Every forward is a signed HTTP/1.1 request on a pooled connection to the
//! peer listener ([`forward`]); the answer is relayed by splice. A GET or
//! HEAD whose peer fails before answering is sent once more, to another
//! live node, to serve there. Module, CGI, FastCGI and WebAssembly mounts
//! are never dispatched: only what reaches the static files (the content
//! phase's fallback, which [`DispatchHandler`] wraps) is, and only GET and
//! HEAD. The load the policy reads is the active requests of each node:
//! this node's own counted by the handler (started when it serves,
//! finished in the request-finished hook), the others' as membership
//! gossips them.
//!
//! # Layout
//! - `admission`: the front end's limit S and its queue.
//! - [`auth`]: signing and checking peer requests (pure; fuzzed).
//! - [`forward`]: the per-worker connection pool and the relay.
//! - `shared`: [`Dispatch`], what every worker's handler shares.
//! - `brain`: the owner's policy state, the ring and the loads.
//! - `handler`: [`DispatchHandler`] (the fallback's wrapper) and
//!   [`Gate`] (core's `PeerGate`).
//! - `relay`: a forward in flight (route, signed head, retry, relay).
//! - `waiting`: a request queued past S, then forwarded.
//! - `report`: `/metrics` families and the `/status` table.

mod admission;
pub mod auth;
mod brain;
pub mod forward;
mod handler;
mod relay;
mod report;
mod shared;
mod waiting;

pub use brain::Brain;
pub use handler::{DispatchHandler, Gate};
pub use report::DispatchReport;
pub use shared::{Dispatch, DispatchCounters, DispatchSettings};
