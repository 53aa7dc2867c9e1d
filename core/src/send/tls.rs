//! A response head and its body's chunks through a TLS session made in
//! user space ([`TlsWire`]): each chunk copied into the staging buffer —
//! own memory as it is, a pool slice with [`Buf::copy_into`] (the kernel
//! reads an untrusted pool's memfd), a file range with `pread` — then
//! sealed into records and written out whenever 64 KiB are sealed. Every
//! body byte is counted in `iolite_body_bytes_copied_total` once, as it
//! enters the staging buffer; the head is not body.
//!
//! [`Buf::copy_into`]: iolite_ipc::Buf::copy_into

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::chunks::Chunk;
use crate::response::Body;
use crate::wire::{TlsWire, Wire};

/// Bytes read from a file or a pool slice at a time.
const PIECE: usize = 64 << 10;

/// Puts `head` and, if `with_body`, the body's chunks into the session,
/// writing records out as they fill (the last partial record stays
/// staged: see [`finish`]).
pub(super) async fn send_chunks(
    wire: &Wire,
    head: &[u8],
    body: &Body,
    with_body: bool,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    let tls = tls_of(wire)?;
    tls.put(head);
    *sent += head.len() as u64;
    if !with_body {
        return Ok(());
    }
    for chunk in body.chunks() {
        match chunk {
            Chunk::Mem(bytes) => {
                for piece in bytes.chunks(PIECE) {
                    tls.put(piece);
                    iolite_ipc::copied::add(piece.len());
                    *sent += piece.len() as u64;
                    drain_if_full(wire, tls, timeout).await?;
                }
            }
            Chunk::Pool { buf, start, len } => {
                let mut at = start;
                while at < start + len {
                    let take = (start + len - at).min(PIECE);
                    let piece = buf
                        .slice(at..at + take)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    // `copy_into` counts what it copies.
                    tls.put_with(take, |stage, _| {
                        piece
                            .copy_into(stage)
                            .map(|()| take)
                            .map_err(|e| io::Error::other(e.to_string()))
                    })?;
                    *sent += take as u64;
                    at += take;
                    drain_if_full(wire, tls, timeout).await?;
                }
            }
            Chunk::File { fd, offset, len } => {
                put_file(wire, tls, fd, offset, len, timeout, sent).await?;
            }
        }
    }
    Ok(())
}

/// Seals what is staged and writes it all out (the end of an answer, or
/// of what is known before the body's next part comes).
pub(super) async fn finish(wire: &Wire, timeout: Duration) -> io::Result<()> {
    tls_of(wire)?.push(wire.tcp(), false, timeout).await
}

fn tls_of(wire: &Wire) -> io::Result<&TlsWire> {
    wire.tls_side()
        .ok_or_else(|| io::Error::other("a plain connection on the TLS send path"))
}

async fn drain_if_full(wire: &Wire, tls: &TlsWire, timeout: Duration) -> io::Result<()> {
    if tls.full() {
        tls.push(wire.tcp(), true, timeout).await?;
    }
    Ok(())
}

/// `len` bytes of `fd` from `offset`, read with `pread` into the session.
async fn put_file(
    wire: &Wire,
    tls: &TlsWire,
    fd: BorrowedFd<'_>,
    mut offset: u64,
    len: u64,
    timeout: Duration,
    sent: &mut u64,
) -> io::Result<()> {
    let end = offset + len;
    while offset < end {
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(PIECE);
        let got = tls.put_with(want, |stage, max| {
            let start = stage.len();
            stage.resize(start + max, 0);
            let read = rustix::io::pread(fd, &mut stage[start..], offset).map_err(io::Error::from);
            stage.truncate(start + *read.as_ref().unwrap_or(&0));
            read
        })?;
        if got == 0 {
            // The file shrank under us: the promised length cannot be met.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while sending",
            ));
        }
        iolite_ipc::copied::add(got);
        *sent += got as u64;
        offset += got as u64;
        drain_if_full(wire, tls, timeout).await?;
    }
    Ok(())
}
