//! `iolite sim`: its arguments and what it does with them.
//!
//! The root binary only mounts [`SimArgs`] as a subcommand and calls [`run`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::report::{self, Context};
use super::{CacheKind, CostModel, RunResult, Scenario, SimConfig, Synthetic, Workload};
use crate::ClusterError;
use crate::policy::{LardParams, PolicyKind, PolicyParams};

/// Simulate a cluster serving a workload under each dispatch policy.
///
/// Closed loop, discrete events: every node has a cache, a CPU and a disk
/// costed as in the LARD paper (ASPLOS 1998). Prints, per node count and
/// policy: throughput, throughput over weighted round robin, hit ratios,
/// load balance, target movement and replication of the hottest objects.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Node count, or a comma-separated list of counts (e.g. 1,2,4,8,16).
    #[arg(long, default_value = "8")]
    pub nodes: String,
    /// Policies: NAME[,NAME...] or `all` (wrr, hash, chash, chash-bl, lard,
    /// lard-r). WRR always runs too, as the baseline of vs_wrr.
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// Trace file: one `path size` per line, or Common Log Format lines. The
    /// trace is replayed in order and starts over at its end.
    #[arg(long, conflicts_with_all = ["objects", "alpha", "size_median", "size_sigma"])]
    pub trace: Option<PathBuf>,
    /// Synthetic workload: number of objects.
    #[arg(long, default_value_t = 20_000)]
    pub objects: u32,
    /// Synthetic workload: Zipf exponent of popularity.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f64,
    /// Synthetic workload: median object size (suffixes K, M, G: binary).
    #[arg(long, default_value = "8K", value_parser = parse_bytes)]
    pub size_median: u64,
    /// Synthetic workload: σ of ln(size). The default, 1.318, is the
    /// log-normal body of SURGE's file-size model (Barford and Crovella 1998).
    #[arg(long, default_value_t = 1.318)]
    pub size_sigma: f64,
    /// Seed of the synthetic workload (sizes and request stream).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-node cache as a fraction of the data set's bytes (default 0.25).
    #[arg(long, conflicts_with = "cache_size")]
    pub cache_frac: Option<f64>,
    /// Per-node cache in bytes (suffixes K, M, G: binary).
    #[arg(long, value_parser = parse_bytes)]
    pub cache_size: Option<u64>,
    /// Cache replacement policy.
    #[arg(long, value_enum, default_value = "gdsf")]
    pub cache: CacheKind,
    /// Clients cluster-wide (closed loop, no think time). Default: T_high
    /// per node, enough for every node to reach the load where LARD
    /// replicates.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Requests measured, after the warm-up.
    #[arg(long, default_value_t = 500_000)]
    pub requests: u64,
    /// Requests completed before measuring starts, so caches reach their
    /// steady state. Default: 200,000 per node (under WRR each node sees
    /// 1/n of the stream, so filling n caches as one takes n times the
    /// requests).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Print one JSON object per line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw throughput against node count into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Halfway through the measured requests: a node leaves, a node joins,
    /// or one object jumps to 20% of the requests.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// LARD: T_low, active requests under which a node is underused.
    #[arg(long, default_value_t = 25)]
    pub t_low: u32,
    /// LARD: T_high, active requests over which a node adds delay.
    #[arg(long, default_value_t = 65)]
    pub t_high: u32,
    /// LARD/R: seconds a server set must stay unchanged before it shrinks.
    #[arg(long, default_value_t = 20.0)]
    pub k_secs: f64,
    /// Consistent hashing: virtual nodes per node.
    #[arg(long, default_value_t = 160)]
    pub vnodes: u32,
    /// Bounded-load consistent hashing: balance factor c (>= 1).
    #[arg(long, default_value_t = 1.25)]
    pub balance: f64,
    /// Cost: CPU µs to accept a connection.
    #[arg(long, default_value_t = 145.0)]
    pub cpu_connect_us: f64,
    /// Cost: CPU µs to close a connection.
    #[arg(long, default_value_t = 145.0)]
    pub cpu_teardown_us: f64,
    /// Cost: CPU µs per 512 bytes transmitted.
    #[arg(long, default_value_t = 40.0)]
    pub cpu_per_512b_us: f64,
    /// Cost: disk ms of positioning per read.
    #[arg(long, default_value_t = 28.0)]
    pub disk_first_ms: f64,
    /// Cost: disk µs per 4 KiB read.
    #[arg(long, default_value_t = 410.0)]
    pub disk_per_4k_us: f64,
    /// Cost: disk ms of positioning for every 44 KiB past the first.
    #[arg(long, default_value_t = 14.0)]
    pub disk_per_44k_ms: f64,
    /// Simulations run in parallel (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Default warm-up, per node.
pub const WARMUP_PER_NODE: u64 = 200_000;

