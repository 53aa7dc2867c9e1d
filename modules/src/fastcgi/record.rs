//! FastCGI records (the FastCGI 1.0 specification, Open Market 1996): the
//! client's side of the codec.
//!
//! Written by hand rather than taken from a crate: fastcgi-client (the
//! maintained client) reads into its own buffers and hands STDOUT on as
//! its own `Bytes`, so its payloads could neither land in our pools nor be
//! spliced from the socket; it writes a record in three calls and cannot
//! abort a request. The format is small: an 8-byte header, a content of
//! at most 65,535 bytes and up to 255 bytes of padding.
//!
//! - Out: [`begin_request`], [`params`] (name-value pairs split into
//!   `PARAMS` records), [`stream_header`] for `STDIN` records whose
//!   content goes out as it is (written or spliced behind the header),
//!   [`abort_request`].
//! - In: a [`Deframer`] that the peer's bytes go through. It yields
//!   `STDOUT` and `STDERR` content and the `END_REQUEST`; while it is inside
//!   a record's content, the caller may move that content without reading
//!   it (splice from the socket) and tell it how much went
//!   ([`Deframer::skip_content`]).

use std::fmt;
use std::ops::Range;

use iolite_core::fd_body::{Deframe, Frame};

pub const VERSION_1: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// The most content one record carries.
pub const MAX_CONTENT: usize = u16::MAX as usize;

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

/// The role of a request: the only one a web server asks for.
pub const RESPONDER: u16 = 1;
/// `BEGIN_REQUEST` flag: keep the connection open after the request.
pub const KEEP_CONN: u8 = 1;

/// `END_REQUEST`'s protocol status.
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

/// A record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [id_hi, id_lo] = self.request_id.to_be_bytes();
        let [len_hi, len_lo] = self.content_length.to_be_bytes();
        [
            VERSION_1,
            self.kind,
            id_hi,
            id_lo,
            len_hi,
            len_lo,
            self.padding_length,
            0,
        ]
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, RecordError> {
        if b[0] != VERSION_1 {
            return Err(RecordError::Version(b[0]));
        }
        Ok(Header {
            kind: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        })
    }
}

/// The end of a request as the application tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest {
    pub app_status: u32,
    pub protocol_status: u8,
}

/// What the peer sent that the client cannot accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// A version other than 1.
    Version(u8),
    /// A record for another request than the one in progress.
    RequestId { got: u16, want: u16 },
    /// A record type a client never receives (BEGIN_REQUEST, PARAMS,
    /// STDIN, DATA, ...) or does not know.
    UnexpectedType(u8),
    /// An `END_REQUEST` whose content is not 8 bytes.
    BadEndRequest { len: u16 },
    /// `END_REQUEST` with a protocol status other than REQUEST_COMPLETE.
    Refused(u8),
    /// A record after `END_REQUEST`.
    AfterEnd,
    /// Name-value pairs that run past their content.
    BadPairs,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Version(v) => write!(f, "record of FastCGI version {v}, not 1"),
            RecordError::RequestId { got, want } => {
                write!(f, "record for request {got} while {want} is in progress")
            }
            RecordError::UnexpectedType(t) => write!(f, "unexpected record type {t}"),
            RecordError::BadEndRequest { len } => {
                write!(f, "END_REQUEST of {len} bytes, not 8")
            }
            RecordError::Refused(s) => write!(
                f,
                "request refused: {}",
                match *s {
                    CANT_MPX_CONN => "cannot multiplex connections",
                    OVERLOADED => "overloaded",
                    UNKNOWN_ROLE => "unknown role",
                    _ => "unknown protocol status",
                }
            ),
            RecordError::AfterEnd => write!(f, "record after END_REQUEST"),
            RecordError::BadPairs => write!(f, "name-value pairs run past their record"),
        }
    }
}

impl std::error::Error for RecordError {}

/// `BEGIN_REQUEST` for a responder.
pub fn begin_request(request_id: u16, keep_conn: bool) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(
        &Header {
            kind: BEGIN_REQUEST,
            request_id,
            content_length: 8,
            padding_length: 0,
        }
        .encode(),
    );
    out[8..10].copy_from_slice(&RESPONDER.to_be_bytes());
    out[10] = if keep_conn { KEEP_CONN } else { 0 };
    out
}

/// `ABORT_REQUEST`.
pub fn abort_request(request_id: u16) -> [u8; HEADER_LEN] {
    Header {
        kind: ABORT_REQUEST,
        request_id,
        content_length: 0,
        padding_length: 0,
    }
    .encode()
}

