//! [`HttpError`]: what a handler returns instead of a [`Response`] when it
//! fails, turned into an answer with its status by the runtime. Any error
//! type with a `From` conversion into it works with `?`.

use std::borrow::Cow;
use std::fmt;

use crate::error::Error;
use crate::response::{Response, Unsendable};

/// A failed request, answered with its status: 4xx when the client asked
/// for something wrong (its message is sent to the client), 5xx when the
/// module could not answer (a generic message is sent; the detail goes to
/// the module's stderr, which the server logs under the module's name).
///
/// `?` converts into it from [`std::io::Error`] and [`std::fmt::Error`]
/// (a [`Writer`](crate::Writer) that found the output pool full: 503 with
/// `Retry-After`; any other I/O error: 500), from the SDK's [`Error`] (a
/// request whose client went away, a stream that could not start) and from
/// `iolite_ipc::Error` ([`Ctx::alloc`](crate::Ctx::alloc)). Give your own
/// error type a `From` impl into `HttpError` to use `?` on it too.
#[derive(Debug, Clone)]
pub struct HttpError {
    status: u16,
    message: Cow<'static, str>,
    detail: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    /// The request was cancelled: nobody reads the answer, nothing to log.
    cancelled: bool,
}

impl HttpError {
    /// An error with `status` (400 to 599; anything else becomes 500) and
    /// a message for the client.
    pub fn new(status: u16, message: impl Into<Cow<'static, str>>) -> Self {
        HttpError {
            status: if (400..=599).contains(&status) {
                status
            } else {
                500
            },
            message: message.into(),
            detail: None,
            headers: Vec::new(),
            cancelled: false,
        }
    }

