//! The request view: its path below the mount, parameters, forms, JSON
//! and the body reader.
use super::*;
use crate::testing::agg;
use iolite_ipc::Pool;

fn request(headers: Vec<(String, Vec<u8>)>, body: Agg, parts: u64) -> Request {
    Request {
        mount: Arc::from("/"),
        frame: RequestFrame {
            id: 1,
            method: "GET".into(),
            path: "/a".into(),
            query: String::new(),
            headers,
            client: None,
            body: iolite_ipc::AggDesc::default(),
            parts,
        },
        body,
    }
}

/// A `method` request for `path` (with `?query` if any) to a module
/// mounted at `mount`, with no body.
pub(crate) fn request_at(method: &str, target: &str, mount: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = request(Vec::new(), Agg::new(), 0);
    req.frame.method = method.into();
    req.frame.path = path.into();
    req.frame.query = query.into();
    req.mount = Arc::from(mount);
    req
}

/// A POST with `body` (in those slices) and a `Content-Type` if given.
fn post(content_type: Option<&str>, body: Agg, parts: u64) -> Request {
    let headers = content_type
        .map(|ct| vec![("Content-Type".to_owned(), ct.as_bytes().to_vec())])
        .unwrap_or_default();
    request(headers, body, parts)
}

#[test]
fn the_path_below_the_mount_table() {
    // (path, mount, sub_path)
    let cases = [
        ("/app", "/app", "/"),
        ("/app/", "/app", "/"),
        ("/app/x/y", "/app", "/x/y"),
        ("/apple", "/app", "/apple"),
        ("/a/b/c", "/a/b", "/c"),
        ("/x", "/", "/x"),
        ("/", "/", "/"),
    ];
    for (path, mount, want) in cases {
        let req = request_at("GET", path, mount);
        assert_eq!(req.sub_path(), want, "{path} under {mount}");
        assert_eq!((req.path(), req.mount()), (path, mount));
    }
}

#[test]
fn query_parameters_are_decoded() {
    let req = request_at("GET", "/app?q=a+b%21&n=2&n=3&bad=%zz", "/app");
    let q = req.query_params();
    assert_eq!(q.get("q"), Some("a b!"));
    assert_eq!(q.get_all("n").collect::<Vec<_>>(), ["2", "3"]);
    assert_eq!(q.get("bad"), Some("%zz"));
    assert_eq!(req.query(), "q=a+b%21&n=2&n=3&bad=%zz");
}

#[test]
fn forms_by_content_type_table() {
    let pool = Pool::new(1 << 20).unwrap();
    // (content type, status when refused)
    let cases = [
        (None, None),
        (Some("application/x-www-form-urlencoded"), None),
        (
            Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8"),
            None,
        ),
        (Some("multipart/form-data; boundary=x"), Some(415)),
        (Some("text/plain"), Some(415)),
        (Some(""), Some(415)),
    ];
    for (ct, refused) in cases {
        let req = post(ct, agg(&pool, &[b"a=1&b=", b"x+y"]), 0);
        match req.form() {
            Ok(form) => {
                assert_eq!(refused, None, "{ct:?}");
                assert_eq!(form.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "x y")]);
            }
            Err(e) => assert_eq!(Some(e.status()), refused, "{ct:?}"),
        }
    }
    let in_parts = post(None, Agg::new(), 5 << 20);
    assert_eq!(in_parts.form().unwrap_err().status(), 413);
}

#[test]
fn the_body_reader_reads_the_whole_body() {
    let pool = Pool::new(1 << 20).unwrap();
    let req = post(None, agg(&pool, &[b"1\n2", b"\n3"]), 0);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut req.reader(), &mut text).unwrap();
    assert_eq!(text, "1\n2\n3");
}

#[cfg(feature = "json")]
#[test]
fn json_bodies_table() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Entry {
        name: String,
        n: u32,
    }
    let pool = Pool::new(1 << 20).unwrap();
    // (content type, slices, Ok or the status)
    type Case<'a> = (Option<&'a str>, &'a [&'a [u8]], Result<(&'a str, u32), u16>);
    let cases: &[Case<'_>] = &[
        (None, &[br#"{"name":"a","n":1}"#], Ok(("a", 1))),
        (
            Some("application/json"),
            &[br#"{"name":"#, br#""b","n":2}"#],
            Ok(("b", 2)),
        ),
        (
            Some("application/problem+json"),
            &[br#"{"name":"c","n":3}"#],
            Ok(("c", 3)),
        ),
        (Some("text/plain"), &[br#"{"name":"a","n":1}"#], Err(415)),
        (None, &[br#"{"name":"a""#], Err(400)),
        (None, &[br#"{"name":"a","n":-1}"#], Err(400)),
        (None, &[b""], Err(400)),
    ];
    for (ct, parts, want) in cases {
        let req = post(*ct, agg(&pool, parts), 0);
        let got = req.json::<Entry>().map_err(|e| e.status());
        let want = want.map(|(name, n)| Entry {
            name: name.into(),
            n,
        });
        assert_eq!(got, want, "{ct:?} {parts:?}");
    }
}

#[test]
fn request_headers_match_names_case_insensitively() {
    let req = request(
        vec![
            ("Content-Type".into(), b"text/x".to_vec()),
            ("X-Two".into(), b"1".to_vec()),
            ("x-two".into(), b"2".to_vec()),
        ],
        Agg::new(),
        0,
    );
    assert_eq!(req.header("content-type"), Some(&b"text/x"[..]));
    assert_eq!(req.header("X-TWO"), Some(&b"1"[..]));
    assert_eq!(req.header("absent"), None);
    assert_eq!(req.headers().count(), 3);
}

#[test]
fn a_body_has_its_length_whole_or_in_parts_table() {
    let pool = Pool::new(1 << 20).unwrap();
    let five = agg(&pool, &[b"hello"]);
    // (body, bytes announced in parts) -> (body_len, body_in_parts)
    let cases = [
        (Agg::new(), 0, (Some(0), false)),
        (five, 0, (Some(5), false)),
        (Agg::new(), 1, (Some(1), true)),
        (Agg::new(), 5 << 30, (Some(5 << 30), true)),
        (Agg::new(), crate::wire::PARTS_UNKNOWN, (None, true)),
    ];
    for (body, parts, want) in cases {
        let req = request(Vec::new(), body, parts);
        assert_eq!((req.body_len(), req.body_in_parts()), want, "{parts}");
    }
}
