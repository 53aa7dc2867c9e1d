//! The wire contract between the server and a runner process: the C ABI
//! version and the postcard messages that travel inside
//! [`iolite_ipc::Wire::Msg`] frames over the inherited unix socket.
//!
//! One message type ([`Msg`]) both ways, on two kinds of connection: the
//! *control* socket the runner inherited, and *data links* ("lanes"), one
//! or more per server worker thread, each a socket the server attaches over
//! the control socket ([`Msg::Attach`]). Requests travel only on data
//! links; the runner serves each link on its own thread, one request after
//! another, so a process answers as many requests at once as it has links
//! (a worker opens another lane when its lanes are held up by slow
//! requests).
//!
//! 0. Before any of the module's code runs, the runner (the server's own
//!    binary, trusted) applies the whole sandbox and makes the memfd of the
//!    output pool (`--output-pool` bytes; [`iolite_ipc::Pool::memfd`]),
//!    which it hands to [`MAIN_SYMBOL`] with the control socket: the
//!    module's sandbox has no `memfd_create` and no `socketpair`, so a
//!    module holds no memory the server did not size and no socket but the
//!    server's (no private pair to park descriptors in flight in).
//! 1. control, server → runner: `SharePool` (the module's request pool and
//!    the cache pool, read-only), then [`Msg::Hello`].
//! 2. control, runner → server: `SharePool` (the runner's output pool, made
//!    from that memfd), then [`Msg::Ready`] — or the runner exits with a
//!    message on stderr.
//! 3. control, server → runner: [`Msg::Attach`] with a socket: a new data
//!    link; the runner answers [`Msg::Attach`] (no descriptor) once a
//!    thread serves it, or [`Msg::AttachRefused`] when it cannot start one. Both ends use the pools shared at steps 1 and 2 on
//!    it ([`iolite_ipc::Peer::adopt_pool`]); leases are per link.
//! 4. data link, server → runner: [`Msg::Request`] (at most `in_flight`
//!    unanswered per process); runner → server: [`Msg::Response`] with the
//!    same id, in any order. `Release` frames flow both ways as buffers are
//!    dropped (the server sends them with its next request).
//! 5. data link, runner → server, while handling a request:
//!    [`Msg::CacheLookup`]; server → runner: [`Msg::Cached`] (slices of the
//!    cache pool). Requests that arrive meanwhile wait in the runner.
//! 6. data link, server → runner: [`Msg::Cancel`] when the client went away;
//!    a cancelled request the runner has not started is skipped (answered
//!    with an empty 503 that nobody reads); a started one is answered as
//!    usual.
//! 7. Instead of [`Msg::Response`], a runner may stream: [`Msg::StreamHead`]
//!    (status, headers, length), then [`Msg::StreamPart`]s until the length
//!    is reached (or [`Msg::StreamAbort`]); a head without a length is
//!    followed by parts until [`Msg::StreamEnd`] (or [`Msg::StreamAbort`]).
//!    The runner keeps a bounded number of parts unreleased (its output pool is reused as the server
//!    sends), so a body of any size streams through a fixed pool.
//! 8. A module that takes request bodies in parts ([`FEATURE_BODY_PARTS`])
//!    gets large bodies that way: the [`Msg::Request`] announces
//!    [`RequestFrame::parts`] bytes and carries no body, and
//!    [`Msg::BodyPart`]s with the same id follow as the server reads them
//!    from the client, until that many bytes came (a chunked upload, whose
//!    length is unknown, announces [`PARTS_UNKNOWN`] and ends with
//!    [`Msg::BodyEnd`]); the runner may answer
//!    (or start streaming its answer) before the last one. Parts of a
//!    request already answered are dropped (and so released) on arrival.
//!    The server stops sending a request's parts once it has the whole
//!    answer (or a streamed one ended), and then sends [`Msg::Cancel`] for
//!    it if parts were still announced, as it does when the client goes
//!    away mid-body; no part of a request follows its [`Msg::Cancel`] (the
//!    runner then forgets the parts still announced; a later one is a
//!    protocol error, as is a part past the announced length).
//!    In [`Transfer::Copy`] a part's bytes come in [`Msg::Data`] frames
//!    with the same id before its (empty) [`Msg::BodyPart`].
//!    The server keeps a bounded number of a request's parts unreleased,
//!    so a body of any size goes through the fixed request pool.
//!
//! Bodies travel by reference ([`Transfer::Shared`], the default): a request
//! body is an [`AggDesc`] of slices of the request pool; a response body is
//! an [`AggDesc`] whose slices name the output pool (leases the runner
//! grants), the request pool or the cache pool (leases the server granted
//! with the request or a lookup, quoted back while the runner still holds
//! them). In [`Transfer::Copy`] (kept to measure what zero-copy saves) the
//! bytes go inline instead: [`Msg::Data`] frames with the same id precede
//! the [`Msg::Request`], [`Msg::Response`] or [`Msg::StreamPart`] they belong
//! to, whose descriptors are then empty.
//!
//! # Bounds
//!
//! Everything a runner can make the server hold is bounded per runner; a
//! runner past a bound broke the contract: the socket it used is closed,
//! the requests it holds fail (502) and it is replaced. Other modules and
//! the server never notice.
//!
//! - **Pools**: one, its output pool, shared on the control socket in the
//!   handshake (step 2), no larger than the `output_pool` of
//!   [`Msg::Hello`] rounded up to whole pages. Another pool, a larger one,
//!   or a share after [`Msg::Ready`] (on the control socket or on any data
//!   link) is refused; a refused handshake fails the requests waiting for
//!   that runner, and those that come before the next one starts, at once
//!   (502) rather than at their timeout.
//! - **Descriptors**: none from the runner after its handshake, on any
//!   socket; a frame never carries more than
//!   [`iolite_ipc::MAX_FDS_PER_FRAME`].
//! - **Slices held**: the server holds at most 16,384 slices per data link
//!   for the runner at once (slices of its output pool under its leases,
//!   and quotes of the server's pools): whole answers still being sent and
//!   stream parts its client has not taken yet. A runner that streams to a
//!   client that does not read must wait for releases.
//! - **Written pages only**: every page a descriptor names must hold bytes
//!   the runner wrote (found with `SEEK_HOLE` on its memfd); a descriptor
//!   naming a hole — which the server would otherwise allocate by reading
//!   it — is refused.
//! - **Cache lookups**: one at a time per link (step 5): a
//!   [`Msg::CacheLookup`] before the [`Msg::Cached`] answering the last one
//!   is refused.
//! - **Copy mode**: the [`Msg::Data`] bytes gathered on a link and not yet
//!   claimed by an answer or part are at most the size of the output pool.
//! - **Reading**: the server takes at most 64 frames from a link before it
//!   lets its worker's other connections run, so a runner that keeps its
//!   socket full delays no one else; frames that do nothing keep the
//!   request they belong to waiting only until its timeout (504).
//!
//! The server reads a runner's output pool only through the kernel (it
//! hands the pages to `sendmsg`, or copies them out with `pread`, counted in
//! `iolite_body_bytes_copied_total`): what the runner writes into a slice
//! it already answered with changes what the client gets, never the
//! server's behaviour.

