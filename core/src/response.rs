//! What a handler answers: a status, pre-formatted header lines and a
//! [`Body`] that the send path writes without copying its bytes.

use std::fs::File;
use std::sync::Arc;

use crate::cache::CachedBody;
use crate::error::{Error, Side, UpstreamFailure};
use crate::fd_body::FdBody;

/// Header fields of a response, each line ending in CRLF. `Server`, `Date`,
/// `Content-Length` and `Connection` are added by the server and must not be
/// here. Shared lines let a cached response head go out with no allocation.
#[derive(Debug, Clone)]
pub enum HeaderLines {
    None,
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl HeaderLines {
    /// The lines as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            HeaderLines::None => b"",
            HeaderLines::Static(b) => b,
            HeaderLines::Shared(b) => b,
            HeaderLines::Owned(b) => b,
        }
    }
}

/// A byte range of an open file, sent with `sendfile(2)`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// A response body. No variant is copied on its way out: memory goes out
/// with the head in one `writev`, file ranges with `sendfile` after it.
///
/// The send path takes bodies as a sequence of [`crate::send::Chunk`]s
/// (memory or file range): each slice of an aggregate (a cached body, a
/// module's answer) becomes a memory chunk, batched into the writev (see
/// [`crate::send::Chunks`] for why not `sendfile` from the pool's memfd).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Body {
    Empty,
    /// A fixed text (error pages).
    Static(&'static [u8]),
    /// Bytes a handler generated (admin pages, redirects).
    Bytes(Vec<u8>),
    /// A range of a file.
    File(FileRange),
    /// `len` bytes from `offset` of a file held in the unified cache: slices
    /// of the cache pool's sealed memfd.
    Cached {
        body: Arc<CachedBody>,
        offset: u64,
        len: u64,
    },
    /// An aggregate of shared-memory slices (a process module's answer: its
    /// output pool, the request body, the cache pool), sent by reference.
    Agg(iolite_ipc::Agg),
    /// A body produced in parts (a process module streaming its answer):
    /// exactly `len` bytes arrive as aggregates, each sent by reference as
    /// it comes, so the whole body is never held at once.
    Stream(Arc<StreamBody>),
    /// A body read from a pipe or socket and spliced to the client (a CGI
    /// program's output, a FastCGI or peer connection): see [`FdBody`].
    Fd(Arc<FdBody>),
    /// A `multipart/byteranges` body: the server's framing around parts
    /// that are each a cached slice or a file range (see
    /// [`MultipartBody`]).
    Multipart(Arc<MultipartBody>),
}

/// The parts of a [`Body::Multipart`]: the framing bytes the server wrote
/// (part heads, the close delimiter: `crate::http::multipart`) and each
/// part's bytes by reference, so nothing of the representation is copied.
#[derive(Debug)]
pub struct MultipartBody {
    framing: Vec<u8>,
    /// Each part: where its head ends in `framing` (it starts where the
    /// previous one ended), and its bytes.
    parts: Vec<(usize, Body)>,
    len: u64,
}

impl MultipartBody {
    /// A body of `parts`, each the end of its head in `framing` and its
    /// bytes; what follows the last head in `framing` is the close
    /// delimiter.
    pub fn new(framing: Vec<u8>, parts: Vec<(usize, Body)>) -> Self {
        let len = framing.len() as u64 + parts.iter().map(|(_, b)| b.len()).sum::<u64>();
        MultipartBody {
            framing,
            parts,
            len,
        }
    }

    /// The parts, each its head (framing bytes) and its body, then the
    /// close delimiter.
    pub fn pieces(&self) -> (impl Iterator<Item = (&[u8], &Body)>, &[u8]) {
        let mut start = 0;
        let pieces = self.parts.iter().map(move |(end, body)| {
            let head = &self.framing[start..*end];
            start = *end;
            (head, body)
        });
        let tail_start = self.parts.last().map_or(0, |(end, _)| *end);
        (pieces, &self.framing[tail_start..])
    }
}

/// The parts of a [`Body::Stream`]. The sender ends early by dropping its
/// side: the connection then closes (the promised length cannot be met).
/// A stream of unknown length ([`StreamBody::open_ended`]) goes out in
/// chunks (HTTP/1.1) or until the connection closes (HTTP/1.0); an empty
/// part ends it.
#[derive(Debug)]
pub struct StreamBody {
    len: Option<u64>,
    parts: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<iolite_ipc::Agg>>>,
}

impl StreamBody {
    /// A body of `len` bytes arriving on `parts`.
    pub fn new(len: u64, parts: tokio::sync::mpsc::UnboundedReceiver<iolite_ipc::Agg>) -> Self {
        StreamBody {
            len: Some(len),
            parts: std::sync::Mutex::new(Some(parts)),
        }
    }

