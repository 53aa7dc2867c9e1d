//! [`Upkeep`]: the reasons to end a healthy runner on purpose (its CPU
//! time near its limit, `max_requests` served, its slot idle), looked at
//! by the slot thread between control messages.
//!
//! # Not yet (issue 4)
//! - A request that burns a recycled runner's last quarter of CPU time
//!   while it drains ends it by SIGXCPU (what it still holds gets 502).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;

use super::{End, SlotConfig, SlotHandle};

/// Share of its CPU-time limit after which a runner is recycled, in
/// quarters: the last quarter is the drain's (and a runaway request's).
const CPU_RECYCLE_QUARTERS: u32 = 3;
/// Longest pause between two looks at a runner's upkeep (CPU time,
/// idleness) while one of them applies.
const UPKEEP_TICK: Duration = Duration::from_secs(1);
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks: 100 a second in the
/// kernel's user-space ABI on every Linux architecture.
const USER_HZ: u64 = 100;

/// The checks that end a healthy runner on purpose: its CPU time against
/// its limit, its requests against `max_requests`, its slot's idleness.
pub(super) struct Upkeep {
    /// RLIMIT_CPU, and the CPU time at which the runner is recycled.
    cpu: Option<(Duration, Duration)>,
    /// How often the CPU time is read (a twentieth of the limit, 50 ms to
    /// 1 s: the runner cannot burn the last quarter between two looks
    /// unless it has more than five CPUs).
    cpu_every: Duration,
    next_cpu: Instant,
    /// When the slot was last seen with a request (None: the slot is kept).
    busy_at: Option<Instant>,
    /// `sent` at the last look.
    sent: u64,
    idle_timeout: Duration,
}

impl Upkeep {
    pub(super) fn new(cfg: &SlotConfig, handle: &Weak<SlotHandle>) -> Self {
        let cpu = cfg.sandbox.cpu_seconds.map(|s| {
            let limit = Duration::from_secs(s);
            (limit, limit * CPU_RECYCLE_QUARTERS / 4)
        });
        let cpu_every = cpu.map_or(UPKEEP_TICK, |(limit, _)| {
            (limit / 20).clamp(Duration::from_millis(50), UPKEEP_TICK)
        });
        Upkeep {
            cpu,
            cpu_every,
            next_cpu: Instant::now() + cpu_every,
            busy_at: (!cfg.keep).then(Instant::now),
            sent: handle
                .upgrade()
                .map_or(0, |h| h.sent.load(Ordering::Relaxed)),
            idle_timeout: cfg.idle_timeout,
        }
    }

    /// How long the control loop may sleep before the next look.
    pub(super) fn timeout(&self) -> PollTimeout {
        if self.cpu.is_none() && self.busy_at.is_none() {
            return PollTimeout::NONE;
        }
        let mut every = UPKEEP_TICK;
        if self.cpu.is_some() {
            every = every.min(self.cpu_every);
        }
        if self.busy_at.is_some() {
            every = every.min((self.idle_timeout / 4).max(Duration::from_millis(10)));
        }
        PollTimeout::from(u16::try_from(every.as_millis()).unwrap_or(u16::MAX))
    }

    /// Why the runner should end now, if it should.
    pub(super) fn check(&mut self, pid: u32, handle: &Weak<SlotHandle>) -> Option<End> {
        let now = Instant::now();
        let h = handle.upgrade()?;
        // `look_at` is u64::MAX without `max_requests`.
        if h.sent.load(Ordering::Relaxed) >= h.look_at.load(Ordering::Relaxed) {
            return Some(End::Recycle("max_requests reached".into()));
        }
        if let Some(busy_at) = self.busy_at.as_mut() {
            // Busy: holding requests now, or sent some since the last look.
            let sent = h.sent.load(Ordering::Relaxed);
            let moved = std::mem::replace(&mut self.sent, sent) != sent;
            if moved || h.load.load(Ordering::Relaxed) > 0 {
                *busy_at = now;
            } else if now.duration_since(*busy_at) >= self.idle_timeout {
                return Some(End::Idle);
            }
        }
        if let Some((limit, at)) = self.cpu
            && now >= self.next_cpu
        {
            self.next_cpu = now + self.cpu_every;
            match cpu_time(pid) {
                Some(used) if used >= at => {
                    return Some(End::Recycle(format!(
                        "used {:.2}s of its {}s CPU time (cpu_time)",
                        used.as_secs_f64(),
                        limit.as_secs()
                    )));
                }
                _ => {}
            }
        }
        None
    }
}

/// Most processes of a runner's tree whose CPU time is summed.
const TREE_MAX: usize = 64;

/// CPU time (user + system, all threads) the runner `pid` and the
/// processes below it have used: in a PID namespace of its own the module
/// runs in the runner's grandchild (see iolite-sandbox's `pidns`), whose
/// time the outer process does not see until it is reaped.
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = process_cpu_time(pid)?;
    let mut queue = vec![pid];
    let mut seen = 1;
    while let Some(p) = queue.pop() {
        for child in children(p) {
            if seen >= TREE_MAX {
                return Some(total);
            }
            seen += 1;
            total += process_cpu_time(child).unwrap_or_default();
            queue.push(child);
        }
    }
    Some(total)
}

/// The children of every thread of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_ascii_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// CPU time (user + system, all threads) one process has used, from
/// `/proc/PID/stat`.
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')'. utime and stime are the
    // 14th and 15th fields: the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.saturating_add(stime);
    Some(Duration::from_millis(ticks.saturating_mul(1000) / USER_HZ))
}
