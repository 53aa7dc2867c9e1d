//! HTTPS on a listener, with rustls: the session settings a
//! [`TlsConfig`] asks for (certificates chosen by SNI, ALPN, TLS 1.2 and
//! 1.3, session resumption, no client certificate), the handshake of each
//! connection (tokio-rustls, bounded by the listener's handshake timeout),
//! and the reload of certificates on SIGHUP: new handshakes take the new
//! ones, connections already open keep theirs, and a reload that fails
//! keeps the old settings and says why.
//!
//! After the handshake the session goes into a [`Wire`]: the connection
//! drives rustls itself, so the body pump and the send path can read and
//! write through it with shared references.
//!
//! # Layout
//! - `certs`: PEM files loaded and checked; the SNI resolver.
//! - `ktls`: the probe for the kernel's `tls` module.

pub mod certs;
pub mod ktls;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};
use tokio::net::TcpStream;

use crate::config::{TlsConfig, TlsVersion};
use crate::wire::Wire;

/// Sessions a listener's cache remembers (TLS 1.2 session ids).
const SESSION_CACHE: usize = 4096;

/// A TLS listener's settings, reloadable.
#[derive(Debug)]
pub struct TlsListener {
    addr: SocketAddr,
    settings: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    /// Kept across reloads, so sessions resume after one.
    resume: Option<Resume>,
}

#[derive(Debug, Clone)]
struct Resume {
    cache: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsListener {
    /// Loads `settings`' certificates for the listener at `addr`; an
    /// error says which file and why.
    pub fn new(addr: SocketAddr, settings: TlsConfig) -> Result<TlsListener, String> {
        let resume = if settings.resumption {
            let tickets = rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| format!("TLS session tickets: {e}"))?;
            Some(Resume {
                cache: ServerSessionMemoryCache::new(SESSION_CACHE),
                tickets,
            })
        } else {
            None
        };
        let config = build(&settings, resume.as_ref())?;
        Ok(TlsListener {
            addr,
            settings,
            current: RwLock::new(Arc::new(config)),
            resume,
        })
    }

    /// The listener's address (for messages).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads the certificates again; on failure the old ones stay.
    pub fn reload(&self) -> Result<(), String> {
        let config = build(&self.settings, self.resume.as_ref())?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// The handshake on a new connection, bounded by the handshake
    /// timeout; then the connection's [`Wire`].
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<Wire> {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stream = tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        let (tcp, conn) = stream.into_inner();
        Ok(Wire::tls(tcp, conn))
    }
}

/// The rustls settings for `settings`, its certificate files read now.
fn build(settings: &TlsConfig, resume: Option<&Resume>) -> Result<ServerConfig, String> {
    let provider = provider();
    let now = certs::now();
    let pairs = settings
        .certificates
        .iter()
        .map(|f| {
            certs::load_pair(&f.cert, &f.key, &provider, now).map_err(|p| {
                format!(
                    "{} (set at {})",
                    p.message,
                    match p.at {
                        certs::Side::Cert => &f.cert_at,
                        certs::Side::Key => &f.key_at,
                    }
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let resolver = certs::SniResolver::new(&pairs).ok_or("no certificate")?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = settings
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = settings
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    match resume {
        Some(r) => {
            config.session_storage = r.cache.clone();
            config.ticketer = r.tickets.clone();
        }
        None => {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
    }
    Ok(config)
}
