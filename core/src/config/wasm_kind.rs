//! Telling a `[[wasm]]` binary's kind from its bytes ([`detect`]), so
//! `kind` can be left out and a `kind` the binary contradicts is a config
//! error. wasmparser (the parser wasmtime itself uses) walks the sections;
//! only the top level's exports are read, nothing is validated here (the
//! server's compile step validates the whole binary). Also here:
//! `Config::not_yet_supported`, what `serve` refuses (the kinds not served
//! yet, and directory listings).
//!
//! | the binary | its kind |
//! |---|---|
//! | a component exporting `wasi:http/incoming-handler` | `wasi-http` |
//! | a core module exporting `iolite_module_abi_version` (the SDK's ABI symbol) | `sdk` |
//! | a core module exporting a function `_start` (a WASI preview-1 command) | `wagi` |

use wasmparser::{Encoding, ExternalKind, Parser, Payload};

use super::types::{Config, WasmKind};

/// The SDK module ABI's version symbol, exported by an SDK module built
/// for wasm32 as by a native one.
const SDK_SYMBOL: &str = "iolite_module_abi_version";
/// The interface a wasi:http/proxy component exports (any version).
const HTTP_HANDLER: &str = "wasi:http/incoming-handler";

/// The kind of the binary `bytes`, or why it has none iolite serves.
pub fn detect(bytes: &[u8]) -> Result<WasmKind, String> {
    if !Parser::is_core_wasm(bytes) && !Parser::is_component(bytes) {
        return Err("not a WebAssembly binary (no \\0asm header)".into());
    }
    let mut depth = 0usize;
    let mut component = false;
    let (mut handler, mut sdk, mut start) = (false, false, false);
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a valid WebAssembly binary: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    component = encoding == Encoding::Component;
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 1 => {
                for export in exports {
                    let export = export.map_err(|e| format!("its exports: {e}"))?;
                    handler |= export.name.name.starts_with(HTTP_HANDLER);
                }
            }
            Payload::ExportSection(exports) if depth == 1 => {
                for export in exports {
                    let export = export.map_err(|e| format!("its exports: {e}"))?;
                    sdk |= export.name == SDK_SYMBOL;
                    start |= export.name == "_start" && export.kind == ExternalKind::Func;
                }
            }
            _ => {}
        }
    }
    match (component, handler, sdk, start) {
        (true, true, _, _) => Ok(WasmKind::WasiHttp),
        (true, false, _, _) => Err(format!(
            "a component that exports no {HTTP_HANDLER} (iolite serves wasi:http/proxy components)"
        )),
        (false, _, true, _) => Ok(WasmKind::Sdk),
        (false, _, false, true) => Ok(WasmKind::Wagi),
        (false, _, false, false) => Err(format!(
            "a core module that exports neither `_start` (a WASI command, run as WAGI) nor `{SDK_SYMBOL}` (an iolite SDK module)"
        )),
    }
}

/// The kind of the binary at `path`; None when it cannot be read
/// (validation reports a missing file).
pub fn detect_file(path: &std::path::Path) -> Option<Result<WasmKind, String>> {
    std::fs::read(path).ok().map(|bytes| detect(&bytes))
}

impl Config {
    /// What this configuration asks for that `serve` cannot do yet, one line
    /// each (empty when everything is supported). `serve` refuses to start
    /// when it is not empty.
    pub fn not_yet_supported(&self) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.wasm {
            let kind = match w.kind {
                WasmKind::WasiHttp => continue,
                WasmKind::Wagi => "WAGI programs",
                WasmKind::Sdk => "SDK modules built for wasm32",
            };
            let p = &w.prefix;
            out.push(format!(
                "wasm at {p} ({kind} are not yet supported; wasi:http components are)"
            ));
        }
        for l in self.locations.iter().filter(|l| l.autoindex) {
            out.push(format!(
                "location {}: autoindex = true (directory listings are not yet supported)",
                l.prefix
            ));
        }
        out
    }
}

/// The name `kind` takes in the config.
pub fn kind_name(kind: WasmKind) -> &'static str {
    match kind {
        WasmKind::WasiHttp => "wasi-http",
        WasmKind::Wagi => "wagi",
        WasmKind::Sdk => "sdk",
    }
}

/// What a binary of `kind` is, in words.
pub fn kind_words(kind: WasmKind) -> &'static str {
    match kind {
        WasmKind::WasiHttp => "a wasi:http component",
        WasmKind::Wagi => "a WASI preview-1 command (WAGI)",
        WasmKind::Sdk => "an iolite SDK module",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with the given exports, in the binary format by hand
    /// (a function type, one function per export, the exports).
    fn core_module(exports: &[&str]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        let n = exports.len() as u8;
        // type section: one type, () -> ()
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
        // function section: n functions of type 0
        m.extend_from_slice(&[3, 1 + n]);
        m.push(n);
        m.extend(std::iter::repeat_n(0u8, n as usize));
        // export section
        let mut body = vec![n];
        for (i, name) in exports.iter().enumerate() {
            body.push(name.len() as u8);
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&[0, i as u8]);
        }
        m.push(7);
        m.push(body.len() as u8);
        m.extend(body);
        // code section: n empty bodies
        let mut code = vec![n];
        for _ in 0..n {
            code.extend_from_slice(&[2, 0, 0x0b]);
        }
        m.push(10);
        m.push(code.len() as u8);
        m.extend(code);
        m
    }

    #[test]
    fn kinds_are_told_from_the_binary_table() {
        // (bytes, expected kind or a piece of the error)
        let component_no_exports = b"\0asm\x0d\0\x01\0".to_vec();
        let table: [(Vec<u8>, Result<WasmKind, &str>); 7] = [
            (core_module(&["_start"]), Ok(WasmKind::Wagi)),
            (core_module(&["_start", SDK_SYMBOL]), Ok(WasmKind::Sdk)),
            (core_module(&["main"]), Err("exports neither `_start`")),
            (core_module(&[]), Err("exports neither")),
            (
                component_no_exports,
                Err("exports no wasi:http/incoming-handler"),
            ),
            (b"#!/bin/sh\n".to_vec(), Err("not a WebAssembly binary")),
            (
                b"\0asm\x01\0\0\0\x07\x05".to_vec(),
                Err("not a valid WebAssembly binary"),
            ),
        ];
        for (bytes, want) in table {
            let got = detect(&bytes);
            match want {
                Ok(kind) => assert_eq!(got, Ok(kind), "{bytes:?}"),
                Err(piece) => {
                    let e = got.unwrap_err();
                    assert!(e.contains(piece), "{bytes:?}: {e}");
                }
            }
        }
    }
}
