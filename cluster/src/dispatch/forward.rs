//! Back-end forwarding: one worker's persistent, bounded pool of HTTP/1.1
//! connections to the other nodes' peer listeners, a signed request sent
//! on one, and the answer turned into a [`Response`] whose body is the
//! connection itself ([`FdBody`]): the send path splices it to the
//! client, so the answer's body never enters user space here.
//!
//! The answer's head is found with `MSG_PEEK` and then read exactly, so
//! not one body byte is read with it (a head that arrives in pieces is read
//! as it comes; body bytes read with it are sent from memory and counted in
//! `iolite_body_bytes_copied_total`). The body goes out through a duplicate
//! of the connection's descriptor; the connection returns to the pool when
//! the request-finished hook reports the relay complete ([`Lease`]), and is
//! closed otherwise.
//!
//! Bounds: at most [`PoolLimits::max_open`] connections to one peer per
//! worker (a request past it waits for one), at most
//! [`PoolLimits::max_idle`] of them kept idle.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use iolite_core::fd_body::ChunkedFrames;
use iolite_core::{Body, FdBody, HeaderLines, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest answer head accepted from a peer.
const MAX_HEAD: usize = 16 * 1024;

/// The pool's bounds and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Connections open to one peer, per worker.
    pub max_open: usize,
    /// Idle connections kept to one peer, per worker.
    pub max_idle: usize,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest wait for an answer's head, and then between its body's bytes.
    pub answer_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_open: 64,
            max_idle: 16,
            connect_timeout: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a forward failed.
#[derive(Debug)]
pub enum ForwardError {
    /// The peer could not be reached, or the connection broke, before any
    /// byte of an answer came: a GET or HEAD may be sent elsewhere.
    BeforeAnswer(std::io::Error),
    /// No answer's head within the answer timeout.
    TimedOut,
    /// The peer answered something that is not an HTTP/1.1 answer.
    Invalid(&'static str),
}

/// A pooled connection lent to one relayed answer: back to the pool when
/// the relay completed, closed otherwise.
#[derive(Debug)]
pub struct Lease {
    conn: TcpStream,
    peer: SocketAddr,
    /// The answer's framing let the connection be reused.
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

/// One worker's connections to the peers.
#[derive(Debug)]
pub struct Pool {
    limits: PoolLimits,
    idle: RefCell<HashMap<SocketAddr, Vec<TcpStream>>>,
    open: RefCell<HashMap<SocketAddr, Arc<Semaphore>>>,
}

/// A forwarded answer: the response to send and the connection's lease
/// (none when nothing is left to relay and the connection is back already).
#[derive(Debug)]
pub struct Forwarded {
    pub response: Response,
    pub lease: Option<Lease>,
    /// The peer, the target's owner, did not serve but named the node that
    /// should (`X-Iolite-Peer-Go`): nothing of this answer is sent.
    pub go: Option<String>,
}

impl Pool {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> Pool {
        Pool {
            limits,
            idle: RefCell::new(HashMap::new()),
            open: RefCell::new(HashMap::new()),
        }
    }

    /// Idle connections kept now, all peers together.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    /// The request-finished hook's end of a lease: `complete` means the
    /// whole answer was relayed.
    pub fn give_back(&self, lease: Lease, complete: bool) {
        if complete && lease.reusable {
            self.put(lease.peer, lease.conn);
        }
    }

    fn put(&self, peer: SocketAddr, conn: TcpStream) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(peer).or_default();
        if list.len() < self.limits.max_idle {
            list.push(conn);
        }
    }

    /// Sends `head` (a whole request head, signed) to `peer` and reads the
    /// answer's head. `head_only`: the request was HEAD (the answer has no
    /// body whatever its length says). `node` names the peer in the
    /// answer's `X-Iolite-Node` field.
    pub async fn forward(
        &self,
        peer: SocketAddr,
        node: &str,
        head: &[u8],
        head_only: bool,
    ) -> Result<Forwarded, ForwardError> {
        let sem = self
            .open
            .borrow_mut()
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.max_open)))
            .clone();
        let permit = tokio::time::timeout(self.limits.answer_timeout, sem.acquire_owned())
            .await
            .map_err(|_| ForwardError::TimedOut)?
            .map_err(|_| ForwardError::Invalid("pool closed"))?;
        // A pooled connection the peer has closed meanwhile fails at once:
        // then one fresh connection is tried before the peer is blamed.
        let pooled = self.idle.borrow_mut().get_mut(&peer).and_then(Vec::pop);
        let (conn, answer) = match pooled {
            Some(mut conn) => match self.exchange(&mut conn, head).await {
                Err(ForwardError::BeforeAnswer(_)) => {
                    let mut fresh = self.connect(peer).await?;
                    let a = self.exchange(&mut fresh, head).await?;
                    (fresh, a)
                }
                other => (conn, other?),
            },
            None => {
                let mut fresh = self.connect(peer).await?;
                let a = self.exchange(&mut fresh, head).await?;
                (fresh, a)
            }
        };
        let Answer {
            status,
            mut headers,
            framing,
            prefix,
            close,
            go,
            named,
        } = answer;
        if !named {
            headers.extend_from_slice(b"X-Iolite-Node: ");
            headers.extend_from_slice(node.as_bytes());
            headers.extend_from_slice(b"\r\n");
        }
        let headers = HeaderLines::Owned(headers);
        let no_body = head_only
            || status == 204
            || status == 304
            || (100..200).contains(&status)
            || framing == Framing::Length(0);
        if no_body {
            // Nothing follows the head: the connection is free again now.
            let len = match framing {
                Framing::Length(n) if head_only => n,
                _ => 0,
            };
            if !close && prefix.is_empty() {
                self.put(peer, conn);
            }
            let body = if len == 0 {
                Body::Empty
            } else {
                Body::Fd(Arc::new(length_only(len, self.limits.answer_timeout)?))
            };
            return Ok(Forwarded {
                response: Response::new(status, headers, body),
                lease: None,
                go,
            });
        }
        let dup = conn
            .as_fd()
            .try_clone_to_owned()
            .map_err(ForwardError::BeforeAnswer)?;
        let timeout = self.limits.answer_timeout;
        let (body, reusable) = match framing {
            Framing::Length(n) => (
                FdBody::new(dup, Some(n), timeout).map_err(ForwardError::BeforeAnswer)?,
                !close,
            ),
            Framing::Chunked => (
                FdBody::new(dup, None, timeout)
                    .map_err(ForwardError::BeforeAnswer)?
                    .framed(Box::<ChunkedFrames>::default()),
                !close,
            ),
            Framing::UntilClose => (
                FdBody::new(dup, None, timeout).map_err(ForwardError::BeforeAnswer)?,
                false,
            ),
        };
        let body = if prefix.is_empty() {
            body
        } else {
            body.with_prefix(prefix)
        };
        // The lease keeps the connection open while the duplicate relays.
        Ok(Forwarded {
            go,
            response: Response::new(status, headers, Body::Fd(Arc::new(body))),
            lease: Some(Lease {
                conn,
                peer,
                reusable,
                _permit: permit,
            }),
        })
    }

    async fn connect(&self, peer: SocketAddr) -> Result<TcpStream, ForwardError> {
        let conn = tokio::time::timeout(self.limits.connect_timeout, TcpStream::connect(peer))
            .await
            .map_err(|_| {
                ForwardError::BeforeAnswer(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(ForwardError::BeforeAnswer)?;
        let _ = conn.set_nodelay(true);
        Ok(conn)
    }

    /// Writes the request head and reads the answer's head.
    async fn exchange(&self, conn: &mut TcpStream, head: &[u8]) -> Result<Answer, ForwardError> {
        conn.write_all(head)
            .await
            .map_err(ForwardError::BeforeAnswer)?;
        tokio::time::timeout(self.limits.answer_timeout, read_answer_head(conn))
            .await
            .map_err(|_| ForwardError::TimedOut)?
    }
}

/// A body of `len` bytes that is never sent (the answer to a HEAD): an
/// empty pipe's read end stands for it.
fn length_only(len: u64, timeout: Duration) -> Result<FdBody, ForwardError> {
    let (reader, _writer) = std::io::pipe().map_err(ForwardError::BeforeAnswer)?;
    FdBody::new(reader.into(), Some(len), timeout).map_err(ForwardError::BeforeAnswer)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    /// The header lines to relay (the server writes its own framing,
    /// `Date`, `Server` and `Connection`).
    headers: Vec<u8>,
    framing: Framing,
    /// Body bytes read with the head (only when it came in pieces).
    prefix: Vec<u8>,
    close: bool,
    /// `X-Iolite-Peer-Go`: serve at this node instead.
    go: Option<String>,
    /// The answer already names the node that served it.
    named: bool,
}

/// Reads an answer's head: peeks until the whole head is in the socket,
/// then reads exactly the head. A head that comes in pieces is read as it
/// comes (the body bytes read with its end become the body's prefix).
async fn read_answer_head(conn: &mut TcpStream) -> Result<Answer, ForwardError> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut taken = Vec::new();
    loop {
        if taken.is_empty() {
            let n = conn
                .peek(&mut buf)
                .await
                .map_err(ForwardError::BeforeAnswer)?;
            if n == 0 {
                return Err(ForwardError::BeforeAnswer(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            if let Some(end) = head_end(&buf[..n]) {
                conn.read_exact(&mut buf[..end])
                    .await
                    .map_err(ForwardError::BeforeAnswer)?;
                return parse_answer(&buf[..end], Vec::new());
            }
            if n >= MAX_HEAD {
                return Err(ForwardError::Invalid("answer head too large"));
            }
            // Only part of the head is here: take it and read on.
            conn.read_exact(&mut buf[..n])
                .await
                .map_err(ForwardError::BeforeAnswer)?;
            taken.extend_from_slice(&buf[..n]);
            continue;
        }
        let n = conn
            .read(&mut buf)
            .await
            .map_err(ForwardError::BeforeAnswer)?;
        if n == 0 {
            // It died writing the head (a node killed under load): nothing
            // reached the client yet, so the request may go elsewhere.
            return Err(ForwardError::BeforeAnswer(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed inside an answer head",
            )));
        }
        taken.extend_from_slice(&buf[..n]);
        if let Some(end) = head_end(&taken) {
            let prefix = taken.split_off(end);
            return parse_answer(&taken, prefix);
        }
        if taken.len() >= MAX_HEAD {
            return Err(ForwardError::Invalid("answer head too large"));
        }
    }
}

/// An answer's head as the relay reads it from a peer: what the fuzz
/// target `relayed_answer` checks ([`relayed_head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedHead {
    pub status: u16,
    /// The header lines relayed to the client (`Name: value\r\n` each),
    /// without the fields the relaying server writes itself or the
    /// owner's redirection.
    pub headers: Vec<u8>,
    /// The body's length, when the head gives one.
    pub length: Option<u64>,
    pub chunked: bool,
    /// The peer closes the connection after this answer.
    pub close: bool,
    /// The node an owner named (`X-Iolite-Peer-Go`).
    pub go: Option<String>,
    /// Body bytes read with the head's end.
    pub prefix: usize,
}

/// Where the head ends in `bytes` (after its blank line), if it does.
pub fn answer_head_end(bytes: &[u8]) -> Option<usize> {
    head_end(bytes)
}

/// Parses `head` (a whole answer head, its blank line included) as the
/// relay does, with `prefix` the body bytes read along with it; an error
/// says why the answer is invalid (the client gets 502).
pub fn relayed_head(head: &[u8], prefix: Vec<u8>) -> Result<RelayedHead, &'static str> {
    let prefix_len = prefix.len();
    match parse_answer(head, prefix) {
        Ok(a) => Ok(RelayedHead {
            status: a.status,
            headers: a.headers,
            length: match a.framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            chunked: a.framing == Framing::Chunked,
            close: a.close,
            go: a.go,
            prefix: prefix_len,
        }),
        Err(ForwardError::Invalid(why)) => Err(why),
        Err(_) => Err("unreadable"),
    }
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Fields the relaying server writes itself.
const OWN_FIELDS: [&[u8]; 6] = [
    b"server",
    b"date",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"keep-alive",
];

fn parse_answer(head: &[u8], prefix: Vec<u8>) -> Result<Answer, ForwardError> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut fields);
    match r.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ForwardError::Invalid("incomplete head")),
        Err(_) => return Err(ForwardError::Invalid("malformed answer head")),
    }
    let status = r.code.ok_or(ForwardError::Invalid("no status"))?;
    if !(100..=999).contains(&status) {
        return Err(ForwardError::Invalid("status out of range"));
    }
    let mut headers = Vec::with_capacity(head.len());
    let mut length = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    let mut go = None;
    let mut named = false;
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(super::auth::GO.as_bytes()) {
            go = Some(String::from_utf8_lossy(h.value).into_owned());
            continue;
        }
        named |= name.eq_ignore_ascii_case(b"x-iolite-node");
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(ForwardError::Invalid("bad Content-Length"))?;
            if length.replace(n).is_some_and(|m| m != n) {
                return Err(ForwardError::Invalid("two Content-Lengths"));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err(ForwardError::Invalid("unsupported transfer coding"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        if OWN_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        headers.extend_from_slice(name);
        headers.extend_from_slice(b": ");
        headers.extend_from_slice(h.value);
        headers.extend_from_slice(b"\r\n");
    }
    let framing = match (chunked, length) {
        (true, Some(_)) => return Err(ForwardError::Invalid("both chunked and a length")),
        (true, None) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    if u64::try_from(prefix.len()).unwrap_or(u64::MAX) > 0
        && let Framing::Length(n) = framing
        && prefix.len() as u64 > n
    {
        return Err(ForwardError::Invalid("more body than its length"));
    }
    Ok(Answer {
        status,
        headers,
        framing,
        prefix,
        close,
        go,
        named,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_heads_as_a_table() {
        type Case = (
            &'static [u8],
            Result<(u16, Framing, bool, &'static [u8]), ()>,
        );
        let table: &[Case] = &[
            (
                b"HTTP/1.1 200 OK\r\nServer: iolite\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n",
                Ok((200, Framing::Length(5), false, b"ETag: \"x\"\r\n")),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                Ok((200, Framing::Chunked, true, b"")),
            ),
            (
                b"HTTP/1.0 404 Not Found\r\n\r\n",
                Ok((404, Framing::UntilClose, true, b"")),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Err(())),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Err(()),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Err(()),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                Err(()),
            ),
            (b"garbage\r\n\r\n", Err(())),
        ];
        for (head, want) in table {
            let got = parse_answer(head, Vec::new());
            match (got, want) {
                (Ok(a), Ok((status, framing, close, headers))) => {
                    assert_eq!(
                        (a.status, a.framing, a.close, &a.headers[..]),
                        (*status, *framing, *close, *headers),
                        "{}",
                        String::from_utf8_lossy(head)
                    );
                }
                (Err(_), Err(())) => {}
                (got, _) => panic!("{}: {got:?}", String::from_utf8_lossy(head)),
            }
        }
    }
}
