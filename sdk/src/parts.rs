//! Request bodies in parts, the runner's side (item 8 of [`crate::wire`]):
//! what is left of the body of the request being handled ([`BodyLeft`])
//! and reading its next part ([`next_part`], behind `Ctx::body_part` and
//! `BodyStream::body_part`). The parts of requests answered before their
//! body's end are the link's to drop (`link`'s `Owed`).

use iolite_ipc::Agg;

use crate::error::Error;
use crate::link::{Link, OVERRUN, desc_len};
use crate::wire::{Msg, PARTS_UNKNOWN};

/// What is left of a request's body for [`next_part`].
#[derive(Debug)]
pub(crate) enum BodyLeft {
    /// The body is whole in the request and was not handed out yet.
    Whole,
    /// Bytes still to come in [`Msg::BodyPart`]s (0: the body was read).
    Parts(u64),
    /// The client went away: no more parts come.
    Cancelled,
    /// A part broke the protocol: the runtime ends the link with this
    /// error once the module has returned.
    Broken(Error),
}

impl BodyLeft {
    /// The state of a request that announced `parts` bytes in parts.
    pub(crate) fn new(parts: u64) -> Self {
        if parts > 0 {
            BodyLeft::Parts(parts)
        } else {
            BodyLeft::Whole
        }
    }
}

/// The next part of request `id`'s body (see `Ctx::body_part`): `whole`
/// once when the body came whole (unless it is empty), else the next
/// [`Msg::BodyPart`] with this id, found in `link.pending` or read from
/// the link; `None` once every byte came. Never an empty part.
pub(crate) fn next_part(
    link: &mut Link<'_>,
    id: u64,
    whole: &Agg,
    left: &mut BodyLeft,
) -> Result<Option<Agg>, Error> {
    let want = match left {
        BodyLeft::Whole => {
            *left = BodyLeft::Parts(0);
            return Ok((!whole.is_empty()).then(|| whole.clone()));
        }
        BodyLeft::Parts(0) => return Ok(None),
        BodyLeft::Parts(n) => *n,
        BodyLeft::Cancelled => return Err(Error::Cancelled),
        BodyLeft::Broken(e) => return Err(for_module(e)),
    };
    match read_part(link, id, want) {
        Ok(part) if want == PARTS_UNKNOWN => {
            if part.is_empty() {
                *left = BodyLeft::Parts(0);
                return Ok(None);
            }
            Ok(Some(part))
        }
        Ok(part) => {
            *left = BodyLeft::Parts(want - part.len() as u64);
            Ok(Some(part))
        }
        Err(Error::Cancelled) => {
            *left = BodyLeft::Cancelled;
            Err(Error::Cancelled)
        }
        Err(e) => {
            let told = for_module(&e);
            *left = BodyLeft::Broken(e);
            Err(told)
        }
    }
}

/// What the module is told of an error that ends the link (the runtime
/// reports the error itself).
fn for_module(e: &Error) -> Error {
    match e {
        Error::Protocol(why) => Error::Protocol(why),
        _ => Error::Protocol("the request body could not be read; the link ends"),
    }
}

/// Reads frames until the next non-empty part of request `id` (at most
/// `want` bytes) is whole. Copy mode: its bytes come in [`Msg::Data`]
/// frames before its [`Msg::BodyPart`], and are copied into the output pool.
fn read_part(link: &mut Link<'_>, id: u64, want: u64) -> Result<Agg, Error> {
    let mut inline: Vec<u8> = Vec::new();
    loop {
        let msg = match take_pending(link, id) {
            Some(msg) => msg,
            None => {
                let msg = link.peer.recv()?;
                match link.owed.absorb(link.peer, msg)? {
                    Some(msg) => msg,
                    None => continue,
                }
            }
        };
        match msg {
            Msg::BodyPart { id: of, body } if of == id => {
                let len = desc_len(&body)?
                    .checked_add(inline.len() as u64)
                    .ok_or(Error::Protocol(OVERRUN))?;
                if len > want {
                    return Err(Error::Protocol(OVERRUN));
                }
                let part = if link.copy {
                    if !body.bufs.is_empty() {
                        return Err(Error::Protocol(
                            "a body part names shared memory in copy mode",
                        ));
                    }
                    crate::transfer::copy_in(link.pool, &mut inline)?
                } else {
                    let part = link.peer.import(&body)?;
                    link.quotable.extend(body.bufs);
                    part
                };
                if !part.is_empty() {
                    return Ok(part);
                }
            }
            Msg::Data { id: of, bytes } if of == id && link.copy => {
                if (inline.len() + bytes.0.len()) as u64 > want {
                    return Err(Error::Protocol(OVERRUN));
                }
                inline.extend_from_slice(&bytes.0);
            }
            Msg::Cancel { id: of } if of == id => return Err(Error::Cancelled),
            // The end of a body of unknown length: the empty part says so.
            Msg::BodyEnd { id: of } if of == id && want == PARTS_UNKNOWN => {
                if !inline.is_empty() {
                    return Err(Error::Protocol("copy-mode bytes without their part"));
                }
                return Ok(Agg::new());
            }
            other => link.pending.push_back(other),
        }
    }
}

/// Whether the server cancelled request `id` (its client went away):
/// takes what has arrived on the link, without waiting, into
/// `link.pending` (parts of requests answered earlier are dropped), and
/// looks for the request's [`Msg::Cancel`] there.
pub(crate) fn cancelled(link: &mut Link<'_>, id: u64) -> Result<bool, Error> {
    while let Some(event) = link.peer.try_recv_event()? {
        if let iolite_ipc::Event::Message(msg) = event
            && let Some(msg) = link.owed.absorb(link.peer, msg)?
        {
            link.pending.push_back(msg);
        }
    }
    Ok(link
        .pending
        .iter()
        .any(|m| matches!(m, Msg::Cancel { id: of } if *of == id)))
}

/// The first message kept in `link.pending` (while waiting for a lookup,
/// say) that belongs to reading request `id`'s body.
fn take_pending(link: &mut Link<'_>, id: u64) -> Option<Msg> {
    let at = link.pending.iter().position(|m| match m {
        Msg::BodyPart { id: of, .. } | Msg::Cancel { id: of } | Msg::BodyEnd { id: of } => {
            *of == id
        }
        Msg::Data { id: of, .. } => *of == id && link.copy,
        _ => false,
    })?;
    link.pending.remove(at)
}

#[cfg(test)]
mod tests;
