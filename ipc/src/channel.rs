//! The blocking unix-socket channel: frames (see [`frame`](crate::frame))
//! with file descriptors attached by SCM_RIGHTS.
//!
//! Descriptors ride on the first byte of the frame they belong to (one
//! `sendmsg` per frame), so they arrive no later than that frame's header;
//! received descriptors wait in a queue until the decoded frame claims them.
//! Any protocol error closes the channel for good: later calls return
//! [`Error::Closed`].
//!
//! Frames without descriptors may also be queued ([`Channel::queue`]) and
//! written together by one [`Channel::flush`] (one `sendmsg` for many
//! frames); with `wait = false` and the `try_` receive, a non-blocking socket
//! can be driven by an event loop (the server's side of a module link).

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::frame::{self, Decoded};

/// Written bytes at the front of the output buffer past which queueing
/// compacts it (see [`Channel::queue`]).
const COMPACT_AT: usize = 1 << 20;

/// Most descriptors one frame may carry.
pub const MAX_FDS_PER_FRAME: usize = 4;
/// Most received descriptors waiting for their frame.
const MAX_QUEUED_FDS: usize = 16;
/// Most descriptors the kernel passes in one message (`SCM_MAX_FD`): a
/// read has room for them all. With less room the kernel installs what
/// fits and flags the read truncated, and then the control data cannot be
/// parsed (nix refuses a truncated buffer): the installed descriptors
/// would stay open with no owner, one leak per hostile message.
const SCM_MAX_FD: usize = 253;
const READ_CHUNK: usize = 64 * 1024;

/// A framed, blocking unix-socket channel.
#[derive(Debug)]
pub struct Channel {
    sock: UnixStream,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    fds: VecDeque<OwnedFd>,
    wbuf: Vec<u8>,
    /// Frames queued by [`Channel::queue`]; `obuf[opos..]` is still unsent.
    obuf: Vec<u8>,
    opos: usize,
    max_payload: u32,
    closed: bool,
    /// The last read returned less than it had room for and carried no
    /// descriptors: the socket held nothing more at that moment.
    drained: bool,
    /// Most received descriptors that may wait for their frame; more
    /// closes the channel (and every one of them).
    fd_limit: usize,
    /// Bytes written to the socket since the channel was made.
    written: u64,
}

impl Channel {
    /// Wraps a connected stream with the default payload limit.
    pub fn new(sock: UnixStream) -> Self {
        Channel::with_max_payload(sock, frame::DEFAULT_MAX_PAYLOAD)
    }

    /// Wraps a connected stream; frames longer than `max_payload` close it.
    pub fn with_max_payload(sock: UnixStream, max_payload: u32) -> Self {
        Channel {
            sock,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            fds: VecDeque::new(),
            wbuf: Vec::new(),
            obuf: Vec::new(),
            opos: 0,
            max_payload,
            closed: false,
            drained: false,
            fd_limit: MAX_QUEUED_FDS,
            written: 0,
        }
    }

    /// Sets how many received descriptors may wait for the frames that
    /// claim them (16 by default; never more). A read that brings more
    /// closes the channel with [`Error::TooManyFds`] and closes every
    /// descriptor it holds; 0 refuses descriptors altogether (a peer that
    /// is sent none after its handshake).
    pub fn set_fd_limit(&mut self, n: usize) {
        self.fd_limit = n.min(MAX_QUEUED_FDS);
        if self.fds.len() > self.fd_limit {
            let _ = self.fail::<()>(Error::TooManyFds);
        }
    }

    /// Bytes written to the socket since the channel was made: a frame
    /// queued when [`queued_end`](Channel::queued_end) was `n` has left
    /// once this reaches `n`.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// [`written`](Channel::written) once everything queued now is written.
    pub fn queued_end(&self) -> u64 {
        self.written + self.queued() as u64
    }

    /// The socket underneath. Reading or writing it directly bypasses the
    /// framing; only do so when both sides agreed to (and no frame is buffered).
    pub fn stream(&self) -> &UnixStream {
        &self.sock
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.rend - self.rpos
    }

