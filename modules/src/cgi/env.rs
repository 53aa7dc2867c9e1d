//! The meta-variables of a request (RFC 3875 §4.1), as a CGI program gets
//! them in its environment and a FastCGI application in `PARAMS`.
//!
//! Every header field becomes `HTTP_NAME` (upper case, `-` as `_`) except
//! the ones with a variable of their own (`Content-Length`,
//! `Content-Type`), `Authorization` and `Proxy-Authorization` (unless the
//! mount passes the first, as Apache's `CGIPassAuth` does), and `Proxy`,
//! never passed (httpoxy: a client must not set a program's
//! `HTTP_PROXY`). Fields sent more than once are joined with `, `.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use iolite_core::handler::RequestCtx;
use iolite_core::http::request::{Method, Version};

/// What the mount found the request to name.
#[derive(Debug, Clone, Copy)]
pub struct Script<'a> {
    /// The script's URL path (`SCRIPT_NAME`): the mount's prefix and the
    /// script below it.
    pub name: &'a [u8],
    /// What follows it in the path (`PATH_INFO`), empty or from a `/`.
    pub path_info: &'a [u8],
    /// The file that runs (`SCRIPT_FILENAME`).
    pub filename: &'a Path,
    /// `DOCUMENT_ROOT`.
    pub document_root: &'a Path,
}

/// The name and value of one meta-variable.
pub type Var = (Vec<u8>, Vec<u8>);

/// The request's meta-variables, `HTTP_*` last in the order sent.
/// `body_len` is the body's length when the program will be told it
/// (`CONTENT_LENGTH`).
pub fn meta_variables(
    req: &RequestCtx<'_>,
    script: &Script<'_>,
    body_len: Option<u64>,
    pass_authorization: bool,
) -> Vec<Var> {
    let mut vars: Vec<Var> = Vec::with_capacity(24 + req.fields.len());
    let mut set = |name: &str, value: &[u8]| vars.push((name.as_bytes().to_vec(), value.to_vec()));
    set("GATEWAY_INTERFACE", b"CGI/1.1");
    set(
        "SERVER_SOFTWARE",
        concat!("iolite/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let host = req.head.host.map(|h| req.get(h)).unwrap_or(b"");
    let (server_name, server_port) = split_host(host);
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port.unwrap_or(b"80"));
    set(
        "SERVER_PROTOCOL",
        match req.head.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        },
    );
    set("REQUEST_METHOD", req.get(req.head.method_token));
    set("REQUEST_URI", req.target());
    set("REQUEST_SCHEME", b"http");
    set("SCRIPT_NAME", script.name);
    set("SCRIPT_FILENAME", script.filename.as_os_str().as_bytes());
    set("DOCUMENT_ROOT", script.document_root.as_os_str().as_bytes());
    if !script.path_info.is_empty() {
        set("PATH_INFO", script.path_info);
        let mut translated = script.document_root.as_os_str().as_bytes().to_vec();
        translated.extend_from_slice(script.path_info);
        set("PATH_TRANSLATED", &translated);
    }
    set("QUERY_STRING", req.query());
    set("REMOTE_ADDR", req.client.ip().to_string().as_bytes());
    set("REMOTE_PORT", req.client.port().to_string().as_bytes());
    if let Some(len) = body_len {
        set("CONTENT_LENGTH", len.to_string().as_bytes());
    }
    let mut http: Vec<Var> = Vec::new();
    for (name, value) in req.headers() {
        if name.eq_ignore_ascii_case(b"content-type") {
            if req.head.method != Method::Get || body_len.is_some() {
                set("CONTENT_TYPE", value);
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"proxy")
            || name.eq_ignore_ascii_case(b"proxy-authorization")
            || (name.eq_ignore_ascii_case(b"authorization") && !pass_authorization)
        {
            continue;
        }
        let mut var = b"HTTP_".to_vec();
        var.extend(name.iter().map(|&b| match b {
            b'-' => b'_',
            b => b.to_ascii_uppercase(),
        }));
        match http.iter_mut().find(|(n, _)| *n == var) {
            Some((_, joined)) => {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value);
            }
            None => http.push((var, value.to_vec())),
        }
    }
    vars.extend(http);
    vars
}

/// `host[:port]` or `[v6]:port`: the name and the port, if any.
fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    // The colon before a port is the last one, unless it is inside an
    // IPv6 literal's brackets.
    let Some(colon) = host.iter().rposition(|&b| b == b':') else {
        return (host, None);
    };
    if host
        .iter()
        .rposition(|&b| b == b']')
        .is_some_and(|b| b > colon)
    {
        return (host, None);
    }
    let (name, port) = (&host[..colon], &host[colon + 1..]);
    if !port.is_empty() && port.iter().all(u8::is_ascii_digit) {
        (name, Some(port))
    } else {
        (host, None)
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    /// A Host field, and the name and port in it.
    type Case = (&'static [u8], &'static [u8], Option<&'static [u8]>);

    #[test]
    fn host_and_port() {
        let table: &[Case] = &[
            (b"example.com", b"example.com", None),
            (b"example.com:8080", b"example.com", Some(b"8080")),
            (b"[::1]:81", b"[::1]", Some(b"81")),
            (b"[::1]", b"[::1]", None),
            (b"host:", b"host:", None),
            (b"", b"", None),
        ];
        for (host, name, port) in table {
            assert_eq!(split_host(host), (*name, *port), "{host:?}");
        }
    }
}
