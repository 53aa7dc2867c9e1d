//! The checks a module's answer passes before it reaches a client
//! ([`to_response`]): a status in 200..=999, and header fields that can
//! neither split the response nor frame it (the server's own are
//! dropped). A leaf: the exchange and the fuzz target both use it.

use std::sync::Arc;

use iolite_core::{Body, Error, HeaderLines, Response, UpstreamFailure, UpstreamKind};
use iolite_sdk::wire::ResponseFrame;

/// Header fields the server writes itself (a module's are refused).
pub const SERVER_FIELDS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "server",
    "keep-alive",
];

/// Turns module `name`'s answer into a core response; an invalid one
/// (status out of range, a header that could split the response) is an
/// upstream error (502).
pub(crate) fn to_response(
    name: &Arc<str>,
    frame: ResponseFrame,
    body: Body,
) -> Result<Response, Error> {
    let invalid = |why| {
        Error::upstream(
            UpstreamKind::Module,
            name.clone(),
            UpstreamFailure::InvalidAnswer(why),
        )
    };
    if !(200..=999).contains(&frame.status) {
        tracing::warn!(module = %name, status = frame.status, "module answered an invalid status");
        return Err(invalid("status out of range"));
    }
    let mut lines = Vec::new();
    for (field, value) in &frame.headers {
        let token = !field.is_empty()
            && field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        // RFC 9110 field-value: visible characters, obs-text, spaces and
        // tabs. CR and LF would split the response; other control
        // characters make strict clients refuse all of it.
        let clean = value
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if !token || !clean {
            tracing::warn!(module = %name, header = %field, "module answered an invalid header field");
            return Err(invalid("header field"));
        }
        if SERVER_FIELDS.iter().any(|f| field.eq_ignore_ascii_case(f)) {
            continue;
        }
        lines.extend_from_slice(field.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value);
        lines.extend_from_slice(b"\r\n");
    }
    Ok(Response::new(frame.status, HeaderLines::Owned(lines), body))
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
        let name: Arc<str> = Arc::from("/m");
        for (status, headers, want_status, want_lines) in table {
            let r = to_response(&name, frame(*status, headers), Body::Empty)
                .unwrap_or_else(|e| Response::from_error(&e));
            assert_eq!(r.status, *want_status, "{status} {headers:?}");
            if *want_status == 502 {
                assert_eq!(
                    r.error,
                    Some(iolite_core::Side::Upstream),
                    "{status} {headers:?}"
                );
            }
            if *want_status != 502 {
                assert_eq!(r.headers.as_bytes(), *want_lines, "{status} {headers:?}");
            }
        }
    }
}
