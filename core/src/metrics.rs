//! Process-wide counters for `/metrics` and `/status`.
//!
//! Every counter is a relaxed atomic: the hot path pays one uncontended
//! `fetch_add` per event, and readers tolerate figures that are a few events
//! apart. Rendering happens only on the admin listener. Other crates add
//! labelled families (process modules, per prefix) as a [`MetricsSource`],
//! and tables for `/status` (the cluster's members) as a [`StatusSource`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One labelled figure from a [`MetricsSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The family name (`iolite_module_requests_total`).
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// The family's help line.
    pub help: &'static str,
    /// Label names and values (values are escaped when rendered).
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

/// Figures another crate keeps and `/metrics` shows.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Appends the current figures. Samples of one family may come from
    /// several sources; they are rendered under one HELP/TYPE header.
    fn samples(&self, out: &mut Vec<Sample>);
}

/// A table another crate shows on `/status`, below the server's own
/// figures: plain text (the page escapes it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusTable {
    /// The section's heading.
    pub title: String,
    /// One line under the heading, or empty.
    pub note: String,
    pub columns: Vec<&'static str>,
    /// One cell per column.
    pub rows: Vec<Vec<String>>,
}

/// Tables another crate keeps and `/status` shows.
pub trait StatusSource: Send + Sync + std::fmt::Debug {
    /// Appends the current tables.
    fn tables(&self, out: &mut Vec<StatusTable>);
}

/// The lowest and highest status codes counted one by one.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 599;
const STATUS_SLOTS: usize = (STATUS_MAX - STATUS_MIN + 1) as usize;

/// The server's counters. Share one behind an `Arc` between workers.
#[derive(Debug)]
pub struct Metrics {
    requests_by_status: Box<[AtomicU64; STATUS_SLOTS]>,
    bytes_sent: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    cache_evicted_bytes: AtomicU64,
    cache_bytes: AtomicU64,
    cache_entries: AtomicU64,
    body_bytes_copied: AtomicU64,
    /// Requests answered with an error, by the side that caused it
    /// (client, upstream, internal).
    errors_by_side: [AtomicU64; 3],
    sources: std::sync::RwLock<Vec<Arc<dyn MetricsSource>>>,
    status_sources: std::sync::RwLock<Vec<Arc<dyn StatusSource>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A point-in-time copy of every figure, for rendering and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// `(status, count)` for every status seen at least once, ascending.
    pub requests_by_status: Vec<(u16, u64)>,
    pub bytes_sent: u64,
    pub connections_open: u64,
    pub connections_total: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_evicted_bytes: u64,
    pub cache_bytes: u64,
    pub cache_entries: u64,
    pub body_bytes_copied: u64,
    /// Requests answered with an error caused by the client, an upstream,
    /// the server itself.
    pub errors_client: u64,
    pub errors_upstream: u64,
    pub errors_internal: u64,
}

