//! The cost model: what serving a request costs a node's CPU and disk.
//!
//! Defaults follow the simulation model of the LARD paper (Pai, Aron,
//! Banga, Svendsen, Druschel, Zwaenepoel, Nahum; ASPLOS 1998, §4.1), whose
//! costs were measured on a 300 MHz Pentium II running FreeBSD 2.2.5 with
//! an aggressive event-driven server:
//!
//! | step | cost |
//! |---|---|
//! | connection establishment | 145 µs CPU |
//! | connection teardown | 145 µs CPU |
//! | transmit processing | 40 µs CPU per 512 bytes |
//! | disk read of a file up to 44 KiB | 28 ms (two seeks and rotational latency) + 410 µs per 4 KiB |
//! | each further 44 KiB of a larger file | 14 ms more (a seek and rotational latency) |
//!
//! Check: an 8 KiB file from memory costs 290 + 16·40 = 930 µs of CPU, about
//! 1,075 requests/s per node, the figure the paper quotes. A request's CPU
//! work and another request's disk read overlap (the server is
//! event-driven); each resource serves its queue in FIFO order.

use serde::Serialize;

/// Per-node resource costs, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostModel {
    /// CPU to accept a connection and parse the request.
    pub connect_us: f64,
    /// CPU to close the connection.
    pub teardown_us: f64,
    /// CPU to transmit 512 bytes.
    pub transmit_us_per_512b: f64,
    /// Disk: positioning (seeks + rotation) for the first 44 KiB.
    pub disk_first_us: f64,
    /// Disk: transfer per 4 KiB block read.
    pub disk_us_per_4k: f64,
    /// Disk: another positioning for every further 44 KiB.
    pub disk_extra_us_per_44k: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            connect_us: 145.0,
            teardown_us: 145.0,
            transmit_us_per_512b: 40.0,
            disk_first_us: 28_000.0,
            disk_us_per_4k: 410.0,
            disk_extra_us_per_44k: 14_000.0,
        }
    }
}

impl CostModel {
    /// CPU time before the cache is consulted (accept, parse), in ns.
    pub fn cpu_front_ns(&self) -> u64 {
        us_to_ns(self.connect_us)
    }

    /// CPU time to send `size` bytes and close, in ns.
    pub fn cpu_back_ns(&self, size: u64) -> u64 {
        us_to_ns(self.teardown_us + self.transmit_us_per_512b * size as f64 / 512.0)
    }

    /// Disk time to read a file of `size` bytes, in ns: whole 4 KiB blocks,
    /// one positioning per started 44 KiB.
    pub fn disk_ns(&self, size: u64) -> u64 {
        let blocks = size.div_ceil(4096).max(1);
        let extra = size.div_ceil(45_056).saturating_sub(1);
        us_to_ns(
            self.disk_first_us
                + self.disk_us_per_4k * blocks as f64
                + self.disk_extra_us_per_44k * extra as f64,
        )
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "cost model (LARD paper, ASPLOS'98): CPU {} us connect + {} us teardown + {} us/512 B; \
             disk {} ms + {} us/4 KiB + {} ms per further 44 KiB",
            self.connect_us,
            self.teardown_us,
            self.transmit_us_per_512b,
            self.disk_first_us / 1000.0,
            self.disk_us_per_4k,
            self.disk_extra_us_per_44k / 1000.0
        )
    }

    /// Whether every cost is a number from 0 to 1,000 s (larger ones
    /// would overflow the simulated clock).
    pub fn is_valid(&self) -> bool {
        [
            self.connect_us,
            self.teardown_us,
            self.transmit_us_per_512b,
            self.disk_first_us,
            self.disk_us_per_4k,
            self.disk_extra_us_per_44k,
        ]
        .iter()
        .all(|c| c.is_finite() && (0.0..=1e9).contains(c))
    }
}

fn us_to_ns(us: f64) -> u64 {
    (us * 1000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_figures() {
        let c = CostModel::default();
        // 8 KiB from memory: 930 us, ~1075 req/s.
        assert_eq!(c.cpu_front_ns() + c.cpu_back_ns(8192), 930_000);
        // Disk, table: size -> ns.
        for (size, want_us) in [
            (1u64, 28_410.0),
            (4096, 28_410.0),
            (4097, 28_820.0),
            (45_056, 28_000.0 + 11.0 * 410.0),
            (45_057, 28_000.0 + 12.0 * 410.0 + 14_000.0),
            (90_112, 28_000.0 + 22.0 * 410.0 + 14_000.0),
            (90_113, 28_000.0 + 23.0 * 410.0 + 28_000.0),
        ] {
            assert_eq!(c.disk_ns(size), (want_us * 1000.0) as u64, "size {size}");
        }
    }
}
