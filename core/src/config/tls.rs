//! Listeners and their TLS (the types in `tls_types`): the
//! `[[listener]]` tables of a file, the `--tls-cert`/`--tls-key` flags,
//! and the checks of certificate files (readable, a key that matches,
//! not expired), each reported at the setting that names the file.
//!
//! ```toml
//! [[listener]]
//! address = "0.0.0.0:443"
//! alpn = ["http/1.1"]                  # protocols offered (h2 comes with HTTP/2)
//! tls_versions = ["1.2", "1.3"]
//! handshake_timeout = "10s"
//! session_resumption = true            # tickets and a session cache
//! [[listener.certificate]]             # the first: for clients naming no
//! cert = "certs/example.pem"           #   known name (SNI) or none
//! key = "certs/example.key"
//! [[listener.certificate]]             # another, chosen by the names in it
//! cert = "certs/other.pem"
//! key = "certs/other.key"
//! ```

use std::path::PathBuf;

use super::diag::Origin;
use super::file::{Cx, Val};
use super::tls_types::{CertificateFiles, Listener, ListenerDraft, TlsConfig, TlsVersion};
use super::validate::{Draft, label};
use super::value;

const LISTENER_KEYS: &[&str] = &[
    "address",
    "certificate",
    "alpn",
    "tls_versions",
    "handshake_timeout",
    "session_resumption",
];
const CERTIFICATE_KEYS: &[&str] = &["cert", "key"];
/// The protocols a listener may offer by ALPN today.
const ALPN: &[&str] = &["http/1.1"];

impl Cx<'_, '_> {
    /// One `[[listener]]` table.
    pub(super) fn listener(&mut self, tv: &Val<'_>, t: &toml::de::DeTable<'_>, d: &mut Draft) {
        let mut addr = None;
        let mut tls = TlsConfig::with_certificate(CertificateFiles {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            cert_at: Origin::Default,
            key_at: Origin::Default,
        });
        tls.certificates.clear();
        let mut tls_keys_at = None;
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            if key != "address" && key != "certificate" {
                tls_keys_at.get_or_insert_with(|| k.span());
            }
            match key {
                "address" => {
                    if let Some(s) = self.string(v, "listener.address") {
                        match value::parse_addr(s) {
                            Ok(a) => addr = Some((a, self.origin(&v.span()))),
                            Err(problem) => self.bad(v, "listener.address", problem),
                        }
                    }
                }
                "certificate" => {
                    for (cv, c) in self.tables(v, "listener.certificate") {
                        if let Some(files) = self.certificate(cv, c) {
                            tls.certificates.push(files);
                        }
                    }
                }
                "alpn" => {
                    if let Some(items) = self.strings(v, "listener.alpn") {
                        tls.alpn.clear();
                        for (s, span) in items {
                            if ALPN.contains(&s) {
                                tls.alpn.push(s.to_owned());
                            } else if s == "h2" {
                                self.error(span, "listener.alpn: \"h2\" is not served yet (HTTP/2 comes later); offer \"http/1.1\"".to_owned());
                            } else {
                                self.error(span, format!("listener.alpn: unknown protocol {s:?}: expected \"http/1.1\""));
                            }
                        }
                    }
                }
                "tls_versions" => {
                    if let Some(items) = self.strings(v, "listener.tls_versions") {
                        tls.versions.clear();
                        for (s, span) in items {
                            match s {
                                "1.2" => tls.versions.push(TlsVersion::Tls12),
                                "1.3" => tls.versions.push(TlsVersion::Tls13),
                                _ => self.error(span, format!("listener.tls_versions: unknown version {s:?}: expected \"1.2\" or \"1.3\"")),
                            }
                        }
                        if tls.versions.is_empty() {
                            self.bad(v, "listener.tls_versions", "at least one version is needed");
                        }
                    }
                }
                "handshake_timeout" => {
                    if let Some(t) = self.positive_duration(v, "listener.handshake_timeout") {
                        tls.handshake_timeout = t;
                    }
                }
                "session_resumption" => {
                    if let Some(b) = self.boolean(v, "listener.session_resumption") {
                        tls.resumption = b;
                    }
                }
                _ => self.unknown(k, "[[listener]]", LISTENER_KEYS),
            }
        }
        let Some((addr, at)) = addr else {
            self.missing(tv, "[[listener]]", "address");
            return;
        };
        let tls = if tls.certificates.is_empty() {
            if let Some(span) = tls_keys_at {
                self.error(
                    span,
                    "[[listener]]: TLS settings without a [[listener.certificate]] (cert and key)"
                        .to_owned(),
                );
            }
            None
        } else {
            Some(tls)
        };
        // A file that names its listeners replaces the default one.
        d.listeners.retain(|(_, at)| *at != Origin::Default);
        d.extra_listeners.push(ListenerDraft { addr, at, tls });
    }

    fn certificate(&mut self, cv: &Val<'_>, c: &toml::de::DeTable<'_>) -> Option<CertificateFiles> {
        let (mut cert, mut key) = (None, None);
        for (k, v) in c.iter() {
            match k.get_ref().as_ref() {
                "cert" => {
                    cert = self
                        .path(v, "listener.certificate.cert")
                        .map(|p| (p, self.origin(&v.span())));
                }
                "key" => {
                    key = self
                        .path(v, "listener.certificate.key")
                        .map(|p| (p, self.origin(&v.span())));
                }
                _ => self.unknown(k, "[[listener.certificate]]", CERTIFICATE_KEYS),
            }
        }
        match (cert, key) {
            (Some((cert, cert_at)), Some((key, key_at))) => Some(CertificateFiles {
                cert,
                key,
                cert_at,
                key_at,
            }),
            (None, _) => {
                self.missing(cv, "[[listener.certificate]]", "cert");
                None
            }
            (_, None) => {
                self.missing(cv, "[[listener.certificate]]", "key");
                None
            }
        }
    }
}

