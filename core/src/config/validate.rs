//! The draft a configuration is built in (values with where each came
//! from), the checks that span settings (duplicates, conflicts, paths that
//! must exist), and the step to a [`Config`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::tls_types::ListenerDraft;
use super::types::{
    AccessLogTarget, CacheConfig, CachePolicy, CgiConfig, ClusterConfig, Config, DEFAULT_ADMIN,
    DEFAULT_CACHE_SIZE, DEFAULT_LISTEN, DEFAULT_ROOT, FastCgiConfig, Limits, Location, LogConfig,
    LogLevel, MAX_CLUSTER_KEY_FILE, MAX_WORKERS, MIN_CLUSTER_KEY, ModuleConfig, WasmConfig,
};
use super::{Diagnostic, Origin};

/// A value with the origin of its prefix and of its path setting (the key
/// whose value must name an existing file or directory).
#[derive(Debug, Clone)]
pub(crate) struct Placed<T> {
    pub value: T,
    pub prefix_at: Origin,
    pub path_at: Option<Origin>,
}

/// A parsed `[cluster]` with the origins its cross-checks report at.
#[derive(Debug)]
pub(crate) struct ClusterDraft {
    pub config: ClusterConfig,
    /// The `[cluster]` table.
    pub at: Origin,
    pub key_at: Origin,
    /// Where a `probe_rtt` not shorter than `probe_period` is reported.
    pub rtt_at: Origin,
}

/// The configuration being assembled: defaults, then the file, then flags.
#[derive(Debug)]
pub(crate) struct Draft {
    pub listeners: Vec<(SocketAddr, Origin)>,
    /// The `[[listener]]` tables (after `listen`'s addresses).
    pub extra_listeners: Vec<ListenerDraft>,
    /// `--tls-cert` and `--tls-key`, each with where it was given.
    pub tls_flag: (Option<Given>, Option<Given>),
    pub root: (PathBuf, Origin),
    /// The file's root was reported as bad: do not check the default too.
    pub root_reported: bool,
    pub index: Vec<String>,
    pub workers: usize,
    pub admin: (Option<SocketAddr>, Origin),
    pub cache: CacheConfig,
    /// Set explicitly; otherwise `cache.size / 8` once sizes are final.
    pub cache_threshold: Option<u64>,
    pub limits: Limits,
    pub max_uri_at: Origin,
    pub locations: Vec<Placed<Location>>,
    pub headers: Vec<(String, String)>,
    pub headers_default: Vec<(String, String)>,
    pub headers_always: bool,
    pub log: LogConfig,
    pub access_at: Origin,
    pub modules: Vec<Placed<ModuleConfig>>,
    pub cgi: Vec<Placed<CgiConfig>>,
    pub fastcgi: Vec<Placed<FastCgiConfig>>,
    pub wasm: Vec<Placed<WasmConfig>>,
    pub cluster: Option<ClusterDraft>,
    /// `runner_uids` and where it was set.
    pub runner_uids: Option<((u32, u32), Origin)>,
}

/// A path and where it was given.
pub(crate) type Given = (PathBuf, Origin);

/// `key: ` for a message about a file setting or a default; nothing for a
/// flag, whose name already leads the line.
pub(crate) fn label(origin: &Origin, key: &str) -> String {
    match origin {
        Origin::Flag(_) => String::new(),
        _ => format!("{key}: "),
    }
}

