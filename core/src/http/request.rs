//! The request-head parser: httparse into a stack array of headers, then the
//! framing and connection rules of RFC 9112 checked once. The result holds
//! byte spans into the caller's buffer, never copies, so parsing allocates
//! nothing; "need more bytes" is `Ok(None)`, not an error.

use crate::error::Error;

/// The most header fields [`Limits::max_headers`] may allow: the parser
/// keeps that many slots on the stack.
pub const MAX_HEADERS: usize = 128;

/// Size limits applied while reading a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head, request line and CRLFs included (beyond: 431,
    /// or 414 while the request line itself is still incomplete).
    pub max_head: usize,
    /// Longest request target (beyond: 414).
    pub max_uri: usize,
    /// Largest request body, after chunked decoding (beyond: 413).
    pub max_body: u64,
    /// Most header fields in one request, at most [`MAX_HEADERS`] (beyond: 431).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_uri: 8 * 1024,
            max_body: 1024 * 1024,
            max_headers: 100,
        }
    }
}

/// A byte range `start..end` of the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The bytes this span names in `buf` (the buffer given to [`parse_head`]).
    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    fn of(buf: &[u8], part: &[u8]) -> Span {
        // Both are slices of `buf` (httparse hands out sub-slices), so the
        // address difference is the offset; head sizes are far below u32::MAX.
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }
}

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    /// A syntactically valid method iolite does not know (answered with 501).
    Unknown,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            _ => Method::Unknown,
        }
    }
}

/// The protocol version of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Spans refer to the buffer given to [`parse_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The method token as sent (for the access log).
    pub method_token: Span,
    /// The request target as sent (origin-form, absolute-form, `*`...).
    pub target: Span,
    pub version: Version,
    /// Bytes of the head, final empty line included: the body starts here.
    pub head_len: usize,
    pub body: BodyFraming,
    /// `Connection: close` was sent.
    pub close: bool,
    /// `Connection: keep-alive` was sent.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub host: Option<Span>,
    pub if_match: Option<Span>,
    pub if_unmodified_since: Option<Span>,
    pub if_none_match: Option<Span>,
    pub if_modified_since: Option<Span>,
    pub range: Option<Span>,
    pub if_range: Option<Span>,
    /// `Accept-Encoding` (the first occurrence).
    pub accept_encoding: Option<Span>,
    /// `Referer` and `User-Agent`, for the access log.
    pub referer: Option<Span>,
    pub user_agent: Option<Span>,
}

impl RequestHead {
    /// Whether the client asked to keep the connection open after this
    /// exchange (HTTP/1.1 by default, HTTP/1.0 only with `keep-alive`).
    pub fn wants_keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        }
    }
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet and is still within the limits.
/// `Err`: the request is malformed or too large; its status says which.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, Error> {
    parse(buf, limits, None)
}

/// [`parse_head`], also leaving every header field in `fields` as (name,
/// value) spans of `buf`, in the order sent (cleared first), so handlers
/// see the fields without parsing the head again. `fields` is reused
/// across requests: no allocation once it has grown.
pub fn parse_head_fields(
    buf: &[u8],
    limits: &Limits,
    fields: &mut Vec<(Span, Span)>,
) -> Result<Option<RequestHead>, Error> {
    fields.clear();
    parse(buf, limits, Some(fields))
}

