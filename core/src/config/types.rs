//! The validated configuration, [`Config`], and the value types it is
//! made of. The steps of resolving (`args`, `sections`, `mounts`,
//! `validate`) build these, so they live below all of them; `mod.rs`
//! re-exports them as `iolite_core::config::*`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::tls_types::Listener;

pub use super::cluster_types::{
    AdmissionSettings, ClusterConfig, ClusterPolicy, ClusterTimers, LardSettings,
    MAX_CLUSTER_KEY_FILE, MIN_CLUSTER_KEY,
};
pub use super::handler_types::{CgiConfig, FastCgiAddress, FastCgiConfig, RunAs};
use super::value::{format_duration, format_size};

/// The default listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default document root (relative to the working directory).
pub const DEFAULT_ROOT: &str = "examples/site";
/// The default admin listener (`/metrics`, `/status`).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8081";
/// The default cache budget: 256 MiB.
pub const DEFAULT_CACHE_SIZE: u64 = 256 << 20;
/// The most worker threads accepted.
pub const MAX_WORKERS: usize = 1024;

/// A validated configuration of `iolite serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// Client listeners, at least one, no address twice (port 0 excepted).
    pub listeners: Vec<Listener>,
    /// The document root: an existing directory.
    pub root: PathBuf,
    /// Index files tried, in order, for a directory.
    pub index: Vec<String>,
    /// Worker threads, 1..=[`MAX_WORKERS`].
    pub workers: usize,
    /// The admin listener, or `None` when turned off.
    pub admin: Option<SocketAddr>,
    pub cache: CacheConfig,
    pub limits: Limits,
    /// Per-location settings, in file order. See [`Config::location_for`].
    pub locations: Vec<Location>,
    /// The top-level `headers`, `headers_default` and `headers_always`:
    /// as a location's, for every answer (locations override them per
    /// header name).
    pub headers: Vec<(String, String)>,
    pub headers_default: Vec<(String, String)>,
    pub headers_always: bool,
    pub log: LogConfig,
    /// Process modules (served by iolite-modules).
    pub modules: Vec<ModuleConfig>,
    /// CGI mounts (not yet served).
    pub cgi: Vec<CgiConfig>,
    /// FastCGI mounts.
    pub fastcgi: Vec<FastCgiConfig>,
    /// WebAssembly mounts (WAGI and SDK modules not served yet).
    pub wasm: Vec<WasmConfig>,
    /// `runner_uids`: the uids (first, last) given out one per module, in
    /// file order, to the modules whose sandbox drops root (already put
    /// in their `sandbox.user`).
    pub runner_uids: Option<(u32, u32)>,
    /// `[cluster]`: this node's membership in a cluster, or `None` for a
    /// single server.
    pub cluster: Option<ClusterConfig>,
}

/// The unified cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Byte budget; 0 turns caching off.
    pub size: u64,
    /// How long an entry is trusted before its file is checked again
    /// (zero: on every request).
    pub revalidate: Duration,
    /// Files larger than this are not cached but sent with sendfile
    /// (default: `size / 8`).
    pub large_file_threshold: u64,
    pub policy: CachePolicy,
    /// Compressed variants of static files.
    pub compress: CompressConfig,
}

/// `[cache]`'s `compress*` keys: which static files get compressed
/// variants (gzip, br, zstd), made once and kept in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressConfig {
    /// `compress`: variants at all (default on).
    pub enabled: bool,
    /// `compress_types`: media types (`text/*` matches a whole top level).
    pub types: Vec<String>,
    /// `compress_min_size`: smaller files go out as they are.
    pub min_size: u64,
    /// `precompressed`: `file.br`, `file.zst`, `file.gz` beside a file
    /// are sent when no older than it (nginx's `gzip_static`).
    pub precompressed: bool,
}

impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig {
            enabled: true,
            types: [
                "text/*",
                "application/json",
                "application/javascript",
                "application/xml",
                "image/svg+xml",
                "application/wasm",
            ]
            .map(String::from)
            .to_vec(),
            min_size: 1024,
            precompressed: true,
        }
    }
}

/// The cache's replacement policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Greedy-Dual-Size-Frequency (the default).
    Gdsf,
    /// Least recently used, for comparison.
    Lru,
}