impl Draft {
    pub(crate) fn defaults() -> Self {
        let default_addr = |s: &str| s.parse::<SocketAddr>().expect("a valid default address");
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_WORKERS);
        Draft {
            listeners: vec![(default_addr(DEFAULT_LISTEN), Origin::Default)],
            extra_listeners: Vec::new(),
            tls_flag: (None, None),
            root: (PathBuf::from(DEFAULT_ROOT), Origin::Default),
            root_reported: false,
            index: vec!["index.html".to_owned()],
            workers,
            admin: (Some(default_addr(DEFAULT_ADMIN)), Origin::Default),
            cache: CacheConfig {
                size: DEFAULT_CACHE_SIZE,
                revalidate: std::time::Duration::from_secs(1),
                large_file_threshold: DEFAULT_CACHE_SIZE / 8,
                policy: CachePolicy::Gdsf,
                compress: Default::default(),
            },
            cache_threshold: None,
            limits: Limits::default(),
            max_uri_at: Origin::Default,
            locations: Vec::new(),
            headers: Vec::new(),
            headers_default: Vec::new(),
            headers_always: false,
            log: LogConfig {
                access: AccessLogTarget::Stdout,
                level: LogLevel::Info,
            },
            access_at: Origin::Default,
            modules: Vec::new(),
            runner_uids: None,
            cgi: Vec::new(),
            fastcgi: Vec::new(),
            wasm: Vec::new(),
            cluster: None,
        }
    }

    /// The checks that look at more than one setting or at the file system.
    pub(crate) fn validate(&self, diags: &mut Vec<Diagnostic>) {
        let mut push = |origin: &Origin, message: String| {
            diags.push(Diagnostic {
                origin: origin.clone(),
                message,
            })
        };

        let mut seen: HashMap<SocketAddr, &Origin> = HashMap::new();
        for (addr, at) in &self.listeners {
            if addr.port() == 0 {
                continue;
            }
            if let Some(first) = seen.get(addr) {
                push(
                    at,
                    format!(
                        "{}{addr} is listed twice (first at {})",
                        label(at, "listen"),
                        first.short()
                    ),
                );
            } else {
                seen.insert(*addr, at);
            }
        }
        if let (Some(admin), at) = &self.admin
            && admin.port() != 0
            && seen.contains_key(admin)
        {
            push(
                at,
                format!(
                    "{}{admin} is also a client listener; the admin listener needs its own address",
                    label(at, "admin")
                ),
            );
        }

        self.validate_tls(&mut push);

        let (root, root_at) = &self.root;
        if self.root_reported {
            // Already reported where the file names it.
        } else if let Err(problem) = check_dir(root) {
            let hint = if *root_at == Origin::Default {
                " (set root in the configuration file or pass --root DIR)"
            } else {
                ""
            };
            push(
                root_at,
                format!("{}{problem}{hint}", label(root_at, "root")),
            );
        }

        if self.limits.max_uri > self.limits.max_head {
            push(
                &self.max_uri_at,
                format!(
                    "limits.max_uri ({}) is larger than limits.max_head ({}): no request line could fit",
                    self.limits.max_uri, self.limits.max_head
                ),
            );
        }

        let mut prefixes: HashMap<&str, &Origin> = HashMap::new();
        for l in &self.locations {
            if let Some(first) = prefixes.get(l.value.prefix.as_str()) {
                push(
                    &l.prefix_at,
                    format!(
                        "location.prefix: {:?} is already used by the location at {}",
                        l.value.prefix,
                        first.short()
                    ),
                );
            } else {
                prefixes.insert(&l.value.prefix, &l.prefix_at);
            }
            if let (Some(root), Some(at)) = (&l.value.root, &l.path_at)
                && let Err(problem) = check_dir(root)
            {
                push(at, format!("location.root: {problem}"));
            }
        }

        let mut mounts: HashMap<&str, (&str, &Origin)> = HashMap::new();
        let all = self
            .modules
            .iter()
            .map(|m| ("module", m.value.prefix.as_str(), &m.prefix_at))
            .chain(
                self.cgi
                    .iter()
                    .map(|c| ("cgi", c.value.prefix.as_str(), &c.prefix_at)),
            )
            .chain(
                self.fastcgi
                    .iter()
                    .map(|f| ("fastcgi", f.value.prefix.as_str(), &f.prefix_at)),
            )
            .chain(
                self.wasm
                    .iter()
                    .map(|w| ("wasm", w.value.prefix.as_str(), &w.prefix_at)),
            );
        // The first definition in the file (or flags) is the one kept.
        let mut all: Vec<_> = all.collect();
        all.sort_by_key(|(_, _, at)| at.sort_key());
        for (kind, prefix, at) in all {
            if let Some((first_kind, first_at)) = mounts.get(prefix) {
                push(
                    at,
                    format!(
                        "{}{prefix:?} is already mounted by the {first_kind} at {}",
                        label(at, &format!("{kind}.prefix")),
                        first_at.short()
                    ),
                );
            } else {
                mounts.insert(prefix, (kind, at));
            }
        }

        if let Some(((first, last), at)) = &self.runner_uids {
            let wanted = self
                .modules
                .iter()
                .filter(|m| m.value.sandbox.user.is_some())
                .count() as u64;
            let have = u64::from(last - first) + 1;
            if wanted > have {
                push(
                    at,
                    format!(
                        "{}{have} uids for {wanted} modules that drop root: one each is needed",
                        label(at, "runner_uids")
                    ),
                );
            }
        }
        for m in &self.modules {
            if let (Err(problem), Some(at)) = (check_file(&m.value.path), &m.path_at) {
                push(at, format!("{}{problem}", label(at, "module.path")));
            }
        }
        for c in &self.cgi {
            let (checked, key) = match &c.value.program {
                Some(p) => (check_program(p), "cgi.program"),
                None => (check_dir(&c.value.dir), "cgi.dir"),
            };
            if let (Err(problem), Some(at)) = (checked, &c.path_at) {
                push(at, format!("{}{problem}", label(at, key)));
            }
        }
        for f in &self.fastcgi {
            if let (Some(root), Some(at)) = (&f.value.root, &f.path_at)
                && let Err(problem) = check_dir(root)
            {
                push(at, format!("fastcgi.root: {problem}"));
            }
        }
        for w in &self.wasm {
            if let (Err(problem), Some(at)) = (check_file(&w.value.path), &w.path_at) {
                push(at, format!("{}{problem}", label(at, "wasm.path")));
            }
        }

        if let Some(c) = &self.cluster {
            self.validate_cluster(c, &mut push);
        }

        if let AccessLogTarget::File(path) = &self.log.access {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if let Err(problem) = check_dir(parent) {
                push(
                    &self.access_at,
                    format!(
                        "{}the access log's {problem}",
                        label(&self.access_at, "log.access")
                    ),
                );
            } else if path.is_dir() {
                push(
                    &self.access_at,
                    format!(
                        "{}{:?} is a directory, not a file",
                        label(&self.access_at, "log.access"),
                        path
                    ),
                );
            }
        }
    }

    fn validate_cluster(&self, c: &ClusterDraft, push: &mut impl FnMut(&Origin, String)) {
        if let Err(problem) = read_cluster_key(&c.config.key_file) {
            push(&c.key_at, format!("cluster.key_file: {problem}"));
        }
        let t = &c.config.timers;
        if t.probe_rtt >= t.probe_period {
            push(
                &c.rtt_at,
                format!(
                    "cluster.probe_rtt ({}) must be shorter than cluster.probe_period ({})",
                    super::format_duration(t.probe_rtt),
                    super::format_duration(t.probe_period)
                ),
            );
        }
        if c.config.client.is_none()
            && let Some((first, _)) = self.listeners.first()
            && first.ip().is_unspecified()
        {
            push(
                &c.at,
                format!(
                    "[cluster]: the first listener {first} is not an address peers can reach; set cluster.client"
                ),
            );
        }
    }

    pub(crate) fn finish(self, source: Option<PathBuf>) -> Config {
        let listeners = self.finish_listeners();
        let mut cache = self.cache;
        cache.large_file_threshold = self.cache_threshold.unwrap_or(cache.size / 8);
        Config {
            source,
            listeners,
            root: self.root.0,
            index: self.index,
            workers: self.workers,
            admin: self.admin.0,
            cache,
            limits: self.limits,
            locations: self.locations.into_iter().map(|p| p.value).collect(),
            headers: self.headers,
            headers_default: self.headers_default,
            headers_always: self.headers_always,
            log: self.log,
            modules: with_runner_uids(
                self.modules.into_iter().map(|p| p.value).collect(),
                self.runner_uids.as_ref().map(|(r, _)| *r),
            ),
            runner_uids: self.runner_uids.map(|(r, _)| r),
            cgi: self.cgi.into_iter().map(|p| p.value).collect(),
            fastcgi: self.fastcgi.into_iter().map(|p| p.value).collect(),
            wasm: self.wasm.into_iter().map(|p| p.value).collect(),
            cluster: self.cluster.map(|c| c.config),
        }
    }
}

