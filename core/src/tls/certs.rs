//! Certificates and keys from PEM files, checked the way a client would
//! find them wanting: the files readable, a chain and a private key in
//! them, the key the certificate's own, the certificate valid now. The
//! checks name the file at fault ([`Problem::at`]) so `check-config` can
//! point at the setting, and `serve` refuses to start on the same words.
//!
//! The names a certificate serves (for SNI) are read from it: its DNS
//! subject alternative names, or its common name when it has none. That,
//! and the validity dates, need an X.509 parser (x509-parser; rustls
//! parses certificates only to verify peers, not to describe its own).
//! [`SniResolver`] picks among several by the name the client asks for.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Which file of a pair a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Cert,
    Key,
}

/// Why a certificate/key pair cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Side,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A loaded, checked pair: what rustls signs with, and the names it serves.
#[derive(Debug)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names, wildcards (`*.example.com`) included.
    pub names: Vec<String>,
}

fn problem(at: Side, message: String) -> Problem {
    Problem { at, message }
}

/// Loads and checks the pair `cert` (a PEM chain, the server's own
/// certificate first) and `key` (a PEM private key: PKCS#8, PKCS#1 or
/// SEC1), valid at `now` (seconds since the epoch).
pub fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: i64,
) -> Result<Loaded, Problem> {
    let text = std::fs::read(cert).map_err(|e| {
        problem(
            Side::Cert,
            format!("cannot read the certificate file {cert:?}: {e}"),
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            problem(
                Side::Cert,
                format!("{cert:?} is not a PEM certificate file: {e}"),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(problem(
            Side::Cert,
            format!("no certificate (-----BEGIN CERTIFICATE-----) in {cert:?}"),
        ));
    };
    let names = describe(leaf, now).map_err(|m| problem(Side::Cert, format!("{cert:?}: {m}")))?;
    let key_text = std::fs::read(key)
        .map_err(|e| problem(Side::Key, format!("cannot read the key file {key:?}: {e}")))?;
    let der = PrivateKeyDer::from_pem_slice(&key_text)
        .map_err(|e| problem(Side::Key, format!("no PEM private key in {key:?}: {e}")))?;
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| problem(Side::Key, format!("{key:?}: the key cannot be used: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| {
        problem(
            Side::Key,
            format!("the key in {key:?} does not match the certificate in {cert:?}"),
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
    })
}

/// The names `leaf` serves, if it is valid at `now`.
fn describe(leaf: &CertificateDer<'_>, now: i64) -> Result<Vec<String>, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    let validity = x509.validity();
    if validity.not_after.timestamp() < now {
        return Err(format!(
            "the certificate expired on {} (clients refuse it)",
            validity.not_after
        ));
    }
    if validity.not_before.timestamp() > now {
        return Err(format!(
            "the certificate is not valid before {} (clients refuse it)",
            validity.not_before
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in x509.subject().iter_common_name() {
            if let Ok(n) = cn.as_str() {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Picks a listener's certificate by the name the client sends (SNI): an
/// exact name first, then a wildcard one level up; a client that names
/// none, or a name no certificate has, gets the first certificate (as
/// nginx's default server does; the client then refuses it unless the
/// name fits).
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// `pairs` in the order configured: the first is the default; a name
    /// two certificates share goes to the first.
    pub fn new(pairs: &[Loaded]) -> Option<SniResolver> {
        let default = pairs.first()?.key.clone();
        let mut exact = HashMap::new();
        for p in pairs {
            for n in &p.names {
                exact.entry(n.clone()).or_insert_with(|| p.key.clone());
            }
        }
        Some(SniResolver { exact, default })
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(k) = self.exact.get(&format!("*.{parent}"))
        {
            return k.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(
        dir: &Path,
        name: &str,
        names: &[&str],
        days: (i64, i64),
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let day = 86_400;
        params.not_before = time_at(now() + days.0 * day);
        params.not_after = time_at(now() + days.1 * day);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn time_at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    #[test]
    fn a_good_pair_loads_with_its_names_and_bad_ones_say_which_file_table() {
        let dir = tempfile::tempdir().unwrap();
        let (a_cert, a_key) = pair(dir.path(), "a", &["a.test", "*.b.test"], (-1, 30));
        let (_, b_key) = pair(dir.path(), "b", &["b.test"], (-1, 30));
        let (old_cert, old_key) = pair(dir.path(), "old", &["old.test"], (-30, -1));
        let (early_cert, early_key) = pair(dir.path(), "early", &["early.test"], (2, 30));
        let loaded = load_pair(&a_cert, &a_key, &provider(), now()).unwrap();
        assert_eq!(loaded.names, ["a.test", "*.b.test"]);
        let missing = dir.path().join("missing.pem");
        let cases: [(&Path, &Path, Side, &str); 6] = [
            (
                &missing,
                &a_key,
                Side::Cert,
                "cannot read the certificate file",
            ),
            (&a_key, &a_key, Side::Cert, "no certificate"),
            (&a_cert, &a_cert, Side::Key, "no PEM private key"),
            (&a_cert, &b_key, Side::Key, "does not match the certificate"),
            (
                &old_cert,
                &old_key,
                Side::Cert,
                "the certificate expired on",
            ),
            (&early_cert, &early_key, Side::Cert, "not valid before"),
        ];
        for (cert, key, side, words) in cases {
            let p = load_pair(cert, key, &provider(), now()).unwrap_err();
            assert_eq!(p.at, side, "{p}");
            assert!(p.message.contains(words), "{p}");
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ak) = pair(dir.path(), "a", &["a.test"], (-1, 30));
        let (b, bk) = pair(dir.path(), "b", &["b.test", "*.w.test"], (-1, 30));
        let pairs = [
            load_pair(&a, &ak, &provider(), now()).unwrap(),
            load_pair(&b, &bk, &provider(), now()).unwrap(),
        ];
        let r = SniResolver::new(&pairs).unwrap();
        let is = |k: Arc<CertifiedKey>, i: usize| Arc::ptr_eq(&k, &pairs[i].key);
        assert!(is(r.pick(Some("a.test")), 0));
        assert!(is(r.pick(Some("B.TEST")), 1));
        assert!(is(r.pick(Some("x.w.test")), 1));
        assert!(is(r.pick(Some("x.y.w.test")), 0));
        assert!(is(r.pick(Some("other.test")), 0));
        assert!(is(r.pick(None), 0));
    }
}
