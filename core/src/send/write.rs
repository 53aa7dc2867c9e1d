//! The send path's writes: gathered memory with `sendmsg` (partial writes
//! resumed, `EAGAIN` waited on with the send timeout), and chunked
//! framing lines (a leaf: bodies of every kind write through it).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use iolite_ipc::IoVec;
use tokio::io::Interest;
use tokio::net::TcpStream;

pub(crate) use crate::wire::wait_writable;

/// Appends the line that starts a chunk of `len` bytes (0: the last chunk
/// and the end of the body), after the CRLF that ends the previous chunk's
/// data unless this is the `first`.
pub(crate) fn chunk_line(out: &mut Vec<u8>, len: u64, first: bool) {
    if !first {
        out.extend_from_slice(b"\r\n");
    }
    if len == 0 {
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        push_hex(out, len);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in lower-case hexadecimal (a chunk size).
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]);
    }
}

/// Writes every byte of `bufs` with `sendmsg` (by address: the kernel
/// reads them, `iolite_ipc::iov::send`), `MSG_MORE` if more follows; adds
/// what it wrote to `sent`.
pub(crate) async fn write_all_vectored(
    stream: &TcpStream,
    mut bufs: &mut [IoVec<'_>],
    more: bool,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    IoVec::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let attempt = stream.try_io(Interest::WRITABLE, || {
            iolite_ipc::iov::send(stream.as_fd(), bufs, more)
        });
        match attempt {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => {
                *sent += k as u64;
                IoVec::advance_slices(&mut bufs, k);
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
