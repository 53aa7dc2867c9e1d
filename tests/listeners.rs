//! Several listeners: `iolite serve` announces each bound address, in the
//! order given, and serves the same site on all of them.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use support::{connect, read_response};

#[test]
fn every_listener_serves_and_is_announced_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), b"<p>hi</p>\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.2:0",
        ])
        .args([
            "--admin",
            "none",
            "--workers",
            "2",
            "--access-log",
            "off",
            "--root",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr: std::net::SocketAddr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        addrs.push(addr);
    }
    assert_eq!(addrs[0].ip().to_string(), "127.0.0.1");
    assert_eq!(addrs[1].ip().to_string(), "127.0.0.2");
    for addr in &addrs {
        // Several connections, so both workers' listeners get some.
        for _ in 0..4 {
            let mut s = connect(*addr);
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let r = read_response(&mut s, &mut Vec::new(), false);
            assert_eq!((r.status, &r.body[..]), (200, &b"<p>hi</p>\n"[..]));
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}