/// Limits on what a client may send and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target, in bytes (longer: 414).
    pub max_uri: usize,
    /// Longest request head (request line and headers), in bytes (431).
    pub max_head: usize,
    /// Most header fields in one request (431).
    pub max_headers: usize,
    /// Largest request body, in bytes (413).
    pub max_body: u64,
    /// Time allowed to receive a complete head (408 and close).
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// How long a client may take no bytes of a response before the
    /// connection is dropped (nginx's `send_timeout`).
    pub send_timeout: Duration,
    /// How long in-flight responses may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri: 8 << 10,
            max_head: 64 << 10,
            max_headers: 100,
            max_body: 64 << 20,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Settings for the requests whose path starts with `prefix` (the longest
/// matching prefix wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `/` or `/seg[/seg...]` without a trailing slash.
    pub prefix: String,
    /// Serves this directory instead of `root` under the prefix (the prefix
    /// is stripped: `/docs/a.html` with root `/srv/docs` is `/srv/docs/a.html`).
    pub root: Option<PathBuf>,
    /// Index files for this location, instead of the server's.
    pub index: Option<Vec<String>>,
    /// Directory listings. Only `false` is served today.
    pub autoindex: bool,
    /// Whether responses under the prefix go through the unified cache.
    pub cache: bool,
    /// Response headers set on every answer under the prefix with a
    /// status below 400 (any status with `headers_always`), replacing a
    /// field of the same name the handler set; in file order (names
    /// checked as tokens, values free of control characters). A nested
    /// location inherits its parents' and the server's, the innermost
    /// winning per header name.
    pub headers: Vec<(String, String)>,
    /// Like `headers`, but added only when the handler did not set a field
    /// of that name.
    pub headers_default: Vec<(String, String)>,
    /// Whether this location's `headers` and `headers_default` also go on
    /// error answers (400 and above), as nginx's `add_header ... always`.
    pub headers_always: bool,
}

/// The access and error logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub access: AccessLogTarget,
    /// The level of the error log (tracing).
    pub level: LogLevel,
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    /// Appended to (created when missing).
    File(PathBuf),
}

impl AccessLogTarget {
    /// `stdout`, `off`, or anything else as a file path.
    pub fn parse(text: &str) -> Result<AccessLogTarget, String> {
        match text {
            "" => Err("expected \"stdout\", \"off\" or a file path".to_owned()),
            "stdout" | "-" => Ok(AccessLogTarget::Stdout),
            "off" | "none" => Ok(AccessLogTarget::Off),
            path => Ok(AccessLogTarget::File(PathBuf::from(path))),
        }
    }
}

/// Error-log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name tracing's filters use.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A native module (a cdylib built with iolite-sdk) run in a pool of
/// sandboxed runner processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    pub prefix: String,
    /// The cdylib (an existing file).
    pub path: PathBuf,
    /// Runner processes kept started (0: started on first request).
    pub processes_min: u32,
    /// Most runner processes (at least 1 and at least `processes_min`).
    pub processes_max: u32,
    /// Requests in flight per runner process.
    pub in_flight: u32,
    /// A request past this gets 504 and its process is replaced.
    pub timeout: Duration,
    /// A runner beyond the first `processes_min` that got no request for
    /// this long finishes and ends (with `processes_min = 0`, the last one
    /// too: the next request starts one).
    pub idle_timeout: Duration,
    /// Requests after which a runner is recycled: a new one takes the next
    /// requests, the old one finishes its own and exits. `None`: never.
    pub max_requests: Option<u64>,
    /// The memory each runner process may use for itself: its
    /// address-space limit (RLIMIT_AS) is this plus the shared pools it maps
    /// and a fixed allowance for code and stacks. `None`: the profile's
    /// default ([`DEFAULT_MEMORY_LIMIT`] under `strict`, no limit under
    /// `none`).
    pub memory_limit: Option<u64>,
    /// How request and response bodies travel between server and runner.
    pub transfer: ModuleTransfer,
    /// A runner thread (a lane) handles its requests one after another:
    /// a request queues behind another on a lane only when that one's
    /// target (path) typically takes at most this long and it started
    /// less than this long ago; otherwise it takes an idle lane or a new
    /// one, up to `in_flight` (0: never while another can be opened).
    pub lane_stall: Duration,
    /// An extra lane with nothing in flight for this long is closed (at
    /// the worker's next request to the module).
    pub lane_idle: Duration,
    /// Longest the check of the library (a throw-away runner loads it under
    /// its sandbox) may take: past it the module is refused, and the rest
    /// of the server is served.
    pub check_timeout: Duration,
    /// The first pause before a dead runner starts again (doubling, up to
    /// `restart_backoff_max`); during one over 250 ms, 503 at once.
    pub restart_backoff: Duration,
    /// The longest such pause.
    pub restart_backoff_max: Duration,
    /// The largest request body it takes (413 past it; None: the server's
    /// `limits.max_body`); also sizes its request pool (two bodies).
    pub max_body: Option<u64>,
    /// Variables set in its runners' environment: per-module settings.
    pub env: Vec<(String, String)>,
    pub sandbox: SandboxConfig,
}

