//! [`Brain`]: what a node keeps to decide for the targets it owns: the
//! live members (as policy [`NodeId`]s), the ring that gives every target
//! its owner, the [`LoadTable`] and the policy itself, fed membership
//! changes as [`Event::Joined`] and [`Event::Left`] exactly as the
//! simulator feeds them. Soft state: a node that becomes the owner of a
//! target (its old owner left) starts with no server set for it and
//! builds one from its next request, as the policy does for a new target.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::membership::View;
use crate::policy::{
    Event, Lard, LoadTable, NodeId, Policy, PolicyKind, PolicyParams, Ring, TargetKey, stable_hash,
};

/// Targets remembered for `/status` at most.
const MAX_HOT: usize = 4096;

/// A live member as dispatch knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Its peer listener (TCP; gossip is UDP on the same address).
    pub peer: SocketAddr,
    pub local: bool,
}

/// A node's policy [`NodeId`]: the stable hash of its name, so every node
/// numbers every other the same way.
pub fn node_id(name: &str) -> NodeId {
    NodeId(stable_hash(name.as_bytes()) as u32)
}

#[derive(Debug)]
struct Hot {
    path: String,
    requests: u64,
}

/// The policy, kept as LARD when it is (to show its server sets).
#[derive(Debug)]
enum Decider {
    Lard(Lard),
    Other(Box<dyn Policy>),
}

impl Decider {
    fn policy(&mut self) -> &mut dyn Policy {
        match self {
            Decider::Lard(l) => l,
            Decider::Other(p) => p.as_mut(),
        }
    }
}

/// The owner's state (see the module doc).
#[derive(Debug)]
pub struct Brain {
    /// The membership epoch the members were last taken from.
    epoch: Option<u64>,
    nodes: HashMap<NodeId, Node>,
    ring: Ring,
    loads: LoadTable,
    decider: Decider,
    hot: HashMap<TargetKey, Hot>,
}

impl Brain {
    /// No members yet; the policy `kind` with `params`.
    pub fn new(kind: PolicyKind, params: &PolicyParams) -> Brain {
        let decider = match kind {
            PolicyKind::LardR => Decider::Lard(Lard::lard_r(params.lard)),
            PolicyKind::Lard => Decider::Lard(Lard::basic(params.lard)),
            other => Decider::Other(other.build(&[], params)),
        };
        Brain {
            epoch: None,
            nodes: HashMap::new(),
            ring: Ring::new(&[], params.vnodes),
            loads: LoadTable::default(),
            decider,
            hot: HashMap::new(),
        }
    }

    /// Takes the live members and their loads from `view` (`own_load` for
    /// this node, whose count is exact here), telling the policy who joined
    /// and who left since the last time.
    pub fn sync(&mut self, view: &View, own_load: u32, now: Duration) {
        if self.epoch != Some(view.epoch) {
            self.epoch = Some(view.epoch);
            let live: HashMap<NodeId, Node> = view
                .live()
                .map(|m| {
                    (
                        node_id(&m.name),
                        Node {
                            name: m.name.clone(),
                            peer: m.peer,
                            local: m.local,
                        },
                    )
                })
                .collect();
            let gone: Vec<NodeId> = self
                .nodes
                .keys()
                .filter(|id| !live.contains_key(id))
                .copied()
                .collect();
            for id in gone {
                self.nodes.remove(&id);
                self.loads.leave(id);
                self.ring.remove(id);
                self.decider
                    .policy()
                    .observe(Event::Left(id), &self.loads, now);
            }
            for (id, node) in live {
                if self.nodes.insert(id, node).is_none() {
                    self.loads.join(id);
                    self.ring.add(id);
                    self.decider
                        .policy()
                        .observe(Event::Joined(id), &self.loads, now);
                }
            }
        }
        for m in view.live() {
            let load = if m.local { own_load } else { m.load };
            self.loads.set_load(node_id(&m.name), load);
        }
    }

    /// The cluster-wide limit on requests the policy asks the front end to
    /// keep (LARD/R's S for the live members), or None.
    pub fn admission_limit(&mut self) -> Option<usize> {
        let live = self.nodes.len().max(1);
        self.decider.policy().admission_limit(live)
    }

    /// Requests in the cluster: the sum of the live members' loads.
    pub fn in_cluster(&self) -> u64 {
        self.loads.total()
    }

