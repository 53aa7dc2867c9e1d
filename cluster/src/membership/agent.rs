//! The membership agent: one task on the membership thread's own runtime
//! that owns foca, the UDP socket and foca's timers, and does foca's I/O.
//!
//! Foca is sans-IO: it is handed packets and due timers and answers with
//! packets to send, timers to set and notifications. Here every outgoing
//! packet is sealed ([`packet::seal`]) and every incoming one opened
//! ([`packet::open`]) before foca sees it; timers are a heap of deadlines
//! served by one `tokio::time::sleep_until`; notifications are logged and
//! the [`View`] is published after each step.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use iolite_core::config::ClusterTimers;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::identity::NodeIdentity;
use super::load::{LoadBook, LoadUpdate};
use super::packet::{self, ClusterKey, MAX_PACKET, OVERHEAD, ReplayGuard};
use super::report::Counters;
use super::view::{Member, MemberState, View};

/// Foca as a node runs it: our identity, postcard, loads as broadcasts.
pub type Swim = Foca<NodeIdentity, PostcardCodec, rand_foca::rngs::SmallRng, LoadBook>;

/// A foca instance as a node makes it (the agent; tests and the fuzz
/// target build theirs here too, so they run what a node runs).
pub fn new_swim(
    identity: NodeIdentity,
    timers: &ClusterTimers,
    cluster_size: usize,
    rng_seed: u64,
    loads: LoadBook,
) -> Swim {
    use rand_foca::SeedableRng as _;
    Foca::with_custom_broadcast(
        identity,
        foca_config(timers, cluster_size),
        rand_foca::rngs::SmallRng::seed_from_u64(rng_seed),
        PostcardCodec,
        loads,
    )
}

/// Members picked for each periodic gossip (foca's `new_lan` value).
const GOSSIP_FANOUT: usize = 3;

/// Foca's configuration: `Config::new_lan` for `cluster_size` nodes with
/// the configured timers, and packets small enough to be sealed.
pub fn foca_config(t: &ClusterTimers, cluster_size: usize) -> foca::Config {
    let size = NonZeroU32::new(u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX))
        .expect("at least 1");
    let mut c = foca::Config::new_lan(size);
    c.probe_period = t.probe_period;
    c.probe_rtt = t.probe_rtt;
    c.suspect_to_down_after = t.suspect_to_down;
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: t.gossip_period,
        num_members: NonZeroUsize::new(GOSSIP_FANOUT).expect("not 0"),
    });
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET - OVERHEAD).expect("not 0");
    c
}

/// Microseconds since the Unix epoch: the packets' timestamps.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One of foca's timers, due at `at`.
#[derive(Debug)]
struct Due {
    at: Instant,
    /// Submission order, so timers due at one instant fire in order.
    seq: u64,
    timer: Timer<NodeIdentity>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What the agent is started with.
#[derive(Debug)]
pub struct AgentParts {
    pub identity: NodeIdentity,
    pub seeds: Vec<SocketAddr>,
    pub key: ClusterKey,
    pub timers: ClusterTimers,
    pub rng_seed: u64,
    pub load: Arc<AtomicU32>,
    pub counters: Arc<Counters>,
    pub view: watch::Sender<Arc<View>>,
}

pub struct Agent {
    foca: Swim,
    local: SocketAddr,
    seeds: Vec<SocketAddr>,
    key: ClusterKey,
    guard: ReplayGuard,
    runtime: AccumulatingRuntime<NodeIdentity>,
    due: BinaryHeap<Reverse<Due>>,
    next_seq: u64,
    /// The next packet's counter (starts at the random seed: two lives of
    /// one node never count alike).
    counter: u64,
    loads: LoadBook,
    load: Arc<AtomicU32>,
    /// The load last broadcast, its sequence number and when.
    published: Option<(u32, u64, Instant)>,
    last_announce: Option<Instant>,
    timers: ClusterTimers,
    counters: Arc<Counters>,
    view: watch::Sender<Arc<View>>,
    sealed: Vec<u8>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("identity", self.foca.identity())
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(parts: AgentParts) -> Agent {
        let local = parts.identity.peer;
        let seeds: Vec<SocketAddr> = parts.seeds.into_iter().filter(|s| *s != local).collect();
        let loads = LoadBook::default();
        let foca = new_swim(
            parts.identity,
            &parts.timers,
            seeds.len() + 1,
            parts.rng_seed,
            loads.clone(),
        );
        let window_us = u64::try_from(parts.timers.replay_window.as_micros()).unwrap_or(u64::MAX);
        Agent {
            foca,
            local,
            seeds,
            key: parts.key,
            guard: ReplayGuard::new(window_us),
            runtime: AccumulatingRuntime::new(),
            due: BinaryHeap::new(),
            next_seq: 0,
            counter: parts.rng_seed,
            loads,
            load: parts.load,
            published: None,
            last_announce: None,
            timers: parts.timers,
            counters: parts.counters,
            view: parts.view,
            sealed: Vec::with_capacity(MAX_PACKET),
        }
    }

