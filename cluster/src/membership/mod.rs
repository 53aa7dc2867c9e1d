//! Membership and failure detection: which nodes are in the cluster, which
//! are alive, where they take clients, how loaded they are.
//!
//! SWIM (Das, Gupta, Motivala 2002) as the foca crate runs it, sans-IO:
//! the agent ([`agent`](self#layout)) owns a UDP socket on the node's peer
//! address and foca's timers, on a thread and tokio runtime of its own
//! (never a worker's), and seals every packet with the cluster key
//! ([`packet`]). Nodes find each other through seed addresses; a member
//! that stops answering probes is suspected, then declared down
//! (`probe_period + suspect_to_down` after it stopped, by default); a
//! restarted node comes back as a later generation of its identity
//! ([`NodeIdentity`]) and is taken back at once.
//!
//! The rest of the server reads membership through [`Membership`]: the
//! current [`View`] (members, states, client addresses, loads) and a
//! `watch` channel that changes with it, and tells it this node's load
//! ([`Membership::set_load`]). The dispatcher will read live members and
//! loads from there; forwarding will connect to their client addresses.
//!
//! # Layout
//! - [`packet`]: the authenticated datagram (HMAC-SHA256, timestamps, the
//!   replay guard). Pure; fuzzed in `cluster/fuzz`.
//! - `identity`: [`NodeIdentity`], foca's `Identity`.
//! - `load`: load updates as foca custom broadcasts.
//! - `view`: [`View`], [`Member`], [`MemberState`]: what is published.
//! - `report`: counters, `/metrics` families and the `/status` table.
//! - `agent`: the event loop doing foca's I/O.

mod agent;
mod identity;
mod load;
pub mod packet;
mod report;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use iolite_core::config::{ClusterConfig, ClusterTimers};
use tokio::sync::{oneshot, watch};

pub use agent::{Swim, foca_config, new_swim, now_us};
pub use identity::NodeIdentity;
pub use load::{LoadBook, LoadUpdate};
pub use report::{Counters, Report};
pub use view::{Member, MemberState, View};

use crate::ClusterError;

/// What membership needs to start: the configuration, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub peer: SocketAddr,
    pub client: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    /// The cluster key's bytes.
    pub key: Vec<u8>,
    pub timers: ClusterTimers,
}

impl Settings {
    /// The settings of `[cluster]`, with `first_listener` (bound) as the
    /// client address when the table names none; reads the key file.
    pub fn from_config(
        c: &ClusterConfig,
        first_listener: SocketAddr,
    ) -> Result<Settings, ClusterError> {
        let key = iolite_core::config::read_cluster_key(&c.key_file)
            .map_err(|problem| ClusterError::Membership(format!("cluster.key_file: {problem}")))?;
        Ok(Settings {
            name: c.name.clone(),
            peer: c.peer,
            client: c.client.unwrap_or(first_listener),
            seeds: c.seeds.clone(),
            key,
            timers: c.timers.clone(),
        })
    }
}

/// A running membership agent, and the server's handle on it. Dropping it
/// stops the agent as [`Membership::stop`] does.
#[derive(Debug)]
pub struct Membership {
    local: NodeIdentity,
    load: Arc<AtomicU32>,
    view: watch::Receiver<Arc<View>>,
    report: Arc<Report>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// Binds the peer address (so a taken address fails here, before the
    /// server announces itself) and starts the agent on a thread of its
    /// own, announcing this node to the seeds.
    pub fn start(settings: Settings) -> Result<Membership, ClusterError> {
        let socket = std::net::UdpSocket::bind(settings.peer)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| {
                ClusterError::Membership(format!(
                    "cannot bind the peer address {}: {e}",
                    settings.peer
                ))
            })?;
        let generation = now_us() / 1000;
        let local = NodeIdentity {
            name: settings.name.clone(),
            peer: settings.peer,
            client: settings.client,
            generation,
        };
        let rng_seed = {
            use std::hash::{BuildHasher as _, Hasher as _};
            // The standard library seeds each RandomState from the OS.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(generation);
            h.finish()
        };
        let load = Arc::new(AtomicU32::new(0));
        let counters = Arc::new(Counters::default());
        let (view_tx, view) = watch::channel(Arc::new(View::default()));
        let agent = agent::Agent::new(agent::AgentParts {
            identity: local.clone(),
            seeds: settings.seeds,
            key: packet::ClusterKey::new(&settings.key),
            timers: settings.timers,
            rng_seed,
            load: load.clone(),
            counters: counters.clone(),
            view: view_tx,
        });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("iolite-cluster".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cluster: cannot start the membership runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => agent.run(socket, stopped).await,
                        Err(e) => tracing::error!(error = %e, "cluster: peer socket"),
                    }
                });
            })
            .map_err(|e| {
                ClusterError::Membership(format!("cannot start the membership thread: {e}"))
            })?;
        let report = Arc::new(Report {
            local_name: local.name.clone(),
            counters,
            view: view.clone(),
        });
        Ok(Membership {
            local,
            load,
            view,
            report,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// This node as it started (its generation moves on only if the
    /// cluster declares it down while alive; the view shows the current one).
    pub fn local(&self) -> &NodeIdentity {
        &self.local
    }

    /// The members now.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// A receiver that sees every new view: the dispatcher's feed.
    pub fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Sets this node's load (active requests), gossiped within a gossip
    /// period when it changes.
    pub fn set_load(&self, active: u32) {
        self.load.store(active, Relaxed);
    }

    /// The counter [`Membership::set_load`] sets, shared: dispatch counts
    /// this node's active requests in it directly.
    pub fn load_handle(&self) -> Arc<AtomicU32> {
        self.load.clone()
    }

    /// Membership's `/metrics` families and `/status` table.
    pub fn report(&self) -> Arc<Report> {
        self.report.clone()
    }

    /// Leaves the cluster (the peers are told, so they need not wait for
    /// the failure detector) and waits for the agent to end.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.shut_down();
    }
}
