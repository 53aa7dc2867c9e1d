//! A connection to a FastCGI peer, unix or TCP, and a worker's idle ones.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use iolite_core::config::FastCgiAddress;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

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

/// A worker's idle connections to one peer, most recent last.
#[derive(Debug)]
pub struct Idle {
    conns: RefCell<Vec<Conn>>,
    keep: usize,
}

impl Idle {
    /// Keeps at most `keep` idle connections.
    pub fn new(keep: usize) -> Idle {
        Idle {
            conns: RefCell::new(Vec::new()),
            keep,
        }
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
