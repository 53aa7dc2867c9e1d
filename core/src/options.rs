//! [`ServerOptions`]: everything `iolite serve` can be told, as the server
//! reads it — filled by the command line and the config file
//! ([`ServerOptions::from_config`]), or in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cache::replacement::Policy as CachePolicy;
use crate::config::AccessLogTarget;
use crate::http::Limits;

/// Everything `iolite serve` can be told. A plain struct: the command line
/// and the config file fill it, the server only reads it.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where clients connect (port 0: any free port; see [`Server::local_addr`]).
    pub listen: Vec<SocketAddr>,
    /// HTTPS on the listener of the same index (missing or `None`: plain).
    pub tls: Vec<Option<crate::config::TlsConfig>>,
    /// The document root.
    pub root: PathBuf,
    /// Worker threads; 0 means one per CPU.
    pub workers: usize,
    /// The admin listener (`/metrics`, `/status`), or none.
    pub admin: Option<SocketAddr>,
    /// The unified cache's byte budget (0: no cache; files go out with
    /// sendfile from the file).
    pub cache_size: u64,
    /// Files larger than this are not cached (0: `cache_size / 8`).
    pub cache_threshold: u64,
    /// The cache's replacement policy.
    pub cache_policy: CachePolicy,
    /// Compressed variants of static files.
    pub compress: crate::config::CompressConfig,
    /// How long a cached file's metadata is trusted before it is checked
    /// again (0: every request).
    pub revalidate: Duration,
    /// Head, target and body size limits.
    pub limits: Limits,
    /// Time allowed to send a whole request head (and each body read).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// Time a blocked response write may wait for the client.
    pub send_timeout: Duration,
    /// Bound on finishing in-flight responses at shutdown.
    pub shutdown_grace: Duration,
    /// Open files kept per worker by the static handler.
    pub open_files: usize,
    /// Where the access log goes.
    pub access_log: AccessLogTarget,
    /// Index files tried in order for a directory.
    pub index: Vec<String>,
    /// Per-location settings (the longest matching prefix wins).
    pub locations: Vec<crate::config::Location>,
    /// The top-level response headers (every location inherits them).
    pub headers: crate::phases::ServerHeaders,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            tls: Vec::new(),
            root: PathBuf::from("examples/site"),
            workers: 0,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            cache_size: 256 << 20,
            cache_threshold: 0,
            cache_policy: CachePolicy::Gdsf,
            compress: Default::default(),
            access_log: AccessLogTarget::Off,
            index: vec!["index.html".to_owned()],
            locations: Vec::new(),
            headers: Default::default(),
            revalidate: Duration::from_secs(1),
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            open_files: 4096,
        }
    }
}

impl ServerOptions {
    /// The options a validated [`Config`](crate::config::Config) asks for.
    ///
    /// Settings the engine does not serve yet (directory listings,
    /// CGI/FastCGI/wasm mounts) are reported by
    /// [`unsupported`](ServerOptions::unsupported) so `serve` can refuse them
    /// instead of ignoring them.
    pub fn from_config(c: &crate::config::Config) -> ServerOptions {
        let defaults = ServerOptions::default();
        ServerOptions {
            listen: c.listeners.iter().map(|l| l.addr).collect(),
            tls: c.listeners.iter().map(|l| l.tls.clone()).collect(),
            root: c.root.clone(),
            workers: c.workers,
            admin: c.admin,
            cache_size: c.cache.size,
            cache_threshold: c.cache.large_file_threshold,
            cache_policy: match c.cache.policy {
                crate::config::CachePolicy::Gdsf => CachePolicy::Gdsf,
                crate::config::CachePolicy::Lru => CachePolicy::Lru,
            },
            compress: c.cache.compress.clone(),
            access_log: c.log.access.clone(),
            revalidate: c.cache.revalidate,
            limits: Limits {
                max_head: c.limits.max_head,
                max_uri: c.limits.max_uri,
                max_body: c.limits.max_body,
                max_headers: c.limits.max_headers,
            },
            header_timeout: c.limits.header_timeout,
            keepalive_timeout: c.limits.keepalive_timeout,
            send_timeout: c.limits.send_timeout,
            shutdown_grace: c.limits.shutdown_grace,
            index: c.index.clone(),
            locations: c.locations.clone(),
            headers: crate::phases::ServerHeaders {
                set: c.headers.clone(),
                default: c.headers_default.clone(),
                always: c.headers_always,
            },
            ..defaults
        }
    }

    /// What `c` asks for that the engine cannot serve yet, one line each.
    pub fn unsupported(c: &crate::config::Config) -> Vec<String> {
        c.not_yet_supported()
    }
}
