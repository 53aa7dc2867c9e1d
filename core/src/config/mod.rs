//! The configuration of `iolite serve`: the embedded defaults, a TOML file
//! and command-line flags, resolved in that order (flags override the file)
//! into one validated [`Config`].
//!
//! Every problem is collected, not just the first: [`resolve`] returns
//! [`ConfigErrors`], one [`Diagnostic`] per problem, each printed as
//! `FILE:LINE:COLUMN: problem` (or `--flag: problem`). Relative paths in a
//! file are relative to the file's directory; relative paths in flags and
//! defaults are relative to the working directory.
//!
//! The file format (every key optional):
//!
//! ```toml
//! listen = ["127.0.0.1:8080", "[::1]:8080"]   # or one string
//! root = "examples/site"
//! index = ["index.html"]
//! workers = 2                                  # default: the number of CPUs
//! admin = "127.0.0.1:8081"                     # or "none"; or [admin] listen = ...
//! # HTTPS: `[[listener]]` tables (see `tls.rs` for every key), beside `listen`'s
//! # plain ones; or `--tls-cert FILE --tls-key FILE` for every listener.
//! # [[listener]]
//! # address = "0.0.0.0:443"
//! # [[listener.certificate]]
//! # cert = "certs/site.pem"                    # PEM chain, the server's own first
//! # key = "certs/site.key"                     # PEM private key (PKCS#8, PKCS#1, SEC1)
//! runner_uids = "61000-61999"                  # a root server runs each module's runners
//!                                              # as its own uid of these (file order),
//!                                              # in place of module.sandbox.user
//!
//! # Response headers on every answer of every handler (static files,
//! # modules, FastCGI, CGI), here for the whole server, in a [[location]]
//! # for its prefix. Per header name (case ignored) the innermost location
//! # wins, whichever of its tables names it: a location inherits the
//! # server's and its enclosing locations' headers.
//! headers = { "X-Content-Type-Options" = "nosniff" }   # set: replaces the handler's field of that name
//! headers_default = { "Cache-Control" = "no-cache" }   # only when the handler did not set that field
//! headers_always = false                       # true: this table's headers also go on error
//!                                              # answers (400 and above; nginx's `always`);
//!                                              # otherwise only on answers below 400
//!                                              # (Content-Length, Transfer-Encoding, Connection,
//!                                              # Date, Server, Content-Range... are refused)
//!
//! [cache]
//! size = "256M"                                # bytes, or K/M/G/T suffixes
//! revalidate = "1s"                            # 0 checks on every request
//! large_file_threshold = "32M"                 # default: size / 8
//! policy = "gdsf"                              # or "lru"
//! compress = true                              # gzip, br and zstd variants of static files, made
//!                                              #   once in the background and kept in the cache
//! compress_types = ["text/*", "application/json", "application/javascript",
//!     "application/xml", "image/svg+xml", "application/wasm"]   # the default
//! compress_min_size = "1K"                     # smaller files go out as they are
//! precompressed = true                         # file.br, file.zst, file.gz beside a file are sent
//!                                              #   as they are when no older (nginx's gzip_static)
//!
//! [limits]
//! max_uri = "8K"
//! max_head = "64K"
//! max_headers = 100
//! max_body = "64M"
//! header_timeout = "10s"
//! keepalive_timeout = "30s"
//! send_timeout = "60s"                         # a client that takes nothing for this long is dropped
//! shutdown_grace = "10s"
//!
//! [log]
//! access = "stdout"                            # "off", or a file path
//! level = "info"                               # error, warn, info, debug, trace
//!
//! [[location]]
//! prefix = "/docs"
//! root = "/srv/docs"                           # overrides root under the prefix
//! index = ["index.html", "README.html"]
//! autoindex = false
//! cache = true
//! headers = { "Cache-Control" = "max-age=60" }
//! headers_default = { "X-Frame-Options" = "DENY" }
//! headers_always = false
//!
//! # A process module, served by runner processes that are sandboxed before
//! # the module's code is loaded (`iolite serve` logs what was applied).
//! [[module]]
//! prefix = "/app"
//! path = "target/release/libhello.so"
//! processes_min = 1
//! processes_max = 4
//! in_flight = 16
//! timeout = "30s"
//! idle_timeout = "60s"                         # a runner above processes_min, idle this long, ends
//! max_requests = 100000                        # a runner is recycled after this many (default: no limit)
//! memory_limit = "256M"                        # the module's own memory (RLIMIT_AS)
//! transfer = "shared"                          # or "copy": bodies inline (bench only)
//! lane_stall = "1ms"                           # a request queues behind another in a runner thread
//!                                              # only if that one's path is known to take at most this
//! lane_idle = "2s"                             # an extra lane idle this long closes
//! check_timeout = "10s"                        # loading the library once at start (and on
//!                                              # SIGHUP) may take this long, or the module
//!                                              # is refused (the rest is served)
//! restart_backoff = "50ms"                     # pause before restarting a runner that died;
//! restart_backoff_max = "10s"                  # doubles up to this; requests wait through
//!                                              # pauses up to 250ms, else 503 + Retry-After
//! max_body = "8M"                              # larger request bodies: 413 (default: limits.max_body)
//! env = { GREETING = "hello" }                 # set in its runners (std::env::var in init)
//! [module.sandbox]                             # every key: the strict default
//! profile = "strict"                           # or "none": every measure off
//! user = "nobody"                              # a root server drops to it
//! seccomp = true                               # the syscall allow-list
//! landlock = true                              # no filesystem path reachable but:
//! read_paths = ["/srv/data"]                   # trees the module may read
//! write_paths = []                             # trees it may also write
//! namespaces = true                            # new user/net/ipc/uts namespaces
//! open_files = 256                             # RLIMIT_NOFILE
//! tasks = 64                                   # processes + threads (pids cgroup, RLIMIT_NPROC)
//! cpu_time = "60s"                             # RLIMIT_CPU over the runner's life (recycled at 3/4)
//! low_priority = true                          # SCHED_BATCH, nice 10: yields to the server
//!
//! [[cgi]]                                      # CGI/1.1 programs, a process per request
//! prefix = "/cgi-bin"                          # /cgi-bin/a.sh/x: SCRIPT_NAME /cgi-bin/a.sh, PATH_INFO /x
//! dir = "examples/cgi-bin"                     # its executables; or instead:
//! # program = "/usr/lib/git-core/git-http-backend"  # one program: all after the prefix is PATH_INFO
//! timeout = "30s"                              # to the header block (504, group killed), and between its bytes
//! env = { GIT_PROJECT_ROOT = "/srv/git" }      # set for every program
//! pass_env = ["TZ"]                            # of the server's environment (nothing passes by default;
//!                                              #   PATH is /usr/local/bin:/usr/bin:/bin unless set here)
//! max_processes = 64                           # programs at once, across workers
//! queue = 256                                  # requests waiting for one of them, then 503
//! pass_authorization = false                   # HTTP_AUTHORIZATION (Apache's CGIPassAuth)
//! stream_chunked = false                       # a chunked body streams to stdin without CONTENT_LENGTH
//!                                              #   (else it is read whole, up to max_body, first)
//! user = "www-data"                            # programs run as this user (a root server)
//! tasks = 1024                                 # pids.max of the mount's pids cgroup, all its programs
//!                                              #   together (default: 16 x max_processes; root)
//! interpreters = { py = "/usr/bin/python3" }   # a.py runs as `/usr/bin/python3 a.py`, executable or not
//! read_paths = ["/usr", "/bin", "/lib", "/srv/www"]  # with either list: landlock, only these trees
//! write_paths = ["/srv/spool"]                 #   (and the programs' own folder) reachable
//! seccomp = true                               # the deny-list: no ptrace, namespaces, mounts, bpf,
//!                                              #   io_uring, keyrings... (EPERM; sandbox/README.md)
//!
//! [[fastcgi]]                                  # a FastCGI peer: php-fpm, fcgiwrap
//! prefix = "/php"                              # /php/a.php/x: SCRIPT_NAME /php/a.php, PATH_INFO /x
//! address = "unix:/run/php/php-fpm.sock"       # or IP:PORT
//! root = "/srv/php"                            # the document root the peer sees (SCRIPT_FILENAME); default: root
//! index = "index.php"                          # for paths that end in /
//! connections = 4                              # to the peer, in use or kept alive, split among the
//!                                              #   workers (at least 1 each); at most php-fpm's
//!                                              #   pm.max_children (a kept connection holds a child);
//!                                              #   4x as many requests wait, then 503
//! timeout = "30s"                              # to the answer's header block (504), and between its bytes
//!
//! [[wasm]]                                     # README "Run WebAssembly"
//! prefix = "/wasm"
//! path = "hello_http.wasm"
//! kind = "wasi-http"                           # told from the binary when left out; one it
//!                                              #   contradicts is an error ("wagi", "sdk": not served yet)
//! memory_limit = "64M"                         # one linear memory's ceiling (502 past it)
//! timeout = "10s"                              # per request (504 past it)
//!
//! # This node's membership in a cluster (iolite-cluster; README "Deploy a
//! # cluster"). Gossip is UDP on `peer`, every packet signed with the key;
//! # the peer listener (forwarded requests, each signed) is TCP on `peer` too.
//! [cluster]
//! name = "node1"                               # unique in the cluster
//! peer = "10.0.0.1:7946"                       # gossip (UDP) + peer listener (TCP): a specific IP, not port 0
//! client = "10.0.0.1:8080"                     # told to peers; default: the first listener
//! seeds = ["10.0.0.1:7946", "10.0.0.2:7946"]   # announced to at start; own address ignored
//! key_file = "cluster.key"                     # >= 32 bytes, not world-readable (chmod 600)
//! policy = "lard-r"                            # dispatch of static GET/HEAD: or "wrr", "chash", "chash-bl"; "local": none
//! probe_period = "1s"                          # timers: foca's Config::new_lan defaults;
//! probe_rtt = "500ms"                          #   a dead node is down after about
//! suspect_to_down = "4s"                       #   probe_period + suspect_to_down
//! gossip_period = "200ms"
//! replay_window = "10s"                        # clock skew allowed; packets and peer requests remembered this long
//! t_low = 25                                   # LARD/R (active requests per node): a node under t_low is idle,
//! t_high = 65                                  #   one over t_high makes its targets' sets grow (t_low < t_high);
//! k = "20s"                                    #   a set unchanged for k loses its most loaded node
//! queue = 1024                                 # past S = (n-1)*t_high + t_low - 1 requests in the cluster
//! queue_timeout = "10s"                        #   (lard-r) this many wait here this long; then 503 + Retry-After
//! ```
//!
//! # Layout
//! - `types`: [`Config`] and the value types it is made of.
//! - `diag`: [`Origin`], [`Diagnostic`], [`ConfigErrors`], line/column.
//! - `value`: sizes, durations, addresses, prefixes (parse and print).
//! - `file`: the TOML walker's core (syntax errors, spans → positions,
//!   typed getters that report wrong types and bad values).
//! - `sections`: the server-wide tables; `mounts`: module, fastcgi, wasm;
//!   `cgi`: `[[cgi]]`;
//!   `cluster`: `[cluster]`, its types in `cluster_types`;
//!   `[[cgi]]`'s and `[[fastcgi]]`'s types in `handler_types`.
//! - `tls_types`: [`Listener`] and [`TlsConfig`]; `tls`: `[[listener]]`
//!   (TLS per listener: certificates by SNI, ALPN, versions) and the
//!   certificate checks.
//! - `wasm_kind`: a `[[wasm]]` binary's kind, told from its bytes.
//! - `args`: [`ServeArgs`], the clap flags of `iolite serve`.
//! - `validate`: cross-checks (duplicates, conflicts, paths that must exist,
//!   the cluster key file).

