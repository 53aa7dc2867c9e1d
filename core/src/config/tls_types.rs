//! The listener types of a [`Config`](super::Config): [`Listener`] and
//! its [`TlsConfig`] (a leaf: the walker in `tls` and the draft in
//! `validate` both build on it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::diag::Origin;

/// One client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    /// HTTPS on this address, or plain HTTP.
    pub tls: Option<TlsConfig>,
}

impl Listener {
    /// `ADDR`, or `ADDR (TLS)`.
    pub fn shown(&self) -> String {
        match self.tls {
            Some(_) => format!("{} (TLS)", self.addr),
            None => self.addr.to_string(),
        }
    }
}

/// TLS on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// At least one; each serves the names in it (SNI); the first also
    /// serves clients that name none or another.
    pub certificates: Vec<CertificateFiles>,
    /// The protocols offered by ALPN, in the server's order.
    pub alpn: Vec<String>,
    pub versions: Vec<TlsVersion>,
    /// Time a client has to complete its handshake.
    pub handshake_timeout: Duration,
    /// Session tickets (TLS 1.3 and 1.2) and a session cache.
    pub resumption: bool,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A certificate chain and its key, as PEM files, with where each was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_at: Origin,
    pub key_at: Origin,
}

impl TlsConfig {
    /// One certificate with the defaults for everything else.
    pub fn with_certificate(files: CertificateFiles) -> TlsConfig {
        TlsConfig {
            certificates: vec![files],
            alpn: vec!["http/1.1".to_owned()],
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            handshake_timeout: Duration::from_secs(10),
            resumption: true,
        }
    }
}

/// A `[[listener]]` of a file, before the flags are laid over it.
#[derive(Debug)]
pub(crate) struct ListenerDraft {
    pub addr: SocketAddr,
    pub at: Origin,
    pub tls: Option<TlsConfig>,
}
