//! The send path: a response head and its body onto a TCP socket with no
//! body byte copied in user space. Memory chunks are gathered with the head
//! into one `sendmsg` (writev), as raw [`IoVec`]s: a module's output pool
//! may be written by the module at any time, so its bytes are never viewed
//! as a `&[u8]` here, only handed to the kernel (`iolite_ipc::iov`); a file
//! chunk goes out with `sendfile(2)`,
//! the memory before it sent with `MSG_MORE` so head and body share
//! segments. A body whose bytes come from a pipe or socket
//! ([`crate::FdBody`]) is moved with `splice(2)` (`send/splice.rs`).
//! Partial writes resume where they stopped; `EAGAIN` waits on tokio's
//! write readiness, bounded by the send timeout.
//!
//! Over TLS made in user space (a [`Wire`] with a rustls session) none of
//! that can hold: the bytes must be read to be encrypted. The same order
//! is kept (head, chunks, parts that come later), each body byte copied
//! into the session's records once and counted in
//! `iolite_body_bytes_copied_total` (`send/tls.rs`; descriptor bodies in
//! `send/splice.rs`).
//!
//! # Layout
//! - `chunks`: a [`Body`] as [`Chunk`]s.
//! - `write`: gathered writes and chunked framing lines.
//! - `tls`: head and chunks through a TLS session.
//! - `splice`: descriptor bodies.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use iolite_ipc::IoVec;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::response::Body;
use crate::wire::Wire;

mod chunks;
mod splice;
mod tls;
mod write;

pub use chunks::{Chunk, Chunks, PartChunks};

use write::{chunk_line, wait_writable, write_all_vectored};
/// Most memory slices gathered into one `sendmsg`.
const MAX_IOV: usize = 16;
/// Largest count given to one `sendfile` call.
const SENDFILE_MAX: u64 = 1 << 30;

/// Writes `bytes` whole (an interim answer such as `100 Continue`).
pub async fn write_bytes(wire: &Wire, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    if let Some(tls) = wire.tls_side() {
        tls.put(bytes);
        return tls.push(wire.tcp(), false, timeout).await;
    }
    let mut batch = [IoVec::from_slice(bytes)];
    write_all_vectored(wire.tcp(), &mut batch, false, timeout, &mut 0).await
}

