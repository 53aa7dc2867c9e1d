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

use iolite_sdk::{Ctx, HttpError, Module, Request, Response};

/// Most rows a page may ask for.
const MAX_ROWS: u32 = 10_000;

/// Renders the squares table.
#[derive(Debug, Default)]
pub struct Template;

impl Module for Template {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        let query = req.query_params();
        if req.sub_path() == "/include" {
            let path = query.require("path")?;
            let body = ctx
                .cached(path)
                .ok_or(HttpError::new(404, "not in the cache"))?;
            return Ok(Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(body));
        }
        let rows = query.parse_value::<u32>("rows")?.unwrap_or(10);
        if rows > MAX_ROWS {
            return Err(HttpError::bad_request("rows must be at most 10000"));
        }
        let (Some(mut page), Some(mut footer)) = (
            ctx.cached("/parts/header.html"),
            ctx.cached("/parts/footer.html"),
        ) else {
            return Err(HttpError::internal(
                "the page parts are missing from the root",
            ));
        };
        let mut out = ctx.writer();
        for n in 1..=u64::from(rows) {
            writeln!(out, "<tr><td>{n}</td><td>{}</td></tr>", n * n)?;
        }
        page.append(&mut out.finish());
        page.append(&mut footer);
        Ok(Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(page))
    }
}

iolite_sdk::export!(Template);
