//! Compressed variants of static files through the real binary: each
//! coding arrives byte-identical after decompression with `Vary` and an
//! ETag of its own; the first request is answered as the file is while
//! the variant is made, later ones from the cache with no body byte
//! copied; a changed file gets a fresh variant; ranges cover the variant;
//! pre-compressed siblings are sent as they are; small and binary files
//! are never compressed.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{Iolite, Response, read_response};

/// A megabyte of text that compresses well but not trivially.
fn text(seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(format!("line {} says {:08x}\n", out.len(), x % 4096).as_bytes());
    }
    out
}

fn fetch(server: &Iolite, target: &str, headers: &str) -> Response {
    let mut s = server.connect();
    write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), false)
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => brotli::BrotliDecompress(&mut &body[..], &mut out).unwrap(),
        "zstd" => out = zstd::stream::decode_all(body).unwrap(),
        other => panic!("{other}"),
    }
    out
}

/// Asks until the answer comes in `coding` (the variant is made in the
/// background after the first request); the answers before it must be
/// the file as it is.
fn encoded(server: &Iolite, target: &str, coding: &str, plain: &[u8]) -> Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = fetch(server, target, &format!("Accept-Encoding: {coding}\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        match r.header("content-encoding") {
            Some(c) => {
                assert_eq!(c, coding);
                return r;
            }
            None => assert!(r.body == plain, "an identity answer with other bytes"),
        }
        assert!(Instant::now() < deadline, "no {coding} variant of {target}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_coding_round_trips_from_the_cache_with_its_own_etag_and_nothing_copied() {
    let dir = tempfile::tempdir().unwrap();
    let plain = text(1);
    std::fs::write(dir.path().join("big.txt"), &plain).unwrap();
    let config = dir.path().join("iolite.toml");
    std::fs::write(&config, "[cache]\nsize = \"64M\"\nrevalidate = \"0s\"\n").unwrap();
    let server = Iolite::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let identity = fetch(&server, "/big.txt", "");
    assert_eq!(identity.body, plain);
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.header("vary"), Some("Accept-Encoding"));
    let plain_etag = identity.header("etag").unwrap().to_owned();
    for coding in ["gzip", "br", "zstd"] {
        let r = encoded(&server, "/big.txt", coding, &plain);
        assert_eq!(decode(coding, &r.body), plain, "{coding}");
        assert!(r.body.len() < plain.len() / 2, "{coding}: {}", r.body.len());
        assert_eq!(
            r.header("content-length").unwrap(),
            r.body.len().to_string()
        );
        let etag = r.header("etag").unwrap().to_owned();
        assert_ne!(etag, plain_etag);
        assert!(etag.ends_with(&format!("-{coding}\"")), "{etag}");
        // From the cache now: nothing copied for the next one.
        let copied = server.metric("iolite_body_bytes_copied_total");
        let again = fetch(
            &server,
            "/big.txt",
            &format!("Accept-Encoding: {coding}\r\n"),
        );
        assert_eq!(again.body, r.body);
        assert_eq!(server.metric("iolite_body_bytes_copied_total"), copied);
        // Its ETag validates it.
        let not_modified = fetch(
            &server,
            "/big.txt",
            &format!("Accept-Encoding: {coding}\r\nIf-None-Match: {etag}\r\n"),
        );
        assert_eq!(not_modified.status, 304);
        assert_eq!(not_modified.header("vary"), Some("Accept-Encoding"));
        // A range of the variant's bytes.
        let part = fetch(
            &server,
            "/big.txt",
            &format!("Accept-Encoding: {coding}\r\nRange: bytes=100-1123\r\n"),
        );
        assert_eq!(part.status, 206);
        assert_eq!(part.header("content-encoding"), Some(coding));
        assert_eq!(part.body, r.body[100..1124]);
    }
    // At equal weights br wins; a refused coding is not sent.
    let both = fetch(&server, "/big.txt", "Accept-Encoding: gzip, zstd, br\r\n");
    assert_eq!(both.header("content-encoding"), Some("br"));
    let refused = fetch(&server, "/big.txt", "Accept-Encoding: br;q=0, gzip\r\n");
    assert_eq!(refused.header("content-encoding"), Some("gzip"));
    let none = fetch(&server, "/big.txt", "Accept-Encoding: identity\r\n");
    assert_eq!(none.header("content-encoding"), None);
    assert_eq!(none.body, plain);
    // The file changes: its next variant is made from the new bytes.
    let newer = text(2);
    std::fs::write(dir.path().join("big.txt.tmp"), &newer).unwrap();
    std::fs::rename(dir.path().join("big.txt.tmp"), dir.path().join("big.txt")).unwrap();
    let r = encoded(&server, "/big.txt", "gzip", &newer);
    assert_eq!(decode("gzip", &r.body), newer);
    server.stop();
}

#[test]
fn siblings_on_disk_are_sent_and_small_or_binary_files_never_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let css = text(3);
    std::fs::write(dir.path().join("site.css"), &css).unwrap();
    // Made after the file: as new or newer.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&css).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(dir.path().join("site.css.gz"), &gz).unwrap();
    std::fs::write(dir.path().join("small.txt"), b"tiny\n").unwrap();
    std::fs::write(dir.path().join("blob.png"), text(4)).unwrap();
    // No cache: only siblings can be sent.
    let config = dir.path().join("iolite.toml");
    std::fs::write(&config, "[cache]\nsize = 0\n").unwrap();
    let server = Iolite::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let r = fetch(&server, "/site.css", "Accept-Encoding: br, gzip\r\n");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, gz, "the sibling's own bytes");
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    let small = fetch(&server, "/small.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(small.header("content-encoding"), None);
    assert_eq!(small.header("vary"), None);
    let png = fetch(&server, "/blob.png", "Accept-Encoding: gzip\r\n");
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
    server.stop();
}
