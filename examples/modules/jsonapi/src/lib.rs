//! `cargo build -p iolite-example-jsonapi && cargo run -- serve --module /api=target/debug/libjsonapi.so`
//! then `curl http://127.0.0.1:8080/api/info` or
//! `curl --data '1 2 3.5' http://127.0.0.1:8080/api/sum`.
//!
//! A small JSON API: `GET /api/info` describes the request; `POST
//! /api/sum` adds the numbers in the body (read in place, slice by slice,
//! from the request pool); anything else is a JSON 404.
#![deny(unsafe_code)]

use std::fmt::Write as _;

use iolite_sdk::{Ctx, Module, Request, Response};

/// The API.
#[derive(Debug, Default)]
pub struct Api;

/// Writes `s` as a JSON string.
fn json_str(out: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Sums the whitespace- or comma-separated numbers of the body, reading
/// its slices in place. `Err` names the first token that is not a number.
fn sum(req: &Request) -> Result<(f64, usize), String> {
    let mut total = 0.0;
    let mut count = 0;
    let mut token = String::new();
    let mut finish = |token: &mut String| -> Result<(), String> {
        if !token.is_empty() {
            let n: f64 = token.parse().map_err(|_| token.clone())?;
            total += n;
            count += 1;
            token.clear();
        }
        Ok(())
    };
    for slice in req.body() {
        for &b in slice {
            if b.is_ascii_whitespace() || b == b',' {
                finish(&mut token)?;
            } else if token.len() < 64 {
                token.push(char::from(b));
            } else {
                return Err(format!("{token}…"));
            }
        }
    }
    finish(&mut token)?;
    Ok((total, count))
}

fn info(req: &Request, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    out.write_str("{\"method\":")?;
    json_str(out, req.method())?;
    out.write_str(",\"path\":")?;
    json_str(out, req.path())?;
    out.write_str(",\"query\":")?;
    json_str(out, req.query())?;
    out.write_str(",\"client\":")?;
    match req.client() {
        Some(a) => json_str(out, &a.to_string())?,
        None => out.write_str("null")?,
    }
    out.write_str(",\"headers\":[")?;
    for (i, (name, value)) in req.headers().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        out.write_char('[')?;
        json_str(out, name)?;
        out.write_char(',')?;
        json_str(out, &String::from_utf8_lossy(value))?;
        out.write_char(']')?;
    }
    write!(out, "],\"body_bytes\":{}}}", req.body().len())
}

impl Module for Api {
    fn handle(&self, req: &Request, ctx: &mut Ctx<'_>) -> Response {
        let mut out = ctx.writer();
        let route = req.path().strip_prefix("/api").unwrap_or("");
        let (status, written) = match (req.method(), route) {
            ("GET", "/info") => (200, info(req, &mut out)),
            ("POST", "/sum") => match sum(req) {
                Ok((total, count)) => (200, write!(out, "{{\"sum\":{total},\"count\":{count}}}")),
                Err(bad) => (
                    400,
                    out.write_str("{\"error\":\"not a number\",\"token\":")
                        .and_then(|()| json_str(&mut out, &bad))
                        .and_then(|()| out.write_char('}')),
                ),
            },
            (_, "/info" | "/sum") => (405, out.write_str("{\"error\":\"method not allowed\"}")),
            _ => (404, out.write_str("{\"error\":\"no such endpoint\"}")),
        };
        if written.is_err() {
            return Response::new(503);
        }
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(out.finish())
    }
}

iolite_sdk::export!(Api);
