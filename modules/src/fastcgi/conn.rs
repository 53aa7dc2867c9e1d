//! A connection to a FastCGI peer, unix or TCP; a worker's idle ones and
//! its bound on requests in flight to the peer.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use iolite_core::config::FastCgiAddress;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One connection to a peer.
#[derive(Debug)]
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    pub async fn connect(address: &FastCgiAddress) -> io::Result<Conn> {
        Ok(match address {
            FastCgiAddress::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
            FastCgiAddress::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }

    /// Tells the peer the request is abandoned (`ABORT_REQUEST`) if the
    /// socket takes it now; the caller then closes the connection.
    pub fn abort(&self, request_id: u16) {
        let record = super::record::abort_request(request_id);
        let _ = match self {
            Conn::Unix(s) => s.try_write(&record),
            Conn::Tcp(s) => s.try_write(&record),
        };
    }

    /// The socket, out of the worker's reactor, for a body read from it
    /// by splice (core's `FdBody` registers it again).
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        Ok(match self {
            Conn::Unix(s) => s.into_std()?.into(),
            Conn::Tcp(s) => s.into_std()?.into(),
        })
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A worker's side of one peer: its idle connections, most recent last,
/// and the requests it has in flight to the peer — at most `keep`, each on
/// a connection of its own, with at most `4 × keep` more waiting. A kept
/// connection holds one of the peer's processes (php-fpm serves a
/// connection until it closes), so the workers' shares add up to the
/// mount's `connections`, which must not exceed them: more would leave a
/// new connection waiting in the peer's backlog behind idle ones.
#[derive(Debug)]
pub struct Idle {
    conns: RefCell<Vec<Conn>>,
    keep: usize,
    slots: std::sync::Arc<Semaphore>,
    waiting: Cell<usize>,
}

/// Why a request found no room (503).
const QUEUE_FULL: &str = "too many requests waiting for the FastCGI peer";

impl Idle {
    /// Keeps at most `keep` idle connections and requests in flight.
    pub fn new(keep: usize) -> Idle {
        Idle {
            conns: RefCell::new(Vec::new()),
            keep,
            slots: std::sync::Arc::new(Semaphore::new(keep)),
            waiting: Cell::new(0),
        }
    }

    /// Waits for a turn to send a request; `Err` at once when the queue is
    /// full. The turn ends when the permit is dropped.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit, &'static str> {
        let sem = self.slots.clone();
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.get() >= 4 * self.keep {
            return Err(QUEUE_FULL);
        }
        self.waiting.set(self.waiting.get() + 1);
        let _left = Waiting(&self.waiting);
        sem.acquire_owned().await.map_err(|_| QUEUE_FULL)
    }

    /// An idle connection that the peer has not closed meanwhile.
    pub fn take(&self) -> Option<Conn> {
        loop {
            let conn = self.conns.borrow_mut().pop()?;
            if still_open(&conn) {
                return Some(conn);
            }
        }
    }

    /// A connection whose last request ended cleanly, for the next.
    pub fn put(&self, conn: Conn) {
        let mut conns = self.conns.borrow_mut();
        if conns.len() < self.keep {
            conns.push(conn);
        }
    }
}

/// One waiter fewer when dropped (its request got a turn or was given up).
struct Waiting<'a>(&'a Cell<usize>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Whether a connection at rest is still open: nothing to read, no end of
/// file (a peer that closes an idle connection, as php-fpm does when a
/// child exits, leaves it readable at EOF).
fn still_open(conn: &Conn) -> bool {
    let mut byte = [0u8; 1];
    let peeked = match conn {
        Conn::Unix(s) => s.try_read(&mut byte),
        Conn::Tcp(s) => s.try_read(&mut byte),
    };
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
