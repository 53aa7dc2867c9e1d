//! [`FdSink`]: a request body into a descriptor — a pipe (a CGI program's
//! stdin) or a socket — without entering user space: the body of known
//! length goes client socket → pipe → descriptor by `splice(2)`. The bytes
//! that came with the head, and a chunked body's data (decoded here), are
//! copied in user space, counted, and written out first.
//!
//! Readiness is never ambiguous: the socket is spliced into an intermediate
//! pipe that is empty each time (so `EAGAIN` means the socket has nothing),
//! and that pipe into the descriptor (so `EAGAIN` means the descriptor is
//! full). A descriptor that takes nothing for the sink's timeout fails the
//! request as an upstream timeout (504); one that is closed (`EPIPE`)
//! takes no more of the body.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::sink::{BodySink, FinishFuture, ReadyFuture, SpliceFuture};
use crate::descriptor::Descriptor;
use crate::error::{Error, UpstreamFailure, UpstreamKind};

/// Bytes of user-space staging for copied body bytes.
const STAGE: usize = 64 << 10;
/// The intermediate pipe's size (asked for; the kernel may give less).
const PIPE_SIZE: usize = 1 << 20;

/// The request body into a pipe or socket (see the module doc).
#[derive(Debug)]
pub struct FdSink {
    /// None once finished (closed, so its reader sees the end) or closed by
    /// its reader.
    target: Option<Descriptor>,
    /// The intermediate pipe (read end, write end, capacity), made on the
    /// first splice.
    mid: Option<(OwnedFd, OwnedFd, usize)>,
    /// Copied bytes not yet written to the target.
    staged: Vec<u8>,
    filled: usize,
    timeout: Duration,
    upstream: (UpstreamKind, Arc<str>),
}

impl FdSink {
    /// A sink writing into `fd`, a pipe's write end or a stream socket
    /// (made non-blocking here; the reader's end is not affected).
    /// `timeout` bounds each wait for the descriptor to take bytes; past
    /// it the request fails as a timeout of `upstream`. Call on a worker
    /// thread (the descriptor joins its reactor).
    pub fn new(
        fd: OwnedFd,
        timeout: Duration,
        upstream: (UpstreamKind, Arc<str>),
    ) -> io::Result<FdSink> {
        Ok(FdSink {
            target: Some(Descriptor::writer(fd)?),
            mid: None,
            staged: Vec::new(),
            filled: 0,
            timeout,
            upstream,
        })
    }

    fn timed_out(&self) -> Error {
        Error::upstream(
            self.upstream.0,
            self.upstream.1.clone(),
            UpstreamFailure::TimedOut,
        )
    }

    /// Runs `op` on the target once it is writable (the wait bounded by
    /// the timeout), until it does not block; `None` when the target is
    /// closed (by its reader: `EPIPE`, or finished).
    async fn write_op<R>(
        &mut self,
        mut op: impl FnMut(std::os::fd::BorrowedFd<'_>) -> io::Result<R>,
    ) -> Result<Option<R>, Error> {
        loop {
            let Some(target) = self.target.as_ref() else {
                return Ok(None);
            };
            tokio::time::timeout(self.timeout, target.ready())
                .await
                .map_err(|_| self.timed_out())??;
            match target.try_io(&mut op) {
                Ok(r) => return Ok(Some(r)),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.target = None;
                    return Ok(None);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Writes the staged bytes; false when the target closed.
    async fn flush(&mut self) -> Result<bool, Error> {
        let (mut done, end) = (0, self.filled);
        while done < end {
            let staged = std::mem::take(&mut self.staged);
            let wrote = self
                .write_op(|fd| rustix::io::write(fd, &staged[done..end]).map_err(io::Error::from))
                .await;
            self.staged = staged;
            match wrote? {
                Some(n) => done += n,
                None => return Ok(false),
            }
        }
        self.filled = 0;
        Ok(true)
    }

    /// Splices `len` body bytes from `stream` into the target, each wait
    /// for the client bounded by `read_timeout` (408); false when the
    /// target closed first.
    async fn splice_in(
        &mut self,
        stream: &TcpStream,
        mut len: u64,
        read_timeout: Duration,
    ) -> Result<bool, Error> {
        if !self.flush().await? {
            return Ok(false);
        }
        if self.mid.is_none() {
            let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
                .map_err(|e| Error::Io(e.into()))?;
            let size = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE)
                .or_else(|_| rustix::pipe::fcntl_getpipe_size(&w))
                .map_err(|e| Error::Io(e.into()))?;
            self.mid = Some((r, w, size));
        }
        while len > 0 {
            let Some((_, mid_w, size)) = self.mid.as_ref() else {
                break;
            };
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(*size);
            // Socket → pipe: the pipe is empty, so EAGAIN is the socket's.
            let moved = loop {
                let attempt = stream.try_io(Interest::READABLE, || {
                    splice(stream, None, mid_w, None, want, SpliceFlags::NONBLOCK)
                        .map_err(io::Error::from)
                });
                match attempt {
                    Ok(0) => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::time::timeout(read_timeout, stream.readable())
                            .await
                            .map_err(|_| Error::HeaderTimeout)??;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::Io(e)),
                }
            };
            len -= moved as u64;
            // Pipe → target: the pipe holds `moved`, so EAGAIN is the target's.
            let mut left = moved;
            let mid = self.mid.take();
            while left > 0 {
                let Some((mid_r, _, _)) = mid.as_ref() else {
                    break;
                };
                let spliced = self
                    .write_op(|fd| {
                        splice(mid_r, None, fd, None, left, SpliceFlags::NONBLOCK)
                            .map_err(io::Error::from)
                    })
                    .await;
                match spliced? {
                    Some(n) => left -= n,
                    None => return Ok(false),
                }
            }
            self.mid = mid;
        }
        Ok(true)
    }
}

impl BodySink for FdSink {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async move {
            if self.filled > 0 {
                return self.flush().await;
            }
            Ok(self.target.is_some())
        })
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        if self.staged.len() < STAGE {
            self.staged.resize(STAGE, 0);
        }
        let end = (self.filled + max).min(STAGE);
        &mut self.staged[self.filled..end]
    }

    fn advance(&mut self, n: usize) {
        self.filled += n;
    }

    fn finish(&mut self) -> FinishFuture<'_> {
        Box::pin(async move {
            self.flush().await?;
            // Closed: the reader sees the body's end.
            self.target = None;
            Ok(())
        })
    }

    fn splice_from<'a>(
        &'a mut self,
        stream: &'a TcpStream,
        len: u64,
        read_timeout: Duration,
    ) -> Option<SpliceFuture<'a>> {
        Some(Box::pin(self.splice_in(stream, len, read_timeout)))
    }
}
