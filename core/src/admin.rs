//! The admin listener: `GET /metrics` (Prometheus text format) and
//! `GET /status` (a page a person reads). One request per connection; it
//! runs on the control thread, away from the workers, and its requests are
//! not counted in the figures it reports.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::request::Method;
use crate::http::response::{ConnectionHeader, write_head};
use crate::http::{Limits, date, parse_head, target};
use crate::metrics::Metrics;

const ADMIN_LIMITS: Limits = Limits {
    max_head: 8192,
    max_uri: 1024,
    max_body: 0,
    max_headers: 64,
};
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts admin connections until the runtime stops.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, metrics.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let mut buf = Vec::with_capacity(1024);
    let parsed = tokio::time::timeout(ADMIN_TIMEOUT, async {
        loop {
            match parse_head(&buf, &ADMIN_LIMITS) {
                Ok(Some(head)) => return Some(Ok(head)),
                Err(e) => return Some(Err(e)),
                Ok(None) => {}
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await;
    let (status, content_type, body, head_only): (u16, &str, Vec<u8>, bool) = match parsed {
        Err(_) => (
            408,
            "text/plain; charset=utf-8",
            b"408 Request Timeout\n".to_vec(),
            false,
        ),
        Ok(None) => return,
        Ok(Some(Err(e))) => (
            e.status(),
            "text/plain; charset=utf-8",
            format!("{e}\n").into_bytes(),
            false,
        ),
        Ok(Some(Ok(head))) => {
            let head_only = head.method == Method::Head;
            let path = target::target_path(head.target.get(&buf)).unwrap_or(b"");
            if !matches!(head.method, Method::Get | Method::Head) {
                (
                    405,
                    "text/plain; charset=utf-8",
                    b"405 Method Not Allowed\n".to_vec(),
                    head_only,
                )
            } else if path == b"/metrics" {
                let text = metrics.render_prometheus();
                (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.into_bytes(),
                    head_only,
                )
            } else if path == b"/status" {
                let page =
                    crate::status::render_html_with(&metrics.snapshot(), &metrics.status_tables());
                (
                    200,
                    "text/html; charset=utf-8",
                    page.into_bytes(),
                    head_only,
                )
            } else {
                (
                    404,
                    "text/plain; charset=utf-8",
                    b"404 Not Found\n".to_vec(),
                    head_only,
                )
            }
        }
    };
    let mut lines = format!("Content-Type: {content_type}\r\n").into_bytes();
    if status == 405 {
        lines.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    let mut out = Vec::with_capacity(256 + body.len());
    write_head(
        &mut out,
        status,
        &date::now(),
        &lines,
        body.len() as u64,
        ConnectionHeader::Close,
    );
    if !head_only {
        out.extend_from_slice(&body);
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