/// The header of a stream record (`STDIN`) with `len` bytes of content
/// (`len` ≤ [`MAX_CONTENT`]; 0 ends the stream) and no padding.
pub fn stream_header(kind: u8, request_id: u16, len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_CONTENT);
    Header {
        kind,
        request_id,
        content_length: len.min(MAX_CONTENT) as u16,
        padding_length: 0,
    }
    .encode()
}

/// Appends the `PARAMS` stream for `pairs` to `out`: as many records as
/// the pairs need (a pair may span two), padded to 8 bytes, then the empty
/// record that ends the stream.
pub fn params<'a>(request_id: u16, pairs: impl IntoIterator<Item = Pair<'a>>, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    for (name, value) in pairs {
        put_length(name.len(), &mut body);
        put_length(value.len(), &mut body);
        body.extend_from_slice(name);
        body.extend_from_slice(value);
    }
    for chunk in body.chunks(MAX_CONTENT - 7) {
        let padding = (8 - chunk.len() % 8) % 8;
        out.extend_from_slice(
            &Header {
                kind: PARAMS,
                request_id,
                content_length: chunk.len() as u16,
                padding_length: padding as u8,
            }
            .encode(),
        );
        out.extend_from_slice(chunk);
        out.extend(std::iter::repeat_n(0, padding));
    }
    out.extend_from_slice(&stream_header(PARAMS, request_id, 0));
}

/// A name-value pair length: one byte below 128, else four with the top
/// bit set. Lengths above 2^31 - 1 cannot be said; nothing sends them
/// (the caller's header limits are far below).
fn put_length(len: usize, out: &mut Vec<u8>) {
    if len < 128 {
        out.push(len as u8);
    } else {
        let len = (len.min(0x7fff_ffff) as u32) | 0x8000_0000;
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A name and its value, as `PARAMS` and `GET_VALUES_RESULT` carry them.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Decodes name-value pairs (a `GET_VALUES_RESULT`'s content, or a
/// `PARAMS` stream put back together).
pub fn pairs(mut content: &[u8]) -> Result<Vec<Pair<'_>>, RecordError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (name_len, rest) = take_length(content)?;
        let (value_len, rest) = take_length(rest)?;
        let total = name_len
            .checked_add(value_len)
            .ok_or(RecordError::BadPairs)?;
        if rest.len() < total {
            return Err(RecordError::BadPairs);
        }
        out.push((&rest[..name_len], &rest[name_len..total]));
        content = &rest[total..];
    }
    Ok(out)
}

fn take_length(b: &[u8]) -> Result<(usize, &[u8]), RecordError> {
    match b {
        [first, rest @ ..] if *first < 128 => Ok((*first as usize, rest)),
        [a, b, c, d, rest @ ..] => {
            let n = u32::from_be_bytes([*a & 0x7f, *b, *c, *d]);
            Ok((n as usize, rest))
        }
        _ => Err(RecordError::BadPairs),
    }
}

/// What one step of the [`Deframer`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Nothing complete yet: more bytes are needed.
    None,
    /// `STDOUT` content: this range of the input.
    Stdout(Range<usize>),
    /// `STDERR` content: this range of the input.
    Stderr(Range<usize>),
    /// The request is over.
    End(EndRequest),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a header: the bytes so far.
    Header { have: [u8; HEADER_LEN], len: usize },
    /// Inside a record's content.
    Content {
        kind: u8,
        left: usize,
        padding: usize,
    },
    /// Reading an `END_REQUEST`'s 8 bytes.
    End {
        have: [u8; 8],
        len: usize,
        padding: usize,
    },
    /// Skipping padding.
    Padding {
        left: usize,
        then_end: Option<EndRequest>,
    },
    /// `END_REQUEST` read.
    Done,
}

/// The peer's records for one request, as they arrive in any splits.
#[derive(Debug, Clone)]
pub struct Deframer {
    request_id: u16,
    state: State,
    /// Whom `STDERR` lines are logged for once the deframer drives the
    /// send path ([`Deframe`]).
    stderr_name: Option<std::sync::Arc<str>>,
}

impl Deframer {
    pub fn new(request_id: u16) -> Deframer {
        Deframer {
            request_id,
            state: State::Header {
                have: [0; HEADER_LEN],
                len: 0,
            },
            stderr_name: None,
        }
    }

