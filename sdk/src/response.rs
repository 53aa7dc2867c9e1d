//! [`Response`]: what a handler answers — a status, header fields and a
//! body that is either an aggregate of shared buffers (sent as it is) or
//! bytes the module holds in its own memory (text, HTML, JSON), written
//! into the output pool once when the answer is sent.

use std::borrow::Cow;

use iolite_ipc::{Agg, Pool};

use crate::writer::Writer;

/// An answer: status, header fields and a body.
///
/// The body is either an aggregate ([`body`](Response::body)) that may mix
/// output-pool buffers ([`Writer::finish`]), slices of the request body
/// ([`Request::body`](crate::Request::body)) and cached files
/// ([`Ctx::cached`](crate::Ctx::cached)), none of them copied; or bytes in
/// the module's memory ([`text`](Response::text), [`html`](Response::html),
/// `json`, [`bytes`](Response::bytes)), which the runtime
/// copies once into the output pool when it sends the answer (counted in
/// the runner's `iolite_ipc::copied::total`). For a large generated body,
/// write it with [`Ctx::writer`](crate::Ctx::writer) instead: it lands in
/// the output pool directly.
#[derive(Debug, Clone)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Agg,
    /// Bytes still to be written into the output pool (then appended to
    /// `body`).
    pub(crate) inline: Option<Cow<'static, [u8]>>,
    /// Why the answer could not be made (a value that did not serialize):
    /// the runtime logs it and answers 500.
    pub(crate) fault: Option<String>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Agg::new(),
            inline: None,
            fault: None,
        }
    }

    /// `text` as `text/plain; charset=utf-8` (copied once into the output
    /// pool when sent).
    pub fn text(status: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self::bytes(status, "text/plain; charset=utf-8", into_bytes(text.into()))
    }

    /// `html` as `text/html; charset=utf-8` (copied once into the output
    /// pool when sent).
    pub fn html(status: u16, html: impl Into<Cow<'static, str>>) -> Self {
        Self::bytes(status, "text/html; charset=utf-8", into_bytes(html.into()))
    }

    /// `bytes` with `Content-Type: content_type` (copied once into the
    /// output pool when sent).
    pub fn bytes(status: u16, content_type: &str, bytes: impl Into<Cow<'static, [u8]>>) -> Self {
        let mut resp = Self::new(status).header("Content-Type", content_type);
        resp.inline = Some(bytes.into());
        resp
    }

    /// `value` serialized as JSON (`application/json`), with the `json`
    /// feature. A value that does not serialize (a map with keys that are
    /// not strings, a `Serialize` impl that fails) makes the answer a 500,
    /// its cause on stderr. Copied once into the output pool when sent; to
    /// write a large document straight into it, use
    /// `serde_json::to_writer(ctx.writer(), &value)`.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => Self::bytes(status, "application/json", bytes),
            Err(e) => {
                let mut resp = Self::new(500);
                resp.fault = Some(format!("the JSON answer did not serialize: {e}"));
                resp
            }
        }
    }

    /// An empty answer with `status` (301, 302, 303, 307 or 308) and
    /// `Location: location`. After a form POST, 303 sends the browser to
    /// GET `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::new(status).header("Location", location)
    }

    /// Adds a header field. `Content-Length`, `Date`, `Server` and
    /// `Connection` belong to the server and are dropped; a name or value
    /// with CR or LF makes the response a 500.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body to `body` (shared buffers, sent by reference), in
    /// place of any body set before.
    pub fn body(mut self, body: Agg) -> Self {
        self.body = body;
        self.inline = None;
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The header fields set so far, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The aggregate body set with [`body`](Response::body) (empty for a
    /// body of bytes: see [`body_bytes`](Response::body_bytes)).
    pub fn body_ref(&self) -> &Agg {
        &self.body
    }

    /// The body of bytes set with [`text`](Response::text),
    /// [`html`](Response::html), `json` or
    /// [`bytes`](Response::bytes), not yet in the output pool.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.inline.as_deref()
    }

    /// Writes a body of bytes into `pool` (counted as copied). `Err`: why
    /// the answer cannot be sent as it is (a fault, or no room in the
    /// pool), for the runtime to log and answer with a status.
    pub(crate) fn seal(&mut self, pool: &Pool) -> Result<(), Unsendable> {
        if let Some(fault) = self.fault.take() {
            return Err(Unsendable::Fault(fault));
        }
        let Some(bytes) = self.inline.take() else {
            return Ok(());
        };
        let mut out = Writer::new(pool);
        std::io::Write::write_all(&mut out, &bytes).map_err(Unsendable::Pool)?;
        iolite_ipc::copied::add(bytes.len());
        self.body = out.finish();
        Ok(())
    }
}