    /// Whether an error (or the peer) has closed the channel.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn fail<T>(&mut self, e: Error) -> Result<T> {
        self.closed = true;
        self.fds.clear();
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        Err(e)
    }

    /// Whether a whole frame is already buffered (the next receive will not
    /// wait for the socket).
    pub fn has_frame(&self) -> bool {
        matches!(
            frame::decode(&self.rbuf[self.rpos..self.rend], self.max_payload),
            Ok(Decoded::Frame { .. })
        )
    }

    /// Whether the socket is known to be empty: no whole frame is buffered
    /// and a read since the last [`clear_drained`](Channel::clear_drained)
    /// took less than it had room for. An event loop that clears it before
    /// it receives may then wait for readiness without reading again to see
    /// `EAGAIN` (data that came after that read is a new readiness event).
    pub fn drained(&self) -> bool {
        self.drained && !self.has_frame()
    }

    /// Forgets what earlier reads said about the socket (see
    /// [`drained`](Channel::drained)).
    pub fn clear_drained(&mut self) {
        self.drained = false;
    }

    /// Queues `msg` as one frame (no descriptors) for the next
    /// [`flush`](Channel::flush); frames queued together leave in one
    /// `sendmsg`.
    pub fn queue<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.opos == self.obuf.len() {
            self.obuf.clear();
            self.opos = 0;
        } else if self.opos >= COMPACT_AT && self.opos >= self.obuf.len() / 2 {
            // Written bytes before what is still queued: a link that is
            // never flushed empty (steady inline traffic) would keep them
            // all. Moving the rest down costs at most as much as writing it.
            self.obuf.drain(..self.opos);
            self.opos = 0;
        }
        frame::encode(msg, &mut self.obuf, self.max_payload)
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.obuf.len() - self.opos
    }

    /// Writes the queued frames. With `wait`, until all are written (on a
    /// blocking socket); without, as much as the socket takes now. Returns
    /// whether nothing is left queued.
    pub fn flush(&mut self, wait: bool) -> Result<bool> {
        if self.closed {
            return Err(Error::Closed);
        }
        let flags = if wait {
            MsgFlags::MSG_NOSIGNAL
        } else {
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT
        };
        while self.opos < self.obuf.len() {
            let iov = [IoSlice::new(&self.obuf[self.opos..])];
            match sendmsg::<()>(self.sock.as_raw_fd(), &iov, &[], flags, None) {
                Ok(n) => {
                    self.opos += n;
                    self.written += n as u64;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) if !wait => return Ok(false),
                Err(e) => return self.fail(Error::from(e)),
            }
        }
        self.obuf.clear();
        self.opos = 0;
        Ok(true)
    }

    /// Sends `msg` as one frame with `fds` attached (queued frames go first).
    pub fn send<T: Serialize>(&mut self, msg: &T, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if fds.len() > MAX_FDS_PER_FRAME {
            return Err(Error::TooManyFds);
        }
        if fds.is_empty() {
            self.queue(msg)?;
            return self.flush(true).map(drop);
        }
        self.flush(true)?;
        self.wbuf.clear();
        frame::encode(msg, &mut self.wbuf, self.max_payload)?;
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let mut sent = 0;
        while sent < self.wbuf.len() {
            let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
                &[ControlMessage::ScmRights(&raw)]
            } else {
                &[]
            };
            let iov = [IoSlice::new(&self.wbuf[sent..])];
            match sendmsg::<()>(
                self.sock.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => {
                    sent += n;
                    self.written += n as u64;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return self.fail(Error::from(e)),
            }
        }
        Ok(())
    }

    /// Receives the next frame's payload (borrowed until the next call).
    ///
    /// # Errors
    /// [`Error::Closed`] when the peer closed between frames; frame errors,
    /// [`Error::Truncated`] and system errors close the channel.
    pub fn recv_payload(&mut self) -> Result<&[u8]> {
        match self.next_payload(true)? {
            Some((start, end)) => Ok(&self.rbuf[start..end]),
            None => self.fail(Error::Closed),
        }
    }

    /// Like [`recv_payload`](Channel::recv_payload), but returns `None`
    /// instead of waiting when no whole frame has arrived (the socket is
    /// read with `MSG_DONTWAIT`).
    pub fn try_recv_payload(&mut self) -> Result<Option<&[u8]>> {
        Ok(self
            .next_payload(false)?
            .map(|(start, end)| &self.rbuf[start..end]))
    }

    /// The next frame's payload range in `rbuf`; None only without `wait`.
    fn next_payload(&mut self, wait: bool) -> Result<Option<(usize, usize)>> {
        if self.closed {
            return Err(Error::Closed);
        }
        loop {
            match frame::decode(&self.rbuf[self.rpos..self.rend], self.max_payload) {
                Ok(Decoded::Frame { consumed, .. }) => {
                    let start = self.rpos + frame::HEADER_LEN;
                    self.rpos += consumed;
                    return Ok(Some((start, self.rpos)));
                }
                Ok(Decoded::Incomplete { .. }) => {}
                Err(e) => return self.fail(e),
            }
            match self.fill(wait) {
                Ok(None) => return Ok(None),
                Ok(Some(0)) if self.rpos == self.rend => return self.fail(Error::Closed),
                Ok(Some(0)) => {
                    let have = self.rend - self.rpos;
                    return self.fail(Error::Truncated { have });
                }
                Ok(Some(_)) => {}
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Receives and decodes the next frame.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let payload = self.recv_payload()?;
        match frame::decode_payload(payload) {
            Ok(msg) => Ok(msg),
            Err(e) => self.fail(e),
        }
    }

    /// Decodes the next frame if one has arrived; never waits.
    pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(payload) = self.try_recv_payload()? else {
            return Ok(None);
        };
        match frame::decode_payload(payload) {
            Ok(msg) => Ok(Some(msg)),
            Err(e) => self.fail(e),
        }
    }

    /// Takes `n` descriptors that arrived with the frame just received.
    pub fn take_fds(&mut self, n: usize) -> Result<Vec<OwnedFd>> {
        if self.fds.len() < n {
            let available = self.fds.len();
            return self.fail(Error::MissingFds {
                needed: n,
                available,
            });
        }
        Ok(self.fds.drain(..n).collect())
    }

    /// Marks the channel broken (a higher layer found the peer misbehaving).
    pub fn close_with(&mut self, e: Error) -> Error {
        let _ = self.fail::<()>(Error::Closed);
        e
    }

    /// Reads what is available into the receive buffer. The buffer grows
    /// only when it is full of bytes that really arrived (never to a length a
    /// header claims), and the decoder's limit bounds it.
    /// Without `wait`, `Ok(None)` means nothing is available now.
    fn fill(&mut self, wait: bool) -> Result<Option<usize>> {
        if self.rpos == self.rend {
            (self.rpos, self.rend) = (0, 0);
        } else if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            (self.rpos, self.rend) = (0, self.rend - self.rpos);
        }
        if self.rend == self.rbuf.len() {
            let grown = (self.rbuf.len() * 2).max(READ_CHUNK);
            self.rbuf.resize(grown, 0);
        }
        let old = self.rend;
        let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
        let flags = if wait {
            MsgFlags::MSG_CMSG_CLOEXEC
        } else {
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT
        };
        let res = loop {
            let mut iov = [IoSliceMut::new(&mut self.rbuf[old..])];
            match recvmsg::<()>(self.sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) if !wait => return Ok(None),
                Err(e) => break Err(Error::from(e)),
                Ok(msg) => {
                    let mut got = Vec::new();
                    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                got.extend(fds);
                            }
                        }
                    }
                    break Ok((msg.bytes, got, truncated));
                }
            }
        };
        let (n, raw_fds, truncated) = res?;
        self.rend = old + n;
        // A read that brought descriptors proves nothing: the kernel ends a
        // read after the bytes that carried them (it never glues data of
        // two sends' descriptors), however much more waits in the socket.
        self.drained = n < self.rbuf.len() - old && raw_fds.is_empty() && !truncated;
        for fd in raw_fds {
            // SAFETY: the kernel just installed this descriptor in our table for
            // us (SCM_RIGHTS); nothing else owns it, so we take ownership once.
            self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if truncated || self.fds.len() > self.fd_limit {
            return Err(Error::TooManyFds);
        }
        Ok(Some(n))
    }

    /// Writes raw bytes, bypassing the framing (see [`stream`](Channel::stream)).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        (&self.sock).write_all(bytes).map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_read_that_brought_descriptors_does_not_claim_the_socket_drained() {
        // The kernel ends a read after the bytes that carried descriptors,
        // with later frames still in the socket: an event loop that took
        // `drained` at its word would wait for a readiness event that
        // never comes, and those frames would sit there.
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut reader = Channel::new(a);
        let mut writer = Channel::new(b);
        let (keep, _) = UnixStream::pair().unwrap();
        writer.send(&1u32, &[keep.as_fd()]).unwrap();
        writer.send(&2u32, &[]).unwrap();
        reader.clear_drained();
        assert_eq!(reader.try_recv::<u32>().unwrap(), Some(1));
        assert!(
            !reader.drained() || reader.has_frame(),
            "a frame waits in the socket, yet the channel says it is drained"
        );
        assert_eq!(reader.take_fds(1).unwrap().len(), 1);
        assert_eq!(reader.try_recv::<u32>().unwrap(), Some(2));
        // Read without descriptors: now it is drained.
        reader.clear_drained();
        assert_eq!(reader.try_recv::<u32>().unwrap(), None);
    }

    #[test]
    fn more_descriptors_in_one_message_than_a_frame_may_carry_are_all_closed() {
        // Seven descriptors with one send (the fuzz target found that
        // those past the read's room stayed open, with no owner).
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut reader = Channel::new(a);
        reader.set_fd_limit(0);
        let (sent, ends): (Vec<UnixStream>, Vec<UnixStream>) =
            (0..7).map(|_| UnixStream::pair().unwrap()).unzip();
        let raw: Vec<RawFd> = sent.iter().map(AsRawFd::as_raw_fd).collect();
        let mut frame = Vec::new();
        frame::encode(&1u32, &mut frame, frame::DEFAULT_MAX_PAYLOAD).unwrap();
        sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(&frame)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(sent);
        assert!(matches!(reader.try_recv::<u32>(), Err(Error::TooManyFds)));
        assert!(reader.is_closed());
        drop(b);
        // Every copy closed: each socket's other end sees its peer gone.
        for (i, end) in ends.iter().enumerate() {
            end.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(
                (&*end).read(&mut byte).unwrap(),
                0,
                "descriptor {i} is still open somewhere"
            );
        }
    }

    #[test]
    fn descriptors_past_the_limit_close_the_channel_and_every_one_of_them() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut reader = Channel::new(a);
        reader.set_fd_limit(0);
        let mut writer = Channel::new(b);
        let (keep, other) = UnixStream::pair().unwrap();
        writer.send(&1u32, &[keep.as_fd()]).unwrap();
        drop(keep);
        assert!(matches!(reader.try_recv::<u32>(), Err(Error::TooManyFds)));
        assert!(reader.is_closed());
        // The received copy was closed with the channel: `other` sees its
        // peer gone once the writer's frame is gone too.
        drop(writer);
        other.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            (&other).read(&mut byte).unwrap(),
            0,
            "the descriptor is still open somewhere"
        );
    }

    #[test]
    fn a_channel_never_flushed_empty_keeps_its_output_buffer_bounded() {
        // The writer queues a frame and flushes what the socket takes, the
        // reader takes as much: the queue never empties, as on a link with
        // steady inline traffic. Written bytes must not pile up in front
        // of it.
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut chan = Channel::with_max_payload(a, 1 << 20);
        let frame = vec![7u8; 64 << 10];
        let mut got = vec![0u8; 64 << 10];
        for round in 0..400 {
            chan.queue(&frame).unwrap();
            chan.flush(false).unwrap();
            if round > 8 {
                b.read_exact(&mut got).unwrap();
            }
            assert!(chan.queued() < 2 << 20, "{} queued", chan.queued());
        }
        assert!(
            chan.obuf.capacity() < 8 << 20,
            "output buffer grew to {} bytes",
            chan.obuf.capacity()
        );
    }
}
