//! Answers on their way to the client: a stream over 1 GiB through the
//! runner's fixed output pool, a stream of unknown length in chunks (cut
//! short when the module fails, stopped when the client leaves), a client
//! slow to read holding the module back without getting it replaced, a
//! client that does not read dropped by the send timeout, and an answer
//! queued in a client's socket keeping its bytes while the server reuses
//! their space.

use std::io::Write;

use crate::support::{connect_slow_reader, curl, read_response, request, wait_until_queued};
use crate::{assert_runner_kept, lib, pattern_at, start_with_config, start_with_modules};

#[test]
fn a_body_over_1_gib_streams_through_a_fixed_pool() {
    use std::io::Read;
    let (_root, server) = start_with_modules(&[("/stream", "stream")], &[]);
    const PART: usize = (1 << 20) / 251 * 251;
    let parts = 1100; // 1.07 GiB, 16 times the runner's output pool
    let mut s = server.connect();
    write!(s, "GET /stream?mib={parts} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Read the head byte by byte (the body is too large to buffer).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let len = (PART * parts) as u64;
    assert!(
        head.contains(&format!("Content-Length: {len}\r\n")),
        "{head}"
    );
    let pattern: Vec<u8> = (0..PART).map(|i| (i % 251) as u8).collect();
    let mut chunk = vec![0u8; PART];
    for i in 0..parts {
        s.read_exact(&mut chunk).unwrap();
        assert!(chunk == pattern, "part {i} differs");
    }
    // The connection stays usable after a streamed answer.
    write!(s, "GET /stream?mib=1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!((r.status, r.body.len()), (200, PART));
    // HEAD: the length, no body; the parts are dropped (and released) and
    // the connection and the runner go on.
    write!(s, "HEAD /stream?mib=64 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), true);
    let want = (64 * PART).to_string();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some(want.as_str()))
    );
    write!(s, "GET /stream?mib=2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!((r.status, r.body.len()), (200, 2 * PART));
    // A stream that ends short closes the connection after what it sent.
    let mut s = server.connect();
    write!(s, "GET /stream?mib=3&short=1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - body_at, 2 * PART);
    assert!(server.stop().success());
}

#[test]
fn a_stream_of_unknown_length_goes_out_in_chunks_and_ends_cut_short_when_the_module_fails() {
    use std::io::Read;
    let (_root, server) = start_with_modules(&[("/stream", "stream")], &[]);
    const PART: u64 = (1 << 20) / 251 * 251;
    let want: Vec<u8> = (0..5 * PART).map(pattern_at).collect();
    let base = format!("http://{}/stream", server.addr);
    // HTTP/1.1: chunked, and the connection is reused for the next one.
    let url = format!("{base}?mib=5&open=1");
    let (status, body, err) = curl(&[
        "-D",
        "-",
        "-w",
        "connects=%{num_connects}\n",
        &url,
        "-o",
        "/dev/null",
        &url,
    ]);
    assert!(status.success(), "{err}");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        text.matches("Transfer-Encoding: chunked\r\n").count(),
        2,
        "{text}"
    );
    assert!(!text.contains("Content-Length"), "{text}");
    assert!(text.contains("connects=0\n"), "not reused: {text}");
    let (status, body, err) = curl(&[&url]);
    assert!(status.success(), "{err}");
    assert!(body == want, "chunked body differs ({} bytes)", body.len());
    // HTTP/1.0: no chunks; the end of the connection ends the body.
    let (status, body, err) = curl(&["-0", "-D", "/dev/stderr", &url]);
    assert!(status.success(), "{err}");
    assert!(body == want, "HTTP/1.0 body differs ({} bytes)", body.len());
    assert!(
        !err.contains("Transfer-Encoding") && err.contains("Connection: close"),
        "{err}"
    );
    // A module that dies mid-way: the client sees the body cut short (no
    // terminal chunk), not a complete one.
    let (status, body, err) = curl(&[&format!("{base}?mib=5&open=1&short=1")]);
    assert!(!status.success(), "a cut body looked complete");
    assert!(body.len() as u64 <= 4 * PART, "{}: {err}", body.len());
    // A client that goes away mid-stream stops the module: it is told, and
    // ends the stream (a known length of 1 TiB would take hours).
    let mut s = server.connect();
    write!(s, "GET /stream?mib=1048576 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut some = vec![0u8; 4 << 20];
    s.read_exact(&mut some).unwrap();
    drop(s);
    server.wait_for_lines(1, |l| l.contains("bytes short"));
    assert!(server.stop().success());
}

#[test]
fn a_client_slow_to_read_a_stream_holds_back_the_module_without_getting_it_replaced() {
    use std::io::Read;
    let (_root, server) = start_with_config(
        &format!(
            "[[module]]\nprefix = \"/stream\"\npath = \"{}\"\ntimeout = \"1s\"\n",
            lib("stream")
        ),
        &["--workers", "1"],
    );
    const PART: usize = (1 << 20) / 251 * 251;
    let parts = 96;
    let mut s = server.connect();
    write!(s, "GET /stream?mib={parts} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // The runner fills what the server may hold of its output, then waits
    // for the client: twice its time limit passes, excused both times.
    server.wait_for_module_metric("iolite_module_stream_waits_total", "/stream", 2);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Not cut short: the whole body comes.
    let mut body = vec![0u8; parts * PART];
    s.read_exact(&mut body).unwrap();
    let want: Vec<u8> = (0..PART as u64).map(pattern_at).collect();
    assert!(body.chunks(PART).all(|c| c == want), "the body differs");
    assert_runner_kept(&server, "/stream");
    assert!(server.stop().success());
}

#[test]
fn a_client_that_sends_a_large_body_before_it_reads_is_dropped_by_the_send_timeout_not_the_runner()
{
    use std::io::Read;
    let (_root, server) = start_with_config(
        &format!(
            "[limits]\nmax_body = \"1G\"\nsend_timeout = \"3s\"\n\n[[module]]\nprefix = \"/echo\"\npath = \"{}\"\ntimeout = \"1s\"\n",
            lib("echo")
        ),
        &["--workers", "1"],
    );
    // Sends all of a 256 MiB body before reading anything: the echo
    // streams back at once, the client takes none of it, so the server
    // stops reading the body; after send_timeout it drops the client.
    let mut s = server.connect();
    s.set_write_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let len = 256usize << 20;
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let sent = s.write_all(&vec![b'z'; len]);
    assert!(sent.is_err(), "the whole body was taken");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // The runner was told, and lives on.
    let r = request(&server, "POST", "/echo", b"after");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"after"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn an_answer_queued_in_a_clients_socket_keeps_its_bytes_while_the_server_reuses_the_space() {
    // A body echoed by reference is sent with sendfile: the pages it names
    // sit in the client's receive queue until the client reads them. The
    // request pool must not hand that space to the next request meanwhile.
    const LEN: usize = 1 << 20;
    let (_root, server) = start_with_modules(&[("/echo", "echo")], &["--workers", "1"]);
    // A client with room for the whole answer, which does not read yet.
    let mut slow = connect_slow_reader(server.addr);
    write!(
        slow,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&vec![b'a'; LEN]).unwrap();
    // The whole answer is in its receive queue: the server is done with it.
    assert!(
        wait_until_queued(&slow, LEN),
        "the answer never arrived whole"
    );
    // Other requests of the same size, answered and read at once.
    for fill in [b'b', b'c', b'd'] {
        let r = request(&server, "POST", "/echo", &vec![fill; LEN]);
        assert_eq!(r.status, 200);
        assert!(r.body.iter().all(|&b| b == fill));
    }
    let r = read_response(&mut slow, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    let wrong = r.body.iter().filter(|&&b| b != b'a').count();
    assert_eq!(
        wrong, 0,
        "{wrong} bytes of the first answer changed after it was sent"
    );
    assert!(server.stop().success());
}
