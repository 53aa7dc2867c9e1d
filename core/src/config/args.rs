//! The flags of `iolite serve` (clap). Each flag overrides what the file
//! says; repeatable mount flags add to the file's mounts.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::types::{
    AccessLogTarget, CgiConfig, FastCgiAddress, FastCgiConfig, MAX_WORKERS, ModuleConfig,
    WasmConfig, WasmKind,
};
use super::validate::{Draft, Placed};
use super::{Diagnostic, Origin, value};

/// `--admin ADDR|none`: `None` turns the admin listener off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminArg(pub Option<SocketAddr>);

/// `PREFIX=TARGET`, as `--module`, `--cgi`, `--fastcgi` and `--wasm` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// A checked prefix (see [`value::parse_prefix`]).
    pub prefix: String,
    /// The path or address after `=`, not yet checked.
    pub target: String,
}

/// The flags of `iolite serve`. Flatten it into a clap command with
/// `#[command(flatten)]` or use it as a subcommand's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free port). Repeatable;
    /// replaces the file's listeners. [default: 127.0.0.1:8080]
    #[arg(long = "listen", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,

    /// Serve HTTPS on every --listen (or every listener of the file) with
    /// this certificate chain (PEM, the server's own certificate first).
    /// Needs --tls-key. SIGHUP reads it again.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Document root. [default: examples/site]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// TOML configuration file; flags override what it says.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Cache budget in bytes; suffixes K, M, G, T (binary). [default: 256M]
    #[arg(long = "cache-size", value_name = "BYTES", value_parser = parse_cache_size)]
    pub cache_size: Option<u64>,

    /// How long a cached file is trusted before it is checked again, such as
    /// 1s or 250ms; 0 checks on every request. [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    pub revalidate: Option<std::time::Duration>,

    /// Time a client has to send a whole request head (then 408). [default: 10s]
    #[arg(long = "header-timeout", value_name = "DURATION", value_parser = value::parse_duration)]
    pub header_timeout: Option<std::time::Duration>,

    /// Worker threads. [default: the number of CPUs]
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,

    /// Admin listener for /metrics and /status, or "none". [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR|none", value_parser = parse_admin)]
    pub admin: Option<AdminArg>,

    /// Access log: "stdout", "off" or a file path. [default: stdout]
    #[arg(long = "access-log", value_name = "stdout|off|PATH", value_parser = parse_access_log)]
    pub access_log: Option<AccessLogTarget>,

    /// Mount a process module (a cdylib built with iolite-sdk) at a prefix. Repeatable.
    #[arg(long = "module", value_name = "PREFIX=PATH", value_parser = parse_mount)]
    pub modules: Vec<Mount>,

    /// Mount CGI programs at a prefix: the executables of a directory, or one program (what
    /// follows the prefix is PATH_INFO). Repeatable.
    #[arg(long = "cgi", value_name = "PREFIX=DIR|PROGRAM", value_parser = parse_mount)]
    pub cgi: Vec<Mount>,

    /// Mount a FastCGI peer (php-fpm, fcgiwrap: IP:PORT or unix:/path) at a prefix; scripts
    /// are looked up under --root (SCRIPT_FILENAME). Repeatable.
    #[arg(long = "fastcgi", value_name = "PREFIX=ADDR", value_parser = parse_mount)]
    pub fastcgi: Vec<Mount>,

    /// Mount a WebAssembly program at a prefix: a wasi:http/proxy component
    /// (its kind told from the binary; limits in a `[[wasm]]` table).
    /// Repeatable.
    #[arg(long = "wasm", value_name = "PREFIX=PATH", value_parser = parse_mount)]
    pub wasm: Vec<Mount>,
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    value::parse_addr(s)
}

fn parse_cache_size(s: &str) -> Result<u64, String> {
    value::parse_size(s)
}

fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_WORKERS as i64).contains(&n) => Ok(n as usize),
        Ok(n) => Err(format!("must be between 1 and {MAX_WORKERS}, found {n}")),
        Err(_) => Err(format!("expected a whole number of workers, found {s:?}")),
    }
}

fn parse_admin(s: &str) -> Result<AdminArg, String> {
    match s {
        "none" | "off" => Ok(AdminArg(None)),
        _ => value::parse_addr(s)
            .map(|a| AdminArg(Some(a)))
            .map_err(|e| format!("{e}, or \"none\"")),
    }
}

