//! [`FdBody`]: an answer body whose bytes come from a descriptor — a pipe
//! (a CGI program's stdout) or a socket (a FastCGI peer, another node) —
//! moved to the client socket with `splice(2)`, so they never enter user
//! space (the send path: `send/splice.rs`).
//!
//! - Its length may be known (`Content-Length`) or not (chunked to
//!   HTTP/1.1 clients, until the connection closes to HTTP/1.0 ones).
//! - It may start with bytes already read in user space ([`FdBody::with_prefix`]:
//!   the tail of a CGI header block), counted as copied.
//! - Its source may be framed ([`FdBody::framed`] with a [`Deframe`]):
//!   the framing is read and parsed in user space, only the payload is
//!   spliced ([`ChunkedFrames`] for a chunked answer on a persistent
//!   connection; FastCGI records likewise).
//! - A client that reads slowly holds the producer back: nothing is read
//!   from the source until the client took what was read before, so
//!   memory stays bounded by the pipes.
//! - A source that ends short of the length (or of its framing's end)
//!   fails the send, and the connection closes: the client sees the cut.
//!
//! - It may be the whole answer, head included ([`FdBody::raw`]: a CGI
//!   program's non-parsed header output), sent as it comes.
//!
//! A handler that has not answered yet may drop an `FdBody` and redirect
//! internally instead ([`crate::Response::internal_redirect`]).

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use crate::descriptor::Descriptor;
use crate::http::ChunkedDecoder;

/// What comes next in a framed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Read exactly this many framing bytes and hand them to the next
    /// [`Deframe::next`] call (never more than the framing: the payload
    /// after it is spliced).
    Header(usize),
    /// This many payload bytes follow: they are spliced to the client.
    Payload(u64),
    /// This many bytes follow that are not payload (padding): read and
    /// dropped.
    Skip(u64),
    /// The body is complete.
    End,
}

/// The framing of a source: parsed in user space, a frame at a time.
pub trait Deframe: Send + fmt::Debug {
    /// What follows, given the framing bytes read for the last
    /// [`Frame::Header`] (empty at the start and after a payload or skip).
    /// An error ends the body short (the connection closes).
    fn next(&mut self, framing: &[u8]) -> Result<Frame, &'static str>;
}

/// A chunked body as a source's framing: size lines (and trailers) parsed
/// by core's [`ChunkedDecoder`], the chunk data spliced.
#[derive(Debug)]
pub struct ChunkedFrames(ChunkedDecoder);

impl Default for ChunkedFrames {
    fn default() -> Self {
        ChunkedFrames(ChunkedDecoder::new(u64::MAX))
    }
}

impl Deframe for ChunkedFrames {
    fn next(&mut self, framing: &[u8]) -> Result<Frame, &'static str> {
        let progress = self
            .0
            .feed(framing, |_| {})
            .map_err(|_| "invalid chunked framing")?;
        if progress.done {
            return Ok(Frame::End);
        }
        Ok(match self.0.skip_data() {
            Some(n) => Frame::Payload(n),
            // Size lines and trailers a byte at a time: never past them.
            None => Frame::Header(1),
        })
    }
}

/// The descriptor and what the send path needs with it, taken once.
#[derive(Debug)]
pub(crate) struct FdSource {
    pub fd: Descriptor,
    pub prefix: Vec<u8>,
    pub frames: Option<Box<dyn Deframe>>,
    /// Longest wait for the source's next bytes.
    pub idle_timeout: Duration,
}

/// An answer body read from a pipe or socket (see the module doc).
pub struct FdBody {
    len: Option<u64>,
    /// The source's bytes are the whole answer, head included.
    raw: bool,
    source: Mutex<Option<FdSource>>,
}

impl fmt::Debug for FdBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdBody")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl FdBody {
    /// A body read from `fd`, a pipe's read end or a stream socket (made
    /// non-blocking here): `len` bytes, prefix included (None: until the
    /// source ends, or its framing does). Each wait for the source's next
    /// bytes is bounded by `idle_timeout`: a source silent for longer ends
    /// the body short. Call on a worker thread (the descriptor joins its
    /// reactor).
    pub fn new(fd: OwnedFd, len: Option<u64>, idle_timeout: Duration) -> io::Result<FdBody> {
        let fd = Descriptor::reader(fd)?;
        Ok(FdBody {
            len,
            raw: false,
            source: Mutex::new(Some(FdSource {
                fd,
                prefix: Vec::new(),
                frames: None,
                idle_timeout,
            })),
        })
    }

    /// The body starts with `prefix`, bytes of it already read (counted as
    /// copied body bytes).
    pub fn with_prefix(self, prefix: Vec<u8>) -> FdBody {
        iolite_ipc::copied::add(prefix.len());
        self.edit(|s| s.prefix = prefix)
    }

    /// The source's bytes are the whole answer, status line and header
    /// fields included (a CGI program whose name starts with `nph-`): the
    /// server writes no head of its own, sends the bytes as they come,
    /// and closes the connection after them.
    pub fn raw(mut self) -> FdBody {
        self.raw = true;
        self
    }

    /// Whether the body is the whole answer ([`FdBody::raw`]).
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// The source is framed: only the payload `frames` finds is sent.
    pub fn framed(self, frames: Box<dyn Deframe>) -> FdBody {
        self.edit(|s| s.frames = Some(frames))
    }

    fn edit(self, f: impl FnOnce(&mut FdSource)) -> FdBody {
        if let Ok(mut source) = self.source.lock()
            && let Some(s) = source.as_mut()
        {
            f(s);
        }
        self
    }

    /// The body's length, when known.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// The source, once (the send path takes it).
    pub(crate) fn take(&self) -> Option<FdSource> {
        self.source.lock().ok()?.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked framing of `input` fed as the send path feeds it:
    /// returns the payload runs and whether the body ended.
    fn frames(input: &[u8]) -> Result<(Vec<u64>, usize), &'static str> {
        let mut f = ChunkedFrames::default();
        let mut at = 0;
        let mut payload = Vec::new();
        let mut framing: &[u8] = &[];
        loop {
            match f.next(framing)? {
                Frame::Header(n) => {
                    if at + n > input.len() {
                        return Err("input ended");
                    }
                    framing = &input[at..at + n];
                    at += n;
                }
                Frame::Payload(n) => {
                    payload.push(n);
                    at += n as usize;
                    framing = &[];
                }
                Frame::Skip(n) => {
                    at += n as usize;
                    framing = &[];
                }
                Frame::End => return Ok((payload, at)),
            }
        }
    }

    #[test]
    fn chunked_framing_finds_the_payload_and_reads_no_byte_past_the_end_table() {
        /// Input; the payload runs and where the body ended, or an error.
        type Case = (&'static [u8], Result<(&'static [u64], usize), ()>);
        let table: &[Case] = &[
            (b"5\r\nhello\r\n0\r\n\r\nNEXT", Ok((&[5], 15))),
            (
                b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
                Ok((&[3, 2], 34)),
            ),
            (b"0\r\n\r\n", Ok((&[], 5))),
            (b"zz\r\n", Err(())),
            (b"5\r\nhelloXX", Err(())),
            (b"5\r\nhel", Err(())),
        ];
        for (input, want) in table {
            let got = frames(input);
            match want {
                Ok((runs, end)) => {
                    assert_eq!(
                        got,
                        Ok((runs.to_vec(), *end)),
                        "{:?}",
                        String::from_utf8_lossy(input)
                    );
                }
                Err(()) => assert!(got.is_err(), "{:?}", String::from_utf8_lossy(input)),
            }
        }
    }
}