/// Parses a byte count: digits with an optional K, M, G or T suffix
/// (binary; `KiB`, `KB`, `k` all mean 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count (e.g. 8192, 8K, 256M)"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("`{s}`: unknown size suffix `{suffix}`")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses `N` or `N,N,...` (each 1..=4096).
pub fn parse_nodes(s: &str) -> Result<Vec<usize>, ClusterError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let n: usize = part.trim().parse().map_err(|_| {
            ClusterError::InvalidParam(format!("--nodes: `{part}` is not a node count"))
        })?;
        if n == 0 || n > 4096 {
            return Err(ClusterError::InvalidParam(format!(
                "--nodes: {n} is outside 1..=4096"
            )));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Everything `iolite sim` computed.
#[derive(Debug, Clone)]
pub struct SimOutput {
    /// The settings the results ran under.
    pub context: Context,
    /// One result per (node count, policy), node counts in the order given.
    pub results: Vec<RunResult>,
}

/// Runs the simulations the arguments ask for.
pub fn simulate(args: &SimArgs) -> Result<SimOutput, ClusterError> {
    let node_counts = parse_nodes(&args.nodes)?;
    let asked = PolicyKind::parse_list(&args.policy)?;
    let mut policies = vec![PolicyKind::Wrr];
    policies.extend(asked.iter().copied().filter(|&p| p != PolicyKind::Wrr));
    let workload = match &args.trace {
        Some(path) => Workload::from_trace_file(path)?,
        None => Workload::synthetic(Synthetic {
            objects: args.objects,
            alpha: args.alpha,
            size_median: args.size_median,
            size_sigma: args.size_sigma,
            seed: args.seed,
        })?,
    };
    let data = workload.total_bytes();
    let cache_bytes = match (args.cache_size, args.cache_frac) {
        (Some(b), _) => b,
        (None, f) => {
            let f = f.unwrap_or(0.25);
            if !(f.is_finite() && f >= 0.0) {
                return Err(ClusterError::InvalidParam(format!(
                    "--cache-frac must be a number >= 0, not {f}"
                )));
            }
            (data as f64 * f).round() as u64
        }
    };
    let k = Duration::try_from_secs_f64(args.k_secs)
        .ok()
        .filter(|k| k.as_secs() <= 1_000_000_000)
        .ok_or_else(|| {
            ClusterError::InvalidParam(format!(
                "--k-secs must be a number of seconds from 0 to 1e9, not {}",
                args.k_secs
            ))
        })?;
    let params = PolicyParams {
        lard: LardParams {
            t_low: args.t_low,
            t_high: args.t_high,
            k,
        },
        vnodes: args.vnodes,
        balance: args.balance,
    };
    let cost = CostModel {
        connect_us: args.cpu_connect_us,
        teardown_us: args.cpu_teardown_us,
        transmit_us_per_512b: args.cpu_per_512b_us,
        disk_first_us: args.disk_first_ms * 1000.0,
        disk_us_per_4k: args.disk_per_4k_us,
        disk_extra_us_per_44k: args.disk_per_44k_ms * 1000.0,
    };
    let mut cfgs = Vec::new();
    for &n in &node_counts {
        for &p in &policies {
            cfgs.push(SimConfig {
                nodes: n,
                clients: args
                    .clients
                    .unwrap_or(n * params.lard.t_high.max(1) as usize),
                cache_bytes,
                cache_kind: args.cache,
                cost,
                requests: args.requests,
                warmup: args.warmup.unwrap_or(WARMUP_PER_NODE * n as u64),
                policy: p,
                params,
                scenario: args.scenario,
            });
        }
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut results = super::run_all(&cfgs, &workload, threads)?;
    // Keep WRR only if it was asked for; it always ran as the baseline.
    if !asked.contains(&PolicyKind::Wrr) {
        results.retain(|r| r.policy != PolicyKind::Wrr);
    }
    Ok(SimOutput {
        context: Context {
            workload: workload.describe().to_string(),
            data_bytes: data,
            cache_bytes,
            cache_kind: args.cache,
            cost,
            params,
            warmup: match args.warmup {
                Some(w) => format!("{w} requests"),
                None => format!("{WARMUP_PER_NODE} requests per node"),
            },
        },
        results,
    })
}

/// `iolite sim`: simulates, prints the table (or JSON lines) to `out`, and
/// writes the plot if asked.
pub fn run_to(args: &SimArgs, out: &mut dyn Write) -> Result<(), ClusterError> {
    let sim = simulate(args)?;
    let text = if args.json {
        report::json_lines(&sim.context, &sim.results)
    } else {
        report::table(&sim.context, &sim.results)
    };
    let stdout_err = |source| ClusterError::Output {
        path: PathBuf::from("<stdout>"),
        source,
    };
    out.write_all(text.as_bytes()).map_err(stdout_err)?;
    out.flush().map_err(stdout_err)?;
    if let Some(path) = &args.plot {
        std::fs::write(path, report::svg(&sim.context, &sim.results)).map_err(|source| {
            ClusterError::Output {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

/// `iolite sim` on stdout.
pub fn run(args: &SimArgs) -> Result<(), ClusterError> {
    run_to(args, &mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        for (s, want) in [
            ("0", Ok(0)),
            ("8192", Ok(8192)),
            ("8K", Ok(8192)),
            ("8KiB", Ok(8192)),
            ("256M", Ok(256 << 20)),
            ("2g", Ok(2 << 30)),
        ] {
            assert_eq!(parse_bytes(s), want, "{s}");
        }
        for s in ["", "K", "8X", "-1", "99999999999T"] {
            assert!(parse_bytes(s).is_err(), "{s}");
        }
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_nodes("8").unwrap(), [8]);
        assert_eq!(parse_nodes("1, 2,4,4").unwrap(), [1, 2, 4]);
        for s in ["0", "x", "1,,2", "5000"] {
            assert!(parse_nodes(s).is_err(), "{s}");
        }
    }
}
