//! `cargo build --release --target wasm32-wasip2 --manifest-path examples/wasm/hello-http/Cargo.toml`,
//! then `cargo run -- serve --wasm /wasm=examples/wasm/hello-http/target/wasm32-wasip2/release/hello_http.wasm`
//! and `curl http://127.0.0.1:8080/wasm/you`.
//!
//! A wasi:http/proxy component: the same file runs under `wasmtime serve`
//! and Spin. It greets the last segment of the path, and tells the size
//! of a request body it was sent.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or("");
        let who = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("world");
        let mut text = format!("Hello, {who}! (from WebAssembly)\n");
        if let Ok(body) = request.consume() {
            let mut received = Vec::new();
            if let Ok(mut stream) = body.stream() {
                let _ = stream.read_to_end(&mut received);
            }
            if !received.is_empty() {
                text.push_str(&format!("you sent {} bytes\n", received.len()));
            }
        }
        let headers = Fields::from_list(&[(
            "content-type".to_owned(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("a valid header");
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().expect("the body, once");
        ResponseOutparam::set(out, Ok(resp));
        let mut stream = body.write().expect("the body's stream, once");
        stream.write_all(text.as_bytes()).expect("write the body");
        stream.flush().expect("flush the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}