fn parse_access_log(s: &str) -> Result<AccessLogTarget, String> {
    AccessLogTarget::parse(s)
}

fn parse_mount(s: &str) -> Result<Mount, String> {
    let Some((prefix, target)) = s.split_once('=') else {
        return Err(format!(
            "expected PREFIX=TARGET such as /app=path, found {s:?}"
        ));
    };
    if target.is_empty() {
        return Err(format!("nothing after '=' in {s:?}"));
    }
    Ok(Mount {
        prefix: value::parse_prefix(prefix)?,
        target: target.to_owned(),
    })
}

impl ServeArgs {
    /// Lays the flags over `draft`.
    pub(crate) fn apply(&self, d: &mut Draft, diags: &mut Vec<Diagnostic>) {
        if !self.listen.is_empty() {
            d.listeners = self
                .listen
                .iter()
                .map(|a| (*a, Origin::Flag("--listen")))
                .collect();
            d.extra_listeners.clear();
        }
        if let Some(cert) = &self.tls_cert {
            d.tls_flag.0 = Some((cert.clone(), Origin::Flag("--tls-cert")));
        }
        if let Some(key) = &self.tls_key {
            d.tls_flag.1 = Some((key.clone(), Origin::Flag("--tls-key")));
        }
        if let Some(root) = &self.root {
            d.root = (root.clone(), Origin::Flag("--root"));
            d.root_reported = false;
        }
        if let Some(size) = self.cache_size {
            d.cache.size = size;
        }
        if let Some(n) = self.workers {
            d.workers = n;
        }
        if let Some(t) = self.revalidate {
            d.cache.revalidate = t;
        }
        if let Some(t) = self.header_timeout {
            d.limits.header_timeout = t;
        }
        if let Some(AdminArg(a)) = self.admin {
            d.admin = (a, Origin::Flag("--admin"));
        }
        if let Some(target) = &self.access_log {
            d.log.access = target.clone();
            d.access_at = Origin::Flag("--access-log");
        }
        for m in &self.modules {
            let at = Origin::Flag("--module");
            d.modules.push(Placed {
                value: ModuleConfig {
                    prefix: m.prefix.clone(),
                    path: PathBuf::from(&m.target),
                    ..ModuleConfig::default()
                },
                prefix_at: at.clone(),
                path_at: Some(at),
            });
        }
        for c in &self.cgi {
            let at = Origin::Flag("--cgi");
            // A file is one program for the prefix, anything else a folder.
            let path = PathBuf::from(&c.target);
            let (dir, program) = if path.is_file() {
                (PathBuf::new(), Some(path))
            } else {
                (path, None)
            };
            d.cgi.push(Placed {
                value: CgiConfig {
                    prefix: c.prefix.clone(),
                    dir,
                    program,
                    ..CgiConfig::default()
                },
                prefix_at: at.clone(),
                path_at: Some(at),
            });
        }
        for f in &self.fastcgi {
            let at = Origin::Flag("--fastcgi");
            match FastCgiAddress::parse(&f.target) {
                Ok(address) => d.fastcgi.push(Placed {
                    value: FastCgiConfig {
                        prefix: f.prefix.clone(),
                        address,
                        ..FastCgiConfig::default()
                    },
                    prefix_at: at,
                    path_at: None,
                }),
                Err(message) => diags.push(Diagnostic {
                    origin: at,
                    message,
                }),
            }
        }
        for w in &self.wasm {
            let at = Origin::Flag("--wasm");
            let path = PathBuf::from(&w.target);
            let kind = match super::wasm_kind::detect_file(&path) {
                Some(Ok(kind)) => kind,
                Some(Err(problem)) => {
                    diags.push(Diagnostic {
                        origin: at,
                        message: format!("{}: {problem}", w.target),
                    });
                    continue;
                }
                None => WasmKind::WasiHttp,
            };
            d.wasm.push(Placed {
                value: WasmConfig {
                    prefix: w.prefix.clone(),
                    path,
                    kind,
                    ..WasmConfig::default()
                },
                prefix_at: at.clone(),
                path_at: Some(at),
            });
        }
    }
}
