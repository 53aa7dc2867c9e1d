//! Workloads: which objects exist, how big they are, and the stream of
//! requests for them.
//!
//! - Synthetic: `objects` objects whose popularity follows Zipf(α) by rank
//!   and whose sizes are log-normal (median, σ of the underlying normal),
//!   independent of popularity. Seeded: the same seed gives the same objects
//!   and the same request stream, for every policy.
//! - Trace: a file with one request per line, either `path size` or a
//!   Common (or Combined) Log Format access-log line. An object's size is
//!   the largest size any of its lines gives. The stream replays the trace
//!   in order and starts over at the end.

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{ClusterError, TargetKey};

/// The most objects a synthetic workload may have (its tables take about
/// 28 bytes per object, before the node caches).
pub const MAX_OBJECTS: u32 = 50_000_000;

/// Parameters of a synthetic workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synthetic {
    /// Number of distinct objects.
    pub objects: u32,
    /// Zipf exponent (0 is uniform).
    pub alpha: f64,
    /// Median object size in bytes.
    pub size_median: u64,
    /// σ of ln(size).
    pub size_sigma: f64,
    /// Seed of sizes and of the request stream.
    pub seed: u64,
}

#[derive(Debug, Clone)]
enum Stream {
    Zipf { cdf: Vec<f64>, seed: u64 },
    Trace { requests: Vec<u32> },
}

/// A workload: its objects and how to draw requests for them.
#[derive(Debug, Clone)]
pub struct Workload {
    sizes: Vec<u64>,
    keys: Vec<TargetKey>,
    /// Objects from most to least requested.
    popularity: Vec<u32>,
    stream: Stream,
    description: String,
}

impl Workload {
    /// Builds a synthetic workload.
    pub fn synthetic(p: Synthetic) -> Result<Self, ClusterError> {
        if p.objects == 0 || p.objects > MAX_OBJECTS {
            return Err(ClusterError::InvalidParam(format!(
                "--objects must be from 1 to {MAX_OBJECTS}, not {}",
                p.objects
            )));
        }
        if !(p.alpha.is_finite() && p.alpha >= 0.0) {
            return Err(ClusterError::InvalidParam(format!(
                "--alpha must be a finite number >= 0, not {}",
                p.alpha
            )));
        }
        if p.size_median == 0 {
            return Err(ClusterError::InvalidParam(
                "--size-median must be at least 1 byte".into(),
            ));
        }
        if !(p.size_sigma.is_finite() && (0.0..=10.0).contains(&p.size_sigma)) {
            return Err(ClusterError::InvalidParam(format!(
                "--size-sigma must be between 0 and 10, not {}",
                p.size_sigma
            )));
        }
        let n = p.objects as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let median = p.size_median as f64;
        let sizes: Vec<u64> = (0..n)
            .map(|_| {
                let s = median * (p.size_sigma * standard_normal(&mut rng)).exp();
                // Cap at 1 TiB so a wild σ cannot overflow the byte counts.
                s.round().clamp(1.0, (1u64 << 40) as f64) as u64
            })
            .collect();
        let keys = (0..n)
            .map(|i| TargetKey::of(format!("/obj/{i}").as_bytes()))
            .collect();
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for i in 0..n {
            acc += ((i + 1) as f64).powf(-p.alpha);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Ok(Workload {
            sizes,
            keys,
            popularity: (0..p.objects).collect(),
            stream: Stream::Zipf {
                cdf,
                seed: p.seed ^ 0x9e37_79b9_7f4a_7c15,
            },
            description: format!(
                "synthetic: {} objects, Zipf {}, log-normal sizes median {} B sigma {}, seed {}",
                p.objects, p.alpha, p.size_median, p.size_sigma, p.seed
            ),
        })
    }

    /// Reads a trace file.
    pub fn from_trace_file(path: &Path) -> Result<Self, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterError::TraceIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_trace_text(path, &text)
    }

