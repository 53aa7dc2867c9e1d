//! `cargo build -p iolite-example-jsonapi && cargo run -- serve --module /api=target/debug/libjsonapi.so`
//! then `curl http://127.0.0.1:8080/api/info` or
//! `curl --data '1 2 3.5' http://127.0.0.1:8080/api/sum`.
//!
//! A small JSON API: `GET /api/info` describes the request; `POST
//! /api/sum` adds the numbers in the body (read in place, slice by slice,
//! from the request pool); errors, the router's 404 and 405 included, are
//! JSON too (`{"error": ...}`).
#![deny(unsafe_code)]

use iolite_sdk::{Ctx, HttpError, Module, Request, Response, Router};
use serde::Serialize;

/// The API.
#[derive(Debug, Default)]
pub struct Api;

/// `GET /info`.
#[derive(Serialize)]
struct Info<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    client: Option<String>,
    headers: Vec<(&'a str, std::borrow::Cow<'a, str>)>,
    body_bytes: usize,
}

/// An error, and the token that caused it if any.
#[derive(Serialize)]
struct Failure<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

/// `POST /sum`.
#[derive(Serialize)]
struct Sum {
    sum: f64,
    count: usize,
}

/// Sums the whitespace- or comma-separated numbers of the body, reading
/// its slices in place. `Err` names the first token that is not a number.
fn sum(req: &Request) -> Result<Sum, String> {
    let mut sum = Sum { sum: 0.0, count: 0 };
    let mut token = String::new();
    let mut finish = |token: &mut String| -> Result<(), String> {
        if !token.is_empty() {
            sum.sum += token.parse::<f64>().map_err(|_| token.clone())?;
            sum.count += 1;
            token.clear();
        }
        Ok(())
    };
    for &b in req.body().iter().flatten() {
        if b.is_ascii_whitespace() || b == b',' {
            finish(&mut token)?;
        } else if token.len() < 64 {
            token.push(char::from(b));
        } else {
            return Err(format!("{token}…"));
        }
    }
    finish(&mut token)?;
    Ok(sum)
}

impl Module for Api {
    fn handle(&self, req: &Request, _ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        Router::new(req)
            .get("/info", || {
                let info = Info {
                    method: req.method(),
                    path: req.path(),
                    query: req.query(),
                    client: req.client().map(|a| a.to_string()),
                    headers: req
                        .headers()
                        .map(|(n, v)| (n, String::from_utf8_lossy(v)))
                        .collect(),
                    body_bytes: req.body().len(),
                };
                Ok(Response::json(200, &info))
            })
            .post("/sum", || {
                Ok(match sum(req) {
                    Ok(sum) => Response::json(200, &sum),
                    Err(token) => {
                        let failure = Failure {
                            error: "not a number",
                            token: Some(&token),
                        };
                        Response::json(400, &failure)
                    }
                })
            })
            .finish()
            // Per-client data (its address, its headers): no shared cache
            // may keep it.
            .map(|r| r.header("Cache-Control", "no-store"))
    }

    fn error_response(&self, err: HttpError) -> Response {
        err.respond(|status, error| Response::json(status, &Failure { error, token: None }))
            .header("Cache-Control", "no-store")
    }
}

iolite_sdk::export!(Api);
