//! CGI/1.1 (RFC 3875): legacy programs run unmodified, a process per
//! request.
//!
//! # Layout
//! - [`header`]: the program's header block (a leaf; fuzzed in
//!   `modules/fuzz`, target `cgi_header`).

pub mod env;
pub mod header;
