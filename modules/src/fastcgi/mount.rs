//! [`FastCgi`], one `[[fastcgi]]` mount: its peer, what the peer is told
//! and how a path names a script (a leaf).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iolite_core::config::{FastCgiAddress, FastCgiConfig};
use iolite_core::{Error, UpstreamFailure, UpstreamKind};

/// One FastCGI mount: where its peer listens and what it is told.
#[derive(Debug)]
pub struct FastCgi {
    prefix: String,
    address: FastCgiAddress,
    /// The document root as the peer sees it.
    root: PathBuf,
    index: String,
    /// A worker's share of the connections.
    connections: usize,
    timeout: Duration,
    /// The peer's address, for errors and logs.
    name: Arc<str>,
}

impl FastCgi {
    /// The mount `config` describes, served by `workers` workers (each
    /// gets its share of the connections, at least one); `site_root` is the
    /// document root when the mount names none.
    pub fn new(config: &FastCgiConfig, site_root: &Path, workers: usize) -> Arc<FastCgi> {
        let name: Arc<str> = match &config.address {
            FastCgiAddress::Unix(p) => format!("unix:{}", p.display()).into(),
            FastCgiAddress::Tcp(a) => a.to_string().into(),
        };
        Arc::new(FastCgi {
            prefix: config.prefix.trim_end_matches('/').to_string(),
            address: config.address.clone(),
            root: config
                .root
                .clone()
                .unwrap_or_else(|| site_root.to_path_buf()),
            index: config.index.clone(),
            connections: (config.connections as usize / workers.max(1)).max(1),
            timeout: config.timeout,
            name,
        })
    }

    /// The mount's prefix.
    pub fn prefix(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }

    /// Connections each worker may have to the peer, in use or idle.
    pub(super) fn connections(&self) -> usize {
        self.connections
    }

    pub(super) fn address(&self) -> &FastCgiAddress {
        &self.address
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(super) fn error(&self, failure: UpstreamFailure) -> Error {
        Error::upstream(UpstreamKind::FastCgi, self.name.clone(), failure)
    }

    /// `SCRIPT_NAME`, `PATH_INFO` and `SCRIPT_FILENAME` for a path below
    /// the mount: a path ending in `/` names its index file; the first
    /// segment ending in `.php` ends the script.
    pub(super) fn script(&self, local: &[u8]) -> (Vec<u8>, Vec<u8>, PathBuf) {
        let mut end = local.len();
        for (i, &b) in local.iter().enumerate().skip(1) {
            if b == b'/' && local[..i].ends_with(b".php") {
                end = i;
                break;
            }
        }
        let (script, path_info) = local.split_at(end);
        let mut script = script.to_vec();
        if script.ends_with(b"/") {
            script.extend_from_slice(self.index.as_bytes());
        }
        let mut name = self.prefix.as_bytes().to_vec();
        name.extend_from_slice(&script);
        let relative = std::ffi::OsStr::from_bytes(&script[1..]);
        (name, path_info.to_vec(), self.root.join(relative))
    }
}
