//! The `[[cgi]]` and `[[fastcgi]]` mounts' validated settings (a leaf:
//! [`super::types::Config`] holds them; `cgi` and `mounts` parse them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::value::parse_addr;

/// CGI/1.1 programs: the executables of a folder, or one program for the
/// whole prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiConfig {
    pub prefix: String,
    /// An existing directory of programs (`/prefix/name.cgi/path/info`);
    /// empty when `program` is set.
    pub dir: PathBuf,
    /// One program for the prefix (Apache's ScriptAlias): what follows the
    /// prefix is `PATH_INFO`.
    pub program: Option<PathBuf>,
    /// To the program's header block (504 past it), and between its bytes.
    pub timeout: Duration,
    /// Variables set for every program (after the request's own: these win).
    pub env: Vec<(String, String)>,
    /// Variables of the server's own environment passed on (none by default).
    pub pass_env: Vec<String>,
    /// Programs of this mount running at once, across workers.
    pub max_processes: u32,
    /// Requests waiting for a program to end, past which 503.
    pub queue: u32,
    /// Pass `Authorization` as `HTTP_AUTHORIZATION` (Apache's CGIPassAuth).
    pub pass_authorization: bool,
    /// A chunked request body goes to stdin as it arrives, without
    /// `CONTENT_LENGTH` (else it is read whole first and its length given).
    pub stream_chunked: bool,
    /// The user programs run as (the server must be root), found in the
    /// user database when the configuration is read.
    pub user: Option<RunAs>,
    /// `pids.max` of the mount's pids cgroup: the tasks of all its
    /// programs together (None: 16 per process of `max_processes`).
    pub tasks: Option<u64>,
    /// Interpreters by file extension (without its dot): a program with
    /// one of these runs as `interpreter program`, executable or not.
    pub interpreters: Vec<(String, PathBuf)>,
    /// With either list set, the mount's programs run under landlock: they
    /// may read these trees (and their own program, folder and
    /// interpreter) and nothing else of the file system...
    pub read_paths: Vec<PathBuf>,
    /// ...and read and write these.
    pub write_paths: Vec<PathBuf>,
    /// The programs run under iolite-sandbox's seccomp deny-list (calls
    /// no web program needs fail with EPERM; default on).
    pub seccomp: bool,
}

/// A user to run programs as: its uid and primary group (no
/// supplementary groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// A FastCGI peer (php-fpm, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastCgiConfig {
    pub prefix: String,
    pub address: FastCgiAddress,
    /// The document root the peer sees (SCRIPT_FILENAME); default: `root`.
    pub root: Option<PathBuf>,
    pub index: String,
    /// Connections to the peer, in use or kept alive, across all workers
    /// (each worker gets its share, at least one): at most the peer's
    /// processes (php-fpm's `pm.max_children`), since each kept connection
    /// holds one of them.
    pub connections: u32,
    pub timeout: Duration,
}

/// Where a FastCGI peer listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastCgiAddress {
    Tcp(SocketAddr),
    /// `unix:/path/to.sock`
    Unix(PathBuf),
}

impl FastCgiAddress {
    /// `unix:/path` or `IP:PORT`.
    pub fn parse(text: &str) -> Result<FastCgiAddress, String> {
        match text.strip_prefix("unix:") {
            Some("") => Err(format!("bad address {text:?}: the socket path is missing")),
            Some(path) => Ok(FastCgiAddress::Unix(PathBuf::from(path))),
            None => parse_addr(text).map(FastCgiAddress::Tcp).map_err(|_| {
                format!("bad address {text:?}: expected IP:PORT or unix:/path/to.sock")
            }),
        }
    }
}

impl Default for CgiConfig {
    fn default() -> Self {
        CgiConfig {
            prefix: String::new(),
            dir: PathBuf::new(),
            program: None,
            timeout: Duration::from_secs(30),
            env: Vec::new(),
            pass_env: Vec::new(),
            max_processes: 64,
            queue: 256,
            pass_authorization: false,
            stream_chunked: false,
            user: None,
            tasks: None,
            interpreters: Vec::new(),
            read_paths: Vec::new(),
            write_paths: Vec::new(),
            seccomp: true,
        }
    }
}

impl Default for FastCgiConfig {
    fn default() -> Self {
        FastCgiConfig {
            prefix: String::new(),
            address: FastCgiAddress::Unix(PathBuf::new()),
            root: None,
            index: "index.php".to_owned(),
            connections: 4,
            timeout: Duration::from_secs(30),
        }
    }
}