mod args;
mod cgi;
mod cluster;
mod cluster_types;
mod diag;
mod file;
mod handler_types;
mod mounts;
mod sections;
mod tls;
mod tls_types;
mod types;
mod validate;
mod value;
pub mod wasm_kind;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use args::{AdminArg, Mount, ServeArgs};
pub use diag::{ConfigErrors, Diagnostic, Origin};
pub use tls_types::{CertificateFiles, TlsConfig, TlsVersion};
pub use types::{
    AccessLogTarget, AdmissionSettings, CacheConfig, CachePolicy, CgiConfig, ClusterConfig,
    ClusterPolicy, ClusterTimers, CompressConfig, Config, DEFAULT_ADMIN, DEFAULT_CACHE_SIZE,
    DEFAULT_CHECK_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MEMORY_LIMIT, DEFAULT_ROOT, FastCgiAddress,
    FastCgiConfig, LardSettings, Limits, Listener, Location, LogConfig, LogLevel, MAX_WORKERS,
    MIN_CLUSTER_KEY, ModuleConfig, ModuleTransfer, RunAs, SandboxConfig, SandboxProfile,
    WasmConfig, WasmKind, prefix_matches,
};
pub use validate::read_cluster_key;
pub use value::{
    format_duration, format_size, parse_addr, parse_duration, parse_prefix, parse_size,
};

