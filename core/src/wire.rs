//! [`Wire`]: a client connection's byte stream, plain or TLS, as the
//! connection, the body pump and the send path use it — all through a
//! shared reference, since a duplex exchange reads the body while it
//! writes the answer (both in one task, never at the same instant).
//!
//! A plain wire is the socket: reads fill buffers straight from it and the
//! send path writes to it with writev, sendfile and splice. A TLS wire
//! holds the rustls session beside the socket (in a `RefCell`: borrowed
//! only between awaits). Reads pull records from the socket into the
//! session and take the plaintext out; writes gather plaintext in a
//! staging buffer ([`TlsWire::put`]), seal it into records of up to 16 KiB
//! ([`TlsWire::push`]) and write them out, so a small answer's head and
//! body share one record. What is put there is a copy in user space: the
//! callers that put body bytes count them in `iolite_body_bytes_copied_total`.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use rustls::ServerConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Plaintext sealed into one record at a time (the largest TLS record).
const RECORD: usize = 16 << 10;
/// Sealed bytes held before they are written to the socket.
const FLUSH_AT: usize = 64 << 10;

/// A client connection's byte stream (see the module doc).
#[derive(Debug)]
pub struct Wire {
    tcp: TcpStream,
    tls: Option<TlsWire>,
}

/// The TLS side of a [`Wire`].
#[derive(Debug)]
pub struct TlsWire {
    state: RefCell<TlsState>,
}

#[derive(Debug)]
struct TlsState {
    conn: ServerConnection,
    /// Plaintext not yet sealed into a record.
    stage: Vec<u8>,
    /// Bytes sealed since the last flush.
    sealed: usize,
}

impl Wire {
    pub fn plain(tcp: TcpStream) -> Wire {
        Wire { tcp, tls: None }
    }

    /// A wire over an established session (its handshake done).
    pub fn tls(tcp: TcpStream, mut conn: ServerConnection) -> Wire {
        // The send path bounds what it seals before flushing (FLUSH_AT).
        conn.set_buffer_limit(None);
        Wire {
            tcp,
            tls: Some(TlsWire {
                state: RefCell::new(TlsState {
                    conn,
                    stage: Vec::with_capacity(RECORD),
                    sealed: 0,
                }),
            }),
        }
    }

    /// The socket (for readiness, addresses and peeking).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The socket, when the bytes on it are the plaintext itself: then
    /// the send path and the body pump may use it directly (writev,
    /// sendfile, splice).
    pub fn plain_tcp(&self) -> Option<&TcpStream> {
        match self.tls {
            None => Some(&self.tcp),
            Some(_) => None,
        }
    }

    /// The TLS side, if the wire has one.
    pub fn tls_side(&self) -> Option<&TlsWire> {
        self.tls.as_ref()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// One read without waiting: `WouldBlock` when nothing is there.
    /// `Ok(0)`: the client closed.
    pub fn try_read(&self, dst: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => self.tcp.try_read(dst),
            Some(tls) => tls.try_read(&self.tcp, dst),
        }
    }

    /// One read into `buf`'s spare room, without waiting.
    pub fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match &self.tls {
            None => self.tcp.try_read_buf(buf),
            Some(tls) => {
                let start = buf.len();
                let room = (buf.capacity() - start).max(RECORD);
                buf.resize(start + room, 0);
                let got = tls.try_read(&self.tcp, &mut buf[start..]);
                buf.truncate(start + *got.as_ref().unwrap_or(&0));
                got
            }
        }
    }

    /// Waits until a read may find something, then reads once into
    /// `buf`'s spare room. Plaintext may wait in a TLS session with the
    /// socket silent: a TLS wire tries before it waits.
    pub async fn read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            if self.tls.is_none() {
                self.tcp.readable().await?;
            }
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return result,
            }
            if self.tls.is_some() {
                self.tcp.readable().await?;
            }
        }
    }

    /// Ends the sending side: a TLS wire says `close_notify` first.
    pub async fn shutdown(&mut self, timeout: Duration) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            tls.state.borrow_mut().conn.send_close_notify();
            tls.push(&self.tcp, false, timeout).await?;
        }
        self.tcp.shutdown().await
    }

    /// Reads and drops what the client still sends (raw bytes: after a
    /// close, nothing more is answered).
    pub async fn drain_raw(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.tcp.read_buf(buf).await
    }
}

