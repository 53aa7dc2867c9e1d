//! Facts about the current process read from /proc/self/status.

use std::fs;

fn status_field(name: &str) -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Threads in this process; 0 when /proc is not readable.
pub(crate) fn threads() -> usize {
    status_field("Threads")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The capability sets (permitted, effective) as bit masks.
pub(crate) fn caps() -> Option<(u64, u64)> {
    let prm = u64::from_str_radix(&status_field("CapPrm")?, 16).ok()?;
    let eff = u64::from_str_radix(&status_field("CapEff")?, 16).ok()?;
    Some((prm, eff))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_status() {
        assert!(super::threads() >= 1);
        assert!(super::caps().is_some());
    }
}