impl Snapshot {
    /// All requests answered, whatever their status.
    pub fn requests_total(&self) -> u64 {
        self.requests_by_status.iter().map(|(_, n)| n).sum()
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Metrics {
            requests_by_status: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            bytes_sent: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_evictions: AtomicU64::new(0),
            cache_evicted_bytes: AtomicU64::new(0),
            cache_bytes: AtomicU64::new(0),
            cache_entries: AtomicU64::new(0),
            body_bytes_copied: AtomicU64::new(0),
            errors_by_side: std::array::from_fn(|_| AtomicU64::new(0)),
            sources: std::sync::RwLock::new(Vec::new()),
            status_sources: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// Adds figures kept elsewhere to `/metrics`.
    pub fn add_source(&self, source: Arc<dyn MetricsSource>) {
        if let Ok(mut sources) = self.sources.write() {
            sources.push(source);
        }
    }

    /// Adds tables kept elsewhere to `/status`.
    pub fn add_status_source(&self, source: Arc<dyn StatusSource>) {
        if let Ok(mut sources) = self.status_sources.write() {
            sources.push(source);
        }
    }

    /// The tables of every added status source, in the order they were added.
    pub fn status_tables(&self) -> Vec<StatusTable> {
        let mut all = Vec::new();
        if let Ok(sources) = self.status_sources.read() {
            for s in sources.iter() {
                s.tables(&mut all);
            }
        }
        all
    }

    /// The samples of every added source, grouped by family (in the order
    /// families first appear).
    pub fn source_samples(&self) -> Vec<Sample> {
        let mut all = Vec::new();
        if let Ok(sources) = self.sources.read() {
            for s in sources.iter() {
                s.samples(&mut all);
            }
        }
        let mut order: Vec<&'static str> = Vec::new();
        for s in &all {
            if !order.contains(&s.name) {
                order.push(s.name);
            }
        }
        let mut grouped = Vec::with_capacity(all.len());
        for name in order {
            grouped.extend(all.iter().filter(|s| s.name == name).cloned());
        }
        grouped
    }

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// A client connection was closed (by either side).
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A response was sent in full (or the attempt ended): its status and the
    /// bytes written to the socket for it, head included.
    pub fn request_finished(&self, status: u16, bytes_sent: u64) {
        let slot = status.clamp(STATUS_MIN, STATUS_MAX) - STATUS_MIN;
        self.requests_by_status[usize::from(slot)].fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes_sent, Relaxed);
    }

    /// A request was answered with an error caused by `side`.
    pub fn request_failed(&self, side: crate::error::Side) {
        let slot = match side {
            crate::error::Side::Client => 0,
            crate::error::Side::Upstream => 1,
            crate::error::Side::Internal => 2,
        };
        self.errors_by_side[slot].fetch_add(1, Relaxed);
    }

    /// A cache lookup found a fresh entry.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// A cache lookup found nothing usable.
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }

    /// An entry of `bytes` left the cache to make room.
    pub fn cache_evicted(&self, bytes: u64) {
        self.cache_evictions.fetch_add(1, Relaxed);
        self.cache_evicted_bytes.fetch_add(bytes, Relaxed);
    }

    /// The cache now holds `entries` entries taking `bytes` bytes.
    pub fn set_cache_size(&self, entries: u64, bytes: u64) {
        self.cache_entries.store(entries, Relaxed);
        self.cache_bytes.store(bytes, Relaxed);
    }

    /// `bytes` body bytes were copied in user space by core itself. Copies made
    /// by iolite-ipc helpers are counted by ipc and added in [`Metrics::snapshot`].
    pub fn body_bytes_copied(&self, bytes: u64) {
        self.body_bytes_copied.fetch_add(bytes, Relaxed);
    }