fn parse(
    buf: &[u8],
    limits: &Limits,
    mut fields: Option<&mut Vec<(Span, Span)>>,
) -> Result<Option<RequestHead>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                // Still inside the request line: the target is what overflows.
                let line_done = buf
                    .iter()
                    .skip_while(|b| **b == b'\r' || **b == b'\n')
                    .any(|b| *b == b'\n');
                return Err(if line_done {
                    Error::HeadTooLarge
                } else {
                    Error::UriTooLong
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(e) => return Err(Error::BadRequest(httparse_reason(e))),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Error::BadRequest("incomplete request line"));
    };
    if target.len() > limits.max_uri {
        return Err(Error::UriTooLong);
    }
    if head_len > limits.max_head || req.headers.len() > limits.max_headers {
        return Err(Error::HeadTooLarge);
    }
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Error::BadRequest("unsupported HTTP version")),
    };
    let mut head = RequestHead {
        method: Method::from_token(method),
        method_token: Span::of(buf, method.as_bytes()),
        target: Span::of(buf, target.as_bytes()),
        version,
        head_len,
        body: BodyFraming::None,
        close: false,
        keep_alive: false,
        expect_continue: false,
        host: None,
        if_match: None,
        if_unmodified_since: None,
        if_none_match: None,
        if_modified_since: None,
        range: None,
        if_range: None,
        accept_encoding: None,
        referer: None,
        user_agent: None,
    };
    let mut content_length: Option<u64> = None;
    let mut te = TransferCodings::default();
    for h in req.headers.iter() {
        if let Some(fields) = fields.as_deref_mut() {
            fields.push((Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
        }
        let value = trim(h.value);
        match field(h.name.as_bytes()) {
            Field::Other => {}
            Field::ContentLength => {
                let n = parse_content_length(value)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(Error::BadRequest("differing Content-Length values"));
                }
                content_length = Some(n);
            }
            Field::TransferEncoding => te.add(value),
            Field::Connection => {
                for token in list(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        head.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        head.keep_alive = true;
                    }
                }
            }
            Field::Expect => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    head.expect_continue = true;
                } else {
                    return Err(Error::ExpectationFailed);
                }
            }
            Field::Host => {
                if head.host.is_some() {
                    return Err(Error::BadRequest("more than one Host"));
                }
                head.host = Some(Span::of(buf, value));
            }
            Field::IfMatch => {
                head.if_match.get_or_insert(Span::of(buf, value));
            }
            Field::IfUnmodifiedSince => {
                head.if_unmodified_since.get_or_insert(Span::of(buf, value));
            }
            Field::IfNoneMatch => {
                head.if_none_match.get_or_insert(Span::of(buf, value));
            }
            Field::IfModifiedSince => {
                head.if_modified_since.get_or_insert(Span::of(buf, value));
            }
            Field::Range => {
                head.range.get_or_insert(Span::of(buf, value));
            }
            Field::IfRange => {
                head.if_range.get_or_insert(Span::of(buf, value));
            }
            Field::AcceptEncoding => {
                head.accept_encoding.get_or_insert(Span::of(buf, value));
            }
            Field::Referer => {
                head.referer.get_or_insert(Span::of(buf, value));
            }
            Field::UserAgent => {
                head.user_agent.get_or_insert(Span::of(buf, value));
            }
        }
    }
    if version == Version::Http11 && head.host.is_none() {
        return Err(Error::BadRequest("HTTP/1.1 request without Host"));
    }
    head.body = match (te.present, content_length) {
        (false, None) | (false, Some(0)) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
        (true, Some(_)) => {
            return Err(Error::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        (true, None) => {
            if version == Version::Http10 {
                return Err(Error::BadRequest(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            te.framing()?
        }
    };
    Ok(Some(head))
}

/// The header fields the server acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
    Host,
    IfMatch,
    IfUnmodifiedSince,
    IfNoneMatch,
    IfModifiedSince,
    Range,
    IfRange,
    AcceptEncoding,
    Referer,
    UserAgent,
    Other,
}

/// Classifies a field name: one length switch, then at most one
/// case-insensitive comparison (this runs for every header of every request).
fn field(name: &[u8]) -> Field {
    let (known, field): (&[u8], Field) = match name.len() {
        4 => (b"host", Field::Host),
        5 => (b"range", Field::Range),
        6 => (b"expect", Field::Expect),
        7 => (b"referer", Field::Referer),
        8 if name[3].eq_ignore_ascii_case(&b'm') => (b"if-match", Field::IfMatch),
        8 => (b"if-range", Field::IfRange),
        10 if name[0].eq_ignore_ascii_case(&b'u') => (b"user-agent", Field::UserAgent),
        10 => (b"connection", Field::Connection),
        13 => (b"if-none-match", Field::IfNoneMatch),
        14 => (b"content-length", Field::ContentLength),
        15 => (b"accept-encoding", Field::AcceptEncoding),
        17 if name[0].eq_ignore_ascii_case(&b't') => {
            (b"transfer-encoding", Field::TransferEncoding)
        }
        17 => (b"if-modified-since", Field::IfModifiedSince),
        19 => (b"if-unmodified-since", Field::IfUnmodifiedSince),
        _ => return Field::Other,
    };
    if name.eq_ignore_ascii_case(known) {
        field
    } else {
        Field::Other
    }
}

/// What the Transfer-Encoding fields said, across every occurrence.
#[derive(Debug, Default)]
struct TransferCodings {
    present: bool,
    chunked: u32,
    last_is_chunked: bool,
    other: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list(value) {
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked += u32::from(chunked);
            self.other |= !chunked;
            self.last_is_chunked = chunked;
        }
    }

    fn framing(&self) -> Result<BodyFraming, Error> {
        if self.other {
            // Codings iolite does not implement (gzip, compress...) or junk.
            return Err(Error::NotImplemented("transfer coding other than chunked"));
        }
        if self.chunked != 1 || !self.last_is_chunked {
            return Err(Error::BadRequest(
                "chunked must be applied exactly once, last",
            ));
        }
        Ok(BodyFraming::Chunked)
    }
}

fn parse_content_length(value: &[u8]) -> Result<u64, Error> {
    // A list of identical values ("5, 5") is one value (RFC 9110 8.6).
    let mut result: Option<u64> = None;
    for item in value.split(|&b| b == b',') {
        let item = trim(item);
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return Err(Error::BadRequest("invalid Content-Length"));
        }
        let n = item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if result.is_some_and(|r| r != n) {
            return Err(Error::BadRequest("differing Content-Length values"));
        }
        result = Some(n);
    }
    result.ok_or(Error::BadRequest("invalid Content-Length"))
}

/// The non-empty elements of a comma-separated field value, trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (or obs-fold)",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending (bare CR)",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<RequestHead>, Error> {
        parse_head(raw.as_bytes(), &Limits::default())
    }

    fn status(raw: &str) -> u16 {
        match parse(raw) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn request_heads_table() {
        // (request bytes, 200 = parsed / 0 = need more / error status)
        let table: &[(&str, u16)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET / HTTP/1.0\r\n\r\n", 200),
            ("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET / HTTP/1.1\nHost: a\n\n", 200),
            ("GET / HTTP/1.1\r\nHost: a\r\n", 0),
            ("GET / HTTP/1.1\r\nHo", 0),
            ("GE", 0),
            ("", 0),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
            ("GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET /\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                200,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                200,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                200,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
                200,
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
            ("FROB / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: caf\u{e9}\r\n\r\n", 200),
            ("GET / HTTP/1.1\r\nHOST: a\r\nhost: b\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: gzip\r\n\r\n",
                501,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: x\r\n\r\n",
                200,
            ),
        ];
        for (raw, want) in table {
            assert_eq!(status(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn fields_are_extracted() {
        let raw = "HEAD /a%20b?q=1 HTTP/1.0\r\nConnection: Keep-Alive\r\nRange: bytes=0-1\r\nIf-None-Match: \"x\"\r\nContent-Length: 3\r\n\r\nabc";
        let head = parse(raw).unwrap().unwrap();
        let buf = raw.as_bytes();
        assert_eq!(head.method, Method::Head);
        assert_eq!(head.version, Version::Http10);
        assert_eq!(head.target.get(buf), b"/a%20b?q=1");
        assert_eq!(head.range.unwrap().get(buf), b"bytes=0-1");
        assert_eq!(head.if_none_match.unwrap().get(buf), b"\"x\"");
        assert_eq!(head.body, BodyFraming::Length(3));
        assert_eq!(head.head_len, raw.len() - 3);
        assert!(head.wants_keep_alive());
        let close = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close.wants_keep_alive());
        let ten = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!ten.wants_keep_alive());
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
                .unwrap()
                .unwrap()
                .body,
            BodyFraming::Chunked
        );
    }

    #[test]
    fn limits_give_414_and_431() {
        let limits = Limits {
            max_head: 64,
            max_uri: 32,
            max_body: 10,
            max_headers: 2,
        };
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(40));
        assert_eq!(
            parse_head(long_target.as_bytes(), &limits)
                .unwrap_err()
                .status(),
            414
        );
        let endless_line = format!("GET /{}", "a".repeat(100));
        assert_eq!(
            parse_head(endless_line.as_bytes(), &limits)
                .unwrap_err()
                .status(),
            414
        );
        let big_head = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "b".repeat(100));
        assert_eq!(
            parse_head(big_head.as_bytes(), &limits)
                .unwrap_err()
                .status(),
            431
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X{i}: y\r\n"))
            .collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(parse(&many).unwrap_err().status(), 431);
        // The configured count, below the parser's capacity.
        let two = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        assert!(parse_head(two, &limits).unwrap().is_some());
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\nZ: w\r\n\r\n";
        assert_eq!(parse_head(three, &limits).unwrap_err().status(), 431);
    }
}
