//! `cargo build -p iolite-example-template && cargo run -- serve --module /template=target/debug/libtemplate.so`
//! then `curl 'http://127.0.0.1:8080/template?rows=5'`.
//!
//! A page built from two cached files of the document root
//! (`/parts/header.html`, `/parts/footer.html`, included by reference from
//! the server's unified cache, never copied) around rows the module writes.
//! `/template/include?path=/some/file` answers any cached file of the root
//! by reference (a demonstration, and the zero-copy test's probe).
#![deny(unsafe_code)]

use std::fmt::Write as _;

use iolite_sdk::{Ctx, Module, Request, Response};

/// Most rows a page may ask for.
const MAX_ROWS: u32 = 10_000;

/// Renders the squares table.
#[derive(Debug, Default)]
pub struct Template;

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn text(ctx: &mut Ctx<'_>, status: u16, message: &str) -> Response {
    let mut out = ctx.writer();
    let _ = writeln!(out, "{message}");
    Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(out.finish())
}

impl Module for Template {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        if req.path().ends_with("/include") {
            let Some(path) = query_param(req.query(), "path") else {
                return text(ctx, 400, "include needs ?path=/file");
            };
            return match ctx.cached(path) {
                Some(body) => Response::new(200)
                    .header("Content-Type", "application/octet-stream")
                    .body(body),
                None => text(ctx, 404, "not in the cache"),
            };
        }
        let rows = match query_param(req.query(), "rows").map(str::parse::<u32>) {
            None => 10,
            Some(Ok(n)) if n <= MAX_ROWS => n,
            Some(_) => return text(ctx, 400, "rows must be a number up to 10000"),
        };
        let (Some(mut page), Some(mut footer)) = (
            ctx.cached("/parts/header.html"),
            ctx.cached("/parts/footer.html"),
        ) else {
            return text(
                ctx,
                500,
                "the page parts are missing from the document root",
            );
        };
        let mut out = ctx.writer();
        for n in 1..=u64::from(rows) {
            if writeln!(out, "<tr><td>{n}</td><td>{}</td></tr>", n * n).is_err() {
                return Response::new(503);
            }
        }
        page.append(&mut out.finish());
        page.append(&mut footer);
        Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(page)
    }
}

iolite_sdk::export!(Template);
