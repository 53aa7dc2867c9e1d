//! `cargo build -p iolite-example-guestbook && cargo run -- serve --module /guestbook=target/debug/libguestbook.so`
//! then open `http://127.0.0.1:8080/guestbook`, or
//! `curl -d name=ann -d message=hello http://127.0.0.1:8080/guestbook/sign`.
//!
//! A guestbook, the shape of a small site:
//! - `GET /guestbook`: a page whose header and footer are files of the
//!   document root (`/parts/guestbook-header.html`, `…-footer.html`),
//!   included by reference from the server's cache, around the entries
//!   and a form that the module writes into its output pool;
//! - `POST /guestbook/sign`, a form (`name`, `message`): 303 back to the
//!   page;
//! - `GET /guestbook/entries.json`: the entries as JSON; `POST` there
//!   adds one from JSON (`{"name": …, "message": …}`): 201 with it;
//! - another method on these paths: 405 with `Allow`; another path: 404.
//!
//! The entries live in the runner process: each runner has its own book,
//! lost when the runner ends (recycled, restarted, reloaded). Mount it
//! with `processes_max = 1` to see one book; keep a real one elsewhere.
#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::Mutex;

use iolite_sdk::{Ctx, HttpError, Module, Request, Response, Router};
use serde::{Deserialize, Serialize};

/// Entries kept (the oldest go first).
const MAX_ENTRIES: usize = 100;
/// Longest name and message, in characters.
const MAX_NAME: usize = 64;
const MAX_MESSAGE: usize = 1000;

/// One signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    message: String,
}

impl Entry {
    /// A checked entry, or 400 saying what is wrong.
    fn new(name: &str, message: &str) -> Result<Entry, HttpError> {
        let (name, message) = (name.trim(), message.trim());
        let bad = |what: &str, max| {
            HttpError::bad_request(format!("{what} must be 1 to {max} characters"))
        };
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(bad("name", MAX_NAME));
        }
        if message.is_empty() || message.chars().count() > MAX_MESSAGE {
            return Err(bad("message", MAX_MESSAGE));
        }
        Ok(Entry {
            name: name.to_owned(),
            message: message.to_owned(),
        })
    }
}

/// The book of this runner process.
#[derive(Debug, Default)]
pub struct Guestbook {
    entries: Mutex<VecDeque<Entry>>,
}

impl Guestbook {
    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, entry: Entry) {
        let mut entries = self.entries();
        if entries.len() == MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The page: cached header, the entries and the form, cached footer.
    fn page(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let part = |ctx: &mut Ctx<'_>, name: &str| {
            ctx.cached(&format!("/parts/guestbook-{name}.html"))
                .ok_or_else(|| HttpError::internal(format!("no /parts/guestbook-{name}.html")))
        };
        let mut page = part(ctx, "header")?;
        let mut footer = part(ctx, "footer")?;
        let mut out = ctx.writer();
        out.write_str("<ul>\n")?;
        for e in self.entries().iter().rev() {
            writeln!(
                out,
                "<li><b>{}</b>: {}</li>",
                Html(&e.name),
                Html(&e.message)
            )?;
        }
        let base = req.mount().trim_end_matches('/');
        writeln!(
            out,
            "</ul>\n<form method=\"post\" action=\"{}/sign\">\n\
             <input name=\"name\" placeholder=\"name\" maxlength=\"{MAX_NAME}\">\n\
             <textarea name=\"message\" maxlength=\"{MAX_MESSAGE}\"></textarea>\n\
             <button>Sign</button>\n</form>",
            Html(base)
        )?;
        page.append(&mut out.finish());
        page.append(&mut footer);
        Ok(Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Cache-Control", "no-store")
            .body(page))
    }
}

impl Module for Guestbook {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        Router::new(req)
            .get("/", || self.page(req, ctx))
            .post("/sign", || {
                let form = req.form()?;
                self.add(Entry::new(form.require("name")?, form.require("message")?)?);
                Ok(Response::redirect(303, req.mount()))
            })
            .get("/entries.json", || {
                Ok(Response::json(200, &*self.entries()))
            })
            .post("/entries.json", || {
                let entry: Entry = req.json()?;
                let entry = Entry::new(&entry.name, &entry.message)?;
                self.add(entry.clone());
                Ok(Response::json(201, &entry))
            })
            .finish()
    }
}

/// Text escaped for HTML, written as it is formatted (into the output
/// pool, with no string in between).
struct Html<'a>(&'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

iolite_sdk::export!(Guestbook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        let cases = [
            ("plain", "plain"),
            (
                "<script>alert('x')</script>",
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
            ),
            ("a & \"b\"", "a &amp; &quot;b&quot;"),
            ("Jörg <3", "Jörg &lt;3"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(Html(text).to_string(), want);
        }
    }

    #[test]
    fn entries_are_checked_and_bounded() {
        assert!(Entry::new(" ann ", "hi").is_ok_and(|e| e.name == "ann"));
        for (name, message) in [("", "hi"), ("ann", " "), (&"x".repeat(65) as &str, "hi")] {
            assert_eq!(Entry::new(name, message).unwrap_err().status(), 400);
        }
        let book = Guestbook::default();
        for i in 0..=MAX_ENTRIES {
            book.add(Entry::new(&i.to_string(), "m").unwrap());
        }
        let entries = book.entries();
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(entries.front().map(|e| e.name.as_str()), Some("1"));
    }
}
