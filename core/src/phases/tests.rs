//! The phases and the mount table: order, longest prefix, fall-through,
//! stripping, ties, locations.

use super::*;
use crate::http::{Limits, parse_head_fields};

/// Rewrites `/old` to `/new`.
struct Rename;
impl Handler for Rename {
    fn name(&self) -> &'static str {
        "rename"
    }
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        if req.path.as_slice() == b"/old" {
            *req.path = b"/new".to_vec();
            return Ok(Outcome::Continue);
        }
        Ok(Outcome::Declined)
    }
}

/// Refuses `/secret`.
struct Deny;
impl Handler for Deny {
    fn name(&self) -> &'static str {
        "deny"
    }
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        if req.path.starts_with(b"/secret") {
            return Err(Error::Forbidden("rule"));
        }
        Ok(Outcome::Declined)
    }
}

/// Answers `/new` only; echoes nothing else.
struct Echo;
impl Handler for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        if req.path.as_slice() == b"/new" {
            return Ok(Outcome::Done(Response::new(
                200,
                HeaderLines::None,
                Body::Bytes(req.path.clone()),
            )));
        }
        Ok(Outcome::Declined)
    }
}

/// Answers with its name, the path it sees and the location, unless the
/// path ends in `/pass` (it declines those).
struct Say(&'static str);
impl Handler for Say {
    fn name(&self) -> &'static str {
        self.0
    }
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        if req.path.ends_with(b"/pass") {
            return Ok(Outcome::Declined);
        }
        let mut text = format!("{} {}", self.0, String::from_utf8_lossy(req.local_path()));
        if let Some(l) = req.location {
            text.push_str(&format!(" @{}", l.prefix));
        }
        Ok(Outcome::Done(Response::new(
            200,
            HeaderLines::None,
            Body::Bytes(text.into_bytes()),
        )))
    }
}

/// Declines everything (the trait's default).
struct Nobody;
impl Handler for Nobody {
    fn name(&self) -> &'static str {
        "nobody"
    }
}

fn ask(phases: &Phases, raw: &str) -> Response {
    let mut fields = Vec::new();
    let head = parse_head_fields(raw.as_bytes(), &Limits::default(), &mut fields)
        .unwrap()
        .unwrap();
    let client = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    phases
        .process_request(&head, raw.as_bytes(), &fields, &mut Vec::new(), client)
        .now()
        .unwrap()
}