/// Why a [`Response`] could not be sent as it is.
#[derive(Debug)]
pub(crate) enum Unsendable {
    /// What the module asked for could not be made (a 500).
    Fault(String),
    /// The output pool had no room for a body of bytes (a 503).
    Pool(std::io::Error),
}

fn into_bytes(s: Cow<'static, str>) -> Cow<'static, [u8]> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_set_the_content_type_and_keep_the_bytes_table() {
        let cases = [
            (
                Response::text(201, "hi"),
                201,
                "text/plain; charset=utf-8",
                &b"hi"[..],
            ),
            (
                Response::html(200, String::from("<p>")),
                200,
                "text/html; charset=utf-8",
                b"<p>",
            ),
            (
                Response::bytes(404, "image/png", vec![1, 2]),
                404,
                "image/png",
                &[1, 2],
            ),
        ];
        for (resp, status, ct, body) in cases {
            assert_eq!(resp.status(), status);
            assert_eq!(
                resp.headers().collect::<Vec<_>>(),
                [("Content-Type", ct.as_bytes())]
            );
            assert_eq!(resp.body_bytes(), Some(body));
            assert!(resp.body_ref().is_empty());
        }
        let r = Response::redirect(303, "/book");
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            [("Location", &b"/book"[..])]
        );
        assert_eq!(r.body_bytes(), None);
    }

    #[test]
    fn a_body_of_bytes_is_written_into_the_pool_once_and_counted() {
        let pool = Pool::new(1 << 20).unwrap();
        let mut resp = Response::text(200, "x".repeat(10_000));
        let before = iolite_ipc::copied::total();
        resp.seal(&pool).unwrap();
        assert!(iolite_ipc::copied::total() >= before + 10_000);
        assert_eq!(resp.body_ref().copy_to_vec(), "x".repeat(10_000).as_bytes());
        assert_eq!(resp.body_bytes(), None);
        // An aggregate body replaces a body of bytes; nothing to write.
        let mut resp = Response::text(200, "gone").body(Agg::new());
        resp.seal(&pool).unwrap();
        assert!(resp.body_ref().is_empty());
    }

    #[test]
    fn a_full_pool_is_a_503() {
        let pool = Pool::new(64 << 10).unwrap();
        let mut resp = Response::bytes(200, "x/y", vec![0u8; 1 << 20]);
        let e = resp.seal(&pool).unwrap_err();
        assert!(matches!(e, Unsendable::Pool(_)), "{e:?}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_serializes_or_becomes_a_500() {
        let pool = Pool::new(1 << 20).unwrap();
        let mut resp = Response::json(200, &serde_json::json!({"a": [1, "b"]}));
        assert_eq!(
            resp.headers().next(),
            Some(("Content-Type", &b"application/json"[..]))
        );
        resp.seal(&pool).unwrap();
        assert_eq!(resp.body_ref().copy_to_vec(), br#"{"a":[1,"b"]}"#);
        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), 3);
        let mut resp = Response::json(200, &bad);
        assert!(matches!(resp.seal(&pool), Err(Unsendable::Fault(_))));
    }
}
