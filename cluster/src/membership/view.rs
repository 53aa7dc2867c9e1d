//! What membership shows the rest of the server: the members as this node
//! sees them now. A leaf: the agent writes it, the handle, the metrics and
//! the status page read it.

use std::net::SocketAddr;

/// A member's state, as SWIM's failure detector has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared down unless it refutes in time. Still
    /// served by (SWIM treats it as alive).
    Suspect,
    /// Declared down by the cluster.
    Down,
}

impl MemberState {
    /// Every state, in the order metrics list them.
    pub const ALL: [MemberState; 3] = [MemberState::Alive, MemberState::Suspect, MemberState::Down];

    /// The metric label and the status page's word.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }

    /// Whether requests may go to it.
    pub fn is_live(self) -> bool {
        self != MemberState::Down
    }
}

/// One member, this node included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub peer: SocketAddr,
    pub client: SocketAddr,
    /// The life of the node this entry describes (see
    /// [`NodeIdentity::generation`](super::NodeIdentity::generation)).
    pub generation: u64,
    pub state: MemberState,
    /// Active requests, as the member last gossiped (0 until it has).
    pub load: u32,
    /// This node.
    pub local: bool,
}

/// Every member this node knows, itself first, then by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub members: Vec<Member>,
    /// Counts up at each change of the members or their states (not of
    /// loads), so a reader can tell a new membership from a new load.
    pub epoch: u64,
}

impl View {
    /// The members requests may go to (alive or suspect), itself included.
    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.state.is_live())
    }

    /// How many members are in `state`.
    pub fn count(&self, state: MemberState) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }
}
