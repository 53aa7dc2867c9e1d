//! [`NodeIdentity`]: who a member is, as foca carries it in every packet.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member: its name, its addresses and its generation. Foca tells
/// members apart by their peer address ([`foca::Identity::addr`]); two
/// identities at one address are two lives of one node, and the later
/// generation wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node's configured name.
    pub name: String,
    /// Where it gossips (UDP).
    pub peer: SocketAddr,
    /// Where it serves clients (and, later, forwarded requests).
    pub client: SocketAddr,
    /// This life's incarnation: the wall clock in milliseconds when the
    /// process started, plus one each time foca renews the identity after
    /// the cluster declared it down. A restarted node comes back with a
    /// later one and is taken back at once (foca's `Rename` then
    /// `MemberUp`), instead of waiting out `remove_down_after`. (Foca's own
    /// `Incarnation`, a counter that refutes suspicion within one life,
    /// is another thing.)
    pub generation: u64,
}

impl NodeIdentity {
    /// An identity that only stands for an address (a seed, before we know
    /// who is there): foca accepts an announce whose destination has the
    /// receiver's address, whatever the rest.
    pub fn seed(peer: SocketAddr) -> NodeIdentity {
        NodeIdentity {
            name: String::new(),
            peer,
            client: peer,
            generation: 0,
        }
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    /// Declared down while alive (a pause, a partition): come back as the
    /// next generation.
    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.peer
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    #[test]
    fn a_later_life_wins_and_renewal_moves_on() {
        let first = NodeIdentity {
            name: "n1".into(),
            peer: "127.0.0.2:7946".parse().unwrap(),
            client: "127.0.0.2:8080".parse().unwrap(),
            generation: 1_000,
        };
        let restarted = NodeIdentity {
            generation: 5_000,
            ..first.clone()
        };
        assert!(restarted.win_addr_conflict(&first));
        assert!(!first.win_addr_conflict(&restarted));
        let renewed = first.renew().unwrap();
        assert_eq!(renewed.generation, 1_001);
        assert_eq!(renewed.addr(), first.addr());
        assert!(renewed.win_addr_conflict(&first));
        assert_eq!(NodeIdentity::seed(first.peer).addr(), first.addr());
    }
}
