//! Response headers from the configuration — the top-level and each
//! `[[location]]`'s `headers`, `headers_default` and `headers_always` —
//! put on the answers of every handler under a prefix (static files,
//! modules, FastCGI, CGI), by [`crate::phases::Phases::process_request`]
//! whether the answer is ready at once or comes later
//! ([`WithHeaders`]).
//!
//! A location inherits the server's headers and those of every location
//! whose prefix contains its own; per header name (ignoring case) the
//! innermost one wins, whichever table it is in. `headers` replace a field
//! of the same name the handler set; `headers_default` fill in only a
//! field the handler did not set. Both go on answers below 400 (nginx's
//! `add_header` list: 2xx and 3xx, 304 included); with `headers_always`,
//! the headers of that table go on every answer, errors included
//! (nginx's `always`).

use std::sync::Arc;

use crate::body::BodyMode;
use crate::config::Location;
use crate::error::Error;
use crate::handler::{PendingResponse, ResponseFuture};
use crate::response::{HeaderLines, Response};

/// One level's tables: the server's, or one location's.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub set: &'a [(String, String)],
    pub default: &'a [(String, String)],
    pub always: bool,
}

impl<'a> Rules<'a> {
    /// A location's tables.
    pub fn of(l: &'a Location) -> Self {
        Rules {
            set: &l.headers,
            default: &l.headers_default,
            always: l.headers_always,
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: Box<str>,
    /// `Name: value` CRLF.
    line: Box<[u8]>,
    /// From `headers_default`: only when the handler did not set it.
    if_absent: bool,
    /// Also on error answers (400 and above).
    always: bool,
}

/// The headers that apply under one location, resolved once at start-up.
#[derive(Debug, Default)]
pub struct HeaderSet {
    entries: Vec<Entry>,
}

impl HeaderSet {
    /// The headers of `levels`, outermost first (the server's, then the
    /// enclosing locations', then the location's own): an inner level's
    /// header replaces an outer one of the same name. `None` when there
    /// are none.
    pub fn resolve<'a>(levels: impl IntoIterator<Item = Rules<'a>>) -> Option<Arc<HeaderSet>> {
        let mut entries: Vec<Entry> = Vec::new();
        for level in levels {
            let tables = [(level.set, false), (level.default, true)];
            for (table, if_absent) in tables {
                for (name, value) in table {
                    entries.retain(|e| !e.name.eq_ignore_ascii_case(name));
                    entries.push(Entry {
                        name: name.as_str().into(),
                        line: format!("{name}: {value}\r\n").into_bytes().into(),
                        if_absent,
                        always: level.always,
                    });
                }
            }
        }
        (!entries.is_empty()).then(|| Arc::new(HeaderSet { entries }))
    }

    /// Puts the headers on `response` (not on an internal redirect, which
    /// is never sent: the redirected request gets its own location's).
    pub fn apply(&self, response: &mut Response) {
        if response.redirect.is_some() {
            return;
        }
        let error = response.status >= 400;
        let applies = |e: &&Entry| !error || e.always;
        if !self.entries.iter().any(|e| applies(&e)) {
            return;
        }
        let old = response.headers.as_bytes();
        let extra: usize = self.entries.iter().map(|e| e.line.len()).sum();
        let mut out = Vec::with_capacity(old.len() + extra);
        for line in lines(old) {
            let replaced =
                self.entries.iter().filter(applies).any(|e| {
                    !e.if_absent && field_name(line).eq_ignore_ascii_case(e.name.as_bytes())
                });
            if !replaced {
                out.extend_from_slice(line);
            }
        }
        for e in self.entries.iter().filter(applies) {
            let set_by_handler =
                || lines(old).any(|l| field_name(l).eq_ignore_ascii_case(e.name.as_bytes()));
            if !(e.if_absent && set_by_handler()) {
                out.extend_from_slice(&e.line);
            }
        }
        response.headers = HeaderLines::Owned(out);
    }
}

/// The lines of a header block, each with its line end.
fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block.split_inclusive(|&b| b == b'\n')
}

