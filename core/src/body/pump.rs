//! The pump: one request body from the client socket into a [`BodySink`],
//! whatever its framing. The bytes that came with the head are handed to
//! the sink first; a body of known length is then read straight into the
//! sink's space (or spliced into its descriptor); a chunked body is read
//! into the connection's buffer and decoded into the sink, never taking
//! more input than the sink has room for. `100 Continue` goes out before
//! the first read from the socket, if the client waits for it.
//!
//! Over TLS made in user space the body is decrypted by the session and
//! copied out of it into the sink's space (counted as copied), and never
//! spliced: the socket's bytes are records, not the body.

use std::io;
use std::time::Duration;

use super::sink::BodySink;
use crate::error::Error;
use crate::http::ChunkedDecoder;
use crate::http::request::BodyFraming;
use crate::wire::Wire;

/// Bytes read from the socket at a time into the connection's buffer
/// (chunked and discarded bodies).
const READ: usize = 64 << 10;

/// What the pump reads from, and the limits it reads under.
#[derive(Debug)]
pub(crate) struct BodyIo<'a> {
    pub stream: &'a Wire,
    /// The connection's read buffer: the head at `..start`, then whatever
    /// came after it (body bytes, then maybe the next request).
    pub buf: &'a mut Vec<u8>,
    pub start: usize,
    pub max_body: u64,
    /// Each read from the client (408 past it).
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// The client waits for `100 Continue` before it sends the body.
    pub continue_owed: bool,
}

impl BodyIo<'_> {
    /// Sends `100 Continue` if it is owed.
    pub(crate) async fn send_continue(&mut self) -> Result<(), Error> {
        if std::mem::take(&mut self.continue_owed) {
            crate::send::write_bytes(
                self.stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                self.send_timeout,
            )
            .await?;
        }
        Ok(())
    }

    /// One read from the client into `buf`, after `100 Continue` if owed.
    async fn read_more(&mut self) -> Result<(), Error> {
        self.send_continue().await?;
        self.buf.reserve(READ);
        let buf = &mut *self.buf;
        read_timed(self.stream, self.read_timeout, |s| s.try_read_buf(buf))
            .await
            .map(drop)
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Pumps a body framed by `framing` into `sink`. `Ok(true)`: all of it
/// (the sink was finished); `Ok(false)`: the sink took no more (the rest
/// is left unread). An error is the request's answer; `Error::Io` means
/// the client went away.
pub(crate) async fn pump(
    mut io: BodyIo<'_>,
    framing: BodyFraming,
    sink: &mut dyn BodySink,
) -> Result<bool, Error> {
    let complete = match framing {
        BodyFraming::None => true,
        BodyFraming::Length(len) if sink.discards() => discard_length(&mut io, len).await?,
        BodyFraming::Length(len) => pump_length(&mut io, len, sink).await?,
        BodyFraming::Chunked => pump_chunked(&mut io, sink).await?,
    };
    if complete {
        sink.finish().await?;
    }
    Ok(complete)
}

/// Reads `len` bytes and drops them, through the connection's buffer.
async fn discard_length(io: &mut BodyIo<'_>, len: u64) -> Result<bool, Error> {
    if len > io.max_body {
        return Err(Error::BodyTooLarge);
    }
    let mut left = len;
    loop {
        let take = (io.buffered() as u64).min(left);
        io.buf.drain(io.start..io.start + take as usize);
        left -= take;
        if left == 0 {
            return Ok(true);
        }
        io.read_more().await?;
    }
}

async fn pump_length(
    io: &mut BodyIo<'_>,
    len: u64,
    sink: &mut dyn BodySink,
) -> Result<bool, Error> {
    if len > io.max_body {
        return Err(Error::BodyTooLarge);
    }
    let have = (io.buffered() as u64).min(len) as usize;
    let mut done = 0;
    while done < have {
        if !sink.ready().await? {
            return Ok(false);
        }
        done += sink.write(&io.buf[io.start + done..io.start + have]);
    }
    io.buf.drain(io.start..io.start + have);
    let mut left = len - have as u64;
    if left > 0 {
        io.send_continue().await?;
    }
    if let Some(tcp) = io.stream.plain_tcp()
        && let Some(spliced) = sink.splice_from(tcp, left, io.read_timeout)
    {
        return spliced.await;
    }
    while left > 0 {
        if !sink.ready().await? {
            return Ok(false);
        }
        let space = sink.space(usize::try_from(left).unwrap_or(usize::MAX));
        let n = read_some(io.stream, space, io.read_timeout).await?;
        if io.stream.tls_side().is_some() {
            // Out of the session's plaintext into the sink: a copy.
            iolite_ipc::copied::add(n);
        }
        sink.advance(n);
        left -= n as u64;
    }
    Ok(true)
}

/// A chunked body: decoded from the connection's buffer into the sink's
/// space, the data runs copied (and counted).
async fn pump_chunked(io: &mut BodyIo<'_>, sink: &mut dyn BodySink) -> Result<bool, Error> {
    let mut decoder = ChunkedDecoder::new(io.max_body);
    loop {
        if io.buffered() > 0 {
            let progress = if sink.discards() {
                decoder.feed(&io.buf[io.start..], |_| {})?
            } else {
                if !sink.ready().await? {
                    return Ok(false);
                }
                let space = sink.space(usize::MAX);
                // The data never outgrows its input: no more input than
                // the space holds, and it fits.
                let take = io.buffered().min(space.len());
                let mut filled = 0;
                let progress = decoder.feed(&io.buf[io.start..io.start + take], |data| {
                    space[filled..filled + data.len()].copy_from_slice(data);
                    filled += data.len();
                })?;
                sink.advance(filled);
                iolite_ipc::copied::add(filled);
                progress
            };
            io.buf.drain(io.start..io.start + progress.consumed);
            if progress.done {
                return Ok(true);
            }
            if io.buffered() > 0 {
                continue;
            }
        }
        io.read_more().await?;
    }
}

/// One read of body bytes into `space`, within `timeout` (408); the client
/// closing before the body's end is an I/O error.
async fn read_some(stream: &Wire, space: &mut [u8], timeout: Duration) -> Result<usize, Error> {
    read_timed(stream, timeout, |s| s.try_read(space)).await
}

/// One non-blocking `read` of the client once its socket is readable
/// (through a shared reference: the answer may be written meanwhile),
/// within `timeout` (408); the client closing is an I/O error. A TLS
/// wire is tried first: plaintext may wait in its session.
async fn read_timed(
    stream: &Wire,
    timeout: Duration,
    mut read: impl FnMut(&Wire) -> io::Result<usize>,
) -> Result<usize, Error> {
    let tls = stream.tls_side().is_some();
    let wait = async {
        loop {
            if !tls {
                stream.tcp().readable().await?;
            }
            match read(stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return result,
            }
            if tls {
                stream.tcp().readable().await?;
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Err(_) => Err(Error::HeaderTimeout),
        Ok(Ok(0)) => Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(Error::Io(e)),
    }
}
