//! A TLS wire against a rustls client over loopback: the handshake through
//! [`TlsListener`], plaintext that waits in the session after a short read
//! is read without the socket saying anything more, and an answer sent
//! by the send path arrives whole, in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::TlsListener;
use crate::config::{CertificateFiles, Origin, TlsConfig};
use crate::response::Body;

#[tokio::test]
async fn pipelined_plaintext_is_read_from_the_session_and_answers_go_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let tls = TlsListener::new(
        addr,
        TlsConfig::with_certificate(CertificateFiles {
            cert: cert_path,
            key: key_path,
            cert_at: Origin::Default,
            key_at: Origin::Default,
        }),
    )
    .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let want = big.clone();
    let client = tokio::spawn(async move {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        // Two requests in one write: one record.
        s.write_all(b"first!second").await.unwrap();
        s.flush().await.unwrap();
        let mut got = vec![0u8; 4 + want.len()];
        s.read_exact(&mut got).await.unwrap();
        got
    });
    let (socket, _) = tcp.accept().await.unwrap();
    let wire = tls.accept(socket).await.unwrap();
    assert!(wire.plain_tcp().is_none());
    let mut first = [0u8; 6];
    let n = tokio::time::timeout(Duration::from_secs(20), read_some(&wire, &mut first))
        .await
        .unwrap();
    assert_eq!(&first[..n], &b"first!"[..n]);
    let mut rest = Vec::new();
    while rest.len() + n < 12 {
        let mut piece = [0u8; 6];
        // What the first read left is in the session: no wait for the socket.
        let k = wire.try_read(&mut piece).unwrap();
        rest.extend_from_slice(&piece[..k]);
    }
    assert_eq!([&first[..n], &rest[..]].concat(), b"first!second");
    let before = iolite_ipc::copied::total();
    let body = Body::Bytes(big.clone());
    let mut sent = 0;
    crate::send::send_response_framed(
        &wire,
        b"HEAD",
        &body,
        true,
        false,
        Duration::from_secs(20),
        &mut sent,
    )
    .await
    .unwrap();
    assert_eq!(sent, 4 + big.len() as u64);
    // Other tests may copy at the same time: at least this body was counted.
    assert!(iolite_ipc::copied::total() - before >= big.len() as u64);
    let got = client.await.unwrap();
    assert_eq!(&got[..4], b"HEAD");
    assert!(got[4..] == big[..]);
}

async fn read_some(wire: &crate::wire::Wire, dst: &mut [u8]) -> usize {
    loop {
        match wire.try_read(dst) {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wire.tcp().readable().await.unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
}