    /// 400 Bad Request, with what was wrong.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, message)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(404, "not found")
    }

    /// 405 Method Not Allowed, with `Allow: allow` (such as `GET, HEAD`).
    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(405, "method not allowed").header("Allow", allow)
    }

    /// 500 with a generic message for the client; `detail` (the cause) is
    /// written to stderr, not sent.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(500, "internal error").detail(detail)
    }

    /// 503 with `Retry-After: 1`: the module cannot answer now (its output
    /// pool is full); the same request may succeed a moment later.
    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Self::new(503, "the module is busy: try again")
            .header("Retry-After", "1")
            .detail(detail)
    }

    /// Adds a header field to the answer (see [`Response::header`]).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets what is written to stderr (not sent to the client) when the
    /// request fails.
    pub fn detail(mut self, detail: impl fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The status the client gets.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message the client gets (the body, with a line feed).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the client caused it (4xx); otherwise the module did (5xx).
    pub fn is_client_error(&self) -> bool {
        self.status < 500
    }

    /// Whether the runtime writes it to stderr: a 5xx, unless the request
    /// was cancelled (its client went away).
    pub(crate) fn worth_logging(&self) -> bool {
        !self.is_client_error() && !self.cancelled
    }

    /// The answer: the status, the header fields, the message as plain
    /// text (what [`Module::error_response`](crate::Module::error_response)
    /// answers by default).
    pub fn into_response(self) -> Response {
        self.respond(|status, message| Response::text(status, format!("{message}\n")))
    }

    /// The answer `body(status, message)` makes, with this error's header
    /// fields added (`Allow` of a 405, `Retry-After` of a 503): to answer
    /// errors in another format, such as JSON.
    pub fn respond(self, body: impl FnOnce(u16, &str) -> Response) -> Response {
        let mut resp = body(self.status, &self.message);
        for (name, value) in self.headers {
            resp = resp.header(&name, value);
        }
        resp
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)?;
        match &self.detail {
            Some(detail) => write!(f, ": {detail}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<Unsendable> for HttpError {
    fn from(e: Unsendable) -> Self {
        match e {
            Unsendable::Fault(fault) => HttpError::internal(fault),
            Unsendable::Pool(e) => e.into(),
        }
    }
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::OutOfMemory {
            HttpError::unavailable(e)
        } else {
            HttpError::internal(e)
        }
    }
}

impl From<fmt::Error> for HttpError {
    /// A [`Writer`](crate::Writer) fails only when the output pool is full.
    fn from(_: fmt::Error) -> Self {
        HttpError::unavailable("the output pool is full")
    }
}

impl From<iolite_ipc::Error> for HttpError {
    fn from(e: iolite_ipc::Error) -> Self {
        match e {
            iolite_ipc::Error::PoolExhausted { .. } => HttpError::unavailable(e),
            e => HttpError::internal(e),
        }
    }
}

impl From<Error> for HttpError {
    /// A cancelled request's answer is read by no one (503); anything else
    /// is the module's failure (500).
    fn from(e: Error) -> Self {
        match e {
            Error::Cancelled => HttpError {
                cancelled: true,
                ..HttpError::new(503, "cancelled")
            },
            Error::Ipc(e) => e.into(),
            e => HttpError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_statuses_table() {
        let io = |kind| std::io::Error::new(kind, "inner cause");
        // (error, status, message sent, a Retry-After)
        let cases: Vec<(HttpError, u16, &str, bool)> = vec![
            (HttpError::bad_request("no name"), 400, "no name", false),
            (HttpError::not_found(), 404, "not found", false),
            (
                HttpError::new(200, "not an error"),
                500,
                "not an error",
                false,
            ),
            (HttpError::new(99, "x"), 500, "x", false),
            (
                io(std::io::ErrorKind::NotFound).into(),
                500,
                "internal error",
                false,
            ),
            (
                io(std::io::ErrorKind::OutOfMemory).into(),
                503,
                "the module is busy: try again",
                true,
            ),
            (
                fmt::Error.into(),
                503,
                "the module is busy: try again",
                true,
            ),
            (Error::Cancelled.into(), 503, "cancelled", false),
            (Error::Protocol("odd").into(), 500, "internal error", false),
            (
                iolite_ipc::Error::PoolExhausted {
                    requested: 9,
                    free: 1,
                }
                .into(),
                503,
                "the module is busy: try again",
                true,
            ),
        ];
        for (e, status, message, retry) in cases {
            assert_eq!((e.status(), e.message()), (status, message), "{e}");
            assert_eq!(e.is_client_error(), status < 500);
            let resp = e.into_response();
            assert_eq!(resp.status(), status);
            assert_eq!(resp.body_bytes(), Some(format!("{message}\n").as_bytes()));
            let has_retry = resp.headers().any(|(n, v)| n == "Retry-After" && v == b"1");
            assert_eq!(has_retry, retry, "{status} {message}");
        }
    }

    #[test]
    fn a_5xx_logs_its_cause_and_sends_none_of_it() {
        let e: HttpError = std::io::Error::other("disk on fire").into();
        assert_eq!(e.to_string(), "500 internal error: disk on fire");
        let resp = e.into_response();
        assert_eq!(resp.body_bytes(), Some(&b"internal error\n"[..]));
        let e = HttpError::bad_request("name missing");
        assert_eq!(e.to_string(), "400 name missing");
    }

    #[test]
    fn only_the_modules_failures_are_logged() {
        assert!(!HttpError::bad_request("x").worth_logging());
        assert!(HttpError::internal("x").worth_logging());
        assert!(HttpError::from(fmt::Error).worth_logging());
        assert!(!HttpError::from(Error::Cancelled).worth_logging());
        let json = HttpError::method_not_allowed("POST").respond(|status, message| {
            Response::bytes(status, "x/json", format!("{message:?}").into_bytes())
        });
        assert_eq!(json.status(), 405);
        assert_eq!(json.body_bytes(), Some(&b"\"method not allowed\""[..]));
        assert_eq!(json.headers().nth(1), Some(("Allow", &b"POST"[..])));
    }

    #[test]
    fn question_mark_converts() {
        fn parse(s: &str) -> Result<u32, HttpError> {
            let n: u32 = s
                .parse()
                .map_err(|_| HttpError::bad_request("not a number"))?;
            std::fs::metadata("/nonexistent/iolite")?;
            Ok(n)
        }
        assert_eq!(parse("x").unwrap_err().status(), 400);
        assert_eq!(parse("1").unwrap_err().status(), 500);
        let e = HttpError::method_not_allowed("GET, HEAD").into_response();
        assert_eq!(e.status(), 405);
        assert!(e.headers().any(|(n, v)| n == "Allow" && v == b"GET, HEAD"));
    }
}