    /// Every figure now.
    pub fn snapshot(&self) -> Snapshot {
        let requests_by_status = self
            .requests_by_status
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (STATUS_MIN + i as u16, n))
            })
            .collect();
        Snapshot {
            requests_by_status,
            bytes_sent: self.bytes_sent.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_evictions: self.cache_evictions.load(Relaxed),
            cache_evicted_bytes: self.cache_evicted_bytes.load(Relaxed),
            cache_bytes: self.cache_bytes.load(Relaxed),
            cache_entries: self.cache_entries.load(Relaxed),
            body_bytes_copied: self.body_bytes_copied.load(Relaxed) + iolite_ipc::copied::total(),
            errors_client: self.errors_by_side[0].load(Relaxed),
            errors_upstream: self.errors_by_side[1].load(Relaxed),
            errors_internal: self.errors_by_side[2].load(Relaxed),
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "iolite_http_requests_total",
            "counter",
            "HTTP responses sent, by status code.",
        );
        let mut body = String::new();
        for (status, n) in &s.requests_by_status {
            let _ = writeln!(
                body,
                "iolite_http_requests_total{{status=\"{status}\"}} {n}"
            );
        }
        out.push_str(&body);
        out.push_str(
            "# HELP iolite_request_errors_total Requests answered with an error, by the side that caused it.\n\
             # TYPE iolite_request_errors_total counter\n",
        );
        for (side, n) in [
            ("client", s.errors_client),
            ("upstream", s.errors_upstream),
            ("internal", s.errors_internal),
        ] {
            let _ = writeln!(out, "iolite_request_errors_total{{side=\"{side}\"}} {n}");
        }
        let scalars: [(&str, &str, &str, u64); 10] = [
            (
                "iolite_http_response_bytes_total",
                "counter",
                "Bytes written to client sockets, heads included.",
                s.bytes_sent,
            ),
            (
                "iolite_connections_open",
                "gauge",
                "Client connections open now.",
                s.connections_open,
            ),
            (
                "iolite_connections_total",
                "counter",
                "Client connections accepted.",
                s.connections_total,
            ),
            (
                "iolite_cache_hits_total",
                "counter",
                "Cache lookups that found a fresh entry.",
                s.cache_hits,
            ),
            (
                "iolite_cache_misses_total",
                "counter",
                "Cache lookups that found nothing usable.",
                s.cache_misses,
            ),
            (
                "iolite_cache_evictions_total",
                "counter",
                "Entries evicted from the cache.",
                s.cache_evictions,
            ),
            (
                "iolite_cache_evicted_bytes_total",
                "counter",
                "Bytes of the entries evicted from the cache.",
                s.cache_evicted_bytes,
            ),
            (
                "iolite_cache_bytes",
                "gauge",
                "Bytes held by the cache.",
                s.cache_bytes,
            ),
            (
                "iolite_cache_entries",
                "gauge",
                "Entries held by the cache.",
                s.cache_entries,
            ),
            (
                "iolite_body_bytes_copied_total",
                "counter",
                "Body bytes copied in user space (zero-copy paths keep this at 0).",
                s.body_bytes_copied,
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let mut family = "";
        for s in self.source_samples() {
            if s.name != family {
                family = s.name;
                let _ = writeln!(
                    out,
                    "# HELP {0} {1}\n# TYPE {0} {2}",
                    s.name, s.help, s.kind
                );
            }
            out.push_str(s.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", s.value);
        }
        out
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_renders_every_family() {
        let m = Metrics::new();
        m.connection_opened();
        m.request_finished(200, 1000);
        m.request_finished(200, 24);
        m.request_finished(404, 100);
        m.cache_hit();
        m.body_bytes_copied(7);
        let s = m.snapshot();
        assert_eq!(s.requests_by_status, vec![(200, 2), (404, 1)]);
        assert_eq!(s.requests_total(), 3);
        assert_eq!(s.bytes_sent, 1124);
        assert_eq!(s.connections_open, 1);
        let text = m.render_prometheus();
        assert!(text.contains("iolite_http_requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("iolite_http_requests_total{status=\"404\"} 1\n"));
        assert!(text.contains("\niolite_body_bytes_copied_total 7\n"));
        assert!(text.contains("\niolite_cache_hits_total 1\n"));
        m.connection_closed();
        assert_eq!(m.snapshot().connections_open, 0);
    }

    #[derive(Debug)]
    struct Fixed(&'static str, u64);

    impl MetricsSource for Fixed {
        fn samples(&self, out: &mut Vec<Sample>) {
            for (name, kind) in [("x_total", "counter"), ("x_now", "gauge")] {
                out.push(Sample {
                    name,
                    kind,
                    help: "A test family.",
                    labels: vec![("module", self.0.to_owned())],
                    value: self.1,
                });
            }
        }
    }

    #[test]
    fn sources_render_one_header_per_family_with_escaped_labels() {
        let m = Metrics::new();
        m.add_source(Arc::new(Fixed("/a", 1)));
        m.add_source(Arc::new(Fixed("/b\"q\"\n\\", 2)));
        let text = m.render_prometheus();
        let tail = &text[text.find("# HELP x_total").unwrap()..];
        assert_eq!(
            tail,
            "# HELP x_total A test family.\n# TYPE x_total counter\n\
             x_total{module=\"/a\"} 1\n\
             x_total{module=\"/b\\\"q\\\"\\n\\\\\"} 2\n\
             # HELP x_now A test family.\n# TYPE x_now gauge\n\
             x_now{module=\"/a\"} 1\n\
             x_now{module=\"/b\\\"q\\\"\\n\\\\\"} 2\n"
        );
    }

    #[test]
    fn out_of_range_status_is_clamped_not_a_panic() {
        let m = Metrics::new();
        m.request_finished(0, 0);
        m.request_finished(999, 0);
        assert_eq!(m.snapshot().requests_by_status, vec![(100, 1), (599, 1)]);
    }
}
