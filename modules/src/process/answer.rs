//! The checks a module's answer passes before it reaches a client
//! ([`to_response`]): a status in 200..=999, and header fields that can
//! neither split the response nor frame it (the server's own are
//! dropped). A leaf: the exchange and the fuzz target both use it.

use iolite_core::{Body, HeaderLines, Response};
use iolite_sdk::wire::ResponseFrame;

/// A short text answer from the server itself (a 502, 503 or 504).
pub(crate) fn plain(status: u16, text: &'static [u8]) -> Response {
    Response::new(
        status,
        HeaderLines::Static(b"Content-Type: text/plain; charset=utf-8\r\n"),
        Body::Static(text),
    )
}

/// Header fields the server writes itself (a module's are refused).
pub const SERVER_FIELDS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "server",
    "keep-alive",
];

/// Turns a module's answer into a core response; an invalid one (status
/// out of range, a header that could split the response) is a 502.
pub(crate) fn to_response(prefix: &str, frame: ResponseFrame, body: Body) -> Response {
    if !(200..=999).contains(&frame.status) {
        tracing::warn!(module = %prefix, status = frame.status, "module answered an invalid status");
        return plain(502, b"502 Bad Gateway\n");
    }
    let mut lines = Vec::new();
    for (name, value) in &frame.headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        // RFC 9110 field-value: visible characters, obs-text, spaces and
        // tabs. CR and LF would split the response; other control
        // characters make strict clients refuse all of it.
        let clean = value
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if !token || !clean {
            tracing::warn!(module = %prefix, header = %name, "module answered an invalid header field");
            return plain(502, b"502 Bad Gateway\n");
        }
        if SERVER_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        lines.extend_from_slice(name.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value);
        lines.extend_from_slice(b"\r\n");
    }
    Response::new(frame.status, HeaderLines::Owned(lines), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(status: u16, headers: &[(&str, &[u8])]) -> ResponseFrame {
        ResponseFrame {
            id: 1,
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect(),
            body: iolite_ipc::AggDesc::default(),
        }
    }

    #[test]
    fn module_answers_are_checked_table() {
        type Case = (
            u16,
            &'static [(&'static str, &'static [u8])],
            u16,
            &'static [u8],
        );
        let table: &[Case] = &[
            (
                200,
                &[("Content-Type", b"text/plain")],
                200,
                b"Content-Type: text/plain\r\n",
            ),
            (
                201,
                &[("X-A", b"1"), ("x-b", b"two words")],
                201,
                b"X-A: 1\r\nx-b: two words\r\n",
            ),
            // The server's own fields are dropped, not duplicated.
            (
                200,
                &[
                    ("Content-Length", b"9"),
                    ("connection", b"close"),
                    ("Date", b"x"),
                ],
                200,
                b"",
            ),
            // Response splitting and bad names are refused.
            (200, &[("X-A", b"1\r\nSet-Cookie: a=b")], 502, b""),
            (200, &[("X-A", b"1\n")], 502, b""),
            // Other control characters (found by the module_answer fuzz
            // target: httparse, as strict clients, refused the head).
            (
                200,
                &[("Content-Type", b" application/oct\xa1t-st\x1eeam")],
                502,
                b"",
            ),
            (200, &[("X-A", b"\x00")], 502, b""),
            (200, &[("X-A", b"a\x7f")], 502, b""),
            (200, &[("X-A", b"\x1b[2J")], 502, b""),
            // Tabs and obs-text are fine.
            (200, &[("X-A", b"a\tb \xe9")], 200, b"X-A: a\tb \xe9\r\n"),
            (200, &[("Bad Name", b"1")], 502, b""),
            (200, &[("", b"1")], 502, b""),
            (200, &[("X:Y", b"1")], 502, b""),
            // Statuses a module may not send.
            (100, &[], 502, b""),
            (199, &[], 502, b""),
            (1000, &[], 502, b""),
            (404, &[], 404, b""),
        ];
        for (status, headers, want_status, want_lines) in table {
            let r = to_response("/m", frame(*status, headers), Body::Empty);
            assert_eq!(r.status, *want_status, "{status} {headers:?}");
            if *want_status != 502 {
                assert_eq!(r.headers.as_bytes(), *want_lines, "{status} {headers:?}");
            }
        }
    }
}