    /// Parses trace text; `path` only names the source in errors.
    pub fn from_trace_text(path: &Path, text: &str) -> Result<Self, ClusterError> {
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let mut sizes: Vec<u64> = Vec::new();
        let mut requests: Vec<u32> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, size) = parse_line(line).map_err(|problem| ClusterError::TraceLine {
                path: path.to_path_buf(),
                line: i + 1,
                problem,
            })?;
            let id = *index.entry(name).or_insert_with(|| {
                names.push(name);
                sizes.push(0);
                (names.len() - 1) as u32
            });
            let s = &mut sizes[id as usize];
            *s = (*s).max(size);
            requests.push(id);
        }
        if requests.is_empty() {
            return Err(ClusterError::EmptyTrace {
                path: path.to_path_buf(),
            });
        }
        let mut counts = vec![0u64; names.len()];
        for &r in &requests {
            counts[r as usize] += 1;
        }
        let mut popularity: Vec<u32> = (0..names.len() as u32).collect();
        popularity.sort_by_key(|&o| (std::cmp::Reverse(counts[o as usize]), o));
        Ok(Workload {
            keys: names.iter().map(|n| TargetKey::of(n.as_bytes())).collect(),
            description: format!(
                "trace {}: {} requests, {} objects",
                path.display(),
                requests.len(),
                names.len()
            ),
            sizes,
            popularity,
            stream: Stream::Trace { requests },
        })
    }

    /// Object sizes in bytes, by object index.
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// Target keys, by object index.
    pub fn keys(&self) -> &[TargetKey] {
        &self.keys
    }

    /// Number of distinct objects.
    pub fn objects(&self) -> usize {
        self.sizes.len()
    }

    /// Sum of all object sizes: the data set.
    pub fn total_bytes(&self) -> u64 {
        self.sizes.iter().fold(0u64, |a, &s| a.saturating_add(s))
    }

    /// Objects from most to least popular.
    pub fn popularity(&self) -> &[u32] {
        &self.popularity
    }

    /// Requests in the trace (None for synthetic workloads).
    pub fn trace_len(&self) -> Option<usize> {
        match &self.stream {
            Stream::Trace { requests } => Some(requests.len()),
            Stream::Zipf { .. } => None,
        }
    }

    /// One line saying what the workload is.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// A fresh request stream (the same sequence every time).
    pub fn stream(&self) -> RequestStream<'_> {
        let seed = match &self.stream {
            Stream::Zipf { seed, .. } => *seed,
            Stream::Trace { .. } => 0,
        };
        RequestStream {
            workload: self,
            rng: ChaCha8Rng::seed_from_u64(seed),
            pos: 0,
            hotspot: None,
        }
    }
}

/// Draws requests from a workload.
#[derive(Debug, Clone)]
pub struct RequestStream<'w> {
    workload: &'w Workload,
    rng: ChaCha8Rng,
    pos: usize,
    hotspot: Option<(u32, f64)>,
}

impl RequestStream<'_> {
    /// From now on, `obj` takes `share` of all requests (the rest follow the
    /// workload as before).
    pub fn set_hotspot(&mut self, obj: u32, share: f64) {
        self.hotspot = Some((obj, share));
    }

    /// The next requested object.
    pub fn next_object(&mut self) -> u32 {
        if let Some((obj, share)) = self.hotspot
            && self.rng.random::<f64>() < share
        {
            return obj;
        }
        match &self.workload.stream {
            Stream::Zipf { cdf, .. } => {
                let u: f64 = self.rng.random();
                let i = cdf.partition_point(|&c| c <= u);
                i.min(cdf.len() - 1) as u32
            }
            Stream::Trace { requests } => {
                let r = requests[self.pos];
                self.pos = (self.pos + 1) % requests.len();
                r
            }
        }
    }
}

/// A standard normal variate (Box–Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One trace line to (target, size).
fn parse_line(line: &str) -> Result<(&str, u64), String> {
    if let Some(open) = line.find('"') {
        return parse_clf(line, open);
    }
    let mut it = line.split_whitespace();
    let (Some(path), Some(size), None) = (it.next(), it.next(), it.next()) else {
        return Err("expected `path size` or a Common Log Format line".into());
    };
    let size = size
        .parse::<u64>()
        .map_err(|_| format!("size `{size}` is not a number of bytes"))?;
    Ok((path, size))
}

