//! iolite-modules owns the content handlers that plug into iolite-core
//! beyond static files: today, native process modules (cdylibs built with
//! iolite-sdk, run in supervised runner processes); later CGI, FastCGI and
//! WebAssembly. It must not know about other nodes, and holds no `unsafe`:
//! loading libraries and spawning with an inherited descriptor are
//! iolite-sandbox's.
//!
//! # Layout
//! - `process`: [`ProcessModule`] (request pool, slots, the core handler
//!   that routes before the body is read, credits, timeouts, response
//!   validation), [`DirectClient`] (the same path without HTTP, for
//!   benches).
//! - `link`: the request path: each worker thread's data links to the
//!   runners (non-blocking sockets on the worker's own reactor), answers,
//!   streams, cache lookups, cancels, copy mode (`transfer = "copy"`).
//!   `link::fuzzing` (hidden, re-exported as `fuzzing`): the entry point of
//!   the `module_answer` fuzz target (`fuzz/`): a runner's bytes through a
//!   link's receive path and the answer checks, without a runner.
//!
//! # The request path
//! A worker thread writes the request frame into its own link to the
//! runner (one per worker and runner process — more "lanes" when slow
//! requests hold one up — attached over the runner's
//! control socket by the slot thread); the runner serves each link on a
//! thread of its own and answers on it; the worker's reader task for that
//! link completes the request. Requests that several connections of a
//! worker make in one scheduler round leave in one `sendmsg`, with the
//! releases of answers already sent; the runner answers a burst in one
//! write. No thread other than the worker and the runner is woken. The
//! runner's link thread polls its socket briefly before it sleeps, and a
//! worker's link task yields to its runtime a few times after sending
//! (adaptively) before the worker may sleep, which saves most sleeps and
//! wake-ups when answers are quick.
//! - `supervisor`: one thread per runner process: spawn (re-exec of the
//!   iolite binary), handshake (the runner's sandbox report first),
//!   attaching data links, the control loop (socket, wake-up socket and the
//!   runner's pidfd), restart with backoff, replacing a runner whose
//!   request timed out, log forwarding, and the runner's end (process
//!   group killed, reaped, pids cgroup removed). Runners are also ended on
//!   purpose without failing a request, by draining them: *recycled* at
//!   three quarters of their CPU-time limit or after `max_requests` (the
//!   successor is ready before the old one stops taking requests), and
//!   *retired* when their slot is above `processes_min` and got no request
//!   for `idle_timeout` (with `processes_min = 0` the module scales to
//!   zero). A draining runner's links take no new request and close once
//!   answered; the runner exits after its last link (SDK ABI 5); past the
//!   module's timeout it is killed.
//! - `parts`: request bodies in parts. A module whose library sets
//!   `Module::BODY_IN_PARTS` (its feature bits, read when the library is
//!   checked) gets a `Content-Length` body over `iolite_sdk::BODY_PART`,
//!   and every chunked body (its length unknown until `Msg::BodyEnd`), in
//!   parts while the connection reads it: the request leaves at once, each
//!   part (read straight into the request pool) follows it on the same
//!   link, at most 8 of a request's parts are held by the runner before the
//!   connection stops reading (TCP flow control then holds the client
//!   back), and the request's time limit runs from its last part. The
//!   answer may start, and end, before the body does (full duplex); a
//!   client that leaves mid-body cancels the request in the runner. Other
//!   modules get bodies whole, in the request pool (2 × `max_body`).
//! - [`metrics`]: [`ModuleMetrics`], per-module figures on `/metrics`.
//! - [`runner`]: the runner process's side (`iolite runner`): the module's
//!   [`runner::SandboxSpec`] from its config, applied in two phases around
//!   loading the library, and reported to the server.
//! - `error`: [`Error`].
//!
//! # Sandbox
//! Every runner (and the throw-away `--check` runner) applies the module's
//! `[module.sandbox]` and `memory_limit` to itself before the module's code
//! runs: see [`runner`] and `sandbox/README.md`. `iolite serve` logs the
//! outcome of each measure per runner ("runner ready ... sandbox=...");
//! a sandbox that cannot be applied refuses the module at start-up.
//!
//! # Not yet (issue 4)
//! - A runner handles a link's requests one after another. A worker opens
//!   another lane (link, runner thread) to a runner, up to 4 and
//!   `in_flight`, only once none of its lanes has finished a request for
//!   50 ms: a request that came in those first 50 ms waits behind the slow
//!   one.
//! - Answers are written to client sockets from the pools (the kernel
//!   copies them), not handed over by page reference: a pool reuses an
//!   answer's space at the next request, and the socket would keep the
//!   pages (`iolite_core::send::Chunks`). Page references need the buffers
//!   held until `MSG_ZEROCOPY` completions report the kernel is done.
//! - A request whose body comes in parts holds its runner thread (a lane)
//!   and its credit for the whole upload: a slow uploader occupies one of
//!   the module's `in_flight` slots meanwhile.
//! - Copy mode (`transfer = "copy"`, kept to measure zero-copy) does not
//!   hold a streamed answer back from a slow client: the runner's parts
//!   are copied into the request pool as fast as it sends them.
//! - A request that burns a recycled runner's last quarter of CPU time
//!   while it drains ends it by SIGXCPU (what it still holds gets 502).
//! - A timed-out request's runner is replaced (its other requests get
//!   502); a deadline per request costs one tokio timer.

mod error;
pub mod metrics;
mod process;
pub mod runner;

pub use error::Error;
pub use metrics::ModuleMetrics;
pub use process::exchange::DirectClient;
/// The `module_answer` fuzz target's entry point (`modules/fuzz`): a
/// runner's bytes through a data link's receive path and the answer checks.
#[doc(hidden)]
pub use process::link::fuzzing;
pub use process::{ProcessModule, current_exe, sweep_stale_cgroups};
