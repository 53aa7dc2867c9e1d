//! Preconditions on every handler's answer (RFC 9110 §13.2.2), as nginx's
//! not-modified filter does: a 200 to a GET or HEAD that carries an `ETag`
//! or a `Last-Modified` is checked against the request's `If-Match`,
//! `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since`; a
//! current copy gets 304 (with the fields a 304 repeats), a failed
//! precondition 412. The static files check theirs before answering (and
//! also serve ranges); this covers process modules, CGI, FastCGI and any
//! other handler. Unsafe methods are the handler's business: by the time
//! it answered, it has acted, so a 412 here would come too late.

use crate::body::BodyMode;
use crate::error::Error;
use crate::handler::{PendingResponse, ResponseFuture};
use crate::http::conditional::{Preconditions, Verdict, evaluate};
use crate::http::date::parse_http_date;
use crate::http::request::{Method, RequestHead};
use crate::response::{Body, HeaderLines, Response};

/// A request's precondition fields, copied (the answer may come later).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    if_match: Option<Box<[u8]>>,
    if_unmodified_since: Option<Box<[u8]>>,
    if_none_match: Option<Box<[u8]>>,
    if_modified_since: Option<Box<[u8]>>,
}

impl Conditions {
    /// The fields of a GET or HEAD that has any (`None` otherwise: the
    /// common case costs four checks).
    pub fn of(head: &RequestHead, head_bytes: &[u8]) -> Option<Conditions> {
        if !matches!(head.method, Method::Get | Method::Head) {
            return None;
        }
        let field = |s: Option<crate::http::request::Span>| s.map(|s| Box::from(s.get(head_bytes)));
        let c = Conditions {
            if_match: field(head.if_match),
            if_unmodified_since: field(head.if_unmodified_since),
            if_none_match: field(head.if_none_match),
            if_modified_since: field(head.if_modified_since),
        };
        let any = c.if_match.is_some()
            || c.if_unmodified_since.is_some()
            || c.if_none_match.is_some()
            || c.if_modified_since.is_some();
        any.then_some(c)
    }

    /// `response`, or the 304 or 412 that replaces it.
    pub fn apply(&self, response: Response) -> Response {
        if response.status != 200 {
            return response;
        }
        let lines = response.headers.as_bytes();
        let etag = field(lines, b"etag");
        let modified = field(lines, b"last-modified").and_then(parse_http_date);
        if etag.is_none() && modified.is_none() {
            return response;
        }
        // A validator the answer lacks: the fields that compare with it
        // are not evaluated (an `If-Match` then matches only `*`).
        let p = Preconditions {
            if_match: self.if_match.as_deref(),
            if_unmodified_since: self
                .if_unmodified_since
                .as_deref()
                .filter(|_| modified.is_some()),
            if_none_match: self.if_none_match.as_deref(),
            if_modified_since: self
                .if_modified_since
                .as_deref()
                .filter(|_| modified.is_some()),
        };
        match evaluate(&p, etag.unwrap_or_default(), modified.unwrap_or(0), true) {
            Verdict::Proceed => response,
            Verdict::Failed => Response::from_error(&Error::PreconditionFailed),
            Verdict::NotModified => {
                let mut kept = Vec::new();
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    let name = line.split(|&b| b == b':').next().unwrap_or_default();
                    if REPEATED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                        kept.extend_from_slice(line);
                    }
                }
                let mut r = Response::new(304, HeaderLines::Owned(kept), Body::Empty);
                r.close = response.close;
                r
            }
        }
    }
}

/// What a 304 repeats of the 200 (RFC 9110 §15.4.5).
const REPEATED: [&[u8]; 6] = [
    b"etag",
    b"last-modified",
    b"cache-control",
    b"expires",
    b"vary",
    b"content-location",
];

/// The value of the first `name` field in `lines` (`Name: value\r\n`...).
fn field<'a>(lines: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    lines.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// A later answer with its preconditions checked once it comes.
#[derive(Debug)]
pub struct Checked {
    pub inner: Box<dyn PendingResponse>,
    pub conditions: Conditions,
}