/// `host ident user [date] "METHOD path PROTO" status bytes [...]`.
fn parse_clf(line: &str, open: usize) -> Result<(&str, u64), String> {
    let rest = &line[open + 1..];
    let close = rest
        .find('"')
        .ok_or("unterminated quoted request in log line")?;
    let request = &rest[..close];
    let mut parts = request.split_whitespace();
    let _method = parts.next().ok_or("empty request in log line")?;
    let path = parts.next().ok_or("request in log line has no path")?;
    let mut after = rest[close + 1..].split_whitespace();
    let status = after.next().ok_or("log line has no status")?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("status `{status}` is not a 3-digit HTTP status"));
    }
    let bytes = after.next().ok_or("log line has no size")?;
    let size = if bytes == "-" {
        0
    } else {
        bytes
            .parse::<u64>()
            .map_err(|_| format!("size `{bytes}` is not a number of bytes"))?
    };
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_table() {
        let ok: &[(&str, (&str, u64))] = &[
            ("/a.html 1234", ("/a.html", 1234)),
            ("  /b 0  ", ("/b", 0)),
            (
                r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
                ("/apache_pb.gif", 2326),
            ),
            (
                r#"h - - [01/Jan/2020:00:00:00 +0000] "GET /x?y=1 HTTP/1.1" 304 - "-" "curl""#,
                ("/x?y=1", 0),
            ),
        ];
        for (line, want) in ok {
            assert_eq!(parse_line(line).as_ref(), Ok(want), "{line}");
        }
        let bad: &[(&str, &str)] = &[
            ("/only-a-path", "expected `path size`"),
            ("/a 12 extra", "expected `path size`"),
            ("/a twelve", "size `twelve`"),
            ("/a -5", "size `-5`"),
            (r#"h - - [d] "GET /a HTTP/1.0 200 5"#, "unterminated"),
            (r#"h - - [d] "GET" 200 5"#, "no path"),
            (r#"h - - [d] "GET /a HTTP/1.0" OK 5"#, "status `OK`"),
            (r#"h - - [d] "GET /a HTTP/1.0" 200"#, "no size"),
            (r#"h - - [d] "GET /a HTTP/1.0" 200 big"#, "size `big`"),
        ];
        for (line, want) in bad {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn trace_errors_name_file_and_line() {
        let text = "# comment\n/a 10\n\n/b ten\n";
        let e = Workload::from_trace_text(Path::new("t.log"), text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.log:4: size `ten` is not a number of bytes"
        );
        let e = Workload::from_trace_text(Path::new("e.log"), "# nothing\n").unwrap_err();
        assert_eq!(e.to_string(), "e.log: no requests in trace");
    }

    #[test]
    fn trace_objects_sizes_and_popularity() {
        let text = "/a 10\n/b 5\n/a 30\n/c 1\n/a 0\n/b 5\n";
        let w = Workload::from_trace_text(Path::new("t"), text).unwrap();
        assert_eq!(w.sizes(), &[30, 5, 1]);
        assert_eq!(w.popularity(), &[0, 1, 2]);
        let mut s = w.stream();
        let seq: Vec<u32> = (0..8).map(|_| s.next_object()).collect();
        assert_eq!(seq, [0, 1, 0, 2, 0, 1, 0, 1]);
    }

    #[test]
    fn synthetic_is_seeded_and_zipf_shaped() {
        let p = Synthetic {
            objects: 1000,
            alpha: 0.9,
            size_median: 8192,
            size_sigma: 1.0,
            seed: 7,
        };
        let a = Workload::synthetic(p).unwrap();
        let b = Workload::synthetic(p).unwrap();
        assert_eq!(a.sizes(), b.sizes());
        let mut sorted = a.sizes().to_vec();
        sorted.sort_unstable();
        let median = sorted[500] as f64;
        assert!((6000.0..11000.0).contains(&median), "median {median}");
        let mut counts = vec![0u32; 1000];
        let mut s = a.stream();
        for _ in 0..50_000 {
            counts[s.next_object() as usize] += 1;
        }
        // Zipf 0.9: rank 1 is requested 2^0.9 = 1.87 times as often as rank 2.
        let r = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.6..2.2).contains(&r), "ratio {r}");
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        let mut s2 = b.stream();
        let mut s1 = a.stream();
        assert!((0..100).all(|_| s1.next_object() == s2.next_object()));
    }

    #[test]
    fn synthetic_rejects_bad_parameters() {
        let good = Synthetic {
            objects: 10,
            alpha: 0.9,
            size_median: 10,
            size_sigma: 1.0,
            seed: 1,
        };
        for bad in [
            Synthetic { objects: 0, ..good },
            Synthetic {
                alpha: f64::NAN,
                ..good
            },
            Synthetic {
                alpha: -1.0,
                ..good
            },
            Synthetic {
                size_median: 0,
                ..good
            },
            Synthetic {
                size_sigma: 11.0,
                ..good
            },
        ] {
            assert!(Workload::synthetic(bad).is_err(), "{bad:?}");
        }
    }
}