/// The cluster key in `path`: the file's bytes without trailing white
/// space, at least [`MIN_CLUSTER_KEY`] of them. The file must be a regular
/// file that users other than its owner's group cannot read (anyone who can
/// read it can join the cluster).
pub fn read_cluster_key(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("file {path:?} does not exist"),
        _ => format!("cannot read {path:?}: {e}"),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path:?} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "{path:?} can be read by every user of this machine (mode {mode:o}): chmod 600 it"
        ));
    }
    let mut key = Vec::new();
    file.take(MAX_CLUSTER_KEY_FILE + 1)
        .read_to_end(&mut key)
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if key.len() as u64 > MAX_CLUSTER_KEY_FILE {
        return Err(format!(
            "{path:?} is larger than {MAX_CLUSTER_KEY_FILE} bytes: not a key file"
        ));
    }
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    if key.len() < MIN_CLUSTER_KEY {
        return Err(format!(
            "the key in {path:?} is {} bytes, at least {MIN_CLUSTER_KEY} are needed (e.g. `openssl rand -hex 32 > FILE`)",
            key.len()
        ));
    }
    Ok(key)
}

/// Gives each module whose sandbox drops root (a `user`) its own uid of
/// `range`, in file order; the rest as they are. Validation checked that
/// the range is large enough; past its end a module keeps its user.
fn with_runner_uids(
    mut modules: Vec<ModuleConfig>,
    range: Option<(u32, u32)>,
) -> Vec<ModuleConfig> {
    let Some((first, last)) = range else {
        return modules;
    };
    let mut next = first;
    for m in modules.iter_mut().filter(|m| m.sandbox.user.is_some()) {
        if next > last {
            break;
        }
        m.sandbox.user = Some(next.to_string());
        next = next.saturating_add(1);
    }
    modules
}

fn check_dir(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{:?} is not a directory", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("directory {:?} does not exist", path))
        }
        Err(e) => Err(format!("cannot access {:?}: {e}", path)),
    }
}

/// A CGI program: an executable regular file.
fn check_program(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    check_file(path)?;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!("{path:?} is not executable")),
        _ => Ok(()),
    }
}

fn check_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{:?} is not a regular file", path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("file {:?} does not exist", path))
        }
        Err(e) => Err(format!("cannot access {:?}: {e}", path)),
    }
}