    /// Once it drives the send path, `STDERR` content is logged under
    /// `name` (a warning a record).
    pub fn log_stderr_as(mut self, name: std::sync::Arc<str>) -> Deframer {
        self.stderr_name = Some(name);
        self
    }

    /// Reads from `input` until it yields a piece or needs more bytes:
    /// how many bytes of `input` it used, and the piece. Content ranges
    /// are ranges of `input`. Empty `STDOUT`/`STDERR` records (a stream's
    /// end) and management records (request id 0) yield nothing.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Piece), RecordError> {
        let mut at = 0;
        loop {
            match &mut self.state {
                State::Done => {
                    return if input.is_empty() {
                        Ok((0, Piece::None))
                    } else {
                        Err(RecordError::AfterEnd)
                    };
                }
                State::Header { have, len } => {
                    let take = (HEADER_LEN - *len).min(input.len() - at);
                    have[*len..*len + take].copy_from_slice(&input[at..at + take]);
                    *len += take;
                    at += take;
                    if *len < HEADER_LEN {
                        return Ok((at, Piece::None));
                    }
                    let header = Header::decode(have)?;
                    self.state = self.after_header(header)?;
                }
                State::Content {
                    kind,
                    left,
                    padding,
                } => {
                    let take = (*left).min(input.len() - at);
                    if take == 0 {
                        return Ok((at, Piece::None));
                    }
                    let range = at..at + take;
                    let kind = *kind;
                    *left -= take;
                    at += take;
                    if *left == 0 {
                        self.state = State::Padding {
                            left: *padding,
                            then_end: None,
                        };
                    }
                    // Management records' content is read past.
                    match kind {
                        STDOUT => return Ok((at, Piece::Stdout(range))),
                        STDERR => return Ok((at, Piece::Stderr(range))),
                        _ => {}
                    }
                }
                State::End { have, len, padding } => {
                    let take = (8 - *len).min(input.len() - at);
                    have[*len..*len + take].copy_from_slice(&input[at..at + take]);
                    *len += take;
                    at += take;
                    if *len < 8 {
                        return Ok((at, Piece::None));
                    }
                    let end = EndRequest {
                        app_status: u32::from_be_bytes([have[0], have[1], have[2], have[3]]),
                        protocol_status: have[4],
                    };
                    if end.protocol_status != REQUEST_COMPLETE {
                        return Err(RecordError::Refused(end.protocol_status));
                    }
                    self.state = State::Padding {
                        left: *padding,
                        then_end: Some(end),
                    };
                }
                State::Padding { left, then_end } => {
                    let take = (*left).min(input.len() - at);
                    *left -= take;
                    at += take;
                    if *left > 0 {
                        return Ok((at, Piece::None));
                    }
                    let end = then_end.take();
                    self.state = match end {
                        Some(_) => State::Done,
                        None => State::Header {
                            have: [0; HEADER_LEN],
                            len: 0,
                        },
                    };
                    if let Some(end) = end {
                        return Ok((at, Piece::End(end)));
                    }
                }
            }
        }
    }

    fn after_header(&self, h: Header) -> Result<State, RecordError> {
        let padding = h.padding_length as usize;
        let len = h.content_length as usize;
        if h.request_id == 0 {
            // A management record (GET_VALUES_RESULT, UNKNOWN_TYPE):
            // nothing a request waits for; read past it.
            return Ok(match (h.kind, len) {
                (GET_VALUES_RESULT | UNKNOWN_TYPE, 0) => State::Padding {
                    left: padding,
                    then_end: None,
                },
                (GET_VALUES_RESULT | UNKNOWN_TYPE, _) => State::Content {
                    kind: h.kind,
                    left: len,
                    padding,
                },
                (kind, _) => return Err(RecordError::UnexpectedType(kind)),
            });
        }
        if h.request_id != self.request_id {
            return Err(RecordError::RequestId {
                got: h.request_id,
                want: self.request_id,
            });
        }
        match h.kind {
            STDOUT | STDERR if len == 0 => Ok(State::Padding {
                left: padding,
                then_end: None,
            }),
            STDOUT | STDERR => Ok(State::Content {
                kind: h.kind,
                left: len,
                padding,
            }),
            END_REQUEST if len == 8 => Ok(State::End {
                have: [0; 8],
                len: 0,
                padding,
            }),
            END_REQUEST => Err(RecordError::BadEndRequest {
                len: h.content_length,
            }),
            other => Err(RecordError::UnexpectedType(other)),
        }
    }

    /// Inside a `STDOUT` record's content: how much of it is still to
    /// come. The caller may move up to that many bytes by other means and
    /// then call [`Deframer::skip_content`].
    pub fn stdout_left(&self) -> Option<usize> {
        match self.state {
            State::Content {
                kind: STDOUT, left, ..
            } => Some(left),
            _ => None,
        }
    }

    /// `n` bytes of the current `STDOUT` content went by other means
    /// (`n` ≤ [`Deframer::stdout_left`]).
    pub fn skip_content(&mut self, n: usize) {
        if let State::Content {
            kind: STDOUT,
            left,
            padding,
        } = &mut self.state
        {
            let n = n.min(*left);
            *left -= n;
            if *left == 0 {
                self.state = State::Padding {
                    left: *padding,
                    then_end: None,
                };
            }
        }
    }

    /// Whether `END_REQUEST` has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

