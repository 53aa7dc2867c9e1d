//! The discrete-event engine: one run of one policy on one cluster size.
//!
//! Closed loop: each client sends a request, waits for its answer and sends
//! the next at once. The front end asks the policy for a node (queueing the
//! request first if the policy's cluster-wide limit is reached). On the
//! node, a request takes the CPU for the connection, then the disk if its
//! object is not in the node's cache, then the CPU again to transmit and
//! close. CPU and disk are separate FIFO servers, so one request's disk
//! read overlaps another's transmission. A FIFO server that is given a job
//! at time t starts it at max(t, when it frees up), so the engine computes
//! each completion time when it queues the job and needs no queue per
//! resource; its event heap holds one entry per active request.
//!
//! Hits are decided when a request reaches its node; a missed object enters
//! the cache when its disk read ends. Concurrent misses for the same object
//! each read the disk (no coalescing of pending reads), which matters only
//! while caches are cold.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::cache::NodeCache;
use super::spec::{RunResult, Scenario, ScenarioResult, SimConfig};
use super::workload::{RequestStream, Workload};
use crate::policy::{Event, LoadTable, NodeId, Policy};

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Connection CPU done: go to disk or transmit.
    Front,
    /// Disk read done: the object enters the cache; transmit.
    Disk,
    /// Transmit and close done: the request completes.
    Back,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    obj: u32,
    node: u32,
    hit: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    done: u64,
    hits: u64,
    bytes: u64,
    hit_bytes: u64,
    dispatched: u64,
    moved: u64,
}

impl Counts {
    fn hit_ratio(&self) -> f64 {
        ratio(self.hits, self.done)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Debug)]
