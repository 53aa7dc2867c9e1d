//! iolite-examples holds the demo site (`examples/site`, what `iolite serve`
//! serves by default), the example modules and CGI scripts, and cluster
//! set-ups. Every example runs with one command, written on its first doc line.
//!
//! # Layout
//! - `site/`: the demo site.
//! - `modules/{hello,echo,template,jsonapi}`: example modules (cdylib
//!   crates of the workspace); `modules/{faulty,abi-mismatch}`: modules
//!   that misbehave on purpose, for the supervision tests. See
//!   `examples/README.md`.
#![forbid(unsafe_code)]
