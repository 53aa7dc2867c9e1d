//! Request bodies on their way to a module: echoed by reference with no
//! byte copied (64 MiB, 1 GiB through bounded memory), from a full-duplex
//! client and from curl, with a length or chunked; a client that leaves
//! mid-upload cancels its request and frees its parts; a module that
//! refuses a body early answers before it has come; copy mode holds an
//! upload back instead of queueing it whole.

use std::io::Write;

use crate::support::{Iolite, curl, curl_with_stdin, proc_status_kib, read_response, request};
use crate::{assert_runner_kept, lib, pattern_at, start_with_config, start_with_modules};

#[test]
fn a_64_mib_echo_copies_no_body_bytes() {
    let (_root, server) = start_with_modules(&[("/echo", "echo")], &[]);
    let len = 64u64 << 20;
    let before = server.metric("iolite_body_bytes_copied_total");
    // Echo takes a body this large in parts and answers each part as it
    // comes (full duplex): the client reads while it sends.
    assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    let copied = server.metric("iolite_body_bytes_copied_total") - before;
    // Only the body bytes that arrived in the same read as the head are
    // copied (from the connection's head buffer into the request pool);
    // the other 64 MiB are read(2) into the pool and sent from it.
    assert!(copied <= 64 << 10, "{copied} body bytes copied");
    assert!(server.stop().success());
}

/// A full-duplex client, as curl is: one thread POSTs `len` bytes of
/// [`pattern_at`] to `target` (announcing `len`, and sending only `send`
/// of them before it stops and closes when `send < len`), while this one
/// reads the answer and checks every echoed byte as it comes, without
/// holding the body. Returns the status and the body bytes checked.
fn duplex_upload(server: &Iolite, target: &str, len: u64, send: u64) -> (u16, u64) {
    use std::io::Read;
    let mut s = server.connect();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        const CHUNK: u64 = 256 * 251 * 16;
        let block: Vec<u8> = (0..CHUNK + 251).map(pattern_at).collect();
        let mut at = 0;
        while at < send {
            let n = (send - at).min(CHUNK);
            let from = (at % 251) as usize;
            if w.write_all(&block[from..from + n as usize]).is_err() {
                return;
            }
            at += n;
        }
        if send < len {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            writer.join().unwrap();
            return (0, 0);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let block: Vec<u8> = (0..(1u64 << 20) + 251).map(pattern_at).collect();
    let mut checked = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let from = (checked % 251) as usize;
        assert!(
            buf[..n] == block[from..from + n],
            "echoed bytes differ after {checked}"
        );
        checked += n as u64;
        if status != 200 || checked == len {
            break;
        }
    }
    writer.join().unwrap();
    (status, checked)
}

/// A site whose config mounts echo with room for bodies of `max_body`.
fn echo_with_max_body(max_body: &str) -> (tempfile::TempDir, Iolite) {
    start_with_config(
        &format!(
            "[limits]\nmax_body = \"{max_body}\"\n\n[[module]]\nprefix = \"/echo\"\npath = \"{}\"\n",
            lib("echo")
        ),
        &[],
    )
}

