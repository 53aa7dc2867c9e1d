//! Sending an [`FdBody`]: its prefix from memory, then the source's bytes
//! (or, for a framed source, its payload) with `splice(2)`: source →
//! intermediate pipe → client socket. Two stages keep readiness
//! unambiguous: the intermediate pipe is empty before the source is
//! spliced into it (`EAGAIN` is the source's), and holds what was moved
//! before it is spliced out (`EAGAIN` is the socket's). Nothing is read
//! from the source until the client took what came before, so a slow
//! client holds the producer back. Chunked framing (an HTTP/1.1 body of
//! unknown length) is written between the splices.
//!
//! Over TLS in user space the pipe's bytes cannot go to the socket as they
//! are: the last stage reads them into the session to be encrypted
//! ([`TlsWire`]), counted as copied; the rest is the same.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use iolite_ipc::IoVec;
use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::write::{chunk_line, wait_writable, write_all_vectored};
use crate::fd_body::{FdBody, FdSource, Frame};
use crate::wire::{TlsWire, Wire};

/// The intermediate pipe's size (asked for; the kernel may give less).
const PIPE_SIZE: usize = 1 << 20;
/// A framed source's payloads are sent once this many are in the pipe.
const BATCH: usize = 256 * 1024;
/// Bytes to skip that are read like framing (more: read and dropped in
/// pieces).
const SKIP_MAX: usize = 64 * 1024;

fn short(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, why)
}

/// Sends `body` after its head (already written). Fails when the source
/// ends short of the body's length or of its framing, breaks its framing,
/// stays silent past its idle timeout, or the client stops reading: the
/// connection then closes.
pub(crate) async fn send_fd(
    wire: &Wire,
    body: &FdBody,
    chunked: bool,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    let mut source = body
        .take()
        .ok_or_else(|| short("descriptor body sent twice"))?;
    let stream = wire.tcp();
    let mut out = Out::new(wire, chunked, timeout)?;
    let prefix = std::mem::take(&mut source.prefix);
    let mut total = prefix.len() as u64;
    if !prefix.is_empty() {
        out.memory(&prefix, sent).await?;
    }
    match (source.frames.take(), body.len()) {
        (None, Some(len)) => {
            let left = len.saturating_sub(total);
            if out.splice(&source, left, sent).await? < left {
                return Err(short("the body's source ended short of its length"));
            }
        }
        (None, None) => {
            out.splice(&source, u64::MAX, sent).await?;
        }
        (Some(mut frames), len) => {
            // Payloads gather in the pipe (`held` bytes) and go out together,
            // one chunk and one splice to the client for many small frames
            // (php-fpm writes 8 KiB records): they leave when the batch is
            // full, when the pipe would overflow, and whenever the source has
            // nothing more to read yet, so a source that pauses is seen up
            // to its pause.
            let mut framing = Vec::new();
            let mut held = 0usize;
            loop {
                let frame = frames
                    .next(&framing)
                    .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
                framing.clear();
                match frame {
                    Frame::Header(n) => {
                        if held >= BATCH || !try_read_to(&source, &mut framing, n)? {
                            out.flush(&mut held, sent).await?;
                            read_to(stream, &source, &mut framing, n).await?;
                        }
                    }
                    Frame::Skip(n) => {
                        // Small (padding): read as framing, without waiting
                        // when it is there.
                        let n = usize::try_from(n).unwrap_or(usize::MAX);
                        if n > SKIP_MAX {
                            out.flush(&mut held, sent).await?;
                            skip(stream, &source, n as u64).await?;
                        } else if !try_read_to(&source, &mut framing, n)? {
                            out.flush(&mut held, sent).await?;
                            read_to(stream, &source, &mut framing, n).await?;
                        }
                        framing.clear();
                    }
                    Frame::Payload(n) => {
                        if len.is_some_and(|l| total + n > l) {
                            return Err(short("the body's source overran its length"));
                        }
                        out.gather(&source, n, &mut held, sent).await?;
                        total += n;
                    }
                    Frame::End => break,
                }
            }
            out.flush(&mut held, sent).await?;
            if len.is_some_and(|l| total < l) {
                return Err(short("the body's source ended short of its length"));
            }
        }
    }
    out.end(sent).await
}