// Here rather than in `types`: it starts from `validate`'s draft, which
// is built on `types`.
impl Config {
    /// The embedded defaults with `root` as the document root, not
    /// validated (for tests and embedding).
    pub fn defaults_for_root(root: PathBuf) -> Config {
        let mut draft = validate::Draft::defaults();
        draft.root.0 = root;
        draft.finish(None)
    }
}

/// Resolves the embedded defaults, the file named by `--config` (if any) and
/// the flags, in that order, into a validated [`Config`], or every problem
/// found. A file with syntax errors reports all of them and nothing else
/// (the rest of a broken file cannot be trusted).
pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigErrors> {
    let mut diags = Vec::new();
    let mut draft = validate::Draft::defaults();
    if let Some(path) = &args.config {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if !file::apply(&mut draft, path, &text, &mut diags) {
                    return Err(ConfigErrors::sorted(diags));
                }
            }
            Err(e) => {
                diags.push(Diagnostic {
                    origin: Origin::File(path.as_path().into()),
                    message: format!("cannot read the configuration file: {e}"),
                });
                return Err(ConfigErrors::sorted(diags));
            }
        }
    }
    args.apply(&mut draft, &mut diags);
    draft.validate(&mut diags);
    if diags.is_empty() {
        Ok(draft.finish(args.config.clone()))
    } else {
        Err(ConfigErrors::sorted(diags))
    }
}

/// What `iolite check-config FILE` checks: the file over the embedded
/// defaults, no flags.
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    resolve(&ServeArgs {
        config: Some(path.to_owned()),
        ..ServeArgs::default()
    })
}

/// Resolves `text` as if it were the content of the file `path` (relative
/// paths in it are taken from `path`'s directory); for tests and fuzzing.
pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut diags = Vec::new();
    let mut draft = validate::Draft::defaults();
    if !file::apply(&mut draft, path, text, &mut diags) {
        return Err(ConfigErrors::sorted(diags));
    }
    draft.validate(&mut diags);
    if diags.is_empty() {
        Ok(draft.finish(Some(path.to_owned())))
    } else {
        Err(ConfigErrors::sorted(diags))
    }
}
