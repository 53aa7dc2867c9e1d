//! Request bodies in parts, the runner's side (item 8 of [`crate::wire`]):
//! what is left of the body of the request being handled ([`BodyLeft`]),
//! reading its next part ([`next_part`], behind `Ctx::body_part` and
//! `BodyStream::body_part`), and the parts of requests answered before
//! their body's end ([`Owed`]), dropped as they arrive so that the server's
//! upload goes on.

use std::collections::{HashMap, VecDeque};

use iolite_ipc::{Agg, AggDesc, Peer};

use crate::error::Error;
use crate::module::Link;
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

/// A part overruns the length its request announced.
const OVERRUN: &str = "a request body part overruns the announced length";

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
                    crate::runtime::copy_in(link.pool, &mut inline)?
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

/// The bytes a descriptor names, or a protocol error if they overflow.
fn desc_len(desc: &AggDesc) -> Result<u64, Error> {
    desc.bufs
        .iter()
        .try_fold(0u64, |sum, d| sum.checked_add(d.len))
        .ok_or(Error::Protocol(OVERRUN))
}

/// Requests answered (or refused, or skipped) before the last part of
/// their body came: id → bytes still to come. Their parts are imported
/// (which checks them) and dropped on arrival, which releases their
/// leases. An entry goes with the [`Msg::BodyPart`] that completes the
/// body, with a [`Msg::Cancel`] (after which no part of that request
/// comes), or once [`MAX_OWED`] newer entries were made.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    left: HashMap<u64, u64>,
    /// The ids entered, oldest first (some may have gone already).
    order: VecDeque<u64>,
}

/// Most requests a link remembers owing parts. The server may stop sending
/// a request's parts once it has the answer, without a word: the parts
/// that still come are those it sent before it read the answer, and they
/// arrive before any request it sent after. Only requests already in
/// flight then (at most the module's `in_flight`, at most 65,536) can be
/// handled, and owe parts, in between; an entry that many entries old can
/// get no more parts.
pub(crate) const MAX_OWED: usize = 1 << 16;

impl Owed {
    /// Request `id` is done with, and `bytes` of its body are still to come.
    pub(crate) fn insert(&mut self, id: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.left.insert(id, bytes);
        self.order.push_back(id);
        while self.order.len() > MAX_OWED {
            if let Some(old) = self.order.pop_front() {
                self.left.remove(&old);
            }
        }
    }

    /// Whether parts of request `id` are still to come.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.left.contains_key(&id)
    }

    /// Request `id` was cancelled: no more of its parts come.
    pub(crate) fn cancel(&mut self, id: u64) {
        self.left.remove(&id);
    }

    /// Consumes `msg` when it is a part (or, in copy mode, part bytes) of
    /// an owed request; gives it back otherwise.
    ///
    /// # Errors
    /// The part overruns its request's length, or names memory this side
    /// cannot map.
    pub(crate) fn absorb(&mut self, peer: &mut Peer<Msg>, msg: Msg) -> Result<Option<Msg>, Error> {
        let (id, len) = match &msg {
            Msg::BodyPart { id, body } => (*id, desc_len(body)?),
            Msg::Data { id, bytes } => (*id, bytes.0.len() as u64),
            Msg::BodyEnd { id } => (*id, 0),
            _ => return Ok(Some(msg)),
        };
        let Some(&left) = self.left.get(&id) else {
            return Ok(Some(msg));
        };
        let left = match (&msg, left == PARTS_UNKNOWN) {
            // Only its end message ends a body of unknown length.
            (Msg::BodyEnd { .. }, true) => {
                self.left.remove(&id);
                return Ok(None);
            }
            (Msg::BodyEnd { .. }, false) => {
                return Err(Error::Protocol("the end of a body of known length"));
            }
            (_, true) => left,
            (_, false) => left.checked_sub(len).ok_or(Error::Protocol(OVERRUN))?,
        };
        let part = matches!(msg, Msg::BodyPart { .. });
        if let Msg::BodyPart { body, .. } = &msg {
            // Imported to check it, dropped at once: the lease goes back.
            drop(peer.import(body)?);
        }
        // In copy mode the bytes came in Data frames before it; the part
        // frame still ends them.
        if part && left == 0 {
            self.left.remove(&id);
        } else {
            self.left.insert(id, left);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
