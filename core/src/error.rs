//! The crate's one error type. Every variant that can reach a client carries
//! its HTTP status ([`Error::status`]); [`Error::side`] says who caused it and
//! [`Error::retry_safe`] whether repeating the same request could succeed.
//! A failure of what a handler relies on (a module's runner, a CGI program,
//! a FastCGI peer, a WebAssembly guest, a peer node) is
//! [`Error::Upstream`]: its [`UpstreamFailure`] gives the status (503
//! unavailable, 502 crashed or answered invalidly, 504 timed out).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong (4xx).
    Client,
    /// What the handler relies on failed: a module, CGI program, FastCGI
    /// peer, WebAssembly guest or peer node (502, 503, 504).
    Upstream,
    /// The server itself failed or is not built for the request (5xx).
    Internal,
}

impl Side {
    /// The side's name in metrics labels and the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// What kind of upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamKind {
    /// A process module's runner.
    Module,
    /// A CGI program.
    Cgi,
    /// A FastCGI peer (php-fpm, fcgiwrap).
    FastCgi,
    /// A WebAssembly guest.
    Wasm,
    /// Another node of the cluster.
    Peer,
}

impl UpstreamKind {
    fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Module => "module",
            UpstreamKind::Cgi => "cgi",
            UpstreamKind::FastCgi => "fastcgi",
            UpstreamKind::Wasm => "wasm",
            UpstreamKind::Peer => "peer",
        }
    }
}

/// How an upstream failed; each kind has its status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamFailure {
    /// It cannot take the request now: busy, not started, its queue full
    /// (503; a retry may succeed).
    Unavailable(&'static str),
    /// It died, or its link broke, before it answered (502).
    Crashed,
    /// It answered something that cannot be sent (502).
    InvalidAnswer(&'static str),
    /// It did not answer within its time limit (504).
    TimedOut,
}

impl UpstreamFailure {
    /// The status a client receives.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamFailure::Unavailable(_) => 503,
            UpstreamFailure::Crashed | UpstreamFailure::InvalidAnswer(_) => 502,
            UpstreamFailure::TimedOut => 504,
        }
    }
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFailure::Unavailable(why) => write!(f, "unavailable ({why})"),
            UpstreamFailure::Crashed => f.write_str("failed before it answered"),
            UpstreamFailure::InvalidAnswer(why) => write!(f, "answered invalidly ({why})"),
            UpstreamFailure::TimedOut => f.write_str("timed out"),
        }
    }
}

/// Everything that can go wrong in iolite-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A malformed request line, header, body framing or target (400).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target is longer than the limit (414).
    #[error("request target longer than the limit")]
    UriTooLong,
    /// The request head (or a chunked trailer) is larger than the limit (431).
    #[error("request head larger than the limit")]
    HeadTooLarge,
    /// The request body is larger than the limit (413).
    #[error("request body larger than the limit")]
    BodyTooLarge,
    /// The head was not complete before the header timeout (408).
    #[error("request head not received before the header timeout")]
    HeaderTimeout,
    /// An `Expect` other than `100-continue` (417).
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// A known method the resource does not support (405; `Allow: GET, HEAD`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// An unknown method or transfer coding (501).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// The path would leave the document root or names something that may
    /// not be served: `..` above the root, an encoded slash or NUL, a symlink
    /// leading outside the root, a file the server may not read (403).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A handler needs the body's length up front and got a chunked body (411).
    #[error("length required: {0}")]
    LengthRequired(&'static str),
    /// A content handler cannot take the request now (a module's request
    /// pool is full): backpressure, try again (503).
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// Nothing at that path (404).
    #[error("not found")]
    NotFound,
    /// An `If-Match` or `If-Unmodified-Since` that the representation
    /// fails (412, RFC 9110 §13.2.2).
    #[error("precondition failed")]
    PreconditionFailed,
    /// A `Range` that selects no byte of a representation of `len` bytes (416).
    #[error("range not satisfiable (representation is {len} bytes)")]
    RangeNotSatisfiable {
        /// The representation's length, for `Content-Range: bytes */len`.
        len: u64,
    },
    /// What the handler relies on failed (502, 503 or 504: see
    /// [`UpstreamFailure::status`]).
    #[error("{} {name}: {failure}", kind.as_str())]
    Upstream {
        /// Which kind of upstream.
        kind: UpstreamKind,
        /// Which one (a module's mount prefix, a program's path, a peer's
        /// address).
        name: Arc<str>,
        /// How it failed.
        failure: UpstreamFailure,
    },
    /// An I/O failure while serving (500).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A listener could not be set up (start-up only, never sent to a client).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// A server option is unusable (start-up only).
    #[error("invalid option: {0}")]
    Options(String),
}

impl Error {
    /// The HTTP status a client receives for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Forbidden(_) => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::HeaderTimeout => 408,
            Error::LengthRequired(_) => 411,
            Error::PreconditionFailed => 412,
            Error::BodyTooLarge => 413,
            Error::UriTooLong => 414,
            Error::RangeNotSatisfiable { .. } => 416,
            Error::ExpectationFailed => 417,
            Error::HeadTooLarge => 431,
            Error::NotImplemented(_) => 501,
            Error::Unavailable(_) => 503,
            Error::Upstream { failure, .. } => failure.status(),
            Error::Io(_) | Error::Listen { .. } | Error::Options(_) => 500,
        }
    }

    /// An upstream failure.
    pub fn upstream(kind: UpstreamKind, name: Arc<str>, failure: UpstreamFailure) -> Self {
        Error::Upstream {
            kind,
            name,
            failure,
        }
    }

    /// Who caused the error.
    pub fn side(&self) -> Side {
        match self {
            Error::Upstream { .. } => Side::Upstream,
            _ if self.status() < 500 => Side::Client,
            _ => Side::Internal,
        }
    }

    /// Whether sending the same request again could succeed (only transient
    /// server-side failures).
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::HeaderTimeout
                | Error::Unavailable(_)
                | Error::Upstream {
                    failure: UpstreamFailure::Unavailable(_),
                    ..
                }
        )
    }
}