/// The client side: the socket, the intermediate pipe, the framing.
struct Out<'a> {
    stream: &'a TcpStream,
    /// The session, when the connection is TLS made in user space.
    tls: Option<&'a TlsWire>,
    /// Read end, write end, capacity.
    pipe: (OwnedFd, OwnedFd, usize),
    chunked: bool,
    /// No chunk was sent yet.
    first: bool,
    timeout: Duration,
    line: Vec<u8>,
}

impl<'a> Out<'a> {
    fn new(wire: &'a Wire, chunked: bool, timeout: Duration) -> io::Result<Self> {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let size = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&w))?;
        Ok(Out {
            stream: wire.tcp(),
            tls: wire.tls_side(),
            pipe: (r, w, size),
            chunked,
            first: true,
            timeout,
            line: Vec::with_capacity(24),
        })
    }

    /// Writes bytes from memory (as a chunk when chunked). Every write
    /// that may be the body's last goes without `MSG_MORE`, so nothing is
    /// left corked in the socket.
    async fn memory(&mut self, bytes: &[u8], sent: &mut u64) -> io::Result<()> {
        self.chunk_head(bytes.len() as u64);
        if let Some(tls) = self.tls {
            tls.put(&self.line);
            tls.put(bytes);
            iolite_ipc::copied::add(bytes.len());
            *sent += (self.line.len() + bytes.len()) as u64;
            return tls.push(self.stream, false, self.timeout).await;
        }
        let mut batch = [IoVec::from_slice(&self.line), IoVec::from_slice(bytes)];
        write_all_vectored(self.stream, &mut batch, false, self.timeout, sent).await
    }

