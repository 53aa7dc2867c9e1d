//! The program's answer: its header block read from stdout (and nothing
//! past it but what came in the same reads), parsed with
//! [`crate::cgi::header`], and made a [`Response`] whose body is the
//! stdout pipe itself, spliced to the client by core's send path.
//!
//! - A document or a client redirect: the program's fields, its status
//!   (200, or 302 for a client redirect, unless `Status` says otherwise);
//!   with its `Content-Length` when it gave one, else chunked (HTTP/1.1)
//!   or until the connection closes (HTTP/1.0).
//! - An answer already complete when its header block is read (the pipe
//!   at its end) goes out from memory with its length.
//! - A local redirect: served internally by core (the program's group is
//!   killed by the caller).
//! - NPH (`nph-` programs): only the status line is read (for the log);
//!   the program's bytes go out as they are.
//!
//! A malformed block, one past [`HEADER_LIMIT`], or a program that closes
//! its output first is 502 with one log line naming the program and the
//! problem.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use iolite_core::{Body, Error, FdBody, HeaderLines, Response, UpstreamFailure};
use tokio::net::unix::pipe::Receiver;

use super::mount::Cgi;
use crate::cgi::header::{self, Kind};

/// The longest header block a program may print.
pub(super) const HEADER_LIMIT: usize = 64 * 1024;
/// Bytes read from stdout at a time while looking for the block's end.
const READ: usize = 16 * 1024;
/// The longest status line of an NPH program.
const NPH_LINE: usize = 1024;

/// What was read of stdout: the header block (`..end`), then the body's
/// first bytes; `eof`: the pipe is at its end.
struct Head {
    buf: Vec<u8>,
    end: usize,
    eof: bool,
}

/// Reads the header block from `stdout` (within the mount's timeout:
/// 504) and makes the response.
pub(super) async fn respond(
    cgi: &Cgi,
    program: &Arc<str>,
    stdout: OwnedFd,
    nph: bool,
) -> Result<Response, Error> {
    let stdout = Receiver::from_owned_fd(stdout).map_err(crashed(program))?;
    let head = match tokio::time::timeout(cgi.timeout(), read_head(&stdout, program, nph)).await {
        Ok(head) => head?,
        Err(_) => {
            tracing::warn!(
                cgi = %program,
                "no header block within {:?}: the program's group is killed",
                cgi.timeout()
            );
            return Err(Cgi::error(program, UpstreamFailure::TimedOut));
        }
    };
    let stdout = stdout.into_nonblocking_fd().map_err(crashed(program))?;
    if nph {
        return nph_response(cgi, program, stdout, head);
    }
    let Head { mut buf, end, eof } = head;
    let cgi_head =
        header::parse(&buf[..end]).map_err(|e| invalid(program, "malformed header block", &e))?;
    let rest = buf.split_off(end);
    if let Kind::LocalRedirect(target) = &cgi_head.kind {
        return Ok(Response::internal_redirect(target));
    }
    let mut lines = Vec::with_capacity(256);
    for (name, value) in &cgi_head.fields {
        lines.extend_from_slice(name.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value);
        lines.extend_from_slice(b"\r\n");
    }
    let headers = HeaderLines::Owned(lines);
    if eof {
        if cgi_head
            .content_length
            .is_some_and(|n| n != rest.len() as u64)
        {
            return Err(invalid(
                program,
                "Content-Length differs from the body's length",
                &format!("{:?} given, {} sent", cgi_head.content_length, rest.len()),
            ));
        }
        iolite_ipc::copied::add(rest.len());
        return Ok(Response::new(cgi_head.status, headers, Body::Bytes(rest)));
    }
    let body = FdBody::new(stdout, cgi_head.content_length, cgi.timeout())
        .map_err(crashed(program))?
        .with_prefix(rest);
    Ok(Response::new(
        cgi_head.status,
        headers,
        Body::Fd(Arc::new(body)),
    ))
}

