//! How a body crosses the link in each transfer mode: by descriptor
//! ([`describe`]: output-pool buffers get fresh leases, slices the server
//! sent quote its lease), or in copy mode as inline bytes ([`copy_in`],
//! [`copy_out`]). Below `module`, `parts` and `runtime`, which all move
//! bodies.

use iolite_ipc::{Agg, AggDesc, BufDesc, Peer, Pool};

use crate::error::Error;
use crate::wire::Msg;

/// Copy mode: an inline request body (or body part), copied once more
/// into the output pool so the module sees the same [`Agg`] as in shared
/// mode.
pub(crate) fn copy_in(pool: &Pool, inline: &mut Vec<u8>) -> Result<Agg, Error> {
    if inline.is_empty() {
        return Ok(Agg::new());
    }
    let mut buf = pool.alloc(inline.len())?;
    buf.extend_from_slice(inline)?;
    iolite_ipc::copied::add(inline.len());
    inline.clear();
    Ok(Agg::from(buf.freeze()))
}

/// Copy mode: the body's bytes, inline in [`Msg::Data`] frames.
pub(crate) fn copy_out(peer: &mut Peer<Msg>, id: u64, body: &Agg) -> Result<(), Error> {
    Ok(crate::wire::queue_inline(peer, id, body)?)
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
        // Newest first: a streamed echo quotes the part it just read.
        let lease = quotable
            .iter()
            .rev()
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
    use std::os::unix::net::UnixStream;

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