#[test]
fn a_1_gib_upload_goes_to_the_module_in_parts_and_is_echoed_through_bounded_memory() {
    let (_root, server) = echo_with_max_body("2G");
    let len = 1u64 << 30;
    let copied_before = server.metric("iolite_body_bytes_copied_total");
    let shmem_before = proc_status_kib(server.pid(), "RssShmem");
    let (status, checked) = duplex_upload(&server, "/echo", len, len);
    assert_eq!((status, checked), (200, len));
    // The parts went through a few MiB of the request pool, reused: the
    // server never held the body (nor its answer) whole.
    let shmem = proc_status_kib(server.pid(), "RssShmem");
    assert!(
        shmem.saturating_sub(shmem_before) < 96 << 10,
        "shared memory grew from {shmem_before} to {shmem} KiB for a 1 GiB body"
    );
    // Read into the pool and sent from it: only what came with the head is
    // copied.
    let copied = server.metric("iolite_body_bytes_copied_total") - copied_before;
    assert!(copied <= 64 << 10, "{copied} body bytes copied");
    // The connection-level limits still hold: past max_body is 413.
    let mut s = server.connect();
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        3u64 << 30
    )
    .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 413);
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn a_client_that_leaves_mid_upload_cancels_its_request_and_frees_its_parts() {
    let (_root, server) = echo_with_max_body("256M");
    let len = 64u64 << 20;
    // Several clients give up halfway; each request is cancelled in the
    // module (its handler stops waiting for the next part) and the parts
    // it held go back to the pool.
    for _ in 0..6 {
        let (status, checked) = duplex_upload(&server, "/echo", len, len / 2);
        assert!(status == 200 || status == 0, "{status}");
        assert!(checked < len);
    }
    // The runner is the same one, and the pool has room for whole uploads.
    for _ in 0..3 {
        assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    }
    let r = request(&server, "POST", "/echo", b"small");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn a_module_that_refuses_an_upload_early_answers_before_the_body_and_keeps_serving() {
    let (_root, server) = echo_with_max_body("1G");
    let len = 256u64 << 20;
    for _ in 0..4 {
        // The client reads while it sends: the 413 comes long before the
        // body has, and the server stops reading it and closes.
        let (status, checked) = duplex_upload(&server, "/echo?max=1000", len, len);
        assert_eq!((status, checked), (413, 0));
    }
    // The runner was told each body ends there (no protocol error, no
    // restart), and its pool has room.
    assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    let r = request(&server, "POST", "/echo?max=1000", b"small");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn curl_uploads_a_large_file_to_echo_and_gets_it_back_uncopied() {
    let (root, server) = echo_with_max_body("1G");
    let len = 96u64 << 20;
    let file = root.path().join("upload.bin");
    let body: Vec<u8> = (0..len).map(pattern_at).collect();
    std::fs::write(&file, &body).unwrap();
    let out = root.path().join("echoed.bin");
    let before = server.metric("iolite_body_bytes_copied_total");
    let url = format!("http://{}/echo", server.addr);
    let (status, _, err) = curl(&[
        "--fail",
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Content-Type: application/octet-stream",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    assert!(status.success(), "curl: {err}");
    assert!(std::fs::read(&out).unwrap() == body, "echoed file differs");
    let copied = server.metric("iolite_body_bytes_copied_total") - before;
    assert!(copied <= 64 << 10, "{copied} body bytes copied");
    assert!(server.stop().success());
}

#[test]
fn a_chunked_upload_goes_to_the_module_in_parts_and_comes_back_chunked() {
    let (root, server) = echo_with_max_body("128M");
    let len = 96u64 << 20;
    let file = root.path().join("upload.bin");
    std::fs::write(&file, (0..len).map(pattern_at).collect::<Vec<u8>>()).unwrap();
    let out = root.path().join("echoed.bin");
    let url = format!("http://{}/echo", server.addr);
    let shmem_before = proc_status_kib(server.pid(), "RssShmem");
    // `-T -`: curl does not know the length, and sends chunks.
    let (status, err) = curl_with_stdin(
        &[
            "--fail",
            "-X",
            "POST",
            "-T",
            "-",
            "-D",
            "/dev/stderr",
            "-o",
            out.to_str().unwrap(),
            &url,
        ],
        &file,
    );
    assert!(status.success(), "curl: {err}");
    assert!(err.contains("Transfer-Encoding: chunked"), "{err}");
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&file).unwrap(),
        "echoed file differs"
    );
    let shmem = proc_status_kib(server.pid(), "RssShmem");
    assert!(
        shmem.saturating_sub(shmem_before) < 48 << 10,
        "shared memory grew from {shmem_before} to {shmem} KiB for a 96 MiB chunked body"
    );
    // Past max_body the upload is cut: the answer, already streaming,
    // is cut too (no terminal chunk), and the runner goes on.
    let big = root.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 160 << 20]).unwrap();
    let (status, err) = curl_with_stdin(&["-X", "POST", "-T", "-", "-o", "/dev/null", &url], &big);
    assert!(!status.success(), "a cut answer looked complete: {err}");
    let r = request(&server, "POST", "/echo", b"after");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"after"[..]));
    assert_runner_kept(&server, "/echo");
    assert!(server.stop().success());
}

#[test]
fn copy_mode_uploads_are_held_back_not_queued_whole_in_the_server() {
    let (_root, server) = start_with_config(
        &format!(
            "[limits]\nmax_body = \"1G\"\n\n[[module]]\nprefix = \"/echo\"\npath = \"{}\"\ntransfer = \"copy\"\n",
            lib("echo")
        ),
        &["--workers", "1"],
    );
    let before = proc_status_kib(server.pid(), "VmHWM");
    let len = 384u64 << 20;
    assert_eq!(duplex_upload(&server, "/echo", len, len), (200, len));
    // Parts go inline, and their buffers are free at once: the link's
    // queue to the runner is what must stay bounded.
    let peak = proc_status_kib(server.pid(), "VmHWM");
    assert!(
        peak.saturating_sub(before) < 128 << 10,
        "peak RSS grew from {before} to {peak} KiB for a 384 MiB upload"
    );
    assert!(server.stop().success());
}
