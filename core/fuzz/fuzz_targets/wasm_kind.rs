//! `cargo +nightly fuzz run wasm_kind`: a `[[wasm]]` binary's kind told
//! from arbitrary bytes (`iolite_core::config::wasm_kind::detect`).
//! Properties: no panic; bytes without the `\0asm` header are never given
//! a kind; a kind comes with the header's layer (components are
//! wasi-http, core modules wagi or sdk).
#![no_main]

use iolite_core::config::WasmKind;
use iolite_core::config::wasm_kind::detect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(kind) = detect(data) else {
        return;
    };
    assert!(data.starts_with(b"\0asm"));
    let component = data.get(6..8) == Some(&[1, 0]);
    assert_eq!(kind == WasmKind::WasiHttp, component, "{kind:?}");
});
