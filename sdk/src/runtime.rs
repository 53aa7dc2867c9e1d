//! The runner side of the protocol, compiled into each module: receive the
//! request pool, create and share the output pool, then answer requests one
//! at a time until the server closes the socket.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use iolite_ipc::{Agg, AggDesc, BufDesc, Peer, Pool};

use crate::error::Error;
use crate::module::{Ctx, Init, Module, Request};
use crate::wire::{ABI_VERSION, Msg, ResponseFrame};

/// Runs module `M` on the socket the server gave the runner. Returns the
/// process exit code: 0 when the server closed the socket, 1 on an error
/// (written to stderr, which the server logs under the module's name).
pub fn run<M: Module + Default>(sock: OwnedFd) -> i32 {
    match serve::<M>(sock) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("iolite module: {e}");
            1
        }
    }
}

fn serve<M: Module + Default>(sock: OwnedFd) -> Result<(), Error> {
    let mut peer: Peer<Msg> = Peer::new(UnixStream::from(sock));
    let (name, output_pool) = match peer.recv()? {
        Msg::Hello {
            abi,
            name,
            output_pool,
            ..
        } => {
            if abi != ABI_VERSION {
                return Err(Error::AbiMismatch {
                    server: abi,
                    module: ABI_VERSION,
                });
            }
            (name, output_pool)
        }
        _ => return Err(Error::Protocol("the first message is not Hello")),
    };
    let size = usize::try_from(output_pool).map_err(|_| Error::Protocol("output pool size"))?;
    let pool = Pool::with_name("iolite-output", size)?;
    peer.share_pool(&pool)?;
    let mut module = M::default();
    module.init(&Init { name }).map_err(Error::Init)?;
    peer.send(&Msg::Ready {
        abi: ABI_VERSION,
        output_pool: pool.id(),
    })?;
    let mut pending = VecDeque::new();
    let mut quotable = Vec::new();
    loop {
        let msg = match pending.pop_front() {
            Some(msg) => msg,
            None => match peer.recv() {
                Ok(msg) => msg,
                Err(iolite_ipc::Error::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        match msg {
            Msg::Request(mut frame) => {
                let body = peer.import(&frame.body)?;
                quotable.clear();
                quotable.append(&mut std::mem::take(&mut frame.body).bufs);
                let id = frame.id;
                let req = Request { frame, body };
                let mut ctx = Ctx {
                    pool: &pool,
                    peer: &mut peer,
                    quotable: &mut quotable,
                    pending: &mut pending,
                    id,
                    stream_left: None,
                };
                let mut resp = module.handle(&req, &mut ctx);
                if let Some(left) = ctx.stream_left {
                    if left > 0 {
                        eprintln!("iolite module: request {id}: stream ended {left} bytes short");
                        peer.send(&Msg::StreamAbort { id })?;
                    }
                    drop(req);
                    continue;
                }
                let frame = match describe(&mut peer, &pool, &resp.body, &quotable) {
                    Ok(body) => ResponseFrame {
                        id,
                        status: resp.status,
                        headers: std::mem::take(&mut resp.headers),
                        body,
                    },
                    Err(e) => {
                        eprintln!("iolite module: request {id}: {e}");
                        ResponseFrame {
                            id,
                            status: 500,
                            headers: Vec::new(),
                            body: AggDesc::default(),
                        }
                    }
                };
                peer.send(&Msg::Response(frame))?;
                // Only now may the request body's and cached files' leases
                // be released: the response above may quote them.
                drop(req);
                drop(resp);
            }
            Msg::Cancel { .. } => {
                // Requests are answered one at a time, in order: a cancelled
                // one is either answered already or will be, cheaply.
            }
            _ => return Err(Error::Protocol("unexpected message")),
        }
    }
}

/// A body's descriptors: output-pool buffers get fresh leases; slices of
/// the request body or of cached files quote the lease the server granted
/// with them.
pub(crate) fn describe(
    peer: &mut Peer<Msg>,
    pool: &Pool,
    body: &Agg,
    quotable: &[BufDesc],
) -> Result<AggDesc, Error> {
    let mut out = AggDesc::default();
    for buf in body.bufs() {
        if buf.pool_id() == pool.id() {
            let d = peer.export(&Agg::from(buf.clone()))?;
            out.bufs.extend(d.bufs);
            continue;
        }
        let lease = quotable
            .iter()
            .find(|d| {
                d.pool == buf.pool_id()
                    && d.region == buf.region_offset()
                    && d.generation == buf.generation()
            })
            .map(|d| d.lease)
            .ok_or(Error::ForeignBuffer {
                pool: buf.pool_id(),
            })?;
        out.bufs.push(BufDesc {
            pool: buf.pool_id(),
            lease,
            region: buf.region_offset(),
            offset: buf.fd_offset(),
            len: buf.len() as u64,
            generation: buf.generation(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_may_name_only_its_own_pool_and_quoted_slices() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut peer: Peer<Msg> = Peer::new(a);
        let output = Pool::new(1 << 20).unwrap();
        peer.share_pool(&output).unwrap();
        let mut buf = output.alloc(5).unwrap();
        buf.extend_from_slice(b"hello").unwrap();
        let written = Agg::from(buf.freeze());

        let ok = describe(&mut peer, &output, &written, &[]).unwrap();
        assert_eq!(ok.bufs.len(), 1);
        assert_eq!((ok.bufs[0].pool, ok.bufs[0].len), (output.id(), 5));

        // A buffer of a pool that is neither the output pool nor quoted (a
        // slice kept from an earlier request, say) makes the response fail.
        let other = Pool::new(1 << 20).unwrap();
        let mut foreign = other.alloc(3).unwrap();
        foreign.extend_from_slice(b"abc").unwrap();
        let mut body = written;
        body.push(foreign.freeze());
        let err = describe(&mut peer, &output, &body, &[]).unwrap_err();
        assert!(
            matches!(err, Error::ForeignBuffer { pool } if pool == other.id()),
            "{err}"
        );
    }
}
