//! Modules written against the SDK's API (routes, forms, JSON, errors as
//! statuses) through the real binary: the crate doc's module built as an
//! outside crate, the way its reader would build it, and the guestbook
//! example.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Iolite, Response, get, read_response};

/// `method target` with `headers` (lines without CRLF) and `body`, on a
/// new connection, and its response.
fn send(server: &Iolite, method: &str, target: &str, headers: &[&str], body: &[u8]) -> Response {
    let mut s = server.connect();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s, &mut Vec::new(), method == "HEAD")
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded";
const JSON: &str = "Content-Type: application/json";

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The workspace's target directory (this test runs from its
/// `debug/deps/`), where the outside crate builds too: its dependencies
/// are the workspace's, so cargo finds most of them built.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("a test runs from TARGET/PROFILE/deps")
        .to_owned()
}

/// Makes the crate doc's module (`sdk/doc/app.toml`, `sdk/doc/app.rs`) in
/// `dir`, depending on this checkout's sdk/ by path, builds it with cargo
/// (offline: the workspace's lock file pins the versions it already has)
/// and returns its library.
fn build_outside_crate(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(repo.join("sdk/doc/app.toml")).unwrap();
    let path_line = "path = \"../iolite/sdk\"";
    assert!(
        manifest.contains(path_line),
        "the doc's dependency line moved"
    );
    let sdk = repo.join("sdk");
    let manifest = manifest.replace(path_line, &format!("path = {:?}", sdk.to_str().unwrap()));
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.join("src")).unwrap();
    std::fs::copy(repo.join("sdk/doc/app.rs"), dir.join("src/lib.rs")).unwrap();
    std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--offline", "--target-dir"])
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "the crate doc's module does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = target.join("debug/libapp.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

#[test]
fn the_crate_docs_module_builds_outside_the_workspace_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build_outside_crate(dir.path());
    let root = tempfile::tempdir().unwrap();
    let mount = format!("/app={}", lib.display());
    let server = Iolite::start(root.path(), &["--module", &mount]);
    // The mount itself, with or without a slash, is the route "/" (the
    // count is per runner: requests may go to more than one).
    for target in ["/app", "/app/"] {
        let r = get(&server, target);
        assert_eq!(r.status, 200, "{target}");
        assert!(text(&r).starts_with("visit "), "{target}: {}", text(&r));
    }
    // (method, target, header lines, body, status, body, Allow)
    type Case = (
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [u8],
        u16,
        &'static str,
        Option<&'static str>,
    );
    let table: &[Case] = &[
        ("GET", "/app/hello", &[], b"", 200, "Hello, world!\n", None),
        (
            "GET",
            "/app/hello?name=J%C3%B6rg+M%26",
            &[],
            b"",
            200,
            "Hello, Jörg M&!\n",
            None,
        ),
        (
            "POST",
            "/app/sum",
            &[FORM],
            b"a=1&b=%2B41",
            200,
            "42\n",
            None,
        ),
        ("POST", "/app/sum", &[], b"b=-2", 200, "-2\n", None),
        (
            "POST",
            "/app/sum",
            &[FORM],
            b"a=x",
            400,
            "a: \"x\" is not a valid value\n",
            None,
        ),
        (
            "POST",
            "/app/sum",
            &["Content-Type: text/plain"],
            b"a=1",
            415,
            "expected a body of type application/x-www-form-urlencoded\n",
            None,
        ),
        (
            "DELETE",
            "/app/sum",
            &[],
            b"",
            405,
            "method not allowed\n",
            Some("POST"),
        ),
        (
            "POST",
            "/app/hello",
            &[],
            b"",
            405,
            "method not allowed\n",
            Some("GET, HEAD"),
        ),
        ("GET", "/app/nope", &[], b"", 404, "not found\n", None),
        ("HEAD", "/app/hello", &[], b"", 200, "", None),
    ];
    for &(method, target, headers, body, status, want, allow) in table {
        let r = send(&server, method, target, headers, body);
        assert_eq!(
            (r.status, text(&r).as_str()),
            (status, want),
            "{method} {target}"
        );
        assert_eq!(r.header("allow"), allow, "{method} {target}");
    }
    // HEAD has the GET's length, and no body.
    let r = send(&server, "HEAD", "/app/hello", &[], b"");
    assert_eq!(r.header("content-length"), Some("14"));
    assert!(server.stop().success());
}

/// A root with the guestbook's page parts, and a server with the
/// guestbook at `/guestbook` in one runner (one book).
fn guestbook() -> (tempfile::TempDir, Iolite) {
    let lib = support::module_lib(&["iolite-example-guestbook"], "guestbook");
    let root = tempfile::tempdir().unwrap();
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site/parts");
    std::fs::create_dir(root.path().join("parts")).unwrap();
    for part in ["guestbook-header.html", "guestbook-footer.html"] {
        std::fs::copy(site.join(part), root.path().join("parts").join(part)).unwrap();
    }
    let config = root.path().join("iolite.toml");
    std::fs::write(
        &config,
        format!("[[module]]\nprefix = \"/guestbook\"\npath = \"{lib}\"\nprocesses_max = 1\n"),
    )
    .unwrap();
    let server = Iolite::start(root.path(), &["--config", config.to_str().unwrap()]);
    (root, server)
}

