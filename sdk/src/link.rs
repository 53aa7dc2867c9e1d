//! The data link a request is handled on ([`Link`], as `Ctx`, `BodyStream`
//! and the runtime borrow it) and what the link still owes: parts of
//! requests answered before their body's end ([`Owed`]), dropped as they
//! arrive so that the server's upload goes on. Below `module`, `parts` and
//! `runtime`, which all work on a link.

use std::collections::{HashMap, VecDeque};

use iolite_ipc::{AggDesc, BufDesc, Peer, Pool};

use crate::error::Error;
use crate::wire::{Msg, PARTS_UNKNOWN};

/// The data link a request is handled on, as its handling borrows it.
#[derive(Debug)]
pub(crate) struct Link<'a> {
    /// This process's output pool.
    pub(crate) pool: &'a Pool,
    pub(crate) peer: &'a mut Peer<Msg>,
    /// Descriptors this request may quote back (its body and its parts,
    /// cached files).
    pub(crate) quotable: &'a mut Vec<BufDesc>,
    /// Messages that arrived while waiting for something else (a lookup,
    /// a body part, releases), for the runtime's loop.
    pub(crate) pending: &'a mut VecDeque<Msg>,
    /// Parts of earlier requests still to come, dropped as they arrive.
    pub(crate) owed: &'a mut Owed,
    /// Bodies go inline ([`Transfer::Copy`](crate::wire::Transfer::Copy)).
    pub(crate) copy: bool,
}

impl Link<'_> {
    /// The same link, borrowed for a shorter time.
    pub(crate) fn reborrow(&mut self) -> Link<'_> {
        Link {
            pool: self.pool,
            peer: self.peer,
            quotable: self.quotable,
            pending: self.pending,
            owed: self.owed,
            copy: self.copy,
        }
    }
}

/// A part overruns the length its request announced.
pub(crate) const OVERRUN: &str = "a request body part overruns the announced length";

/// The bytes a descriptor names, or a protocol error if they overflow.
pub(crate) fn desc_len(desc: &AggDesc) -> Result<u64, Error> {
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
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::wire::InlineBytes;

    #[test]
    fn an_owed_request_is_forgotten_once_max_owed_newer_ones_came() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut peer: Peer<Msg> = Peer::new(ours);
        let mut owed = Owed::default();
        owed.insert(u64::MAX, 0);
        assert!(!owed.contains(u64::MAX), "nothing owed, nothing kept");
        for id in 0..=MAX_OWED as u64 {
            owed.insert(id, 1);
        }
        assert!(!owed.contains(0));
        assert!(owed.contains(1) && owed.contains(MAX_OWED as u64));
        assert_eq!(owed.order.len(), MAX_OWED);
        // A part of the forgotten request is not absorbed: the link loop
        // treats it as a part of a request it never owed.
        let part = |id| Msg::BodyPart {
            id,
            body: AggDesc::default(),
        };
        assert!(owed.absorb(&mut peer, part(0)).unwrap().is_some());
        let byte = Msg::Data {
            id: 1,
            bytes: InlineBytes(vec![7]),
        };
        assert!(owed.absorb(&mut peer, byte).unwrap().is_none());
        assert!(owed.contains(1), "its part frame has not come");
        assert!(owed.absorb(&mut peer, part(1)).unwrap().is_none());
        assert!(!owed.contains(1), "its last byte came");
    }
}
