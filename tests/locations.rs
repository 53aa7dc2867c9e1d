//! Per-location settings from the TOML file: a location with its own root
//! (prefix stripped), its own index files and extra headers, a location that
//! bypasses the cache, and the server root for everything else.

mod support;

use std::io::Write;

use support::{Iolite, read_response};

#[test]
fn locations_choose_root_index_headers_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::create_dir_all(site.join("nocache")).unwrap();
    std::fs::create_dir_all(docs.join("guide")).unwrap();
    std::fs::write(site.join("index.html"), b"site home\n").unwrap();
    std::fs::write(site.join("docs/a.txt"), b"shadowed by the location\n").unwrap();
    std::fs::write(site.join("nocache/big.txt"), b"never cached\n").unwrap();
    std::fs::write(docs.join("a.txt"), b"docs a\n").unwrap();
    std::fs::write(docs.join("guide/README.md"), b"# guide\n").unwrap();
    let config = dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        r#"
root = "site"

[[location]]
prefix = "/docs"
root = "docs"
index = ["index.html", "README.md"]
headers = { "Cache-Control" = "max-age=60", "X-Location" = "docs" }

[[location]]
prefix = "/nocache"
cache = false
"#,
    )
    .unwrap();
    let server = Iolite::start(&site, &["--config", config.to_str().unwrap()]);
    let mut s = server.connect();
    let mut buf = Vec::new();
    let mut get = |path: &str| {
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(&mut s, &mut buf, false)
    };
    let r = get("/docs/a.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"docs a\n"[..]));
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_eq!(r.header("x-location"), Some("docs"));
    let r = get("/docs/guide/");
    assert_eq!((r.status, &r.body[..]), (200, &b"# guide\n"[..]));
    assert_eq!(
        r.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    let r = get("/docs");
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/")));
    // A sibling that only shares the prefix's letters is not in the location.
    assert_eq!(get("/docsx").status, 404);
    let r = get("/");
    assert_eq!((r.status, &r.body[..]), (200, &b"site home\n"[..]));
    assert_eq!(r.header("x-location"), None);
    let entries_before = server.metric("iolite_cache_entries");
    for _ in 0..3 {
        let r = get("/nocache/big.txt");
        assert_eq!((r.status, &r.body[..]), (200, &b"never cached\n"[..]));
    }
    assert_eq!(server.metric("iolite_cache_entries"), entries_before);
    assert!(server.stop().success());
}
