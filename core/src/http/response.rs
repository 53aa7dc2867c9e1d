//! The response-head writer: status line, `Server`, `Date`, the caller's
//! pre-formatted header lines, `Content-Length` and `Connection`, appended
//! into a reused buffer.

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// None: HTTP/1.1 keeps the connection by default.
    Default,
    /// `Connection: keep-alive` (for HTTP/1.0 clients that asked for it).
    KeepAlive,
    /// `Connection: close`: this is the last response on the connection.
    Close,
}

/// The status line for `status`, CRLF included, for the statuses this
/// table names (the server's own, and the common ones a module sends);
/// `None` for others, which [`write_head`] writes without a reason phrase.
pub fn status_line(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        100 => b"HTTP/1.1 100 Continue\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        202 => b"HTTP/1.1 202 Accepted\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        303 => b"HTTP/1.1 303 See Other\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        307 => b"HTTP/1.1 307 Temporary Redirect\r\n",
        308 => b"HTTP/1.1 308 Permanent Redirect\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        409 => b"HTTP/1.1 409 Conflict\r\n",
        410 => b"HTTP/1.1 410 Gone\r\n",
        411 => b"HTTP/1.1 411 Length Required\r\n",
        412 => b"HTTP/1.1 412 Precondition Failed\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        415 => b"HTTP/1.1 415 Unsupported Media Type\r\n",
        416 => b"HTTP/1.1 416 Range Not Satisfiable\r\n",
        417 => b"HTTP/1.1 417 Expectation Failed\r\n",
        422 => b"HTTP/1.1 422 Unprocessable Content\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        _ => return None,
    })
}

/// Whether a response with this status may carry a body (and so a
/// `Content-Length`).
pub fn status_has_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1: a body whose length is not
    /// known when its head goes out).
    Chunked,
    /// Neither: the body ends when the connection closes (HTTP/1.0 clients,
    /// which cannot take chunks).
    UntilClose,
}

/// Appends a complete response head to `out`. `lines` are header fields,
/// each ending in CRLF; `content_length` is omitted for statuses without a
/// body. A status [`status_line`] does not name goes out as its three
/// digits and an empty reason phrase (`HTTP/1.1 299 \r\n`, as RFC 9112
/// allows); one outside `100..=999` cannot be written and goes out as 500.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    lines: &[u8],
    content_length: u64,
    connection: ConnectionHeader,
) {
    write_head_framed(
        out,
        status,
        date,
        lines,
        Framing::Length(content_length),
        connection,
    );
}

/// [`write_head`] for a body delimited by `framing`.
pub fn write_head_framed(
    out: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    lines: &[u8],
    framing: Framing,
    connection: ConnectionHeader,
) {
    match status_line(status) {
        Some(line) => out.extend_from_slice(line),
        None if (100..=999).contains(&status) => {
            out.extend_from_slice(b"HTTP/1.1 ");
            push_decimal(out, u64::from(status));
            out.extend_from_slice(b" \r\n");
        }
        None => out.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\n"),
    }
    out.extend_from_slice(b"Server: iolite\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(lines);
    if status_has_body(status) {
        match framing {
            Framing::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::UntilClose => {}
        }
    }
    out.extend_from_slice(match connection {
        ConnectionHeader::Default => b"\r\n".as_slice(),
        ConnectionHeader::KeepAlive => b"Connection: keep-alive\r\n\r\n",
        ConnectionHeader::Close => b"Connection: close\r\n\r\n",
    });
}

/// Appends `n` in decimal without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_exact() {
        let date = b"Thu, 01 Jan 1970 00:00:00 GMT";
        let mut out = Vec::new();
        write_head(
            &mut out,
            200,
            date,
            b"Content-Type: text/plain\r\n",
            12,
            ConnectionHeader::Default,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: iolite\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
        );
        out.clear();
        write_head(&mut out, 304, date, b"", 99, ConnectionHeader::Close);
        assert_eq!(
            out,
            b"HTTP/1.1 304 Not Modified\r\nServer: iolite\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nConnection: close\r\n\r\n"
        );
        // Statuses without a reason phrase here keep their code (a module
        // may answer any of 200..=999).
        for (status, line) in [
            (299, &b"HTTP/1.1 299 \r\n"[..]),
            (418, b"HTTP/1.1 418 \r\n"),
            (999, b"HTTP/1.1 999 \r\n"),
            (1000, b"HTTP/1.1 500 Internal Server Error\r\n"),
            (99, b"HTTP/1.1 500 Internal Server Error\r\n"),
        ] {
            out.clear();
            write_head(&mut out, status, date, b"", 0, ConnectionHeader::Default);
            assert!(out.starts_with(line), "{status}: {out:?}");
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let mut r = httparse::Response::new(&mut fields);
            assert_eq!(r.parse(&out), Ok(httparse::Status::Complete(out.len())));
        }
        for (n, text) in [
            (0u64, "0"),
            (7, "7"),
            (10, "10"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, text.as_bytes());
        }
    }
}
