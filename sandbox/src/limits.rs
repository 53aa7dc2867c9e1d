//! setrlimit for the profile's limits; RLIMIT_NPROC is set separately,
//! after the user namespace exists (see `Profile::apply_before_load`).

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigHandler, Signal};

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
    if let Some(v) = limits.file_size {
        // EFBIG rather than death by SIGXFSZ: a module writing a file past
        // the limit gets an error it can report.
        // SAFETY: SIG_IGN for SIGXFSZ installs no handler code.
        unsafe { nix::sys::signal::signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.map_err(|e| {
            SandboxError::Prctl {
                what: "ignoring SIGXFSZ",
                source: e.into(),
            }
        })?;
        set(Resource::RLIMIT_FSIZE, "fsize", v, v)?;
        parts.push(format!("fsize={}", human_bytes(v)));
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

/// Nice value of a runner (and the threads it starts, which inherit it).
pub(crate) const RUNNER_NICE: i32 = 10;

/// SCHED_BATCH at nice [`RUNNER_NICE`] for the process (its threads
/// inherit both): a spinning module gets about a tenth of the CPU a
/// server thread at nice 0 gets on the same core, never the machine, yet
/// is never starved outright by a busy machine (as SCHED_IDLE would be).
/// RLIMIT_NICE = 0 keeps it from climbing back (setpriority and
/// sched_setscheduler are outside the seccomp allow-list as well).
pub(crate) fn low_priority() -> Result<Outcome, SandboxError> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads one sched_param we own; pid 0 is
    // the calling thread (the only one: phase 1 runs single-threaded).
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Ok(Outcome::Unavailable(format!(
            "SCHED_BATCH: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: setpriority takes integers; who 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, RUNNER_NICE) } != 0 {
        return Ok(Outcome::Unavailable(format!(
            "nice {RUNNER_NICE}: {}",
            std::io::Error::last_os_error()
        )));
    }
    set(Resource::RLIMIT_NICE, "nice", 0, 0)?;
    Ok(Outcome::Applied(format!("batch,nice={RUNNER_NICE}")))
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
