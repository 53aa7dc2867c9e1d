//! [`Router`]: a request's method and path below the mount matched
//! against routes, in order; 405 with `Allow` when the path has routes but
//! none for the method, 404 when it has none, HEAD answered by the GET
//! route.

use crate::module::Request;
use crate::response::Response;
use crate::status::HttpError;

/// Routes one request. Each route is a method, a path below the module's
/// mount ([`Request::sub_path`]) and a closure called only when it is the
/// first route to match; [`finish`](Router::finish) returns its answer.
///
/// ```
/// # use iolite_sdk::{Ctx, HttpError, Request, Response, Router};
/// fn handle(req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
///     Router::new(req)
///         .get("/", || Ok(Response::text(200, "the index")))
///         .post("/items", || {
///             let form = req.form()?;
///             Ok(Response::text(201, format!("made {}", form.require("name")?)))
///         })
///         .get("/files/*", || Ok(Response::text(200, req.sub_path().to_owned())))
///         .finish()
/// }
/// ```
///
/// - A path is matched exactly, or ends in `/*` and matches what starts
///   with the part before `*` (`/files/*` matches `/files/a/b`, not
///   `/files`). The mount itself is `/`.
/// - A GET route answers HEAD too: the server sends the head only, with
///   the length of the GET's body. Register a HEAD route before it to
///   answer HEAD differently.
/// - A path with routes, none for the request's method: 405 with `Allow`
///   naming the routes' methods (HEAD with GET). No route for the path:
///   404.
/// - The closures may borrow `ctx` mutably each: only one of them is
///   ever called, and each is dropped before the next route is added.
///
/// The error type `E` is whatever the closures return; the router's own
/// 404 and 405 are [`HttpError`]s converted with `From`.
#[derive(Debug)]
pub struct Router<'r, E = HttpError> {
    method: &'r str,
    path: &'r str,
    answer: Option<Result<Response, E>>,
    /// Methods of the routes that matched the path but not the method.
    allow: Vec<&'static str>,
}

impl<'r, E: From<HttpError>> Router<'r, E> {
    /// A router for `req`.
    pub fn new(req: &'r Request) -> Self {
        Router {
            method: req.method(),
            path: req.sub_path(),
            answer: None,
            allow: Vec::new(),
        }
    }

    /// A route for `method` (such as `"PATCH"`; matched exactly) at `path`.
    pub fn route(
        mut self,
        method: &'static str,
        path: &str,
        handler: impl FnOnce() -> Result<Response, E>,
    ) -> Self {
        if self.answer.is_some() || !path_matches(path, self.path) {
            return self;
        }
        let head_from_get = method == "GET" && self.method == "HEAD";
        if method == self.method || head_from_get {
            self.answer = Some(handler());
        } else {
            for m in std::iter::once(method).chain((method == "GET").then_some("HEAD")) {
                if !self.allow.contains(&m) {
                    self.allow.push(m);
                }
            }
        }
        self
    }

    /// A GET route (which answers HEAD too) at `path`.
    pub fn get(self, path: &str, handler: impl FnOnce() -> Result<Response, E>) -> Self {
        self.route("GET", path, handler)
    }

    /// A POST route at `path`.
    pub fn post(self, path: &str, handler: impl FnOnce() -> Result<Response, E>) -> Self {
        self.route("POST", path, handler)
    }

    /// A PUT route at `path`.
    pub fn put(self, path: &str, handler: impl FnOnce() -> Result<Response, E>) -> Self {
        self.route("PUT", path, handler)
    }

    /// A DELETE route at `path`.
    pub fn delete(self, path: &str, handler: impl FnOnce() -> Result<Response, E>) -> Self {
        self.route("DELETE", path, handler)
    }

    /// The answer of the route that matched; else 405 with `Allow`, or 404.
    ///
    /// # Errors
    /// What the route's closure returned, or the router's 404 or 405.
    pub fn finish(self) -> Result<Response, E> {
        match self.answer {
            Some(answer) => answer,
            None if self.allow.is_empty() => Err(HttpError::not_found().into()),
            None => Err(HttpError::method_not_allowed(&self.allow.join(", ")).into()),
        }
    }
}

