//! `cargo bench -p iolite-core --bench http_parse`: the per-request CPU of
//! the wire-format code on the hot path — parsing a typical browser head,
//! normalizing its target, writing a response head.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use iolite_core::http::response::{ConnectionHeader, write_head};
use iolite_core::http::{ChunkedDecoder, Limits, date, parse_head, target};

const BROWSER_HEAD: &[u8] = b"GET /assets/css/site.min.css?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
If-None-Match: \"6b0913c2.39eca6d0-476\"\r\n\
If-Modified-Since: Fri, 27 Nov 2026 05:23:14 GMT\r\n\r\n";

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    c.bench_function("parse_head/browser", |b| {
        b.iter(|| {
            parse_head(black_box(BROWSER_HEAD), &limits)
                .unwrap()
                .unwrap()
        })
    });
    let mut path = Vec::with_capacity(128);
    c.bench_function("target/normalize", |b| {
        b.iter(|| {
            let p =
                target::target_path(black_box(b"/assets/./css/../css/site%2Emin.css?v=3")).unwrap();
            target::normalize(p, &mut path).unwrap();
        })
    });
    let mut out = Vec::with_capacity(512);
    let lines = b"Content-Type: text/css; charset=utf-8\r\nLast-Modified: Fri, 27 Nov 2026 05:23:14 GMT\r\nETag: \"6b0913c2.39eca6d0-476\"\r\nAccept-Ranges: bytes\r\n";
    c.bench_function("write_head/200", |b| {
        b.iter(|| {
            out.clear();
            write_head(
                &mut out,
                200,
                &date::now(),
                black_box(lines),
                1142,
                ConnectionHeader::Default,
            );
        })
    });
    let body: Vec<u8> = (0..64)
        .flat_map(|_| {
            b"100\r\n"
                .iter()
                .copied()
                .chain([b'x'; 256])
                .chain(*b"\r\n")
        })
        .chain(*b"0\r\n\r\n")
        .collect();
    c.bench_function("chunked/64x256B", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new(1 << 20);
            d.feed(black_box(&body), |_| {}).unwrap()
        })
    });
}

criterion_group!(http, benches);
criterion_main!(http);