fn text(r: &Response) -> String {
    match &r.body {
        Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Body::Static(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

#[test]
fn phases_run_in_order_table() {
    let phases = Phases::new()
        .mount(Phase::Content, "/", false, Box::new(Nobody))
        .unwrap()
        .mount(Phase::Access, "/", false, Box::new(Deny))
        .unwrap()
        .mount(Phase::Rewrite, "/", false, Box::new(Rename))
        .unwrap()
        .fallback(Box::new(Echo));
    let table: &[(&str, u16)] = &[
        ("GET /old HTTP/1.0\r\n\r\n", 200),
        ("GET /new HTTP/1.0\r\n\r\n", 200),
        ("GET /a/../old HTTP/1.0\r\n\r\n", 200),
        ("GET /secret HTTP/1.0\r\n\r\n", 403),
        ("GET /other HTTP/1.0\r\n\r\n", 404),
        ("GET /../x HTTP/1.0\r\n\r\n", 403),
        ("GET * HTTP/1.0\r\n\r\n", 400),
        ("OPTIONS * HTTP/1.0\r\n\r\n", 200),
        ("BREW /new HTTP/1.0\r\n\r\n", 501),
    ];
    for (raw, want) in table {
        assert_eq!(ask(&phases, raw).status, *want, "{raw}");
    }
    assert_eq!(text(&ask(&phases, "GET /old HTTP/1.0\r\n\r\n")), "/new");
    assert!(format!("{phases:?}").contains("\"rename\""));
}

#[test]
fn the_longest_prefix_answers_first_and_declines_fall_through_table() {
    // Mounted in an order unrelated to their lengths: the prefixes decide.
    let phases = Phases::new()
        .mount(Phase::Content, "/a", false, Box::new(Say("a")))
        .unwrap()
        .mount(Phase::Content, "/a/b/c", false, Box::new(Nobody))
        .unwrap()
        .mount(Phase::Content, "/", false, Box::new(Say("root")))
        .unwrap()
        .mount(Phase::Content, "/a/b", true, Box::new(Say("ab")))
        .unwrap()
        .fallback(Box::new(Say("static")));
    let table: &[(&str, &str)] = &[
        ("/a", "a /a"),
        ("/a/x", "a /a/x"),
        // A prefix matches whole segments only.
        ("/ab", "root /ab"),
        // Stripped for the mount that asks for it.
        ("/a/b", "ab /"),
        ("/a/b/x", "ab /x"),
        // /a/b/c declines: /a/b answers.
        ("/a/b/c", "ab /c"),
        ("/a/b/c/d", "ab /c/d"),
        // Each declines */pass: /a, then /, then the fallback: 404.
        ("/a/pass", "404 Not Found\n"),
        ("/zzz", "root /zzz"),
    ];
    for (path, want) in table {
        let r = ask(&phases, &format!("GET {path} HTTP/1.0\r\n\r\n"));
        assert_eq!(text(&r), *want, "{path}");
    }
    let order = format!("{phases:?}");
    let at = |s: &str| order.find(s).unwrap();
    assert!(at("\"/a/b/c\"") < at("\"/a/b\"") && at("\"/a/b\"") < at("(\"/a\""));
}

#[test]
fn a_second_handler_at_the_same_prefix_of_a_phase_is_refused_table() {
    let base = || {
        Phases::new()
            .mount(Phase::Content, "/m", false, Box::new(Say("first")))
            .unwrap()
    };
    let err = base()
        .mount(Phase::Content, "/m", false, Box::new(Say("second")))
        .unwrap_err();
    assert!(
        err.to_string().contains("\"/m\" is mounted twice")
            && err.to_string().contains("first and second"),
        "{err}"
    );
    // Another phase, or another prefix, is no tie.
    assert!(
        base()
            .mount(Phase::Access, "/m", false, Box::new(Deny))
            .is_ok()
    );
    assert!(
        base()
            .mount(Phase::Content, "/m/n", false, Box::new(Nobody))
            .is_ok()
    );
    for bad in ["", "m", "/m/", "//m", "/a//b"] {
        assert!(
            base()
                .mount(Phase::Content, bad, false, Box::new(Nobody))
                .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn the_longest_location_applies_after_the_rewrite_phase_table() {
    let loc = |prefix: &str| Location {
        prefix: prefix.to_owned(),
        root: None,
        index: None,
        autoindex: false,
        cache: true,
        headers: Vec::new(),
        headers_default: Vec::new(),
        headers_always: false,
    };
    let phases = Phases::new()
        .mount(Phase::Rewrite, "/", false, Box::new(Rename))
        .unwrap()
        // A location and a mount at the same prefix are not a tie.
        .mount(Phase::Content, "/docs", false, Box::new(Say("docs")))
        .unwrap()
        .fallback(Box::new(Say("static")))
        .with_locations(vec![loc("/"), loc("/docs/api"), loc("/docs"), loc("/new")]);
    let table: &[(&str, &str)] = &[
        ("/x", "static /x @/"),
        ("/docs", "docs /docs @/docs"),
        ("/docs/api/v1", "docs /docs/api/v1 @/docs/api"),
        ("/docsx", "static /docsx @/"),
        // Matched on the rewritten path.
        ("/old", "static /new @/new"),
    ];
    for (path, want) in table {
        let r = ask(&phases, &format!("GET {path} HTTP/1.0\r\n\r\n"));
        assert_eq!(text(&r), *want, "{path}");
    }
}
