//! iolite-modules owns the content handlers that plug into iolite-core:
//! static files, process modules, CGI, FastCGI and WebAssembly. It must not
//! know about other nodes.
//!
//! # Layout
//! (filled in by the modules issue.)
#![forbid(unsafe_code)]