/// An NPH program's answer: its status line checked (and kept for the
/// log), its bytes sent as they are.
fn nph_response(
    cgi: &Cgi,
    program: &Arc<str>,
    stdout: OwnedFd,
    head: Head,
) -> Result<Response, Error> {
    let line = &head.buf[..head.end];
    let status = line
        .strip_prefix(b"HTTP/1.")
        .filter(|l| l.len() >= 5 && matches!(l[0], b'0' | b'1') && l[1] == b' ')
        .map(|l| &l[2..5])
        .filter(|code| code.iter().all(u8::is_ascii_digit) && code[0] != b'0')
        .map(|code| code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')));
    let Some(status) = status else {
        return Err(invalid(
            program,
            "NPH output does not start with a status line",
            &String::from_utf8_lossy(line).escape_debug(),
        ));
    };
    let body = FdBody::new(stdout, None, cgi.timeout())
        .map_err(crashed(program))?
        .with_prefix(head.buf)
        .raw();
    Ok(Response::new(
        status,
        HeaderLines::None,
        Body::Fd(Arc::new(body)),
    ))
}

/// Reads until the header block (or an NPH program's status line) is all
/// in, then once more without waiting, to see whether the answer ended.
async fn read_head(stdout: &Receiver, program: &Arc<str>, nph: bool) -> Result<Head, Error> {
    let mut buf = Vec::with_capacity(READ);
    let mut scanned = 0;
    let end = loop {
        let n = read_some(stdout, &mut buf, true)
            .await
            .map_err(crashed(program))?;
        if n == 0 {
            let problem = if buf.is_empty() {
                "the program ended without any output"
            } else {
                "the program's output ended inside its header block"
            };
            tracing::warn!(cgi = %program, "{problem}");
            return Err(Cgi::error(
                program,
                UpstreamFailure::InvalidAnswer("no header block"),
            ));
        }
        if nph {
            if let Some(lf) = buf.iter().position(|&b| b == b'\n') {
                break lf + 1;
            }
            if buf.len() > NPH_LINE {
                return Err(invalid(program, "NPH status line too long", &buf.len()));
            }
            continue;
        }
        match header::find_end(&buf, scanned, HEADER_LIMIT) {
            Ok(Some(end)) => break end,
            Ok(None) => scanned = buf.len(),
            Err(e) => return Err(invalid(program, "header block too long", &e)),
        }
    };
    // The answer may be complete already (a small document): it then
    // goes out from memory, with its length.
    let eof = buf.len() < HEADER_LIMIT && matches!(read_some(stdout, &mut buf, false).await, Ok(0));
    Ok(Head { buf, end, eof })
}

/// One read of up to [`READ`] bytes appended to `buf`; `wait`: until
/// there are some (else a pipe with nothing yet is an error). Ok(0): the
/// end.
async fn read_some(stdout: &Receiver, buf: &mut Vec<u8>, wait: bool) -> std::io::Result<usize> {
    let filled = buf.len();
    buf.resize(filled + READ, 0);
    let result = loop {
        if wait {
            stdout.readable().await?;
        }
        match stdout.try_read(&mut buf[filled..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if wait && e.kind() == std::io::ErrorKind::WouldBlock => {}
            r => break r,
        }
    };
    buf.truncate(filled + *result.as_ref().unwrap_or(&0));
    result
}

fn crashed<E: Into<std::io::Error>>(program: &Arc<str>) -> impl Fn(E) -> Error + '_ {
    move |e| {
        tracing::warn!(cgi = %program, "reading the program's output: {}", e.into());
        Cgi::error(program, UpstreamFailure::Crashed)
    }
}

/// A 502 for an answer that cannot be sent, logged once with the program.
fn invalid(program: &Arc<str>, why: &'static str, detail: &dyn std::fmt::Display) -> Error {
    tracing::warn!(cgi = %program, "{why}: {detail}");
    Cgi::error(program, UpstreamFailure::InvalidAnswer(why))
}
