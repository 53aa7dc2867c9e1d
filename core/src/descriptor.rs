//! [`Descriptor`]: a pipe end or a stream socket that a body comes from
//! or goes to, registered with the worker's reactor through tokio's own
//! types (so readiness needs no `unsafe`), and used by raw `splice(2)`,
//! `read(2)` and `write(2)` inside [`Descriptor::try_io`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::FileType;
use tokio::io::Interest;
use tokio::net::unix::pipe;
use tokio::net::{TcpStream, UnixStream};

/// A body's source or destination (see the module doc).
#[derive(Debug)]
pub(crate) enum Descriptor {
    PipeIn(pipe::Receiver),
    PipeOut(pipe::Sender),
    Unix(UnixStream, Interest),
    Tcp(TcpStream, Interest),
}

impl Descriptor {
    /// `fd` to read from: a pipe's read end or a stream socket.
    pub(crate) fn reader(fd: OwnedFd) -> io::Result<Descriptor> {
        match kind(&fd)? {
            Kind::Pipe => Ok(Descriptor::PipeIn(pipe::Receiver::from_owned_fd(fd)?)),
            kind => socket(fd, kind, Interest::READABLE),
        }
    }

    /// `fd` to write to: a pipe's write end or a stream socket.
    pub(crate) fn writer(fd: OwnedFd) -> io::Result<Descriptor> {
        match kind(&fd)? {
            Kind::Pipe => Ok(Descriptor::PipeOut(pipe::Sender::from_owned_fd(fd)?)),
            kind => socket(fd, kind, Interest::WRITABLE),
        }
    }

    /// Waits until the descriptor is ready for its direction.
    pub(crate) async fn ready(&self) -> io::Result<()> {
        match self {
            Descriptor::PipeIn(p) => p.readable().await,
            Descriptor::PipeOut(p) => p.writable().await,
            Descriptor::Unix(s, i) => s.ready(*i).await.map(drop),
            Descriptor::Tcp(s, i) => s.ready(*i).await.map(drop),
        }
    }

    /// Runs `f` on the descriptor; a `WouldBlock` it returns clears the
    /// readiness, so the next [`ready`](Descriptor::ready) waits.
    pub(crate) fn try_io<R>(
        &self,
        f: impl FnOnce(BorrowedFd<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Descriptor::PipeIn(p) => p.try_io(|| f(p.as_fd())),
            Descriptor::PipeOut(p) => p.try_io(|| f(p.as_fd())),
            Descriptor::Unix(s, i) => s.try_io(*i, || f(s.as_fd())),
            Descriptor::Tcp(s, i) => s.try_io(*i, || f(s.as_fd())),
        }
    }
}

enum Kind {
    Pipe,
    Unix,
    Inet,
}

fn kind(fd: &OwnedFd) -> io::Result<Kind> {
    let stat = rustix::fs::fstat(fd)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Fifo => Ok(Kind::Pipe),
        FileType::Socket => match socket2::SockRef::from(fd).domain()? {
            socket2::Domain::UNIX => Ok(Kind::Unix),
            _ => Ok(Kind::Inet),
        },
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a body descriptor must be a pipe or a stream socket",
        )),
    }
}

fn socket(fd: OwnedFd, kind: Kind, interest: Interest) -> io::Result<Descriptor> {
    match kind {
        Kind::Unix => {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Descriptor::Unix(UnixStream::from_std(s)?, interest))
        }
        _ => {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Descriptor::Tcp(TcpStream::from_std(s)?, interest))
        }
    }
}
