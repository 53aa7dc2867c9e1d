//! Load gossip: each node's active requests ride on foca's custom
//! broadcasts, piggybacked on the probes and gossip packets foca sends
//! anyway.
//!
//! Why not in the identity: a new identity is a membership event (foca
//! declares the old one down and renames it cluster-wide), far too heavy
//! for a figure that changes with every request. A broadcast is versioned
//! by the sender's generation and a counter, so a newer figure replaces
//! an older one still being disseminated ([`foca::Invalidates`]) and a
//! late one is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::NodeIdentity;

/// One node's load at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadUpdate {
    /// The node's peer address (its key among members).
    pub peer: SocketAddr,
    pub generation: u64,
    /// Counts the node's updates within one generation.
    pub seq: u64,
    /// Active requests.
    pub load: u32,
}

impl LoadUpdate {
    fn version(&self) -> (u64, u64) {
        (self.generation, self.seq)
    }

    /// The broadcast's bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a LoadUpdate always encodes")
    }
}

/// Foca's handle on a broadcast: which node's load, how recent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadKey {
    peer: SocketAddr,
    version: (u64, u64),
}

impl foca::Invalidates for LoadKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.peer == other.peer && self.version >= other.version
    }
}

/// The latest load heard from each node; shared by foca's broadcast
/// handler and the view the agent publishes.
#[derive(Debug, Clone, Default)]
pub struct LoadBook {
    latest: Arc<Mutex<HashMap<SocketAddr, LoadUpdate>>>,
}

impl LoadBook {
    /// The latest load of the node at `peer`, if it belongs to `generation`.
    pub fn load_of(&self, peer: SocketAddr, generation: u64) -> Option<u32> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .get(&peer)
            .filter(|u| u.generation == generation)
            .map(|u| u.load)
    }

    /// Keeps `update` if it is newer than what is known of its node.
    fn record(&self, update: LoadUpdate) -> bool {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match latest.get(&update.peer) {
            Some(known) if known.version() >= update.version() => false,
            _ => {
                latest.insert(update.peer, update);
                true
            }
        }
    }
}

impl foca::BroadcastHandler<NodeIdentity> for LoadBook {
    type Key = LoadKey;
    type Error = postcard::Error;

    /// Our own update (no sender) is always disseminated; another node's
    /// only while it is news here.
    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeIdentity>,
    ) -> Result<Option<LoadKey>, postcard::Error> {
        let update: LoadUpdate = postcard::from_bytes(data)?;
        let news = self.record(update);
        let key = LoadKey {
            peer: update.peer,
            version: update.version(),
        };
        Ok((news || sender.is_none()).then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{BroadcastHandler as _, Invalidates as _};

    fn update(peer: &str, generation: u64, seq: u64, load: u32) -> LoadUpdate {
        LoadUpdate {
            peer: peer.parse().unwrap(),
            generation,
            seq,
            load,
        }
    }

    #[test]
    fn newer_loads_replace_older_ones_and_late_ones_are_dropped() {
        let mut book = LoadBook::default();
        let from = NodeIdentity::seed("127.0.0.9:1".parse().unwrap());
        let a = "127.0.0.2:7946";
        let first = update(a, 10, 1, 5);
        let key1 = book
            .receive_item(&first.encode(), Some(&from))
            .unwrap()
            .unwrap();
        assert_eq!(book.load_of(first.peer, 10), Some(5));
        // The same again, and an older one: not news, not passed on.
        assert_eq!(
            book.receive_item(&first.encode(), Some(&from)).unwrap(),
            None
        );
        assert_eq!(
            book.receive_item(&update(a, 10, 0, 9).encode(), Some(&from))
                .unwrap(),
            None
        );
        assert_eq!(book.load_of(first.peer, 10), Some(5));
        let key2 = book
            .receive_item(&update(a, 10, 2, 7).encode(), Some(&from))
            .unwrap()
            .unwrap();
        assert!(key2.invalidates(&key1) && !key1.invalidates(&key2));
        // A restarted node's counter starts again, under a later generation.
        let key3 = book
            .receive_item(&update(a, 11, 0, 1).encode(), Some(&from))
            .unwrap()
            .unwrap();
        assert!(key3.invalidates(&key2));
        assert_eq!(book.load_of(first.peer, 10), None);
        assert_eq!(book.load_of(first.peer, 11), Some(1));
        // Another node's key never invalidates this one's.
        let b = book
            .receive_item(&update("127.0.0.3:7946", 99, 99, 0).encode(), Some(&from))
            .unwrap()
            .unwrap();
        assert!(!b.invalidates(&key3) && !key3.invalidates(&b));
        // Our own update goes out even when not newer.
        assert!(
            book.receive_item(&update(a, 11, 0, 1).encode(), None)
                .unwrap()
                .is_some()
        );
        // Garbage is an error, not a panic.
        assert!(book.receive_item(&[0xff; 3], Some(&from)).is_err());
    }
}
