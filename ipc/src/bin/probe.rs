//! `iolite-ipc-probe`: the other process of iolite-ipc's cross-process tests
//! and benches. Its stdin is a unix socket to the parent; it answers
//! [`Probe`] requests until the socket closes.

use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use iolite_ipc::probe::{Probe, sum_bytes};
use iolite_ipc::{Error, Peer, RemotePool};
use nix::sys::mman::{MapFlags, ProtFlags};

fn main() -> ExitCode {
    let sock = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("probe: stdin: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut peer: Peer<Probe> = Peer::new(sock);
    let mut held = Vec::new();
    loop {
        let req = match peer.recv() {
            Ok(r) => r,
            Err(Error::Closed) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("probe: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = handle(&mut peer, req, &mut held) {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    }
}

fn errno_reply(r: nix::Result<()>) -> Probe {
    match r {
        Ok(()) => Probe::Done,
        Err(e) => Probe::Errno(e as i32),
    }
}

fn pool(peer: &Peer<Probe>, id: u64) -> Result<RemotePool, Error> {
    peer.remote_pool(id)
        .cloned()
        .ok_or(Error::UnknownPool { pool: id })
}

fn handle(
    peer: &mut Peer<Probe>,
    req: Probe,
    held: &mut Vec<iolite_ipc::Agg>,
) -> Result<(), Error> {
    let reply = match req {
        Probe::Sum(d) => {
            let agg = peer.import(&d)?;
            let sum = agg.iter().map(sum_bytes).fold(0, u64::wrapping_add);
            drop(agg);
            // Release before replying, so no frame trails the reply (the
            // parent may switch the socket to raw bytes next).
            peer.flush_releases()?;
            Probe::Summed(sum)
        }
        Probe::Hold(d) => {
            let agg = peer.import(&d)?;
            let n = agg.len() as u64;
            held.push(agg);
            Probe::Held(n)
        }
        Probe::Touch(d) => {
            drop(peer.import(&d)?);
            peer.flush_releases()?;
            return Ok(());
        }
        Probe::Import(d) => match peer.import(&d) {
            Ok(_) => Probe::Done,
            Err(e) => Probe::Rejected(format!("{e:?}")),
        },
        Probe::Peek {
            pool: id,
            offset,
            len,
        } => Probe::Bytes(pool(peer, id)?.read_raw(offset as usize, len as usize)?),
        Probe::TryMprotectWrite(id) => {
            let p = pool(peer, id)?;
            // SAFETY: asks the kernel to make our own read-only mapping of the
            // pool writable; the point is that it refuses (EACCES). Were it to
            // succeed, no Rust reference would be invalidated: nothing writes.
            errno_reply(unsafe {
                nix::sys::mman::mprotect(
                    p.mapping_addr().cast(),
                    p.memfd_size() as usize,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                )
            })
        }
        Probe::TryMmapWrite(id) => {
            let p = pool(peer, id)?;
            let len = NonZeroUsize::new(p.memfd_size() as usize).ok_or(Error::BadPool("empty"))?;
            // SAFETY: a new mapping at a kernel-chosen address aliases no Rust
            // object; if the kernel allowed it we unmap it at once.
            let r = unsafe {
                nix::sys::mman::mmap(
                    None,
                    len,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_SHARED,
                    p.fd(),
                    0,
                )
            };
            errno_reply(r.map(|ptr| {
                // SAFETY: ptr/len are the mapping just created, used by nothing.
                let _ = unsafe { nix::sys::mman::munmap(ptr, len.get()) };
            }))
        }
        Probe::TryFtruncate(id) => {
            let p = pool(peer, id)?;
            let size = p.memfd_size() as i64;
            errno_reply(
                nix::unistd::ftruncate(p.fd(), size / 2)
                    .and_then(|()| nix::unistd::ftruncate(p.fd(), size * 2)),
            )
        }
        Probe::TryPwrite(id) => {
            let p = pool(peer, id)?;
            errno_reply(nix::sys::uio::pwrite(p.fd(), b"x", 0).map(drop))
        }
        Probe::Store { pool: id, offset } => {
            let p = pool(peer, id)?;
            if offset >= p.memfd_size() {
                return Err(Error::BadPool("store outside the pool"));
            }
            // SAFETY: deliberately stores through the read-only mapping to show
            // that the kernel stops it (SIGSEGV kills this process). The address
            // is inside the mapping (checked above); no Rust reference to these
            // bytes is alive in this process.
            unsafe {
                p.mapping_addr()
                    .as_ptr()
                    .add(offset as usize)
                    .write_volatile(0xAA)
            };
            Probe::Done
        }
        Probe::PingPong(_) | Probe::Stream { .. } if peer.channel().buffered() > 0 => {
            return Err(Error::Malformed(
                "raw mode with frames still buffered".into(),
            ));
        }
        Probe::PingPong(rounds) => {
            // `Done` first: the parent sends raw bytes only after it, so none
            // of them can be mixed into the frame buffer.
            peer.send(&Probe::Done)?;
            let mut msg = [0u8; 64];
            let mut s = peer.channel().stream();
            for _ in 0..rounds {
                s.read_exact(&mut msg)?;
                s.write_all(&msg)?;
            }
            return Ok(());
        }
        Probe::Stream { len, rounds } => {
            peer.send(&Probe::Done)?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut s = peer.channel().stream();
            for _ in 0..rounds {
                let mut left = len as usize;
                let mut sum = 0u64;
                while left > 0 {
                    // Whole 256 KiB chunks, so words line up as in the aggregate.
                    let n = left.min(buf.len());
                    s.read_exact(&mut buf[..n])?;
                    sum = sum.wrapping_add(sum_bytes(&buf[..n]));
                    left -= n;
                }
                s.write_all(&sum.to_le_bytes())?;
            }
            return Ok(());
        }
        other => return Err(Error::Malformed(format!("not a request: {other:?}"))),
    };
    peer.send(&reply)
}