use std::net::SocketAddr;

use iolite_ipc::AggDesc;
use serde::{Deserialize, Serialize};

/// The module ABI version: the value `iolite_module_abi_version()` returns
/// in a module built with this SDK, and the one the runner requires. Bump it
/// whenever [`Msg`], the entry points or what either side may expect of
/// the other change. 5: a runner whose control socket closes answers what
/// its links were sent and exits only once the server has closed them all
/// (draining). 6: request bodies in parts ([`Msg::BodyPart`],
/// [`RequestFrame::parts`], [`FEATURES_SYMBOL`]), streams of unknown length
/// ([`Msg::StreamEnd`]). 7: the runner makes the output pool's memfd and
/// hands it to [`MAIN_SYMBOL`] (the module's sandbox, in force before its
/// library is loaded, makes no memfds and no sockets).
pub const ABI_VERSION: u32 = 7;

/// The symbol of `extern "C" fn() -> u32` returning [`ABI_VERSION`].
pub const ABI_SYMBOL: &[u8] = b"iolite_module_abi_version";
/// The symbol of `unsafe extern "C" fn(sock_fd: i32, output_fd: i32) ->
/// i32`: serves the socket until the server closes it, with `output_fd`
/// (a memfd from [`iolite_ipc::Pool::memfd`] of [`Msg::Hello`]'s
/// `output_pool` bytes) as its output pool; 0 on a clean end.
pub const MAIN_SYMBOL: &[u8] = b"iolite_module_main";
/// The symbol of `extern "C" fn() -> u32` returning the module's feature
/// bits ([`FEATURE_BODY_PARTS`]), read by the server when it checks the
/// library (optional: none means 0).
pub const FEATURES_SYMBOL: &[u8] = b"iolite_module_features";
/// [`RequestFrame::parts`] for a body whose length is not known (a chunked
/// upload): parts come until a [`Msg::BodyEnd`].
pub const PARTS_UNKNOWN: u64 = u64::MAX;

