//! RFC 9110 §13.2.2 preconditions on static files, through the binary:
//! a download that resumes with If-Match and Range gets 412 once the file
//! has changed, never bytes of the new file.

mod support;

use std::io::Write;

use support::{Iolite, Response, read_response};

fn ask(server: &Iolite, fields: &str) -> Response {
    let mut s = server.connect();
    write!(s, "GET /file.txt HTTP/1.1\r\nHost: t\r\n{fields}\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), false)
}

#[test]
fn if_match_and_if_unmodified_since_guard_static_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    std::fs::write(&file, b"0123456789 the first version\n").unwrap();
    let server = Iolite::start(dir.path(), &["--revalidate", "0s"]);
    let first = ask(&server, "");
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();

    let table: &[(String, u16)] = &[
        (format!("If-Match: {etag}\r\n"), 200),
        (format!("If-Match: \"nope\", {etag}\r\n"), 200),
        ("If-Match: *\r\n".into(), 200),
        ("If-Match: \"nope\"\r\n".into(), 412),
        (format!("If-Match: W/{etag}\r\n"), 412),
        (format!("If-Match: {etag}\r\nRange: bytes=0-3\r\n"), 206),
        (format!("If-Unmodified-Since: {modified}\r\n"), 200),
        (
            "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n".into(),
            412,
        ),
        (
            "If-Match: \"nope\"\r\nIf-None-Match: \"nope\"\r\n".into(),
            412,
        ),
        (format!("If-None-Match: {etag}\r\n"), 304),
        (
            format!("If-Match: {etag}\r\nIf-None-Match: {etag}\r\n"),
            304,
        ),
        (format!("If-Modified-Since: {modified}\r\n"), 304),
    ];
    for (fields, status) in table {
        let r = ask(&server, fields);
        assert_eq!(r.status, *status, "{fields}");
        if *status == 412 {
            assert!(r.body.starts_with(b"412"), "{fields}");
        }
    }

    // The file changes; the client resumes its download of the first one.
    std::fs::write(&file, b"9876543210 the second version, longer\n").unwrap();
    let resumed = ask(
        &server,
        &format!("If-Match: {etag}\r\nRange: bytes=11-\r\n"),
    );
    assert_eq!(resumed.status, 412);
    let fresh = ask(&server, "Range: bytes=11-\r\n");
    assert_eq!(fresh.status, 206);
    assert_eq!(fresh.body, b"the second version, longer\n");
    assert!(server.stop().success());
}
