//! Configured response headers on every handler's answers: the top-level
//! `headers` / `headers_default` and each `[[location]]`'s, on process
//! modules (the example hello and jsonapi modules, real runner processes)
//! and static files alike; the innermost location wins per header name;
//! `headers_default` never overrides the handler; error answers get only
//! `headers_always` tables; HEAD of a module path has the GET's headers and
//! no body; the server's 405 carries `Allow`.

mod support;

use std::io::Write;

use support::{Iolite, Response, module_lib, read_response, request};

const MODULES: &[&str] = &["iolite-example-hello", "iolite-example-jsonapi"];

fn ask(server: &Iolite, method: &str, path: &str) -> Response {
    let mut s = server.connect();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), method == "HEAD")
}

/// The header lines but `Date` (which moves), lower-cased names, in order.
fn fields(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

#[test]
fn location_headers_reach_module_and_static_answers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), b"<h1>home</h1>\n").unwrap();
    std::fs::create_dir(dir.path().join("private")).unwrap();
    std::fs::write(dir.path().join("private/a.txt"), b"secret\n").unwrap();
    let config = dir.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            r#"
headers = {{ "X-Server-Wide" = "yes" }}
headers_default = {{ "Cache-Control" = "no-cache" }}

[[location]]
prefix = "/api"
headers = {{ "Cache-Control" = "no-store", "X-Api" = "outer" }}

[[location]]
prefix = "/api/info"
headers_default = {{ "X-Api" = "inner" }}

[[location]]
prefix = "/hello"
headers = {{ "X-Frame-Options" = "DENY" }}
headers_default = {{ "Content-Type" = "text/html" }}

[[location]]
prefix = "/private"
headers = {{ "X-Robots-Tag" = "noindex" }}
headers_always = true

[[module]]
prefix = "/api"
path = "{api}"

[[module]]
prefix = "/hello"
path = "{hello}"
"#,
            api = module_lib(MODULES, "jsonapi"),
            hello = module_lib(MODULES, "hello"),
        ),
    )
    .unwrap();
    let server = Iolite::start(dir.path(), &["--config", config.to_str().unwrap()]);

    // A module's answer: the location's and the server's headers; the
    // handler's own Content-Type stays (a default never overrides it).
    let get = ask(&server, "GET", "/hello/you");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"Hello, you!\n");
    assert_eq!(get.header("x-frame-options"), Some("DENY"));
    assert_eq!(get.header("x-server-wide"), Some("yes"));
    assert_eq!(get.header("cache-control"), Some("no-cache"));
    assert_eq!(
        get.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // HEAD: the GET's header fields, Content-Length included, no body.
    let head = ask(&server, "HEAD", "/hello/you");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(fields(&head), fields(&get));

    // Nested locations: `headers` of /api replace the module's, the inner
    // location's default fills X-Api (innermost wins per name).
    let info = ask(&server, "GET", "/api/info");
    assert_eq!(
        info.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&info.body)
    );
    assert_eq!(info.header("content-type"), Some("application/json"));
    assert_eq!(info.header("cache-control"), Some("no-store"));
    assert_eq!(info.header("x-api"), Some("inner"));
    assert_eq!(info.header("x-server-wide"), Some("yes"));
    let head = ask(&server, "HEAD", "/api/info");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let names = |r: &Response| fields(r).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(&head), names(&info));
    assert_eq!(head.header("cache-control"), Some("no-store"));
    let sum = request(&server, "POST", "/api/sum", b"1 2 3");
    assert_eq!(sum.status, 200);
    assert_eq!(sum.header("x-api"), Some("outer"));

    // An error answer (the module's 404): no headers without `always`.
    let missing = ask(&server, "GET", "/api/nothing/here");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-api"), None);
    assert_eq!(missing.header("x-server-wide"), None);

    // Static files: the server's headers; under /private, on errors too.
    let home = ask(&server, "GET", "/");
    assert_eq!(home.status, 200);
    assert_eq!(home.header("x-server-wide"), Some("yes"));
    assert_eq!(home.header("cache-control"), Some("no-cache"));
    assert_eq!(home.header("x-robots-tag"), None);
    let etag = home.header("etag").unwrap().to_string();
    let mut s = server.connect();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    )
    .unwrap();
    let not_modified = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("x-server-wide"), Some("yes"));
    assert_eq!(
        ask(&server, "GET", "/missing").header("x-server-wide"),
        None
    );
    let secret = ask(&server, "GET", "/private/a.txt");
    assert_eq!(secret.header("x-robots-tag"), Some("noindex"));
    let gone = ask(&server, "GET", "/private/none.txt");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.header("x-robots-tag"), Some("noindex"));
    assert_eq!(gone.header("x-server-wide"), None);

    // The server's own 405 names what is allowed.
    let refused = ask(&server, "DELETE", "/private/a.txt");
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    assert_eq!(refused.header("x-robots-tag"), Some("noindex"));
    assert!(server.stop().success());
}