    /// The live node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.values().find(|n| n.name == name)
    }

    /// The owner of `target`.
    pub fn owner(&self, target: TargetKey) -> Option<&Node> {
        self.nodes.get(&self.ring.owner(target)?)
    }

    /// The policy's choice for `target` (`path` is kept for `/status`).
    pub fn decide(&mut self, target: TargetKey, path: &[u8], now: Duration) -> Option<&Node> {
        let id = self.decider.policy().decide(target, &self.loads, now)?;
        self.decider
            .policy()
            .observe(Event::Started { target, node: id }, &self.loads, now);
        if let Some(h) = self.hot.get_mut(&target) {
            h.requests += 1;
        } else if self.hot.len() < MAX_HOT {
            self.hot.insert(
                target,
                Hot {
                    path: String::from_utf8_lossy(path).into_owned(),
                    requests: 1,
                },
            );
        }
        self.nodes.get(&id)
    }

    /// A live node other than `not`, for a retry: the next one clockwise
    /// from the target's key on the ring.
    pub fn another(&self, target: TargetKey, not: &str) -> Option<&Node> {
        self.ring
            .walk(target)
            .filter_map(|id| self.nodes.get(&id))
            .find(|n| n.name != not)
    }

    /// The `limit` targets this node decided most often, with their
    /// request counts and (under LARD) their server sets' node names.
    pub fn hottest(&self, limit: usize) -> Vec<(String, u64, Vec<String>)> {
        let mut all: Vec<(&TargetKey, &Hot)> = self.hot.iter().collect();
        all.sort_by(|a, b| {
            b.1.requests
                .cmp(&a.1.requests)
                .then(a.1.path.cmp(&b.1.path))
        });
        all.into_iter()
            .take(limit)
            .map(|(key, h)| {
                let set = match &self.decider {
                    Decider::Lard(l) => l
                        .server_set(*key)
                        .iter()
                        .map(|id| {
                            self.nodes
                                .get(id)
                                .map_or_else(|| id.to_string(), |n| n.name.clone())
                        })
                        .collect(),
                    Decider::Other(_) => Vec::new(),
                };
                (h.path.clone(), h.requests, set)
            })
            .collect()
    }

    /// The server set's node names of `target` (LARD only; empty otherwise).
    pub fn server_set(&self, target: TargetKey) -> Vec<String> {
        match &self.decider {
            Decider::Lard(l) => l
                .server_set(target)
                .iter()
                .filter_map(|id| self.nodes.get(id).map(|n| n.name.clone()))
                .collect(),
            Decider::Other(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Member, MemberState};

    fn member(name: &str, ip: u8, load: u32, local: bool) -> Member {
        Member {
            name: name.into(),
            peer: SocketAddr::from(([127, 0, 0, ip], 7946)),
            client: SocketAddr::from(([127, 0, 0, ip], 8080)),
            generation: 1,
            state: MemberState::Alive,
            load,
            local,
        }
    }

    #[test]
    fn members_become_policy_nodes_and_leavers_lose_their_sets() {
        let mut b = Brain::new(PolicyKind::LardR, &PolicyParams::default());
        let mut view = View {
            members: vec![
                member("n1", 2, 0, true),
                member("n2", 3, 5, false),
                member("n3", 4, 9, false),
            ],
            epoch: 1,
        };
        b.sync(&view, 3, Duration::ZERO);
        let t = TargetKey::of(b"/a.html");
        // Least loaded: n2 (5) vs n1 (own 3) vs n3 (9): n1.
        assert_eq!(b.decide(t, b"/a.html", Duration::ZERO).unwrap().name, "n1");
        assert_eq!(b.server_set(t), vec!["n1".to_owned()]);
        // It sticks while n1 is under T_high, whatever the others' loads.
        b.sync(&view, 40, Duration::ZERO);
        assert_eq!(b.decide(t, b"/a.html", Duration::ZERO).unwrap().name, "n1");
        // n1 leaves: the target's set is rebuilt on the least loaded.
        view.members[0].state = MemberState::Down;
        view.epoch = 2;
        b.sync(&view, 0, Duration::ZERO);
        assert!(b.server_set(t).is_empty());
        assert_eq!(b.decide(t, b"/a.html", Duration::ZERO).unwrap().name, "n2");
        assert!(b.owner(t).is_some_and(|o| o.name != "n1"));
        assert!(b.another(t, "n2").is_some_and(|n| n.name == "n3"));
        assert_eq!(b.hottest(1)[0].0, "/a.html");
    }

    #[test]
    fn every_node_gives_a_target_the_same_owner() {
        let names = ["a", "b", "c", "d"];
        let owners: Vec<Vec<String>> = (0..names.len())
            .map(|me| {
                let mut b = Brain::new(PolicyKind::LardR, &PolicyParams::default());
                let view = View {
                    members: names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| member(n, i as u8 + 2, 0, i == me))
                        .collect(),
                    epoch: 1,
                };
                b.sync(&view, 0, Duration::ZERO);
                (0..100)
                    .map(|i| {
                        b.owner(TargetKey::of(format!("/f{i}").as_bytes()))
                            .unwrap()
                            .name
                            .clone()
                    })
                    .collect()
            })
            .collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]));
        // And the ring spreads them.
        for n in names {
            assert!(owners[0].iter().any(|o| o == n), "{n} owns nothing");
        }
    }

    /// One step of a recorded sequence: a request for `target` at `t` ms
    /// with every live node's load, or a node leaving or joining.
    enum Step {
        Request {
            target: u64,
            loads: Vec<u32>,
            t: u64,
        },
        Leave(usize),
        Join(usize),
    }

    /// A deterministic sequence over 4 nodes: requests for 50 targets with
    /// loads that swing past T_high, n4 leaving a third of the way in and
    /// coming back two thirds in.
    fn sequence() -> Vec<Step> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        for i in 0..3000u64 {
            if i == 1000 {
                out.push(Step::Leave(3));
            }
            if i == 2000 {
                out.push(Step::Join(3));
            }
            let loads = (0..4).map(|_| (next() % 150) as u32).collect();
            out.push(Step::Request {
                target: next() % 50,
                loads,
                t: i * 20,
            });
        }
        out
    }

    const NAMES: [&str; 4] = ["n1", "n2", "n3", "n4"];

    #[test]
    fn golden_the_live_owner_decides_as_the_simulator_drives_the_policy() {
        let params = PolicyParams {
            lard: crate::policy::LardParams {
                k: Duration::from_secs(2),
                ..Default::default()
            },
            ..Default::default()
        };
        // The live owner: views from membership, loads from gossip.
        let mut brain = Brain::new(PolicyKind::LardR, &params);
        let mut live = [true; 4];
        let mut epoch = 0;
        // The simulator's way (sim/engine.rs): a LoadTable, the policy
        // built by PolicyKind, Joined/Left events, decide.
        let mut sim_policy = PolicyKind::LardR.build(&[], &params);
        let mut sim_loads = LoadTable::default();
        for n in NAMES {
            sim_loads.join(node_id(n));
            sim_policy.observe(Event::Joined(node_id(n)), &sim_loads, Duration::ZERO);
        }
        let mut chosen = Vec::new();
        for step in sequence() {
            match step {
                Step::Leave(i) | Step::Join(i) => {
                    let joining = matches!(step, Step::Join(_));
                    live[i] = joining;
                    epoch += 1;
                    let id = node_id(NAMES[i]);
                    if joining {
                        sim_loads.join(id);
                        sim_policy.observe(Event::Joined(id), &sim_loads, Duration::ZERO);
                    } else {
                        sim_loads.leave(id);
                        sim_policy.observe(Event::Left(id), &sim_loads, Duration::ZERO);
                    }
                }
                Step::Request { target, loads, t } => {
                    let now = Duration::from_millis(t);
                    let view = View {
                        members: (0..4)
                            .map(|i| {
                                let mut m = member(NAMES[i], i as u8 + 2, loads[i], i == 0);
                                if !live[i] {
                                    m.state = MemberState::Down;
                                }
                                m
                            })
                            .collect(),
                        epoch,
                    };
                    brain.sync(&view, loads[0], now);
                    let key = TargetKey(stable_hash(&target.to_le_bytes()));
                    let got = brain.decide(key, b"/t", now).unwrap().name.clone();
                    for (i, n) in NAMES.iter().enumerate() {
                        sim_loads.set_load(node_id(n), loads[i]);
                    }
                    let want = sim_policy.decide(key, &sim_loads, now).unwrap();
                    assert_eq!(node_id(&got), want, "request {}", chosen.len());
                    chosen.push(got);
                }
            }
        }
        // The recorded vector: a change to the hash, the ring, the id
        // mapping or the policy changes these.
        let per_node: Vec<usize> = NAMES
            .iter()
            .map(|n| chosen.iter().filter(|c| c == n).count())
            .collect();
        let first: Vec<&str> = chosen.iter().take(12).map(String::as_str).collect();
        assert_eq!(per_node, [936, 820, 791, 453]);
        assert_eq!(
            first,
            [
                "n3", "n2", "n2", "n1", "n3", "n3", "n3", "n2", "n4", "n3", "n3", "n4"
            ]
        );
    }
}