/// Writes `head` and then, if `with_body`, `body`; a body of unknown
/// length goes out in chunks when `chunked` (its head said
/// `Transfer-Encoding: chunked`), else as it is (its end is the
/// connection's). `sent` counts the bytes written, also when the send
/// fails midway. Over TLS in user space, see `send/tls.rs`.
pub async fn send_response_framed(
    wire: &Wire,
    head: &[u8],
    body: &Body,
    with_body: bool,
    chunked: bool,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    let Some(stream) = wire.plain_tcp() else {
        tls::send_chunks(wire, head, body, with_body, timeout, sent).await?;
        if with_body {
            match body {
                Body::Stream(parts) => send_parts(wire, parts, chunked, timeout, sent).await?,
                Body::Fd(fd) => splice::send_fd(wire, fd, chunked, timeout, sent).await?,
                _ => {}
            }
        }
        return tls::finish(wire, timeout).await;
    };
    let mut batch: [IoVec<'_>; MAX_IOV] = [IoVec::default(); MAX_IOV];
    batch[0] = IoVec::from_slice(head);
    let mut n = 1;
    if with_body {
        for chunk in body.chunks() {
            let bytes = match chunk {
                Chunk::Mem(bytes) => IoVec::from_slice(bytes),
                Chunk::Pool { buf, start, len } => buf.io_vec_range(start, len),
                Chunk::File { len: 0, .. } => continue,
                Chunk::File { fd, offset, len } => {
                    write_all_vectored(stream, &mut batch[..n], true, timeout, sent).await?;
                    n = 0;
                    sendfile_all(stream, fd, offset, len, timeout, sent).await?;
                    continue;
                }
            };
            if bytes.is_empty() {
                continue;
            }
            if n == MAX_IOV {
                write_all_vectored(stream, &mut batch[..n], true, timeout, sent).await?;
                n = 0;
            }
            batch[n] = bytes;
            n += 1;
        }
        // Bodies whose parts arrive later: after what is batched.
        match body {
            Body::Stream(parts) => {
                write_all_vectored(stream, &mut batch[..n], true, timeout, sent).await?;
                n = 0;
                send_parts(wire, parts, chunked, timeout, sent).await?;
            }
            Body::Fd(fd) => {
                // Not corked: the source may have nothing to follow it.
                write_all_vectored(stream, &mut batch[..n], false, timeout, sent).await?;
                n = 0;
                splice::send_fd(wire, fd, chunked, timeout, sent).await?;
            }
            _ => {}
        }
    }
    write_all_vectored(stream, &mut batch[..n], false, timeout, sent).await
}

/// Sends a streamed body's parts as they arrive, each by reference; fails
/// (so the connection closes) if the parts end short of the promised length
/// or overrun it. A stream of unknown length ends with an empty part; its
/// parts go out as chunks when `chunked` (each chunk's size line carries
/// the previous one's CRLF, so a part is one `sendmsg`).
async fn send_parts(
    wire: &Wire,
    body: &crate::response::StreamBody,
    chunked: bool,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "streamed body ended early");
    let mut parts = body.take_parts().ok_or_else(short)?;
    let Some(mut left) = body.len() else {
        let mut first = true;
        let mut line = Vec::with_capacity(24);
        loop {
            let part = parts.recv().await.ok_or_else(short)?;
            let end = part.is_empty();
            line.clear();
            if chunked {
                chunk_line(&mut line, part.len() as u64, first);
            }
            first = false;
            let whole = Body::Agg(part);
            Box::pin(send_response_framed(
                wire, &line, &whole, true, false, timeout, sent,
            ))
            .await?;
            if end {
                return Ok(());
            }
        }
    };
    while left > 0 {
        let part = parts.recv().await.ok_or_else(short)?;
        if part.len() as u64 > left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "streamed body overran its length",
            ));
        }
        left -= part.len() as u64;
        let whole = Body::Agg(part);
        Box::pin(send_response_framed(
            wire, b"", &whole, true, false, timeout, sent,
        ))
        .await?;
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `offset` with `sendfile`.
async fn sendfile_all(
    stream: &TcpStream,
    file: BorrowedFd<'_>,
    mut offset: u64,
    len: u64,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    let end = offset + len;
    while offset < end {
        let count = (end - offset).min(SENDFILE_MAX) as usize;
        let mut off = offset;
        let attempt = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream.as_fd(), file, Some(&mut off), count)
                .map_err(io::Error::from)
        });
        match attempt {
            // The file shrank under us: the promised length cannot be met,
            // so the connection must close.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while sending",
                ));
            }
            Ok(k) => {
                offset += k as u64;
                *sent += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(stream, timeout).await?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use iolite_ipc::{Agg, Pool};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::send_response_framed;
    use super::write::push_hex;
    use crate::response::{Body, StreamBody};

    /// Sends a stream of unknown length made of `parts` (then its end, if
    /// `end`) over loopback TCP; returns what the client read and whether
    /// the send succeeded.
    async fn stream_over_tcp(parts: &[&[u8]], end: bool, chunked: bool) -> (Vec<u8>, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        let pool = Pool::new(1 << 20).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for bytes in parts {
            let mut b = pool.alloc(bytes.len()).unwrap();
            b.extend_from_slice(bytes).unwrap();
            tx.send(Agg::from(b.freeze())).unwrap();
        }
        if end {
            tx.send(Agg::new()).unwrap();
        }
        drop(tx);
        let body = Body::Stream(Arc::new(StreamBody::open_ended(rx)));
        assert!(body.is_open_ended());
        let server = crate::wire::Wire::plain(server);
        let sent = send_response_framed(
            &server,
            b"HEAD\r\n",
            &body,
            true,
            chunked,
            Duration::from_secs(5),
            &mut 0,
        )
        .await;
        drop(server);
        (client.await.unwrap(), sent.is_ok())
    }

    struct Case {
        parts: &'static [&'static [u8]],
        /// The stream's end was sent (else the sender went away).
        end: bool,
        chunked: bool,
        /// The bytes on the wire after the head.
        want: Vec<u8>,
        /// The send succeeded.
        ok: bool,
    }

    #[tokio::test]
    async fn a_stream_of_unknown_length_goes_out_in_chunks_table() {
        const BIG: &[u8] = &[b'x'; 300];
        let big_chunk = [&b"5\r\nhello\r\n12c\r\n"[..], BIG, b"\r\n0\r\n\r\n"].concat();
        let cases = [
            Case {
                parts: &[b"hello", BIG],
                end: true,
                chunked: true,
                want: big_chunk,
                ok: true,
            },
            Case {
                parts: &[],
                end: true,
                chunked: true,
                want: b"0\r\n\r\n".to_vec(),
                ok: true,
            },
            // HTTP/1.0: the bytes as they are; the connection's end ends it.
            Case {
                parts: &[b"hello", b"!"],
                end: true,
                chunked: false,
                want: b"hello!".to_vec(),
                ok: true,
            },
            // The sender went away before the end: no terminal chunk, and
            // the send fails (the connection closes).
            Case {
                parts: &[b"abc"],
                end: false,
                chunked: true,
                want: b"3\r\nabc".to_vec(),
                ok: false,
            },
        ];
        for case in cases {
            let (got, sent) = stream_over_tcp(case.parts, case.end, case.chunked).await;
            let expect = [&b"HEAD\r\n"[..], &case.want].concat();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expect),
                "{:?} end={} chunked={}",
                case.parts,
                case.end,
                case.chunked
            );
            assert_eq!(sent, case.ok, "{:?}", case.parts);
        }
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex_table() {
        for (n, want) in [
            (0u64, "0"),
            (1, "1"),
            (15, "f"),
            (16, "10"),
            (1 << 20, "100000"),
            (0xdead_beef, "deadbeef"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{n}");
        }
    }
}
