//! HTTPS through the real binary, with curl and openssl as the clients:
//! HTTP/1.1 over TLS (static files, a CGI program's streamed answer to a
//! posted body), certificates chosen by SNI, ALPN, versions, session
//! resumption, the handshake timeout, certificates reloaded under load
//! with no failed request, and certificates refused at load (expired,
//! mismatched, unreadable) with the setting's place. Certificates are made
//! here (rcgen): one test CA signs every server certificate, so curl
//! verifies each answer's certificate against the name it asked for.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::{Iolite, curl};

/// The test CA and a folder for the files made with it.
struct Certs {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca: PathBuf,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "iolite test CA");
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        Certs {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// A server certificate for `names` (its common name `cn`), valid from
    /// `from` to `to` days from now, signed by the CA: `(cert, key)` files.
    fn server(&self, file: &str, cn: &str, names: &[&str], days: (i64, i64)) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A document root with `small.txt` and `big.bin` (`big` bytes).
fn site(big: usize) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("small.txt"), b"hello over TLS\n").unwrap();
    let data: Vec<u8> = (0..big).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.path().join("big.bin"), data).unwrap();
    root
}

/// curl to `https://NAME:PORT/PATH` at the server, verifying against the CA.
fn curl_tls(
    certs: &Certs,
    server: &Iolite,
    name: &str,
    path: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, Vec<u8>, String) {
    let resolve = format!("{name}:{}:127.0.0.1", server.addr.port());
    let url = format!("https://{name}:{}{path}", server.addr.port());
    let mut args = vec!["--cacert", s(&certs.ca), "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// `openssl s_client` to the server with `args`, `input` on its stdin; its
/// stdout and stderr together.
fn s_client(server: &Iolite, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &server.addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn https_serves_files_and_counts_each_encrypted_body_byte_as_copied() {
    let certs = Certs::new();
    let (cert, key) = certs.server("site", "localhost", &["localhost"], (-1, 30));
    let root = site(3 << 20);
    let server = Iolite::start(root.path(), &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    // The probe's answer, once, at start.
    let probe = server.wait_for_lines(1, |l| l.contains("kTLS: "));
    let ktls_off = probe[0].contains("unavailable");
    eprintln!("{}", probe[0]);
    let before = server.metric("iolite_body_bytes_copied_total");
    let (status, body, err) = curl_tls(
        &certs,
        &server,
        "localhost",
        "/big.bin",
        &["-w", "%{http_version}"],
    );
    assert!(status.success(), "{err}");
    let (data, version) = body.split_at(3 << 20);
    assert_eq!(data, std::fs::read(root.path().join("big.bin")).unwrap());
    assert_eq!(version, b"1.1");
    let (status, body, err) = curl_tls(&certs, &server, "localhost", "/small.txt", &[]);
    assert!(status.success(), "{err}");
    assert_eq!(body, b"hello over TLS\n");
    let copied = server.metric("iolite_body_bytes_copied_total") - before;
    if ktls_off {
        // Every body byte went through rustls in user space, once.
        assert_eq!(copied, (3 << 20) + 15);
    }
    // Plain HTTP is refused politely on the TLS port: not a TLS record.
    let (status, _, _) = curl(&[&format!("http://{}/small.txt", server.addr)]);
    assert!(!status.success());
    server.stop();
}

#[test]
fn ktls_probe_reports_and_the_ktls_path_runs_only_where_the_kernel_has_it() {
    let certs = Certs::new();
    let (cert, key) = certs.server("site", "localhost", &["localhost"], (-1, 30));
    let root = site(4 << 20);
    let server = Iolite::start(root.path(), &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let probe = server.wait_for_lines(1, |l| l.contains("kTLS: "));
    if probe[0].contains("unavailable") {
        assert!(probe[0].contains("TCP_ULP"), "{}", probe[0]);
        eprintln!(
            "kTLS test could not run here: {} (the 4 MiB zero-copy check needs a kernel with the tls module)",
            probe[0]
        );
        server.stop();
        return;
    }
    // A kernel with kTLS: the 4 MiB file must leave the counter unchanged.
    let before = server.metric("iolite_body_bytes_copied_total");
    let (status, body, err) = curl_tls(&certs, &server, "localhost", "/big.bin", &[]);
    assert!(status.success(), "{err}");
    assert_eq!(body.len(), 4 << 20);
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), before);
    server.stop();
}

/// A config with one TLS `[[listener]]` on port 0, `tls` lines added.
fn tls_config(certs: &Certs, root: &Path, pairs: &[(PathBuf, PathBuf)], tls: &str) -> PathBuf {
    let mut text = format!(
        "root = {:?}\nadmin = \"127.0.0.1:0\"\nworkers = 2\n[log]\naccess = \"off\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n{tls}\n",
        root
    );
    for (c, k) in pairs {
        text += &format!("[[listener.certificate]]\ncert = {c:?}\nkey = {k:?}\n");
    }
    let path = certs.path("iolite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sni_picks_each_names_certificate_and_a_wrong_name_gets_the_first() {
    let certs = Certs::new();
    let a = certs.server("a", "a", &["a.test"], (-1, 30));
    let b = certs.server("b", "b", &["b.test", "*.w.test"], (-1, 30));
    let root = site(10);
    let config = tls_config(&certs, root.path(), &[a, b], "");
    let server = Iolite::start_args(&["--config", s(&config)]);
    for name in ["a.test", "b.test", "x.w.test"] {
        let (status, body, err) = curl_tls(&certs, &server, name, "/small.txt", &[]);
        assert!(status.success(), "{name}: {err}");
        assert_eq!(body, b"hello over TLS\n", "{name}");
    }
    // A name no certificate has: the first one comes, and curl refuses it.
    let (status, _, err) = curl_tls(&certs, &server, "c.test", "/small.txt", &[]);
    assert_eq!(status.code(), Some(60), "{err}");
    assert!(err.contains("c.test"), "{err}");
    let out = s_client(&server, &["-servername", "c.test"], b"");
    assert!(out.contains("CN = a") || out.contains("CN=a"), "{out}");
    server.stop();
}

#[test]
fn alpn_offers_http11_and_versions_are_as_configured() {
    let certs = Certs::new();
    let pair = certs.server("site", "localhost", &["localhost"], (-1, 30));
    let root = site(10);
    let config = tls_config(
        &certs,
        root.path(),
        &[pair],
        "tls_versions = [\"1.3\"]\nalpn = [\"http/1.1\"]",
    );
    let server = Iolite::start_args(&["--config", s(&config)]);
    // curl offers h2 and http/1.1: the server picks http/1.1.
    let (status, body, err) = curl_tls(
        &certs,
        &server,
        "localhost",
        "/small.txt",
        &["--http2", "-v", "-o", "/dev/null", "-w", "%{http_version}"],
    );
    assert!(status.success(), "{err}");
    assert_eq!(body, b"1.1");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    // A client that speaks only h2 is told no.
    let out = s_client(&server, &["-alpn", "h2"], b"");
    assert!(out.contains("no application protocol"), "{out}");
    // TLS 1.2 only is refused; TLS 1.3 passes.
    let (status, _, err) = curl_tls(
        &certs,
        &server,
        "localhost",
        "/small.txt",
        &["--tls-max", "1.2"],
    );
    assert!(!status.success(), "{err}");
    let (status, _, err) = curl_tls(&certs, &server, "localhost", "/small.txt", &["--tlsv1.3"]);
    assert!(status.success(), "{err}");
    server.stop();
}

#[test]
fn sessions_resume_on_tls13_and_tls12() {
    let certs = Certs::new();
    let (cert, key) = certs.server("site", "localhost", &["localhost"], (-1, 30));
    let root = site(10);
    let server = Iolite::start(root.path(), &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let request = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = certs.path(&format!("sess{version}.pem"));
        let first = s_client(
            &server,
            &[version, "-ign_eof", "-sess_out", s(&sess)],
            request,
        );
        assert!(first.contains("hello over TLS"), "{first}");
        assert!(first.contains("New, TLSv1."), "{first}");
        let again = s_client(
            &server,
            &[version, "-ign_eof", "-sess_in", s(&sess)],
            request,
        );
        assert!(again.contains("Reused, TLSv1."), "{version}: {again}");
        assert!(again.contains("hello over TLS"), "{again}");
    }
    server.stop();
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_closed_at_the_timeout() {
    let certs = Certs::new();
    let pair = certs.server("site", "localhost", &["localhost"], (-1, 30));
    let root = site(10);
    let config = tls_config(
        &certs,
        root.path(),
        &[pair],
        "handshake_timeout = \"300ms\"",
    );
    let server = Iolite::start_args(&["--config", s(&config)]);
    let mut idle = server.connect();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    // The server's close, not the test's read timeout, ends the read.
    assert_eq!(idle.read(&mut byte).unwrap(), 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    // And the listener still serves.
    let (status, _, err) = curl_tls(&certs, &server, "localhost", "/small.txt", &[]);
    assert!(status.success(), "{err}");
    server.stop();
}

#[test]
fn a_cgi_program_reads_a_posted_body_and_streams_its_answer_over_tls() {
    let certs = Certs::new();
    let (cert, key) = certs.server("site", "localhost", &["localhost"], (-1, 30));
    let root = site(10);
    let bin = certs.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let program = bin.join("echo.sh");
    std::fs::write(
        &program,
        "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nexec cat\n",
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cgi = format!("/cgi-bin={}", s(&bin));
    let server = Iolite::start(
        root.path(),
        &["--tls-cert", s(&cert), "--tls-key", s(&key), "--cgi", &cgi],
    );
    let upload = certs.path("upload.bin");
    let data: Vec<u8> = (0..(1usize << 20) + 123)
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    std::fs::write(&upload, &data).unwrap();
    let at = format!("@{}", s(&upload));
    let (status, body, err) = curl_tls(
        &certs,
        &server,
        "localhost",
        "/cgi-bin/echo.sh",
        &[
            "--data-binary",
            &at,
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert!(status.success(), "{err}");
    assert!(body == data, "{} bytes back of {}", body.len(), data.len());
    server.stop();
}

#[test]
fn certificates_reload_on_sighup_under_load_with_no_failed_request() {
    let certs = Certs::new();
    let (cert, key) = certs.server("live", "first", &["localhost"], (-1, 30));
    let root = site(64 << 10);
    let server = Iolite::start(root.path(), &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let subject = |server: &Iolite| s_client(server, &["-servername", "localhost"], b"");
    assert!(subject(&server).contains("CN = first"));
    // A keep-alive connection opened before the reload.
    let mut kept = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kept_in = kept.stdin.take().unwrap();
    let mut kept_out = kept.stdout.take().unwrap();
    let ask = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let read_answer = |out: &mut std::process::ChildStdout| {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"hello over TLS\n") {
            assert_eq!(
                out.read(&mut byte).unwrap(),
                1,
                "{}",
                String::from_utf8_lossy(&got)
            );
            got.push(byte[0]);
        }
    };
    kept_in.write_all(ask).unwrap();
    read_answer(&mut kept_out);
    // Load: clients fetching over new connections all through the reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = (0..3)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            let ca = certs.ca.clone();
            let url = format!("https://localhost:{}/big.bin", server.addr.port());
            let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body, err) =
                        curl(&["--cacert", s(&ca), "--resolve", &resolve, &url]);
                    if !status.success() || body.len() != 64 << 10 {
                        failures.push(err);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    let wait_requests = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let start = done.load(Ordering::Relaxed);
        while done.load(Ordering::Relaxed) < start + n {
            assert!(Instant::now() < deadline, "the load stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_requests(5);
    // New files in place (renamed over the old ones), then SIGHUP.
    let (new_cert, new_key) = certs.server("next", "second", &["localhost"], (-1, 30));
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_lines(1, |l| l.contains("TLS certificates reloaded"));
    wait_requests(5);
    assert!(subject(&server).contains("CN = second"));
    // A broken key: the reload fails, the second certificate stays.
    std::fs::write(&key, "not a key\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let failed = server.wait_for_lines(1, |l| l.contains("not reloaded"));
    assert!(failed[0].contains("no PEM private key"), "{}", failed[0]);
    wait_requests(5);
    assert!(subject(&server).contains("CN = second"));
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let failures = l.join().unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
    }
    // The connection from before both reloads still answers.
    kept_in.write_all(ask).unwrap();
    read_answer(&mut kept_out);
    drop(kept_in);
    let _ = kept.wait();
    server.stop_expecting(|l| l.contains("not reloaded"));
}

#[test]
fn bad_certificates_are_refused_at_load_with_the_settings_place() {
    let certs = Certs::new();
    let good = certs.server("good", "good", &["localhost"], (-1, 30));
    let expired = certs.server("expired", "old", &["localhost"], (-60, -1));
    let other = certs.server("other", "other", &["localhost"], (-1, 30));
    let root = site(10);
    let missing = certs.path("missing.pem");
    // Line and column of the value of `cert` (line 10) or `key` (11).
    let cases: [(&Path, &Path, &str); 3] = [
        (&expired.0, &expired.1, "10:8: listener.certificate.cert: "),
        (&good.0, &other.1, "11:7: listener.certificate.key: "),
        (&missing, &good.1, "10:8: listener.certificate.cert: "),
    ];
    let words = [
        "the certificate expired on",
        "does not match the certificate",
        "cannot read the certificate file",
    ];
    for ((cert, key, at), words) in cases.into_iter().zip(words) {
        let config = tls_config(
            &certs,
            root.path(),
            &[(cert.to_owned(), key.to_owned())],
            "",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
            .args(["check-config", s(&config)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let place = format!("{}:{at}", config.display());
        assert!(err.contains(&place), "{place} in {err}");
        assert!(err.contains(words), "{words} in {err}");
    }
    // The flags: serve refuses to start, naming the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "none",
            "--root",
            s(root.path()),
        ])
        .args(["--tls-cert", s(&expired.0), "--tls-key", s(&expired.1)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--tls-cert: ") && err.contains("expired"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--root",
            s(root.path()),
            "--tls-cert",
            s(&good.0),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
}
