//! [`Cgi`], one `[[cgi]]` mount: where its programs are, what every
//! program is told besides the request, and the bound on its programs
//! running at once (a leaf).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use iolite_core::config::CgiConfig;
use iolite_core::{Error, UpstreamFailure, UpstreamKind};
use iolite_sandbox::{Landlock, PreparedLandlock, ProgramCgroup, ProgramFilter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `PATH` when the mount sets none: the server's own is not passed.
const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// Where a mount's programs are.
#[derive(Debug)]
enum Target {
    /// The executables of a folder.
    Dir(PathBuf),
    /// One program for the whole prefix.
    Program(PathBuf),
}

/// One CGI mount (see the module doc).
#[derive(Debug)]
pub struct Cgi {
    /// Without its trailing `/` (empty for `/`).
    prefix: String,
    target: Target,
    document_root: PathBuf,
    timeout: Duration,
    /// `PATH`, the variables passed from the server's environment, then
    /// the mount's `env`: set after the request's own, so these win.
    fixed_env: Vec<(Vec<u8>, Vec<u8>)>,
    pass_authorization: bool,
    stream_chunked: bool,
    slots: Arc<Semaphore>,
    queue: usize,
    waiting: AtomicUsize,
    /// The uid and gid programs run as.
    user: Option<(u32, u32)>,
    /// The pids cgroup of the mount's programs, where one can be made.
    cgroup: Option<ProgramCgroup>,
    /// Interpreters by extension.
    interpreters: Vec<(String, PathBuf)>,
    /// The landlock ruleset its programs run under, when the mount has
    /// `read_paths` or `write_paths`.
    landlock: Option<PreparedLandlock>,
    /// The seccomp deny-list its programs run under (`seccomp = true`,
    /// the default).
    seccomp: Option<ProgramFilter>,
}

/// What a request's path names under a mount.
#[derive(Debug)]
pub(super) struct Script {
    /// `SCRIPT_NAME`: the prefix and the program's path below it.
    pub name: Vec<u8>,
    /// `PATH_INFO`: what follows, empty or from a `/`.
    pub path_info: Vec<u8>,
    /// The program.
    pub filename: PathBuf,
    /// Its name starts with `nph-`: its output goes to the client as it is.
    pub nph: bool,
    /// The interpreter its extension names, which runs it.
    pub interpreter: Option<PathBuf>,
}

impl Cgi {
    /// The mount `config` describes; `site_root` is `DOCUMENT_ROOT`. A
    /// mount with a `user` needs a server running as root.
    pub fn new(config: &CgiConfig, site_root: &Path) -> Result<Arc<Cgi>, String> {
        if let Some(user) = &config.user
            && !nix::unistd::geteuid().is_root()
        {
            return Err(format!(
                "cgi at {}: user = {:?} needs a server started as root",
                config.prefix, user.name
            ));
        }
        let target = match &config.program {
            Some(p) => Target::Program(absolute(p)),
            None => Target::Dir(absolute(&config.dir)),
        };
        let mut fixed_env = vec![(b"PATH".to_vec(), DEFAULT_PATH.to_vec())];
        for name in &config.pass_env {
            if let Some(value) = std::env::var_os(name) {
                fixed_env.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
            }
        }
        for (name, value) in &config.env {
            fixed_env.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        // The last setting of a name wins.
        let mut seen = std::collections::HashSet::new();
        fixed_env.reverse();
        fixed_env.retain(|(n, _)| seen.insert(n.clone()));
        fixed_env.reverse();
        let landlock = mount_landlock(config, &target)?;
        let seccomp = match config.seccomp {
            true => Some(
                ProgramFilter::new()
                    .map_err(|e| format!("cgi at {}: seccomp: {e}", config.prefix))?,
            ),
            false => None,
        };
        Ok(Arc::new(Cgi {
            prefix: config.prefix.trim_end_matches('/').to_string(),
            target,
            document_root: absolute(site_root),
            timeout: config.timeout,
            fixed_env,
            pass_authorization: config.pass_authorization,
            stream_chunked: config.stream_chunked,
            slots: Arc::new(Semaphore::new(config.max_processes.max(1) as usize)),
            queue: config.queue as usize,
            waiting: AtomicUsize::new(0),
            user: config.user.as_ref().map(|u| (u.uid, u.gid)),
            cgroup: mount_cgroup(config),
            interpreters: config.interpreters.clone(),
            landlock,
            seccomp,
        }))
    }

    /// The landlock ruleset its programs run under, if any.
    pub(super) fn landlock(&self) -> Option<&PreparedLandlock> {
        self.landlock.as_ref()
    }

    /// The seccomp filter its programs run under, if any.
    pub(super) fn seccomp(&self) -> Option<&ProgramFilter> {
        self.seccomp.as_ref()
    }

    /// The mount's prefix.
    pub fn prefix(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(super) fn document_root(&self) -> &Path {
        &self.document_root
    }

    pub(super) fn fixed_env(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.fixed_env
    }

    pub(super) fn pass_authorization(&self) -> bool {
        self.pass_authorization
    }

    pub(super) fn user(&self) -> Option<(u32, u32)> {
        self.user
    }

    pub(super) fn cgroup(&self) -> Option<&ProgramCgroup> {
        self.cgroup.as_ref()
    }

    pub(super) fn stream_chunked(&self) -> bool {
        self.stream_chunked
    }

    /// The error of `program` failing this way.
    pub(super) fn error(program: &Arc<str>, failure: UpstreamFailure) -> Error {
        Error::upstream(UpstreamKind::Cgi, program.clone(), failure)
    }

    /// The program a request's path names. `path` is the whole decoded
    /// path (it starts with the prefix). A folder mount looks for the
    /// first segment below the prefix that is a file (404 when none, or
    /// when a segment starts with `.`; 403 when it is not executable).
    pub(super) fn script(&self, path: &[u8]) -> Result<Script, Error> {
        let below = path.get(self.prefix.len()..).unwrap_or_default();
        let dir = match &self.target {
            Target::Program(p) => {
                return Ok(Script {
                    name: self.prefix.as_bytes().to_vec(),
                    path_info: below.to_vec(),
                    nph: is_nph(p),
                    interpreter: self.interpreter(p).cloned(),
                    filename: p.clone(),
                });
            }
            Target::Dir(d) => d,
        };
        if below.len() < 2 || below[0] != b'/' {
            return Err(Error::NotFound);
        }
        let mut end = 1;
        loop {
            let next = below[end..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(below.len(), |i| end + i);
            let segment = &below[end..next];
            if segment.is_empty() || segment[0] == b'.' {
                return Err(Error::NotFound);
            }
            let filename = dir.join(std::ffi::OsStr::from_bytes(&below[1..next]));
            let meta = std::fs::metadata(&filename).map_err(|_| Error::NotFound)?;
            if meta.is_file() {
                let interpreter = self.interpreter(&filename).cloned();
                if interpreter.is_none() && meta.permissions().mode() & 0o111 == 0 {
                    return Err(Error::Forbidden("not an executable program"));
                }
                let mut name = self.prefix.as_bytes().to_vec();
                name.extend_from_slice(&below[..next]);
                return Ok(Script {
                    name,
                    path_info: below[next..].to_vec(),
                    nph: is_nph(&filename),
                    interpreter,
                    filename,
                });
            }
            if !meta.is_dir() || next == below.len() {
                return Err(Error::NotFound);
            }
            end = next + 1;
        }
    }

    /// The interpreter for `program`'s extension, if the mount names one.
    fn interpreter(&self, program: &Path) -> Option<&PathBuf> {
        let ext = program.extension()?.to_str()?;
        self.interpreters
            .iter()
            .find(|(e, _)| e == ext)
            .map(|(_, i)| i)
    }

    /// A turn to run a program: at once when fewer than `max_processes`
    /// run, else after a wait in the queue (bounded by the timeout);
    /// 503 when the queue is full or the wait too long. Held until the
    /// program is reaped.
    pub(super) async fn slot(&self, program: &Arc<str>) -> Result<OwnedSemaphorePermit, Error> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = |why| Self::error(program, UpstreamFailure::Unavailable(why));
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(busy("every process slot busy and the queue full"));
        }
        /// Leaves the queue however the wait ends (a client that leaves
        /// drops it).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy("no process slot came free in time")),
        }
    }
}

/// The mount's pids cgroup (`pids.max`: `tasks`, else 16 per process),
/// or none, logged once with the reason (not root, no pids hierarchy).
fn mount_cgroup(config: &CgiConfig) -> Option<ProgramCgroup> {
    static MOUNTS: AtomicUsize = AtomicUsize::new(0);
    let label = MOUNTS.fetch_add(1, Ordering::Relaxed).to_string();
    let max = config
        .tasks
        .unwrap_or(16 * u64::from(config.max_processes.max(1)));
    match ProgramCgroup::create(&label, max) {
        Ok(c) => {
            tracing::info!(cgi = %config.prefix, "programs in {} (pids.max {max})", c.path().display());
            Some(c)
        }
        Err(why) => {
            tracing::info!(cgi = %config.prefix, "no pids cgroup for the programs: {why}");
            None
        }
    }
}

fn is_nph(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b"nph-"))
}