/// `check_timeout` of a module by default.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// `memory_limit` of a module under the strict sandbox profile.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

/// How a module's bodies travel (`transfer` in `[[module]]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModuleTransfer {
    /// By reference, in shared read-only pools: nothing copied (the default).
    #[default]
    Shared,
    /// Inline through the runner's socket, copied on each side (counted in
    /// `iolite_body_bytes_copied_total`): kept to measure what zero-copy
    /// saves (bench/modules.sh).
    Copy,
}

/// How a runner process is confined (`[module.sandbox]`): applied by the
/// runner itself, around loading the module (iolite-sandbox), and logged by
/// `iolite serve` per runner. `None` and `false` turn a measure off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub profile: SandboxProfile,
    /// The user a root server's runners drop to (ignored when not root).
    pub user: Option<String>,
    /// The seccomp allow-list (anything else kills the runner with SIGSYS).
    pub seccomp: bool,
    /// Landlock: after the module is loaded, no filesystem path is
    /// reachable but the two lists below.
    pub landlock: bool,
    /// Trees (or files) the module may read under landlock; existing paths.
    pub read_paths: Vec<PathBuf>,
    /// Trees the module may read, write, create in and remove from.
    pub write_paths: Vec<PathBuf>,
    /// New user, network, IPC and UTS namespaces where the kernel allows.
    pub namespaces: bool,
    /// PR_SET_NO_NEW_PRIVS (on in the strict profile; no key of its own).
    pub no_new_privs: bool,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// Tasks (processes and threads): a pids cgroup where one can be made,
    /// RLIMIT_NPROC when not root.
    pub tasks: Option<u64>,
    /// RLIMIT_CPU: CPU time over the runner's whole life (SIGXCPU, then the
    /// runner is restarted).
    pub cpu_time: Option<Duration>,
    /// SCHED_BATCH at nice 10: a spinning runner gets about a tenth of
    /// the CPU a server thread gets, so it cannot starve the server.
    pub low_priority: bool,
}

/// A named set of sandbox defaults; single keys override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxProfile {
    /// Everything on (the default).
    Strict,
    /// Everything off, memory limit included, unless a key turns it on:
    /// for debugging a module.
    None,
}

impl SandboxConfig {
    /// The defaults of a profile.
    pub fn for_profile(profile: SandboxProfile) -> Self {
        let on = profile == SandboxProfile::Strict;
        SandboxConfig {
            profile,
            user: on.then(|| "nobody".to_owned()),
            seccomp: on,
            landlock: on,
            read_paths: Vec::new(),
            write_paths: Vec::new(),
            namespaces: on,
            no_new_privs: on,
            open_files: on.then_some(256),
            tasks: on.then_some(64),
            cpu_time: on.then_some(Duration::from_secs(60)),
            low_priority: on,
        }
    }
}

/// A WebAssembly program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmConfig {
    pub prefix: String,
    /// The .wasm file (an existing file).
    pub path: PathBuf,
    pub kind: WasmKind,
    pub memory_limit: u64,
    pub timeout: Duration,
}

/// The interface a WebAssembly program speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A wasi:http component (the default).
    WasiHttp,
    /// A WAGI program (CGI over WASI stdio).
    Wagi,
    /// A module built with iolite-sdk's zero-copy ABI.
    Sdk,
}

