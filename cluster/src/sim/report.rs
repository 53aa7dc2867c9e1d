//! Printing results: a table for people, JSON lines for programs, and an
//! SVG plot of throughput against node count (the LARD paper's figure).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{CacheKind, CostModel, RunResult};
use crate::policy::PolicyParams;

/// What every result is printed with: the run's fixed settings.
#[derive(Debug, Clone)]
pub struct Context {
    /// One line describing the workload.
    pub workload: String,
    /// Sum of object sizes.
    pub data_bytes: u64,
    /// Per-node cache bytes.
    pub cache_bytes: u64,
    /// Replacement policy.
    pub cache_kind: CacheKind,
    /// Costs.
    pub cost: CostModel,
    /// Policy parameters.
    pub params: PolicyParams,
    /// How long the warm-up was.
    pub warmup: String,
}

impl Context {
    fn header(&self) -> String {
        let l = self.params.lard;
        format!(
            "workload: {} ({} data)\n\
             cache: {} per node ({:.1}% of the data), {:?}; warm-up {}\n\
             {}\n\
             policies: LARD T_low={} T_high={} K={}s S=(n-1)*T_high+T_low-1; \
             chash {} vnodes/node; chash-bl c={}\n",
            self.workload,
            human_bytes(self.data_bytes),
            human_bytes(self.cache_bytes),
            100.0 * self.cache_bytes as f64 / self.data_bytes.max(1) as f64,
            self.cache_kind,
            self.warmup,
            self.cost.describe(),
            l.t_low,
            l.t_high,
            l.k.as_secs_f64(),
            self.params.vnodes,
            self.params.balance,
        )
    }
}

/// Bytes with a binary suffix.
pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The results as a table, grouped by node count, with the settings first.
pub fn table(ctx: &Context, results: &[RunResult]) -> String {
    let mut out = ctx.header();
    let mut nodes: Vec<usize> = results.iter().map(|r| r.nodes).collect();
    nodes.dedup();
    for n in nodes {
        let rows: Vec<&RunResult> = results.iter().filter(|r| r.nodes == n).collect();
        let clients = rows.first().map_or(0, |r| r.clients);
        let noun = if n == 1 { "node" } else { "nodes" };
        let _ = writeln!(out, "\n{n} {noun}, {clients} clients");
        let _ = writeln!(
            out,
            "{:<9} {:>11} {:>7} {:>6} {:>6} {:>8} {:>6} {:>7}",
            "policy", "req/s", "vs_wrr", "hit", "bytehit", "max/mean", "moved", "top100"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "{:<9} {:>11.1} {:>7} {:>6.3} {:>7.3} {:>8.3} {:>6.3} {:>7.2}",
                r.policy.name(),
                r.throughput,
                r.vs_wrr.map_or("-".to_string(), |v| format!("{v:.2}")),
                r.hit_ratio,
                r.byte_hit_ratio,
                r.max_mean_util,
                r.moved_share,
                r.top100_copies,
            );
            if let Some(s) = &r.scenario {
                let _ = writeln!(
                    out,
                    "  {:?}: hit {:.3} before, {:.3} lowest after; back to 95% of it after {} \
                     (buckets of {}); req/s {:.1} -> {:.1}; targets moved {} of {} ({} forced)",
                    s.scenario,
                    s.hit_ratio_before,
                    s.min_hit_ratio_after,
                    s.recovery_requests
                        .map_or("more than the run".to_string(), |r| format!("{r} requests")),
                    s.bucket,
                    s.throughput_before,
                    s.throughput_after,
                    s.targets_moved,
                    s.targets_compared,
                    s.targets_forced,
                );
            }
        }
    }
    out.push_str(
        "\nreq/s: requests per simulated second; hit/bytehit: request and byte hit ratios; \
         max/mean: busiest node's utilisation over the mean; moved: share of requests served \
         by another node than the previous request for the same target; top100: cached \
         copies of each of the 100 most requested objects (mean).\n",
    );
    out
}

/// One JSON object per result, each with the settings it ran under.
pub fn json_lines(ctx: &Context, results: &[RunResult]) -> String {
    let mut out = String::new();
    for r in results {
        let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("cache_bytes".into(), json!(ctx.cache_bytes));
            m.insert("cache".into(), json!(ctx.cache_kind));
            m.insert("data_bytes".into(), json!(ctx.data_bytes));
            m.insert("workload".into(), json!(ctx.workload));
            m.insert("cost".into(), json!(ctx.cost));
            let l = ctx.params.lard;
            m.insert(
                "params".into(),
                json!({
                    "t_low": l.t_low, "t_high": l.t_high, "k_secs": l.k.as_secs_f64(),
                    "vnodes": ctx.params.vnodes, "balance": ctx.params.balance,
                }),
            );
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// Throughput against node count, one line per policy, as an SVG document.
pub fn svg(ctx: &Context, results: &[RunResult]) -> String {
    let (w, h) = (760.0, 480.0);
    let (left, right, top, bottom) = (80.0, 150.0, 50.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let mut nodes: Vec<usize> = results.iter().map(|r| r.nodes).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut policies = Vec::new();
    for r in results {
        if !policies.contains(&r.policy) {
            policies.push(r.policy);
        }
    }
    let ymax = nice_ceiling(results.iter().map(|r| r.throughput).fold(0.0, f64::max));
    let x_of = |n: usize| {
        let i = nodes.iter().position(|&x| x == n).unwrap_or(0) as f64;
        let span = (nodes.len().max(2) - 1) as f64;
        left + pw * i / span
    };
    let y_of = |t: f64| top + ph * (1.0 - t / ymax);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Throughput vs cluster size ({})</text>"#,
        left + pw / 2.0,
        xml_escape(&format!(
            "{} per node, {:?}",
            human_bytes(ctx.cache_bytes),
            ctx.cache_kind
        ))
    );
    // Axes and grid.
    for i in 0..=5 {
        let v = ymax * f64::from(i) / 5.0;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0
        );
    }
    for &n in &nodes {
        let x = x_of(n);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{n}</text>"##,
            top + ph,
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">nodes</text>"#,
        left + pw / 2.0,
        h - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">requests per second</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, p) in policies.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<(usize, f64)> = results
            .iter()
            .filter(|r| r.policy == *p)
            .map(|r| (r.nodes, r.throughput))
            .collect();
        pts.sort_by_key(|&(n, _)| n);
        let line: Vec<String> = pts
            .iter()
            .map(|&(n, t)| format!("{:.1},{:.1}", x_of(n), y_of(t)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for &(n, t) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x_of(n),
                y_of(t)
            );
        }
        let ly = top + 10.0 + 20.0 * i as f64;
        let lx = left + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            p.name()
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        for (v, want) in [
            (0.0, 1.0),
            (3.2, 5.0),
            (10.0, 10.0),
            (1234.0, 2000.0),
            (6001.0, 10000.0),
        ] {
            assert_eq!(nice_ceiling(v), want, "{v}");
        }
    }

    #[test]
    fn human_bytes_table() {
        for (b, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (3 << 20, "3.0 MiB"),
        ] {
            assert_eq!(human_bytes(b), want);
        }
    }
}