    /// Runs until `stop` fires (or its sender is dropped): then leaves the
    /// cluster, telling the peers, and returns.
    pub async fn run(mut self, socket: UdpSocket, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.timers.gossip_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut buf = vec![0u8; MAX_PACKET + 1];
        self.publish_view(false);
        loop {
            let next = self.due.peek().map(|d| d.0.at);
            tokio::select! {
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.receive(&buf[..n], from),
                    Err(e) => tracing::debug!(error = %e, "cluster: receive failed"),
                },
                () = sleep_until_or_never(next) => self.fire_due_timers(),
                _ = tick.tick() => self.tick(),
                _ = &mut stop => break,
            }
            self.flush(&socket).await;
        }
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %e, "cluster: leaving");
        }
        // Leaving declares this identity down: not news worth a warning.
        while self.runtime.to_notify().is_some() {}
        self.flush(&socket).await;
        tracing::info!("cluster: left the cluster");
    }

    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        self.counters.packets_in.fetch_add(1, Relaxed);
        let opened = packet::open(
            &self.key,
            from,
            self.local,
            datagram,
            now_us(),
            &mut self.guard,
        );
        match opened {
            Ok(payload) => {
                if let Err(e) = self.foca.handle_data(payload, &mut self.runtime) {
                    self.counters.foca_errors.fetch_add(1, Relaxed);
                    tracing::debug!(%from, error = %e, "cluster: gossip not taken");
                }
            }
            Err(why) => {
                self.counters.rejected(why);
                tracing::debug!(%from, reason = why.as_str(), "cluster: gossip rejected");
            }
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while self.due.peek().is_some_and(|d| d.0.at <= now) {
            let Some(Reverse(d)) = self.due.pop() else {
                break;
            };
            if let Err(e) = self.foca.handle_timer(d.timer, &mut self.runtime) {
                tracing::debug!(error = %e, "cluster: timer");
            }
        }
    }

    /// Every gossip period: broadcast this node's load when it changed (or
    /// now and then, for members that joined since), and look for the
    /// cluster through the seeds while no member is alive.
    fn tick(&mut self) {
        let now = Instant::now();
        let load = self.load.load(Relaxed);
        let refresh = self.timers.probe_period * 5;
        let due = match self.published {
            None => true,
            Some((last, _, at)) => last != load || now.duration_since(at) >= refresh,
        };
        if due {
            let seq = self.published.map_or(0, |(_, seq, _)| seq + 1);
            let update = LoadUpdate {
                peer: self.local,
                generation: self.foca.identity().generation,
                seq,
                load,
            };
            if let Err(e) = self.foca.add_broadcast(&update.encode()) {
                tracing::debug!(error = %e, "cluster: load broadcast");
            }
            self.published = Some((load, seq, now));
        }
        let quiet = self
            .last_announce
            .is_none_or(|at| now.duration_since(at) >= self.timers.probe_period);
        if self.foca.num_members() == 0 && quiet {
            self.announce_to_seeds();
            self.last_announce = Some(now);
        }
    }

    fn announce_to_seeds(&mut self) {
        for seed in &self.seeds {
            if let Err(e) = self
                .foca
                .announce(NodeIdentity::seed(*seed), &mut self.runtime)
            {
                tracing::debug!(%seed, error = %e, "cluster: announce");
            }
        }
    }

    /// Does what foca asked for: sends, timers, notifications; then
    /// publishes the view.
    async fn flush(&mut self, socket: &UdpSocket) {
        while let Some((to, payload)) = self.runtime.to_send() {
            let counter = self.counter;
            self.counter = self.counter.wrapping_add(1);
            packet::seal(
                &self.key,
                self.local,
                to.peer,
                now_us(),
                counter,
                &payload,
                &mut self.sealed,
            );
            match socket.send_to(&self.sealed, to.peer).await {
                Ok(_) => self.counters.packets_out.fetch_add(1, Relaxed),
                Err(e) => {
                    tracing::debug!(to = %to.peer, error = %e, "cluster: send failed");
                    self.counters.send_errors.fetch_add(1, Relaxed)
                }
            };
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.due.push(Reverse(Due {
                at: now + after,
                seq: self.next_seq,
                timer,
            }));
            self.next_seq += 1;
        }
        let mut changed = false;
        while let Some(n) = self.runtime.to_notify() {
            changed = true;
            log_notification(&n);
        }
        self.publish_view(changed);
    }

    /// Publishes the members as foca knows them now, when anything shown
    /// changed; the epoch moves when more than a load did.
    fn publish_view(&mut self, membership_changed: bool) {
        let me = self.foca.identity().clone();
        let mut members: Vec<Member> = self
            .foca
            .iter_membership_state()
            .map(|m| {
                let id = m.id();
                let state = match m.state() {
                    foca::State::Alive => MemberState::Alive,
                    foca::State::Suspect => MemberState::Suspect,
                    foca::State::Down => MemberState::Down,
                };
                Member {
                    name: id.name.clone(),
                    peer: id.peer,
                    client: id.client,
                    generation: id.generation,
                    state,
                    load: self.loads.load_of(id.peer, id.generation).unwrap_or(0),
                    local: false,
                }
            })
            .collect();
        members.sort_by(|a, b| (&a.name, a.peer).cmp(&(&b.name, b.peer)));
        members.insert(
            0,
            Member {
                name: me.name.clone(),
                peer: me.peer,
                client: me.client,
                generation: me.generation,
                state: MemberState::Alive,
                load: self.load.load(Relaxed),
                local: true,
            },
        );
        self.view.send_if_modified(|view| {
            let same_members = view.members.len() == members.len()
                && view.members.iter().zip(&members).all(|(a, b)| {
                    (&a.name, a.peer, a.client, a.generation, a.state)
                        == (&b.name, b.peer, b.client, b.generation, b.state)
                });
            if same_members && !membership_changed && view.members == members {
                return false;
            }
            let epoch = if same_members && !membership_changed {
                view.epoch
            } else {
                view.epoch + 1
            };
            *view = Arc::new(View { members, epoch });
            true
        });
    }
}

/// Sleeps until `at`, or forever when there is no timer.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_notification(n: &OwnedNotification<NodeIdentity>) {
    match n {
        OwnedNotification::MemberUp(id) => tracing::info!(
            member = %id.name, peer = %id.peer, client = %id.client,
            "cluster: member up"
        ),
        OwnedNotification::MemberDown(id) => tracing::info!(
            member = %id.name, peer = %id.peer,
            "cluster: member down"
        ),
        OwnedNotification::Rename(old, new) => tracing::info!(
            member = %new.name, peer = %new.peer, was = %old.name,
            generation = new.generation,
            "cluster: member is a new life of the node at its address"
        ),
        OwnedNotification::Active => tracing::info!("cluster: joined the cluster"),
        OwnedNotification::Idle => {
            tracing::warn!("cluster: no live peer left; announcing to the seeds until one answers")
        }
        OwnedNotification::Defunct => {
            tracing::warn!("cluster: this node was declared down and cannot rejoin by itself")
        }
        OwnedNotification::Rejoin(id) => tracing::info!(
            generation = id.generation,
            "cluster: this node was declared down while alive; rejoined as a new generation"
        ),
        #[allow(unreachable_patterns)]
        _ => {}
    }
}