/// The rest of the answer on the send path: record headers, `STDERR`
/// content and padding are read in user space, `STDOUT` content is
/// spliced to the client. It goes on from wherever [`Deframer::step`]
/// left off.
impl Deframe for Deframer {
    fn next(&mut self, framing: &[u8]) -> Result<Frame, &'static str> {
        const MALFORMED: &str = "malformed FastCGI records";
        let mut input = framing;
        loop {
            match &mut self.state {
                State::Done => return Ok(Frame::End),
                State::Header { have, len } => {
                    let take = (HEADER_LEN - *len).min(input.len());
                    have[*len..*len + take].copy_from_slice(&input[..take]);
                    *len += take;
                    input = &input[take..];
                    if *len < HEADER_LEN {
                        return Ok(Frame::Header(HEADER_LEN - *len));
                    }
                    let header = Header::decode(have).map_err(|_| MALFORMED)?;
                    self.state = self.after_header(header).map_err(|_| MALFORMED)?;
                }
                State::Content {
                    kind,
                    left,
                    padding,
                } => {
                    let (kind, left_now, padding) = (*kind, *left, *padding);
                    if kind == STDOUT {
                        self.state = State::Padding {
                            left: padding,
                            then_end: None,
                        };
                        return Ok(Frame::Payload(left_now as u64));
                    }
                    if kind != STDERR {
                        self.state = State::Padding {
                            left: padding,
                            then_end: None,
                        };
                        return Ok(Frame::Skip(left_now as u64));
                    }
                    if input.is_empty() {
                        return Ok(Frame::Header(left_now));
                    }
                    let take = left_now.min(input.len());
                    if let Some(name) = &self.stderr_name {
                        log_stderr(name, &input[..take]);
                    }
                    input = &input[take..];
                    self.state = if take == left_now {
                        State::Padding {
                            left: padding,
                            then_end: None,
                        }
                    } else {
                        State::Content {
                            kind,
                            left: left_now - take,
                            padding,
                        }
                    };
                }
                State::End { have, len, padding } => {
                    let take = (8 - *len).min(input.len());
                    have[*len..*len + take].copy_from_slice(&input[..take]);
                    *len += take;
                    input = &input[take..];
                    if *len < 8 {
                        return Ok(Frame::Header(8 - *len));
                    }
                    if have[4] != REQUEST_COMPLETE {
                        return Err("the FastCGI peer refused the request");
                    }
                    let end = EndRequest {
                        app_status: u32::from_be_bytes([have[0], have[1], have[2], have[3]]),
                        protocol_status: have[4],
                    };
                    // Its padding too, as `step` reads it.
                    self.state = State::Padding {
                        left: *padding,
                        then_end: Some(end),
                    };
                }
                State::Padding { left, then_end } => {
                    if *left > 0 {
                        let skip = *left as u64;
                        *left = 0;
                        return Ok(Frame::Skip(skip));
                    }
                    self.state = match then_end.take() {
                        Some(_) => State::Done,
                        None => State::Header {
                            have: [0; HEADER_LEN],
                            len: 0,
                        },
                    };
                }
            }
        }
    }
}

/// A peer's `STDERR` content as warnings, a line each (at most 2 KiB).
pub fn log_stderr(name: &str, content: &[u8]) {
    for line in content.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let shown = String::from_utf8_lossy(&line[..line.len().min(2048)]);
        tracing::warn!(fastcgi = name, "stderr: {shown}");
    }
}

#[cfg(test)]
mod tests;
