use std::sync::atomic::{AtomicU64, Ordering};

use iolite_sdk::{Ctx, HttpError, Module, Request, Response, Router};

#[derive(Default)]
struct App {
    /// Kept per runner process, lost when it ends (see "State").
    visits: AtomicU64,
}

impl Module for App {
    fn handle(&self, req: &Request, _ctx: &mut Ctx<'_>) -> Result<Response, HttpError> {
        // Paths below the mount: /app/hello is "/hello" here.
        Router::new(req)
            .get("/", || {
                let n = self.visits.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Response::text(200, format!("visit {n} of this runner\n")))
            })
            .get("/hello", || {
                let query = req.query_params(); // ?name=J%C3%B6rg+M -> "Jörg M"
                let name = query.get("name").unwrap_or("world");
                Ok(Response::text(200, format!("Hello, {name}!\n")))
            })
            .post("/sum", || {
                let form = req.form()?; // a=1&b=2; 415 for another body type
                let a: i64 = form.parse_value("a")?.unwrap_or(0); // 400 if not a number
                let b: i64 = form.parse_value("b")?.unwrap_or(0);
                let sum = a.checked_add(b).ok_or(HttpError::bad_request("too large"))?;
                Ok(Response::text(200, format!("{sum}\n")))
            })
            // Any other method on these paths: 405 with Allow; other
            // paths: 404.
            .finish()
    }
}

iolite_sdk::export!(App);
