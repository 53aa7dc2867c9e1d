//! Landlock: the module reaches only the profile's paths.
//!
//! The ruleset handles every filesystem right of ABI 6, TCP bind/connect
//! (ABI 4, no port allowed) and the ABI 6 scopes (no connecting to abstract
//! unix sockets, no signals to processes outside the sandbox). On an older
//! kernel the landlock crate keeps what the kernel knows ("partial"); on a
//! kernel without landlock the measure is reported unavailable.

use std::io;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::error::SandboxError;
use crate::procfs;
use crate::report::Outcome;
use crate::settings::Landlock;

/// The newest ABI whose rights this crate asks for (and was tested with).
const TARGET: ABI = ABI::V6;

/// The landlock ABI version of the running kernel, or why there is none.
pub fn landlock_abi() -> Result<u32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with the VERSION flag, landlock_create_ruleset reads no
    // memory (attr must be NULL and size 0) and returns the ABI version or -1.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc >= 1 {
        return u32::try_from(rc).map_err(|_| format!("odd ABI version {rc}"));
    }
    let err = io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => "not supported by this kernel".to_owned(),
        Some(libc::EOPNOTSUPP) => "disabled at boot".to_owned(),
        _ => format!("version query failed: {err}"),
    })
}

fn rule_err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Landlock(e.to_string())
}

/// A ruleset granting `rules` and nothing else of the file system (and,
/// with `whole`, no TCP bind or connect and the ABI 6 scopes: a runner's);
/// not yet in force.
fn ruleset(rules: &Landlock, whole: bool) -> Result<RulesetCreated, SandboxError> {
    let mut attr = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET))
        .map_err(rule_err)?;
    if whole {
        attr = attr
            .handle_access(AccessNet::from_all(TARGET))
            .map_err(rule_err)?
            .scope(Scope::from_all(TARGET))
            .map_err(rule_err)?;
    }
    let mut created = attr.create().map_err(rule_err)?;
    let lists = [
        (&rules.read_only, AccessFs::from_read(TARGET)),
        (&rules.read_write, AccessFs::from_all(TARGET)),
    ];
    for (paths, access) in lists {
        for path in paths {
            let fd = PathFd::new(path).map_err(|e| SandboxError::LandlockPath {
                path: path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            // A file takes only the rights that apply to files (asking for
            // directory rights on it would make the ruleset "partial").
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(TARGET)
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(rule_err)?;
        }
    }
    Ok(created)
}

/// A landlock ruleset made once (for a CGI mount: its `read_paths` and
/// `write_paths`) and put in force by each program [`crate::Spawn`]
/// starts, between its fork and its exec, with one system call. It
/// handles the file system only: the program may still use the network.
#[derive(Debug)]
pub struct PreparedLandlock {
    fd: std::os::fd::OwnedFd,
}

impl PreparedLandlock {
    /// The ruleset for `rules`; None when the kernel has no landlock (the
    /// caller says so: the measure is unavailable).
    pub fn new(rules: &Landlock) -> Result<Option<PreparedLandlock>, SandboxError> {
        if landlock_abi().is_err() {
            return Ok(None);
        }
        let created = ruleset(rules, false)?;
        let fd: Option<std::os::fd::OwnedFd> = created.into();
        Ok(fd.map(|fd| PreparedLandlock { fd }))
    }

    pub(crate) fn raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

pub(crate) fn apply(rules: &Landlock) -> Result<Outcome, SandboxError> {
    let abi = match landlock_abi() {
        Ok(v) => v,
        Err(why) => return Ok(Outcome::Unavailable(why)),
    };
    let threads = procfs::threads();
    if threads > 1 {
        return Err(SandboxError::Threaded {
            measure: "landlock",
            threads,
        });
    }
    let created = ruleset(rules, true)?;
    let status = created.restrict_self().map_err(rule_err)?;
    let counts = format!(
        "abi {abi}, ro={}, rw={}",
        rules.read_only.len(),
        rules.read_write.len()
    );
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Outcome::Applied(counts),
        RulesetStatus::PartiallyEnforced => Outcome::Applied(format!("partial: {counts}")),
        RulesetStatus::NotEnforced => Outcome::Unavailable(format!("not enforced ({counts})")),
    })
}