#[test]
fn the_guestbook_serves_a_page_with_cached_parts_a_form_and_json() {
    let (root, server) = guestbook();
    let header = std::fs::read_to_string(root.path().join("parts/guestbook-header.html")).unwrap();
    let footer = std::fs::read_to_string(root.path().join("parts/guestbook-footer.html")).unwrap();

    let page = get(&server, "/guestbook");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = text(&page);
    assert!(
        html.starts_with(&header) && html.ends_with(&footer),
        "{html}"
    );
    assert!(html.contains("<ul>\n</ul>"), "an empty book: {html}");
    assert!(html.contains("action=\"/guestbook/sign\""), "{html}");

    // A form POST: 303 back to the page, which then shows the entry,
    // escaped.
    let r = send(
        &server,
        "POST",
        "/guestbook/sign",
        &[FORM],
        b"name=Ann+B&message=%3Cb%3Ehi%3C%2Fb%3E+%26+bye",
    );
    assert_eq!((r.status, r.header("location")), (303, Some("/guestbook")));
    let html = text(&get(&server, "/guestbook"));
    assert!(
        html.contains("<li><b>Ann B</b>: &lt;b&gt;hi&lt;/b&gt; &amp; bye</li>"),
        "{html}"
    );

    // JSON in and out.
    let r = send(
        &server,
        "POST",
        "/guestbook/entries.json",
        &[JSON],
        br#"{"name":"Bo","message":"hej"}"#,
    );
    assert_eq!(
        (r.status, r.header("content-type")),
        (201, Some("application/json"))
    );
    let r = get(&server, "/guestbook/entries.json");
    assert_eq!(r.status, 200);
    let entries: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        entries,
        serde_json::json!([
            {"name": "Ann B", "message": "<b>hi</b> & bye"},
            {"name": "Bo", "message": "hej"},
        ])
    );
    // The newest entry first on the page.
    let html = text(&get(&server, "/guestbook/"));
    let (bo, ann) = (
        html.find("<b>Bo</b>").unwrap(),
        html.find("<b>Ann B</b>").unwrap(),
    );
    assert!(bo < ann, "{html}");
    assert!(server.stop().success());
}

#[test]
fn the_guestbook_refuses_what_it_does_not_take_with_the_right_status() {
    let (_root, server) = guestbook();
    // (method, target, header lines, body, status, Allow)
    type Case = (
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [u8],
        u16,
        Option<&'static str>,
    );
    let table: &[Case] = &[
        ("DELETE", "/guestbook", &[], b"", 405, Some("GET, HEAD")),
        ("GET", "/guestbook/sign", &[], b"", 405, Some("POST")),
        (
            "PUT",
            "/guestbook/entries.json",
            &[],
            b"",
            405,
            Some("GET, HEAD, POST"),
        ),
        ("GET", "/guestbook/nope", &[], b"", 404, None),
        ("POST", "/guestbook/sign", &[FORM], b"name=ann", 400, None),
        (
            "POST",
            "/guestbook/sign",
            &[FORM],
            b"name=+&message=x",
            400,
            None,
        ),
        ("POST", "/guestbook/sign", &[JSON], b"{}", 415, None),
        (
            "POST",
            "/guestbook/entries.json",
            &[JSON],
            b"{\"name\":",
            400,
            None,
        ),
        (
            "POST",
            "/guestbook/entries.json",
            &[FORM],
            b"name=a&message=b",
            415,
            None,
        ),
    ];
    for &(method, target, headers, body, status, allow) in table {
        let r = send(&server, method, target, headers, body);
        assert_eq!(r.status, status, "{method} {target}: {}", text(&r));
        assert_eq!(r.header("allow"), allow, "{method} {target}");
    }
    // Nothing was added.
    assert_eq!(get(&server, "/guestbook/entries.json").body, b"[]");
    // HEAD: the page's head, with its length and no body.
    let page = get(&server, "/guestbook");
    let head = send(&server, "HEAD", "/guestbook", &[], b"");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    assert!(server.stop().success());
}

#[test]
fn the_guestbooks_page_includes_its_cached_parts_without_a_copy() {
    let (_root, server) = guestbook();
    let r = send(
        &server,
        "POST",
        "/guestbook/sign",
        &[FORM],
        b"name=a&message=b",
    );
    assert_eq!(r.status, 303);
    // The first GET may load the parts into the cache; the next ones send
    // them from it by reference, with the module's rows from its pool.
    assert_eq!(get(&server, "/guestbook").status, 200);
    let before = server.metric("iolite_body_bytes_copied_total");
    for _ in 0..3 {
        assert_eq!(get(&server, "/guestbook").status, 200);
    }
    assert_eq!(server.metric("iolite_body_bytes_copied_total"), before);
    assert!(server.stop().success());
}