impl TlsWire {
    fn try_read(&self, tcp: &TcpStream, dst: &mut [u8]) -> io::Result<usize> {
        let mut s = self.state.borrow_mut();
        loop {
            match s.conn.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client closed without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if s.conn.read_tls(&mut SocketIo(tcp))? == 0 {
                // The socket's end: what plaintext is left, then the end.
                return match s.conn.reader().read(dst) {
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        Ok(0)
                    }
                    result => result,
                };
            }
            if let Err(e) = s.conn.process_new_packets() {
                // Tell the client why (an alert), as far as the socket takes it.
                let _ = s.conn.write_tls(&mut SocketIo(tcp));
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // A reply the session owes (a key update): sent when it fits.
            while s.conn.wants_write() {
                if s.conn.write_tls(&mut SocketIo(tcp)).is_err() {
                    break;
                }
            }
        }
    }

    /// Adds plaintext to the staging buffer (sealed into records as they
    /// fill). Not counted here: the caller knows whether it is body.
    pub fn put(&self, bytes: &[u8]) {
        let mut s = self.state.borrow_mut();
        s.stage.extend_from_slice(bytes);
        s.seal_full();
    }

    /// Lets `fill` append at most `max` bytes to the staging buffer (a
    /// read from a file, a pipe or a pool); returns what it appended.
    pub fn put_with(
        &self,
        max: usize,
        fill: impl FnOnce(&mut Vec<u8>, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut s = self.state.borrow_mut();
        let n = fill(&mut s.stage, max)?;
        s.seal_full();
        Ok(n)
    }

    /// Whether enough is sealed that it should go out before more is put.
    pub fn full(&self) -> bool {
        self.state.borrow().sealed >= FLUSH_AT
    }

    /// Seals what is staged when nothing `more` follows (else only full
    /// records), and writes every sealed byte to the socket, each wait
    /// for the client bounded by `timeout`.
    pub async fn push(&self, tcp: &TcpStream, more: bool, timeout: Duration) -> io::Result<()> {
        if !more {
            self.state.borrow_mut().seal_all()?;
        }
        loop {
            let attempt = {
                let mut s = self.state.borrow_mut();
                if !s.conn.wants_write() {
                    s.sealed = 0;
                    return Ok(());
                }
                s.conn.write_tls(&mut SocketIo(tcp))
            };
            match attempt {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(tcp, timeout).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl TlsState {
    /// Seals each full record's worth of staged plaintext.
    fn seal_full(&mut self) {
        if self.stage.len() < RECORD {
            return;
        }
        let whole = self.stage.len() / RECORD * RECORD;
        // Unbounded buffer (set in `Wire::tls`): the writer takes it all.
        let _ = self.conn.writer().write_all(&self.stage[..whole]);
        self.sealed += whole;
        self.stage.drain(..whole);
    }

    fn seal_all(&mut self) -> io::Result<()> {
        self.seal_full();
        if !self.stage.is_empty() {
            self.conn.writer().write_all(&self.stage)?;
            self.sealed += self.stage.len();
            self.stage.clear();
        }
        Ok(())
    }
}

/// Waits until the socket takes more, for at most `timeout` (then the
/// send fails as timed out).
pub(crate) async fn wait_writable(tcp: &TcpStream, timeout: Duration) -> io::Result<()> {
    match tokio::time::timeout(timeout, tcp.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "send timeout")),
    }
}

/// The socket as rustls reads and writes it: without waiting
/// (`WouldBlock` when it is not ready, which clears tokio's readiness).
struct SocketIo<'a>(&'a TcpStream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