    /// A body of unknown length arriving on `parts`, ended by an empty part.
    pub fn open_ended(parts: tokio::sync::mpsc::UnboundedReceiver<iolite_ipc::Agg>) -> Self {
        StreamBody {
            len: None,
            parts: std::sync::Mutex::new(Some(parts)),
        }
    }

    /// The promised length (None: unknown).
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the promised length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// The parts, once (the send path takes them).
    pub fn take_parts(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<iolite_ipc::Agg>> {
        self.parts.lock().ok()?.take()
    }
}

impl Body {
    /// The body's length in bytes: the `Content-Length` it is sent with (0
    /// for a stream of unknown length: see [`Body::is_open_ended`]).
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => f.len,
            Body::Cached { len, .. } => *len,
            Body::Agg(agg) => agg.len() as u64,
            Body::Stream(s) => s.len().unwrap_or(0),
            Body::Fd(f) => f.len().unwrap_or(0),
            Body::Multipart(m) => m.len,
        }
    }

    /// Whether the body's length is unknown until it ends (a stream or a
    /// descriptor body, sent in chunks).
    pub fn is_open_ended(&self) -> bool {
        match self {
            Body::Stream(s) => s.len().is_none(),
            Body::Fd(f) => f.len().is_none(),
            _ => false,
        }
    }

    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A complete answer to one request.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderLines,
    pub body: Body,
    /// Close the connection after this response (the request stream may be
    /// out of step, or the client asked for it).
    pub close: bool,
    /// Not sent: the request is served again, as a `GET` of this target
    /// (see [`Response::internal_redirect`]).
    pub redirect: Option<Box<[u8]>>,
    /// The side that caused the error this response answers (set by
    /// [`Response::from_error`]): counted on `/metrics` and written to the
    /// access log.
    pub error: Option<Side>,
}

const TEXT: &[u8] = b"Content-Type: text/plain; charset=utf-8\r\n";

impl Response {
    /// A response with no reason to close the connection.
    pub fn new(status: u16, headers: HeaderLines, body: Body) -> Self {
        Response {
            status,
            headers,
            body,
            close: false,
            redirect: None,
            error: None,
        }
    }

    /// An internal redirect: instead of an answer, the request is served
    /// again as a `GET` of `target` (a path, with a query if any), with no
    /// body and none of the original's header fields, through the phases
    /// from the start (CGI's local redirects: RFC 3875 section 6.2.2). The
    /// access log shows the original request. Nothing of this response is
    /// sent; at most 10 redirects follow each other (then 500).
    pub fn internal_redirect(target: &[u8]) -> Self {
        Response {
            redirect: Some(target.into()),
            ..Response::new(200, HeaderLines::None, Body::Empty)
        }
    }

    /// The one error path: the response a client gets for `error`. Errors
    /// that leave the request stream in doubt (bad framing, limits, timeouts)
    /// close the connection.
    pub fn from_error(error: &Error) -> Self {
        let status = error.status();
        let headers = match error {
            Error::MethodNotAllowed => HeaderLines::Static(
                b"Allow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\n",
            ),
            // Unavailable for now: a retry may succeed (RFC 9110 §10.2.3).
            Error::Unavailable(_)
            | Error::Upstream {
                failure: UpstreamFailure::Unavailable(_),
                ..
            } => HeaderLines::Static(
                b"Retry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n",
            ),
            Error::RangeNotSatisfiable { len } => {
                let mut lines = b"Content-Range: bytes */".to_vec();
                crate::http::response::push_decimal(&mut lines, *len);
                lines.extend_from_slice(b"\r\n");
                lines.extend_from_slice(TEXT);
                HeaderLines::Owned(lines)
            }
            _ => HeaderLines::Static(TEXT),
        };
        let close = matches!(status, 400 | 408 | 411 | 413 | 414 | 417 | 431 | 500 | 501);
        Response {
            status,
            headers,
            body: Body::Static(error_text(status)),
            close,
            redirect: None,
            error: Some(error.side()),
        }
    }
}

fn error_text(status: u16) -> &'static [u8] {
    match status {
        400 => b"400 Bad Request\n",
        403 => b"403 Forbidden\n",
        404 => b"404 Not Found\n",
        405 => b"405 Method Not Allowed\n",
        411 => b"411 Length Required\n",
        412 => b"412 Precondition Failed\n",
        408 => b"408 Request Timeout\n",
        413 => b"413 Content Too Large\n",
        414 => b"414 URI Too Long\n",
        416 => b"416 Range Not Satisfiable\n",
        417 => b"417 Expectation Failed\n",
        431 => b"431 Request Header Fields Too Large\n",
        501 => b"501 Not Implemented\n",
        502 => b"502 Bad Gateway\n",
        503 => b"503 Service Unavailable\n",
        504 => b"504 Gateway Timeout\n",
        _ => b"500 Internal Server Error\n",
    }
}