/// A line's field name (before its colon, white space trimmed).
fn field_name(line: &[u8]) -> &[u8] {
    let name = line.split(|&b| b == b':').next().unwrap_or(line);
    name.trim_ascii()
}

/// A pending answer that gets its location's headers when it comes.
#[derive(Debug)]
pub struct WithHeaders {
    pub inner: Box<dyn PendingResponse>,
    pub headers: Arc<HeaderSet>,
}

impl PendingResponse for WithHeaders {
    /// The handler's own choice.
    fn body(&mut self, len: Option<u64>) -> Result<BodyMode, Error> {
        self.inner.body(len)
    }

    /// The handler's answer (its error's answer when it fails) with the
    /// headers put on.
    fn respond(self: Box<Self>) -> ResponseFuture {
        let WithHeaders { inner, headers } = *self;
        let answer = inner.respond();
        Box::pin(async move {
            let mut response = answer.await.unwrap_or_else(|e| Response::from_error(&e));
            headers.apply(&mut response);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Body;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn applied(set: &HeaderSet, status: u16, handler: &'static [u8]) -> String {
        let mut r = Response::new(status, HeaderLines::Static(handler), Body::Empty);
        set.apply(&mut r);
        String::from_utf8(r.headers.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn innermost_wins_per_name_and_defaults_fill_gaps_table() {
        let server = pairs(&[("X-Server", "s"), ("Cache-Control", "max-age=60")]);
        let server_default = pairs(&[("X-Frame-Options", "DENY")]);
        let outer = pairs(&[("cache-control", "no-store")]);
        let inner_default = pairs(&[("Cache-Control", "private"), ("X-Inner", "i")]);
        let always = pairs(&[("Strict-Transport-Security", "max-age=1")]);
        let set = HeaderSet::resolve([
            Rules {
                set: &server,
                default: &server_default,
                always: false,
            },
            Rules {
                set: &outer,
                default: &[],
                always: false,
            },
            Rules {
                set: &always,
                default: &inner_default,
                always: true,
            },
        ])
        .unwrap();
        let table: &[(u16, &'static [u8], &str)] = &[
            // The inner default replaced the outer set Cache-Control: the
            // handler's own one stays.
            (
                200,
                b"Content-Type: a\r\nCache-Control: h\r\n",
                "Content-Type: a\r\nCache-Control: h\r\nX-Server: s\r\nX-Frame-Options: DENY\r\n\
                 Strict-Transport-Security: max-age=1\r\nX-Inner: i\r\n",
            ),
            (
                304,
                b"",
                "X-Server: s\r\nX-Frame-Options: DENY\r\nStrict-Transport-Security: max-age=1\r\n\
                 Cache-Control: private\r\nX-Inner: i\r\n",
            ),
            // `headers` replace the handler's field of that name.
            (
                200,
                b"x-server: module\r\nX-Frame-Options: SAMEORIGIN\r\n",
                "X-Frame-Options: SAMEORIGIN\r\nX-Server: s\r\n\
                 Strict-Transport-Security: max-age=1\r\nCache-Control: private\r\nX-Inner: i\r\n",
            ),
            // Errors: only the `headers_always` level's.
            (
                404,
                b"Content-Type: t\r\n",
                "Content-Type: t\r\nStrict-Transport-Security: max-age=1\r\n\
                 Cache-Control: private\r\nX-Inner: i\r\n",
            ),
        ];
        for (status, handler, want) in table {
            assert_eq!(applied(&set, *status, handler), *want, "{status}");
        }
        assert!(HeaderSet::resolve([]).is_none());
        let only_set = HeaderSet::resolve([Rules {
            set: &server,
            default: &[],
            always: false,
        }])
        .unwrap();
        // Not on errors: the handler's lines untouched.
        assert_eq!(
            applied(&only_set, 503, b"Retry-After: 1\r\n"),
            "Retry-After: 1\r\n"
        );
        let mut redirect = Response::internal_redirect(b"/x");
        only_set.apply(&mut redirect);
        assert!(redirect.headers.as_bytes().is_empty());
    }
}
