//! The access log end to end: one combined-format line per response,
//! written to the configured file by the time `iolite serve` exits.

mod support;

use std::io::Write;

use support::{Iolite, read_response};

#[test]
fn every_response_gets_a_combined_log_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"0123456789").unwrap();
    let log = dir.path().join("access.log");
    let log_arg = log.to_str().unwrap().to_owned();
    let server = Iolite::start(dir.path(), &["--access-log", &log_arg]);
    let mut s = server.connect();
    let mut buf = Vec::new();
    s.write_all(
        b"GET /a.txt?x=1 HTTP/1.1\r\nHost: t\r\nReferer: http://r/\"q\"\r\nUser-Agent: tester/1.0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).status, 200);
    s.write_all(b"HEAD /missing HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, true).status, 404);
    let mut bad = server.connect();
    bad.write_all(b"GARBAGE\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut bad, &mut Vec::new(), false).status, 400);
    assert!(server.stop().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
    };
    let ok = find("/a.txt");
    assert!(ok.starts_with("127.0.0.1 - - ["), "{ok}");
    assert!(
        ok.ends_with("] \"GET /a.txt?x=1 HTTP/1.1\" 200 10 \"http://r/\\\"q\\\"\" \"tester/1.0\""),
        "{ok}"
    );
    let head = find("/missing");
    assert!(
        head.contains("\"HEAD /missing HTTP/1.0\" 404 0 \"-\" \"-\""),
        "{head}"
    );
    let bad = find(" 400 ");
    assert!(bad.contains("] \"-\" 400 "), "{bad}");
}
