//! `cargo build -p iolite-example-forger && cargo run -- serve --module /forger=target/debug/libforger.so`
//!
//! A module that speaks the wire protocol itself (no `export!`) to forge
//! response descriptors the SDK would never produce, for the isolation
//! tests. The server must refuse each (502 for that request, the runner
//! replaced):
//!
//! - `/forger/pool`: a slice of a pool it was never given;
//! - `/forger/range`: a slice of its own output pool past the pool's end;
//! - `/forger/lease`: a slice of the request pool under a lease it never
//!   held;
//! - anything else: an honest empty 200.
//!
//! The entry point takes ownership of a raw descriptor, hence `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use iolite_ipc::{AggDesc, BufDesc, Peer, Pool, RemotePool};
use iolite_sdk::wire::{ABI_VERSION, Msg, ResponseFrame};

/// The module ABI version this library speaks.
#[unsafe(no_mangle)]
pub extern "C" fn iolite_module_abi_version() -> u32 {
    ABI_VERSION
}

/// Serves forged answers until the server closes the socket.
///
/// # Safety
/// `sock_fd` must be an open unix stream socket owned by no one else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iolite_module_main(sock_fd: i32) -> i32 {
    if sock_fd < 0 {
        return 2;
    }
    // SAFETY: by this function's contract, the descriptor is ours alone.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(sock_fd) });
    match serve(sock) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("forger: {e}");
            1
        }
    }
}

fn serve(sock: UnixStream) -> Result<(), iolite_ipc::Error> {
    let mut control: Peer<Msg> = Peer::new(sock);
    let Msg::Hello { output_pool, .. } = control.recv()? else {
        return Ok(());
    };
    let pool = Pool::with_name("forger-output", output_pool as usize)?;
    control.share_pool(&pool)?;
    control.send(&Msg::Ready {
        abi: ABI_VERSION,
        output_pool: pool.id(),
    })?;
    let remote: Vec<RemotePool> = control.remote_pools().cloned().collect();
    loop {
        match control.recv() {
            Ok(Msg::Attach) => {
                let Some(fd) = control.channel().take_fds(1)?.pop() else {
                    return Ok(());
                };
                let mut link: Peer<Msg> = Peer::new(UnixStream::from(fd));
                link.adopt_pool(&pool);
                for r in &remote {
                    link.adopt_remote(r);
                }
                let pool = pool.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_link(&mut link, &pool) {
                        eprintln!("forger: {e}");
                        std::process::exit(1);
                    }
                });
                control.send(&Msg::Attach)?;
            }
            Ok(_) => {}
            Err(iolite_ipc::Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn serve_link(peer: &mut Peer<Msg>, pool: &Pool) -> Result<(), iolite_ipc::Error> {
    loop {
        let Msg::Request(req) = (match peer.recv() {
            Ok(m) => m,
            Err(iolite_ipc::Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }) else {
            continue;
        };
        let forged = |pool: u64, lease: u64, offset: u64| BufDesc {
            pool,
            lease,
            region: offset,
            offset,
            len: 16,
            generation: 0,
        };
        let body = match req.path.rsplit('/').next().unwrap_or("") {
            "pool" => vec![forged(0xdead_beef, 1, 0)],
            "range" => vec![forged(pool.id(), 1, pool.memfd_size() + 4096)],
            "lease" => match req.body.bufs.first() {
                Some(d) => vec![BufDesc {
                    lease: d.lease + 1_000_000,
                    ..*d
                }],
                None => vec![forged(0, 0, 0)],
            },
            _ => Vec::new(),
        };
        peer.send(&Msg::Response(ResponseFrame {
            id: req.id,
            status: 200,
            headers: Vec::new(),
            body: AggDesc { bufs: body },
        }))?;
    }
}