impl Draft {
    /// The TLS checks: flags given in pairs, addresses not repeated across
    /// `listen` and `[[listener]]`, and every certificate file loadable.
    pub(crate) fn validate_tls(&self, push: &mut impl FnMut(&Origin, String)) {
        match &self.tls_flag {
            (Some((_, at)), None) => push(
                at,
                "--tls-cert needs --tls-key (the certificate's private key)".to_owned(),
            ),
            (None, Some((_, at))) => push(
                at,
                "--tls-key needs --tls-cert (the certificate chain)".to_owned(),
            ),
            _ => {}
        }
        for l in &self.extra_listeners {
            let earlier = self
                .listeners
                .iter()
                .map(|(a, at)| (*a, at))
                .chain(self.extra_listeners.iter().map(|e| (e.addr, &e.at)))
                .take_while(|(_, at)| !std::ptr::eq(*at, &l.at))
                .find(|(a, _)| *a == l.addr && a.port() != 0);
            if let Some((_, first)) = earlier {
                push(
                    &l.at,
                    format!(
                        "listener.address: {} is listed twice (first at {})",
                        l.addr,
                        first.short()
                    ),
                );
            }
        }
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let now = crate::tls::certs::now();
        let flag = self.flag_tls();
        let configs = self
            .extra_listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .chain(flag.as_ref());
        for tls in configs {
            for files in &tls.certificates {
                if let Err(p) =
                    crate::tls::certs::load_pair(&files.cert, &files.key, &provider, now)
                {
                    let (at, key) = match p.at {
                        crate::tls::certs::Side::Cert => {
                            (&files.cert_at, "listener.certificate.cert")
                        }
                        crate::tls::certs::Side::Key => (&files.key_at, "listener.certificate.key"),
                    };
                    push(at, format!("{}{}", label(at, key), p.message));
                }
            }
        }
    }

    /// The TLS the flags ask for on every listener.
    pub(crate) fn flag_tls(&self) -> Option<TlsConfig> {
        match &self.tls_flag {
            (Some((cert, cert_at)), Some((key, key_at))) => {
                Some(TlsConfig::with_certificate(CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    cert_at: cert_at.clone(),
                    key_at: key_at.clone(),
                }))
            }
            _ => None,
        }
    }

    /// Every listener: `listen`'s, then the `[[listener]]` tables'; the
    /// flags' TLS, if any, on all of them.
    pub(crate) fn finish_listeners(&self) -> Vec<Listener> {
        let flag = self.flag_tls();
        self.listeners
            .iter()
            .map(|(addr, _)| Listener {
                addr: *addr,
                tls: None,
            })
            .chain(self.extra_listeners.iter().map(|l| Listener {
                addr: l.addr,
                tls: l.tls.clone(),
            }))
            .map(|mut l| {
                if flag.is_some() {
                    l.tls = flag.clone();
                }
                l
            })
            .collect()
    }
}
