//! setrlimit for the profile's limits; RLIMIT_NPROC is set separately,
//! after the user namespace exists (see `Profile::apply_before_load`).

use nix::sys::resource::{Resource, setrlimit};

use crate::error::SandboxError;
use crate::report::{Measure, Outcome, Report};
use crate::settings::Rlimits;

fn set(resource: Resource, name: &'static str, soft: u64, hard: u64) -> Result<(), SandboxError> {
    setrlimit(resource, soft, hard).map_err(|e| SandboxError::Rlimit {
        resource: name,
        value: soft,
        source: e.into(),
    })
}

/// Human size for the log line: 1G, 256M, 4096.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (unit, suffix) in UNITS {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

/// Address space, open files, CPU and core size.
pub(crate) fn apply_static(limits: &Rlimits) -> Result<Outcome, SandboxError> {
    let mut parts = Vec::new();
    if let Some(v) = limits.address_space {
        set(Resource::RLIMIT_AS, "as", v, v)?;
        parts.push(format!("as={}", human_bytes(v)));
    }
    if let Some(v) = limits.open_files {
        set(Resource::RLIMIT_NOFILE, "nofile", v, v)?;
        parts.push(format!("nofile={v}"));
    }
    if let Some(v) = limits.cpu_seconds {
        // soft < hard: SIGXCPU (which names the cause) comes before SIGKILL.
        set(Resource::RLIMIT_CPU, "cpu", v, v.saturating_add(1))?;
        parts.push(format!("cpu={v}s"));
    }
    if let Some(v) = limits.core_size {
        set(Resource::RLIMIT_CORE, "core", v, v)?;
        parts.push(format!("core={}", human_bytes(v)));
    }
    Ok(if parts.is_empty() && limits.processes.is_none() {
        Outcome::Skipped("setting".into())
    } else {
        Outcome::Applied(parts.join(","))
    })
}

pub(crate) fn set_nproc(max: u64) -> Result<(), SandboxError> {
    set(Resource::RLIMIT_NPROC, "nproc", max, max)
}

/// Adds `part` to the rlimits entry's detail.
pub(crate) fn append_detail(report: &mut Report, part: &str) {
    report.edit(Measure::Rlimits, |outcome| {
        if let Outcome::Applied(d) = outcome {
            if !d.is_empty() {
                d.push(',');
            }
            d.push_str(part);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_table() {
        for (n, s) in [
            (0, "0"),
            (1 << 30, "1G"),
            (3 << 30, "3G"),
            (256 << 20, "256M"),
            (1536 << 20, "1536M"),
            (4096, "4K"),
            (1000, "1000"),
        ] {
            assert_eq!(human_bytes(n), s, "{n}");
        }
    }
}
