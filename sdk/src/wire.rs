//! The wire contract between the server and a runner process: the C ABI
//! version and the postcard messages that travel inside
//! [`iolite_ipc::Wire::Msg`] frames over the inherited unix socket.
//!
//! One connection, one message type ([`Msg`]) both ways. The order:
//!
//! 1. server → runner: `SharePool` (the module's request pool, read-only),
//!    then [`Msg::Hello`].
//! 2. runner → server: `SharePool` (the runner's output pool), then
//!    [`Msg::Ready`] — or the runner exits with a message on stderr.
//! 3. server → runner: [`Msg::Request`] (at most `in_flight` unanswered);
//!    runner → server: [`Msg::Response`] with the same id, in any order.
//!    `Release` frames flow both ways as buffers are dropped.
//! 4. runner → server, while handling a request: [`Msg::CacheLookup`];
//!    server → runner: [`Msg::Cached`] (slices of the cache pool, which
//!    the server shares read-only at step 1 when its cache is on). Requests
//!    that arrive meanwhile wait in the runner.
//! 5. server → runner: [`Msg::Cancel`] when the client went away (the
//!    runner may skip the request; it answers it either way).
//! 6. Instead of [`Msg::Response`], a runner may stream: [`Msg::StreamHead`]
//!    (status, headers, length), then [`Msg::StreamPart`]s until the length
//!    is reached (or [`Msg::StreamAbort`]). The runner keeps a bounded
//!    number of parts unreleased (its output pool is reused as the server
//!    sends), so a body of any size streams through a fixed pool.
//!
//! Bodies never travel inline: a request body is an [`AggDesc`] of slices
//! of the request pool; a response body is an [`AggDesc`] whose slices name
//! the output pool (leases the runner grants), the request pool or the
//! cache pool (leases the server granted with the request or a lookup,
//! quoted back while the runner still holds them).

use std::net::SocketAddr;

use iolite_ipc::AggDesc;
use serde::{Deserialize, Serialize};

/// The module ABI version: the value `iolite_module_abi_version()` returns
/// in a module built with this SDK, and the one the runner requires. Bump it
/// whenever [`Msg`] or the entry points change.
pub const ABI_VERSION: u32 = 3;

/// The symbol of `extern "C" fn() -> u32` returning [`ABI_VERSION`].
pub const ABI_SYMBOL: &[u8] = b"iolite_module_abi_version";
/// The symbol of `unsafe extern "C" fn(sock_fd: i32) -> i32`: serves the
/// socket until the server closes it; 0 on a clean end.
pub const MAIN_SYMBOL: &[u8] = b"iolite_module_main";

/// Every message of the module protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Msg {
    /// Server → runner, once, after the request pool was shared.
    Hello {
        /// The server's [`ABI_VERSION`].
        abi: u32,
        /// The module's name (its mount prefix), for logs.
        name: String,
        /// Bytes of the output pool the runner creates.
        output_pool: u64,
        /// Most requests the server sends before the first is answered.
        in_flight: u32,
    },
    /// Runner → server, once, after the output pool was shared.
    Ready {
        /// The runner's [`ABI_VERSION`].
        abi: u32,
        /// The output pool's id.
        output_pool: u64,
    },
    /// Server → runner: one request.
    Request(RequestFrame),
    /// Runner → server: the answer to request `id`.
    Response(ResponseFrame),
    /// Runner → server: the head of a streamed answer to request `id`;
    /// exactly `len` body bytes follow in [`Msg::StreamPart`]s (or a
    /// [`Msg::StreamAbort`]).
    StreamHead {
        /// The request.
        id: u64,
        /// The HTTP status.
        status: u16,
        /// Header fields, as in [`ResponseFrame`].
        headers: Vec<(String, Vec<u8>)>,
        /// The body's length.
        len: u64,
    },
    /// Runner → server: the next part of request `id`'s streamed body.
    StreamPart {
        /// The request.
        id: u64,
        /// The part (same rules as a response body).
        body: AggDesc,
    },
    /// Runner → server: the streamed body of request `id` ends short; the
    /// server closes the client connection.
    StreamAbort {
        /// The request.
        id: u64,
    },
    /// Runner → server, while handling a request: the bytes of the file
    /// at `path` under the document root, from the unified cache. At most
    /// one lookup is outstanding per runner.
    CacheLookup {
        /// A URL path (`/header.html`); it may not leave the root.
        path: String,
    },
    /// Server → runner: the answer to the last [`Msg::CacheLookup`]: slices
    /// of the cache pool, or `None` (no such file, not cacheable, no cache).
    Cached {
        /// The file's bytes.
        body: Option<AggDesc>,
    },
    /// Server → runner: the client of request `id` went away.
    Cancel {
        /// The request.
        id: u64,
    },
}

/// A request as the runner receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Unique per connection to this runner.
    pub id: u64,
    /// The method token (`GET`, `POST`, ...).
    pub method: String,
    /// The percent-decoded, dot-segment-free path (starts with `/`).
    pub path: String,
    /// The raw query string, without `?` (empty when absent).
    pub query: String,
    /// Header fields in the order received (names as sent).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// The body: slices of the module's request pool.
    pub body: AggDesc,
}

/// A response as the server receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: u64,
    /// The HTTP status (100..=999).
    pub status: u16,
    /// Header fields (`Content-Length`, `Date`, `Server` and `Connection`
    /// are the server's and are dropped).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body: slices of the output pool and of the request body.
    pub body: AggDesc,
}