impl PendingResponse for Checked {
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, Error> {
        self.inner.body(len)
    }

    fn respond(self: Box<Self>) -> ResponseFuture {
        let Checked { inner, conditions } = *self;
        let answer = inner.respond();
        Box::pin(async move { answer.await.map(|r| conditions.apply(r)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(lines: &'static str) -> Response {
        Response::new(
            200,
            HeaderLines::Static(lines.as_bytes()),
            Body::Static(b"body"),
        )
    }

    fn cond(f: &[(&str, &str)]) -> Conditions {
        let get = |n: &str| {
            f.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| Box::from(v.as_bytes()))
        };
        Conditions {
            if_match: get("if-match"),
            if_unmodified_since: get("if-unmodified-since"),
            if_none_match: get("if-none-match"),
            if_modified_since: get("if-modified-since"),
        }
    }

    const BOTH: &str = "Content-Type: text/plain\r\nETag: \"v1\"\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n";
    const TAG: &str = "ETag: \"v1\"\r\n";
    const DATE: &str = "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
    const NONE: &str = "Content-Type: text/plain\r\n";
    const BEFORE: &str = "Sat, 05 Nov 1994 08:49:37 GMT";
    const AFTER: &str = "Mon, 07 Nov 1994 08:49:37 GMT";

    /// The answer's header lines, the request's fields, the status sent.
    type Case = (&'static str, &'static [(&'static str, &'static str)], u16);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (BOTH, &[("if-none-match", "\"v1\"")], 304),
            (BOTH, &[("if-none-match", "W/\"v1\"")], 304),
            (BOTH, &[("if-none-match", "\"v2\"")], 200),
            (BOTH, &[("if-none-match", "*")], 304),
            (BOTH, &[("if-modified-since", AFTER)], 304),
            (BOTH, &[("if-modified-since", BEFORE)], 200),
            // If-None-Match decides; If-Modified-Since is then ignored.
            (
                BOTH,
                &[("if-none-match", "\"v2\""), ("if-modified-since", AFTER)],
                200,
            ),
            (BOTH, &[("if-match", "\"v1\"")], 200),
            (BOTH, &[("if-match", "\"v2\"")], 412),
            (BOTH, &[("if-match", "W/\"v1\"")], 412),
            (BOTH, &[("if-unmodified-since", BEFORE)], 412),
            (BOTH, &[("if-unmodified-since", AFTER)], 200),
            (
                BOTH,
                &[("if-match", "\"v1\""), ("if-unmodified-since", BEFORE)],
                200,
            ),
            (TAG, &[("if-none-match", "\"v1\"")], 304),
            (TAG, &[("if-modified-since", AFTER)], 200),
            (TAG, &[("if-unmodified-since", BEFORE)], 200),
            (DATE, &[("if-modified-since", AFTER)], 304),
            (DATE, &[("if-none-match", "\"v1\"")], 200),
            (DATE, &[("if-match", "\"v1\"")], 412),
            (DATE, &[("if-match", "*")], 200),
            (NONE, &[("if-none-match", "*")], 200),
        ];
        for (lines, fields, want) in cases {
            let got = cond(fields).apply(answer(lines));
            assert_eq!(got.status, *want, "{lines:?} {fields:?}");
        }
    }

    #[test]
    fn a_304_repeats_the_validators_and_caching_fields_and_has_no_body() {
        let r = cond(&[("if-none-match", "\"v1\"")]).apply(answer(BOTH));
        assert_eq!(
            r.headers.as_bytes(),
            b"ETag: \"v1\"\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nCache-Control: max-age=60\r\n"
        );
        assert!(matches!(r.body, Body::Empty));
    }

    #[test]
    fn other_statuses_pass() {
        let mut r = answer(BOTH);
        r.status = 201;
        assert_eq!(cond(&[("if-none-match", "*")]).apply(r).status, 201);
    }
}