struct ScenarioState {
    kind: Scenario,
    event_at: u64,
    bucket: u64,
    before: Option<(f64, f64, u64)>, // hit ratio, throughput, time of event
    before_node: Vec<u32>,
    compared: Vec<bool>,
    leaver: u32,
    targets_compared: u64,
    targets_moved: u64,
    forced: u64,
    bucket_counts: Counts,
    done_after: u64,
    min_bucket: f64,
    /// Requests after the event at the end of the last bucket under 95%.
    last_below: Option<u64>,
    /// Whether the latest full bucket was under 95%.
    still_below: bool,
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig, workload: &Workload) -> RunResult {
    let wall = std::time::Instant::now();
    let sizes = workload.sizes();
    let keys = workload.keys();
    let cost = cfg.cost;
    let disk_ns: Vec<u64> = sizes.iter().map(|&s| cost.disk_ns(s)).collect();
    let back_ns: Vec<u64> = sizes.iter().map(|&s| cost.cpu_back_ns(s)).collect();
    let front_ns = cost.cpu_front_ns();

    let slots_for_join = usize::from(cfg.scenario == Some(Scenario::Join));
    let total_nodes = cfg.nodes + slots_for_join;
    let initial: Vec<NodeId> = (0..cfg.nodes as u32).map(NodeId).collect();
    let mut loads = LoadTable::new(&initial);
    let mut policy = cfg.policy.build(&initial, &cfg.params);
    let mut caches: Vec<NodeCache> = (0..total_nodes)
        .map(|_| NodeCache::new(cfg.cache_kind, cfg.cache_bytes, sizes.len()))
        .collect();
    let mut cpu_free = vec![0u64; total_nodes];
    let mut disk_free = vec![0u64; total_nodes];
    let mut cpu_busy = vec![0u64; total_nodes];
    let mut disk_busy = vec![0u64; total_nodes];
    let mut last_node = vec![NONE; sizes.len()];

    let mut stream = workload.stream();
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32, Stage)>> =
        BinaryHeap::with_capacity(cfg.clients);
    let mut seq = 0u64;
    let mut slots = vec![
        Slot {
            obj: 0,
            node: 0,
            hit: false
        };
        cfg.clients
    ];
    let mut queue: VecDeque<u32> = VecDeque::new();
    let mut outstanding = 0usize;
    let mut max_outstanding = 0usize;
    let mut now = 0u64;
    let mut completed = 0u64;
    let mut measuring = cfg.warmup == 0;
    let mut window_start = 0u64;
    let mut counts = Counts::default();
    let end = cfg.warmup + cfg.requests;

    let mut scen = cfg.scenario.map(|kind| ScenarioState {
        kind,
        event_at: cfg.warmup + cfg.requests / 2,
        bucket: (cfg.requests / 1000).max(100),
        before: None,
        before_node: Vec::new(),
        compared: Vec::new(),
        leaver: NONE,
        targets_compared: 0,
        targets_moved: 0,
        forced: 0,
        bucket_counts: Counts::default(),
        done_after: 0,
        min_bucket: f64::INFINITY,
        last_below: None,
        still_below: false,
    });

    // Everything a request does on arrival at the front end, as a closure
    // over the engine state would borrow too much; a macro keeps it in one
    // place instead.
    macro_rules! dispatch {
        ($client:expr) => {{
            let c = $client as usize;
            let obj = slots[c].obj;
            let t = Duration::from_nanos(now);
            let key = keys[obj as usize];
            let node = policy
                .decide(key, &loads, t)
                .expect("the simulator always keeps a live node");
            loads.started(node);
            policy.observe(Event::Started { target: key, node }, &loads, t);
            outstanding += 1;
            max_outstanding = max_outstanding.max(outstanding);
            let n = node.0 as usize;
            let prev = last_node[obj as usize];
            if measuring {
                counts.dispatched += 1;
                if prev != NONE && prev != node.0 {
                    counts.moved += 1;
                }
            }
            last_node[obj as usize] = node.0;
            if let Some(s) = scen.as_mut()
                && s.before.is_some()
                && !s.compared[obj as usize]
            {
                s.compared[obj as usize] = true;
                let b = s.before_node[obj as usize];
                if b != NONE {
                    s.targets_compared += 1;
                    if b != node.0 {
                        s.targets_moved += 1;
                        if b == s.leaver {
                            s.forced += 1;
                        }
                    }
                }
            }
            let hit = caches[n].access(obj);
            slots[c] = Slot {
                obj,
                node: node.0,
                hit,
            };
            let start = now.max(cpu_free[n]);
            cpu_free[n] = start + front_ns;
            if measuring {
                cpu_busy[n] += front_ns;
            }
            seq += 1;
            heap.push(Reverse((cpu_free[n], seq, c as u32, Stage::Front)));
        }};
    }
    macro_rules! issue {
        ($client:expr) => {{
            let c = $client as usize;
            slots[c].obj = stream.next_object();
            let limit = policy.admission_limit(loads.len()).unwrap_or(usize::MAX);
            if outstanding >= limit {
                queue.push_back(c as u32);
            } else {
                dispatch!(c);
            }
        }};
    }

    for c in 0..cfg.clients {
        issue!(c);
    }

    while completed < end {
        let Some(Reverse((t, _, c, stage))) = heap.pop() else {
            break;
        };
        now = t;
        let slot = slots[c as usize];
        let n = slot.node as usize;
        match stage {
            Stage::Front if !slot.hit => {
                let start = now.max(disk_free[n]);
                let d = disk_ns[slot.obj as usize];
                disk_free[n] = start + d;
                if measuring {
                    disk_busy[n] += d;
                }
                seq += 1;
                heap.push(Reverse((disk_free[n], seq, c, Stage::Disk)));
            }
            Stage::Front | Stage::Disk => {
                if stage == Stage::Disk {
                    let o = slot.obj as usize;
                    caches[n].insert(slot.obj, sizes[o], disk_ns[o]);
                }
                let start = now.max(cpu_free[n]);
                let d = back_ns[slot.obj as usize];
                cpu_free[n] = start + d;
                if measuring {
                    cpu_busy[n] += d;
                }
                seq += 1;
                heap.push(Reverse((cpu_free[n], seq, c, Stage::Back)));
            }
            Stage::Back => {
                let node = NodeId(slot.node);
                let key = keys[slot.obj as usize];
                loads.finished(node);
                policy.observe(
                    Event::Finished { target: key, node },
                    &loads,
                    Duration::from_nanos(now),
                );
                outstanding -= 1;
                completed += 1;
                let size = sizes[slot.obj as usize];
                if measuring {
                    counts.done += 1;
                    counts.bytes += size;
                    if slot.hit {
                        counts.hits += 1;
                        counts.hit_bytes += size;
                    }
                }
                if let Some(s) = scen.as_mut()
                    && s.before.is_some()
                {
                    s.done_after += 1;
                    s.bucket_counts.done += 1;
                    s.bucket_counts.hits += u64::from(slot.hit);
                    if s.bucket_counts.done == s.bucket {
                        let r = s.bucket_counts.hit_ratio();
                        s.min_bucket = s.min_bucket.min(r);
                        let (before, _, _) = s.before.unwrap_or_default();
                        s.still_below = r < 0.95 * before;
                        if s.still_below {
                            s.last_below = Some(s.done_after);
                        }
                        s.bucket_counts = Counts::default();
                    }
                }

                if !measuring && completed == cfg.warmup {
                    measuring = true;
                    window_start = now;
                    for i in 0..total_nodes {
                        cpu_busy[i] = cpu_free[i].saturating_sub(now);
                        disk_busy[i] = disk_free[i].saturating_sub(now);
                    }
                }
                if let Some(s) = scen.as_mut()
                    && s.before.is_none()
                    && completed == s.event_at
                {
                    let secs = (now - window_start) as f64 / 1e9;
                    s.before = Some((counts.hit_ratio(), ratio_f(counts.done, secs), now));
                    s.before_node = last_node.clone();
                    s.compared = vec![false; sizes.len()];
                    apply_scenario(s, &mut loads, &mut policy, &mut stream, workload, cfg, now);
                }

                let limit = policy.admission_limit(loads.len()).unwrap_or(usize::MAX);
                while outstanding < limit
                    && let Some(q) = queue.pop_front()
                {
                    dispatch!(q);
                }
                issue!(c);
            }
        }
    }

    // Work queued past the end of the window is not part of it.
    for i in 0..total_nodes {
        cpu_busy[i] = cpu_busy[i].saturating_sub(cpu_free[i].saturating_sub(now));
        disk_busy[i] = disk_busy[i].saturating_sub(disk_free[i].saturating_sub(now));
    }
    let window = now.saturating_sub(window_start).max(1) as f64;
    let live: Vec<usize> = loads.nodes().iter().map(|n| n.0 as usize).collect();
    let utils: Vec<f64> = live
        .iter()
        .map(|&i| cpu_busy[i].max(disk_busy[i]) as f64 / window)
        .collect();
    let mean_util = utils.iter().sum::<f64>() / utils.len().max(1) as f64;
    let max_util = utils.iter().copied().fold(0.0, f64::max);
    let cpu_util = live
        .iter()
        .map(|&i| cpu_busy[i] as f64 / window)
        .sum::<f64>()
        / live.len().max(1) as f64;
    let top: Vec<u32> = workload.popularity().iter().take(100).copied().collect();
    let top_copies = top
        .iter()
        .map(|&o| live.iter().filter(|&&i| caches[i].contains(o)).count() as f64)
        .sum::<f64>()
        / top.len().max(1) as f64;
    let secs = window / 1e9;

    let scenario = scen.map(|s| {
        let (hit_before, tput_before, at) = s.before.unwrap_or_default();
        let after_secs = (now.saturating_sub(at)) as f64 / 1e9;
        ScenarioResult {
            scenario: s.kind,
            hit_ratio_before: hit_before,
            min_hit_ratio_after: if s.min_bucket.is_finite() {
                s.min_bucket
            } else {
                0.0
            },
            recovery_requests: if s.still_below {
                None
            } else {
                Some(s.last_below.unwrap_or(0))
            },
            bucket: s.bucket,
            throughput_before: tput_before,
            throughput_after: ratio_f(s.done_after, after_secs),
            targets_compared: s.targets_compared,
            targets_moved: s.targets_moved,
            targets_forced: s.forced,
        }
    });

    RunResult {
        policy: cfg.policy,
        nodes: cfg.nodes,
        clients: cfg.clients,
        requests: counts.done,
        warmup: cfg.warmup,
        sim_seconds: secs,
        throughput: ratio_f(counts.done, secs),
        vs_wrr: None,
        hit_ratio: counts.hit_ratio(),
        byte_hit_ratio: ratio(counts.hit_bytes, counts.bytes),
        max_mean_util: if mean_util > 0.0 {
            max_util / mean_util
        } else {
            0.0
        },
        mean_util,
        cpu_util,
        moved_share: ratio(counts.moved, counts.dispatched),
        max_outstanding,
        top100_copies: top_copies,
        scenario,
        wall_seconds: wall.elapsed().as_secs_f64(),
    }
}

fn ratio_f(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn apply_scenario(
    s: &mut ScenarioState,
    loads: &mut LoadTable,
    policy: &mut Box<dyn Policy>,
    stream: &mut RequestStream<'_>,
    workload: &Workload,
    cfg: &SimConfig,
    now: u64,
) {
    let t = Duration::from_nanos(now);
    match s.kind {
        Scenario::Leave => {
            let gone = *loads.nodes().last().expect("live nodes");
            loads.leave(gone);
            policy.observe(Event::Left(gone), loads, t);
            s.leaver = gone.0;
        }
        Scenario::Join => {
            let new = NodeId(cfg.nodes as u32);
            loads.join(new);
            policy.observe(Event::Joined(new), loads, t);
        }
        Scenario::Hotspot => {
            let pop = workload.popularity();
            stream.set_hotspot(pop[pop.len() / 2], 0.2);
        }
    }
}