    /// Writes the framing line in `line` (more follows it).
    async fn line_out(&self, sent: &mut u64) -> io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        if let Some(tls) = self.tls {
            tls.put(&self.line);
            *sent += self.line.len() as u64;
            return Ok(());
        }
        let mut batch = [IoVec::from_slice(&self.line)];
        write_all_vectored(self.stream, &mut batch, true, self.timeout, sent).await
    }

    /// The chunk-size line for `len` bytes into `line` (empty when not
    /// chunked).
    fn chunk_head(&mut self, len: u64) {
        self.line.clear();
        if self.chunked {
            chunk_line(&mut self.line, len, self.first);
            self.first = false;
        }
    }

    /// Moves up to `max` bytes from the source to the client; returns how
    /// many (fewer: the source ended).
    async fn splice(&mut self, source: &FdSource, max: u64, sent: &mut u64) -> io::Result<u64> {
        let mut moved = 0;
        while moved < max {
            let want = usize::try_from(max - moved)
                .unwrap_or(usize::MAX)
                .min(self.pipe.2);
            let n = self.fill(source, want).await?;
            if n == 0 {
                break;
            }
            self.chunk_head(n as u64);
            self.line_out(sent).await?;
            self.drain(n, sent).await?;
            moved += n as u64;
        }
        Ok(moved)
    }

    /// Source → pipe: a frame's `n` payload bytes, added to the `held`
    /// bytes already there; what is held goes out first when the pipe
    /// would overflow or the source has nothing to read yet.
    async fn gather(
        &mut self,
        source: &FdSource,
        n: u64,
        held: &mut usize,
        sent: &mut u64,
    ) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            if *held == self.pipe.2 {
                self.flush(held, sent).await?;
            }
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.pipe.2 - *held);
            let now = source.fd.try_io(|fd| {
                splice(fd, None, &self.pipe.1, None, want, SpliceFlags::NONBLOCK)
                    .map_err(io::Error::from)
            });
            let k = match now {
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush(held, sent).await?;
                    self.fill(source, want).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if k == 0 {
                return Err(short("the body's source ended inside a frame"));
            }
            *held += k;
            left -= k as u64;
        }
        Ok(())
    }

    /// Sends the `held` bytes in the pipe (one chunk when chunked).
    async fn flush(&mut self, held: &mut usize, sent: &mut u64) -> io::Result<()> {
        if *held == 0 {
            return Ok(());
        }
        self.chunk_head(*held as u64);
        self.line_out(sent).await?;
        self.drain(*held, sent).await?;
        *held = 0;
        Ok(())
    }

    /// Source → pipe: at most `want` bytes (0: the source ended).
    async fn fill(&self, source: &FdSource, want: usize) -> io::Result<usize> {
        read_op(self.stream, source, |fd| {
            splice(fd, None, &self.pipe.1, None, want, SpliceFlags::NONBLOCK)
                .map_err(io::Error::from)
        })
        .await
    }

    /// Pipe → socket: all `n` bytes the pipe holds (through the session,
    /// read and counted, over TLS).
    async fn drain(&self, mut n: usize, sent: &mut u64) -> io::Result<()> {
        let stream = self.stream;
        if let Some(tls) = self.tls {
            while n > 0 {
                // The pipe holds `n`: a read takes some at once.
                let k = tls.put_with(n, |stage, max| {
                    let start = stage.len();
                    stage.resize(start + max, 0);
                    let read = rustix::io::read(&self.pipe.0, &mut stage[start..])
                        .map_err(io::Error::from);
                    stage.truncate(start + *read.as_ref().unwrap_or(&0));
                    read
                })?;
                if k == 0 {
                    return Err(short("the intermediate pipe ended"));
                }
                iolite_ipc::copied::add(k);
                *sent += k as u64;
                n -= k;
                tls.push(stream, n > 0, self.timeout).await?;
            }
            return Ok(());
        }
        while n > 0 {
            let attempt = stream.try_io(Interest::WRITABLE, || {
                splice(&self.pipe.0, None, stream, None, n, SpliceFlags::NONBLOCK)
                    .map_err(io::Error::from)
            });
            match attempt {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    n -= k;
                    *sent += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(stream, self.timeout).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The end of the body: the last chunk, when chunked.
    async fn end(&mut self, sent: &mut u64) -> io::Result<()> {
        if !self.chunked {
            return Ok(());
        }
        self.chunk_head(0);
        if let Some(tls) = self.tls {
            tls.put(&self.line);
            *sent += self.line.len() as u64;
            return tls.push(self.stream, false, self.timeout).await;
        }
        let mut batch = [IoVec::from_slice(&self.line)];
        write_all_vectored(self.stream, &mut batch, false, self.timeout, sent).await
    }
}

/// Reads framing bytes into `into` until it holds `n`.
async fn read_to(
    stream: &TcpStream,
    source: &FdSource,
    into: &mut Vec<u8>,
    n: usize,
) -> io::Result<()> {
    while into.len() < n {
        let start = into.len();
        into.resize(n, 0);
        let got = read_some(stream, source, &mut into[start..]).await;
        into.truncate(start + *got.as_ref().unwrap_or(&0));
        if got? == 0 {
            return Err(short("the body's source ended inside its framing"));
        }
    }
    Ok(())
}

/// [`read_to`] without waiting: whether `into` holds `n` bytes; what
/// could be read is kept.
fn try_read_to(source: &FdSource, into: &mut Vec<u8>, n: usize) -> io::Result<bool> {
    while into.len() < n {
        let start = into.len();
        into.resize(n, 0);
        let got = source
            .fd
            .try_io(|fd| rustix::io::read(fd, &mut into[start..]).map_err(io::Error::from));
        into.truncate(start + *got.as_ref().unwrap_or(&0));
        match got {
            Ok(0) => return Err(short("the body's source ended inside its framing")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads `n` bytes that are not payload, and drops them.
async fn skip(stream: &TcpStream, source: &FdSource, mut n: u64) -> io::Result<()> {
    let mut scratch = [0u8; 256];
    while n > 0 {
        let want = usize::try_from(n).unwrap_or(usize::MAX).min(scratch.len());
        match read_some(stream, source, &mut scratch[..want]).await? {
            0 => return Err(short("the body's source ended inside its framing")),
            k => n -= k as u64,
        }
    }
    Ok(())
}

async fn read_some(stream: &TcpStream, source: &FdSource, into: &mut [u8]) -> io::Result<usize> {
    read_op(stream, source, |fd| {
        rustix::io::read(fd, &mut *into).map_err(io::Error::from)
    })
    .await
}

/// Runs `op` on the source once it is readable (each wait bounded by its
/// idle timeout), until it does not block. A client that closes its side
/// while the source is silent ends the wait (a CGI program that pauses
/// is stopped when its client leaves, not at its next write).
async fn read_op<R>(
    stream: &TcpStream,
    source: &FdSource,
    mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
) -> io::Result<R> {
    loop {
        let ready = tokio::time::timeout(source.idle_timeout, source.fd.ready());
        tokio::select! {
            biased;
            ready = ready => ready.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the body's source is silent")
            })??,
            () = client_left(stream) => {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client went away"));
            }
        }
        match source.fd.try_io(&mut op) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            result => return result,
        }
    }
}

/// Completes when the client has closed (or reset) its side; never when
/// it sent more (a pipelined request is not a departure).
async fn client_left(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