impl Default for ModuleConfig {
    fn default() -> Self {
        ModuleConfig {
            prefix: String::new(),
            path: PathBuf::new(),
            processes_min: 1,
            processes_max: 4,
            in_flight: 16,
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_requests: None,
            memory_limit: None,
            transfer: ModuleTransfer::Shared,
            lane_stall: Duration::from_millis(1),
            lane_idle: Duration::from_secs(2),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            restart_backoff: Duration::from_millis(50),
            restart_backoff_max: Duration::from_secs(10),
            max_body: None,
            env: Vec::new(),
            sandbox: SandboxConfig::for_profile(SandboxProfile::Strict),
        }
    }
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            prefix: String::new(),
            path: PathBuf::new(),
            kind: WasmKind::WasiHttp,
            memory_limit: 64 << 20,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The location whose prefix is the longest one matching `path` on a
    /// segment boundary (`/docs` matches `/docs` and `/docs/a`, not `/docsx`).
    pub fn location_for(&self, path: &str) -> Option<&Location> {
        self.locations
            .iter()
            .filter(|l| prefix_matches(&l.prefix, path))
            .max_by_key(|l| l.prefix.len())
    }

    /// A few lines a person can check at a glance (`iolite check-config`).
    pub fn summary(&self) -> String {
        let listeners: Vec<String> = self.listeners.iter().map(Listener::shown).collect();
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            s.push_str(&format!("  {k:<11} {v}\n"));
        };
        line("listen", listeners.join(", "));
        line("root", self.root.display().to_string());
        line("workers", self.workers.to_string());
        line(
            "admin",
            self.admin
                .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        );
        line(
            "cache",
            format!(
                "{} {}, revalidate {}, files over {} sent uncached",
                format_size(self.cache.size),
                match self.cache.policy {
                    CachePolicy::Gdsf => "gdsf",
                    CachePolicy::Lru => "lru",
                },
                format_duration(self.cache.revalidate),
                format_size(self.cache.large_file_threshold),
            ),
        );
        line(
            "access log",
            match &self.log.access {
                AccessLogTarget::Stdout => "stdout".to_owned(),
                AccessLogTarget::Off => "off".to_owned(),
                AccessLogTarget::File(p) => p.display().to_string(),
            },
        );
        line("log level", self.log.level.as_str().to_owned());
        if !self.locations.is_empty() {
            let l: Vec<&str> = self.locations.iter().map(|l| l.prefix.as_str()).collect();
            line("locations", l.join(", "));
        }
        let mounts: Vec<String> = self
            .modules
            .iter()
            .map(|m| format!("module {}", m.prefix))
            .chain(self.cgi.iter().map(|c| format!("cgi {}", c.prefix)))
            .chain(self.fastcgi.iter().map(|f| format!("fastcgi {}", f.prefix)))
            .chain(self.wasm.iter().map(|w| format!("wasm {}", w.prefix)))
            .collect();
        if !mounts.is_empty() {
            line("mounts", mounts.join(", "));
        }
        let dropping: Vec<&ModuleConfig> = self
            .modules
            .iter()
            .filter(|m| m.sandbox.user.is_some())
            .collect();
        match self.runner_uids {
            Some((first, last)) => {
                let each: Vec<String> = dropping
                    .iter()
                    .map(|m| format!("{} {}", m.prefix, m.sandbox.user.as_deref().unwrap_or("")))
                    .collect();
                line(
                    "runner uids",
                    format!("{first}-{last}, one per module: {}", each.join(", ")),
                );
            }
            None if dropping.len() > 1 => {
                let users: std::collections::BTreeSet<&str> = dropping
                    .iter()
                    .filter_map(|m| m.sandbox.user.as_deref())
                    .collect();
                if users.len() < dropping.len() {
                    line(
                        "runner uids",
                        "none: modules share a user when the server runs as root (set \
                         runner_uids = \"FIRST-LAST\" to give each module its own)"
                            .to_owned(),
                    );
                }
            }
            None => {}
        }
        if let Some(c) = &self.cluster {
            c.summarize(&mut line);
        }
        s
    }
}

/// Whether a location or mount `prefix` covers request `path`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