/// Feature bit: the module takes request bodies in parts
/// ([`Module::BODY_IN_PARTS`](crate::Module::BODY_IN_PARTS)).
pub const FEATURE_BODY_PARTS: u32 = 1;

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
        /// How bodies travel.
        transfer: Transfer,
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
    /// [`Msg::StreamAbort`]); with `len` None, parts follow until a
    /// [`Msg::StreamEnd`] (the server sends them in chunks).
    StreamHead {
        /// The request.
        id: u64,
        /// The HTTP status.
        status: u16,
        /// Header fields, as in [`ResponseFrame`].
        headers: Vec<(String, Vec<u8>)>,
        /// The body's length (None: unknown).
        len: Option<u64>,
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
    /// Runner → server: the streamed body of unknown length of request `id`
    /// is complete.
    StreamEnd {
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
    /// Server → runner, on the control socket: a data link; its socket is
    /// the one descriptor attached to this frame. Runner → server: the
    /// link is served.
    Attach,
    /// Either way, [`Transfer::Copy`] only: the next bytes of the body of
    /// request `id` (its request, response or stream part), inline.
    Data {
        /// The request.
        id: u64,
        /// The bytes.
        bytes: InlineBytes,
    },
    /// Server → runner: the next part of the body of request `id`, whose
    /// [`RequestFrame::parts`] announced it (slices of the request pool; in
    /// [`Transfer::Copy`], empty: its bytes came in [`Msg::Data`] frames).
    BodyPart {
        /// The request.
        id: u64,
        /// The part.
        body: AggDesc,
    },
    /// Server → runner: the body of request `id`, announced with
    /// [`PARTS_UNKNOWN`], is complete.
    BodyEnd {
        /// The request.
        id: u64,
    },
    /// Runner → server, on the control socket, instead of [`Msg::Attach`]:
    /// no thread to serve one more link (its `tasks` limit); the link's
    /// socket is dropped, and the runner serves its other links as before.
    AttachRefused,
}

/// How bodies travel between server and runner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Transfer {
    /// By reference: descriptors of shared, read-only pools (zero-copy).
    #[default]
    Shared,
    /// Inline through the socket in [`Msg::Data`] frames, copied on each
    /// side: the comparison point for the zero-copy path.
    Copy,
}

/// Most bytes one [`Msg::Data`] frame carries.
pub const DATA_CHUNK: usize = 256 << 10;

/// Body bytes carried inline, serialized as one byte string (not a
/// sequence of numbers), so a copy costs a `memcpy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InlineBytes(pub Vec<u8>);

impl Serialize for InlineBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for InlineBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = InlineBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<InlineBytes, E> {
                Ok(InlineBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<InlineBytes, E> {
                Ok(InlineBytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
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
    /// The body: slices of the module's request pool (empty when it comes
    /// in parts).
    pub body: AggDesc,
    /// Body bytes that follow in [`Msg::BodyPart`]s (0: the body, if any,
    /// is whole in `body`; [`PARTS_UNKNOWN`]: parts follow until a
    /// [`Msg::BodyEnd`]).
    pub parts: u64,
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

/// [`Transfer::Copy`]: queues `body`'s bytes on `peer` inline, in
/// [`Msg::Data`] frames of at most [`DATA_CHUNK`] bytes, for request `id`
/// (both sides use it: the server for request bodies, the runner for
/// answers and stream parts). Each byte is copied out of its pool, once.
pub fn queue_inline(
    peer: &mut iolite_ipc::Peer<Msg>,
    id: u64,
    body: &iolite_ipc::Agg,
) -> iolite_ipc::Result<()> {
    let mut at = 0;
    while at < body.len() {
        let end = (at + DATA_CHUNK).min(body.len());
        let bytes = body.slice(at..end)?.copy_to_vec();
        peer.queue(&Msg::Data {
            id,
            bytes: InlineBytes(bytes),
        })?;
        at = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_bytes_travel_as_one_byte_string() {
        let msg = Msg::Data {
            id: 7,
            bytes: InlineBytes((0..=255).collect()),
        };
        let mut out = Vec::new();
        iolite_ipc::frame::encode(&msg, &mut out, 1 << 20).unwrap();
        // version + length, variant, id, length varint (2 bytes), the bytes.
        assert_eq!(out.len(), iolite_ipc::frame::HEADER_LEN + 1 + 1 + 2 + 256);
        let back: Msg =
            iolite_ipc::frame::decode_payload(&out[iolite_ipc::frame::HEADER_LEN..]).unwrap();
        assert_eq!(back, msg);
    }
}
