//! A request body into the program's stdin: core's [`FdSink`] (a body of
//! known length spliced socket → pipe → stdin, never in user space; a
//! streamed chunked body decoded into it), opened once the program runs
//! ([`StdinSink`]); and a chunked body read whole first, written to stdin
//! beside the answer ([`write_whole`]).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use iolite_core::body::{BodySink, FdSink, FinishFuture, ReadyFuture, SpliceFuture};
use iolite_core::{Error, UpstreamKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The body into stdin, once the program is started: the answer's side
/// sends the pipe's write end (or drops the sender: no program, and the
/// body is not taken).
pub(super) struct StdinSink {
    pipe: Option<oneshot::Receiver<OwnedFd>>,
    inner: Option<FdSink>,
    timeout: Duration,
    program: Arc<str>,
}

impl std::fmt::Debug for StdinSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinSink")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl StdinSink {
    pub fn new(pipe: oneshot::Receiver<OwnedFd>, timeout: Duration, program: Arc<str>) -> Self {
        StdinSink {
            pipe: Some(pipe),
            inner: None,
            timeout,
            program,
        }
    }

    /// Waits for the program's stdin; false when there is none.
    async fn open(&mut self) -> Result<bool, Error> {
        if self.inner.is_some() {
            return Ok(true);
        }
        let Some(pipe) = self.pipe.take() else {
            return Ok(false);
        };
        let Ok(fd) = pipe.await else {
            return Ok(false);
        };
        let upstream = (UpstreamKind::Cgi, self.program.clone());
        self.inner = Some(FdSink::new(fd, self.timeout, upstream)?);
        Ok(true)
    }
}

impl BodySink for StdinSink {
    fn ready(&mut self) -> ReadyFuture<'_> {
        Box::pin(async move {
            if !self.open().await? {
                return Ok(false);
            }
            match self.inner.as_mut() {
                Some(inner) => inner.ready().await,
                None => Ok(false),
            }
        })
    }

    fn space(&mut self, max: usize) -> &mut [u8] {
        match self.inner.as_mut() {
            Some(inner) => inner.space(max),
            // `ready` said yes only with a sink: not reached.
            None => &mut [],
        }
    }

    fn advance(&mut self, n: usize) {
        if let Some(inner) = self.inner.as_mut() {
            inner.advance(n);
        }
    }

    fn finish(&mut self) -> FinishFuture<'_> {
        Box::pin(async move {
            if let Some(inner) = self.inner.as_mut() {
                inner.finish().await?;
            }
            // Closed: the program sees the body's end.
            self.inner = None;
            Ok(())
        })
    }

    fn splice_from<'a>(
        &'a mut self,
        stream: &'a TcpStream,
        len: u64,
        read_timeout: Duration,
    ) -> Option<SpliceFuture<'a>> {
        Some(Box::pin(async move {
            if !self.open().await? {
                return Ok(false);
            }
            match self
                .inner
                .as_mut()
                .and_then(|i| i.splice_from(stream, len, read_timeout))
            {
                Some(spliced) => spliced.await,
                None => Ok(false),
            }
        }))
    }
}

/// Writes a body read whole (a chunked one) into the program's stdin
/// while its answer is read, then closes it; gives up when the program
/// closes its stdin or takes nothing for `timeout`.
pub(super) fn write_whole(stdin: OwnedFd, body: Vec<u8>, timeout: Duration) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(stdin) else {
        return;
    };
    tokio::task::spawn_local(async move {
        let mut at = 0;
        while at < body.len() {
            match tokio::time::timeout(timeout, pipe.write(&body[at..])).await {
                Ok(Ok(n)) if n > 0 => at += n,
                _ => return,
            }
        }
    });
}