/// `p` made absolute against the working directory (programs run in
/// their own folder, so a relative name would not hold there).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// With `read_paths` or `write_paths`, the ruleset the mount's programs run
/// under: those trees, and read-only the programs themselves (the folder,
/// or the one program) and the interpreters. A kernel without landlock
/// refuses the mount: the operator asked for the confinement.
fn mount_landlock(config: &CgiConfig, target: &Target) -> Result<Option<PreparedLandlock>, String> {
    if config.read_paths.is_empty() && config.write_paths.is_empty() {
        return Ok(None);
    }
    let own = match target {
        Target::Dir(dir) => dir.clone(),
        Target::Program(program) => program.clone(),
    };
    let rules = Landlock {
        read_only: config
            .read_paths
            .iter()
            .cloned()
            .chain(std::iter::once(own))
            .chain(config.interpreters.iter().map(|(_, i)| i.clone()))
            .collect(),
        read_write: config.write_paths.clone(),
    };
    match PreparedLandlock::new(&rules) {
        Ok(Some(prepared)) => Ok(Some(prepared)),
        Ok(None) => Err(format!(
            "cgi at {}: read_paths/write_paths need landlock, which this kernel does not have ({})",
            config.prefix,
            iolite_sandbox::landlock_abi().err().unwrap_or_default()
        )),
        Err(e) => Err(format!("cgi at {}: landlock: {e}", config.prefix)),
    }
}