/// Whether route `pattern` matches `path` (see [`Router`]).
fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => {
            path.len() > prefix.len() && path.starts_with(prefix)
        }
        _ => pattern == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::tests::request_at;

    fn route(method: &str, path: &str) -> Result<Response, HttpError> {
        let req = request_at(method, path, "/app");
        Router::new(&req)
            .get("/", || Ok(Response::text(200, "index")))
            .post("/", || Ok(Response::text(201, "posted")))
            .route("HEAD", "/special", || Ok(Response::new(204)))
            .get("/special", || Ok(Response::text(200, "special")))
            .delete("/items/*", || {
                Ok(Response::text(200, req.sub_path().to_owned()))
            })
            .put("/items/*", || Err(HttpError::bad_request("read-only")))
            .get("/items/*", || Ok(Response::text(200, "item")))
            .finish()
    }

    #[test]
    fn routes_table() {
        // (method, full path, status, body, Allow)
        let cases: &[(&str, &str, u16, &str, Option<&str>)] = &[
            ("GET", "/app", 200, "index", None),
            ("GET", "/app/", 200, "index", None),
            ("HEAD", "/app", 200, "index", None),
            ("POST", "/app", 201, "posted", None),
            (
                "PUT",
                "/app",
                405,
                "method not allowed\n",
                Some("GET, HEAD, POST"),
            ),
            (
                "get",
                "/app",
                405,
                "method not allowed\n",
                Some("GET, HEAD, POST"),
            ),
            ("HEAD", "/app/special", 204, "", None),
            ("GET", "/app/special", 200, "special", None),
            (
                "POST",
                "/app/special",
                405,
                "method not allowed\n",
                Some("HEAD, GET"),
            ),
            ("DELETE", "/app/items/7", 200, "/items/7", None),
            ("PUT", "/app/items/7", 400, "read-only\n", None),
            ("HEAD", "/app/items/a/b", 200, "item", None),
            (
                "POST",
                "/app/items/7",
                405,
                "method not allowed\n",
                Some("DELETE, PUT, GET, HEAD"),
            ),
            ("GET", "/app/items", 404, "not found\n", None),
            ("GET", "/app/items/", 404, "not found\n", None),
            ("GET", "/app/nope", 404, "not found\n", None),
            ("OPTIONS", "/app/nope", 404, "not found\n", None),
        ];
        for &(method, path, status, body, allow) in cases {
            let resp = route(method, path).unwrap_or_else(HttpError::into_response);
            assert_eq!(resp.status(), status, "{method} {path}");
            assert_eq!(
                resp.body_bytes().unwrap_or_default(),
                body.as_bytes(),
                "{method} {path}"
            );
            let got = resp
                .headers()
                .find(|(n, _)| *n == "Allow")
                .map(|(_, v)| std::str::from_utf8(v).unwrap());
            assert_eq!(got, allow, "{method} {path}");
        }
    }

    #[test]
    fn only_the_first_matching_route_runs_and_closures_may_share_a_mut_borrow() {
        let req = request_at("GET", "/app/x", "/app");
        let mut calls = Vec::new();
        let resp = Router::<HttpError>::new(&req)
            .get("/x", || {
                calls.push("first");
                Ok(Response::new(200))
            })
            .get("/x", || {
                calls.push("second");
                Ok(Response::new(500))
            })
            .finish()
            .unwrap();
        assert_eq!((resp.status(), calls), (200, vec!["first"]));
    }

    #[test]
    fn a_handlers_own_error_type_works() {
        #[derive(Debug)]
        enum Mine {
            Http(HttpError),
            Teapot,
        }
        impl From<HttpError> for Mine {
            fn from(e: HttpError) -> Self {
                Mine::Http(e)
            }
        }
        let req = request_at("GET", "/brew", "/");
        let r = Router::new(&req)
            .get("/brew", || Err(Mine::Teapot))
            .finish();
        assert!(matches!(r, Err(Mine::Teapot)));
        let req = request_at("GET", "/none", "/");
        let r = Router::new(&req)
            .get("/brew", || Err(Mine::Teapot))
            .finish();
        assert!(matches!(r, Err(Mine::Http(e)) if e.status() == 404));
    }

    #[test]
    fn wildcards_match_below_their_prefix_only() {
        for (pattern, path, want) in [
            ("/a/*", "/a/b", true),
            ("/a/*", "/a/", false),
            ("/a/*", "/a", false),
            ("/a/*", "/ab", false),
            ("/*", "/", false),
            ("/*", "/x", true),
            ("/a*", "/a*", true),
            ("/a*", "/ab", false),
            ("/", "/", true),
        ] {
            assert_eq!(path_matches(pattern, path), want, "{pattern} {path}");
        }
    }
}
