//! iolite-examples holds the demo site (`examples/site`, what `iolite serve`
//! serves by default), the example modules and CGI scripts, and cluster
//! set-ups. Every example runs with one command, written on its first doc line.
//!
//! # Layout
//! - `site/`: the demo site.
//! - `modules/{hello,echo,template,jsonapi,stream,blob}`: example modules
//!   (cdylib crates of the workspace). See `examples/README.md`.
//!
//! Modules that only tests run (misbehaving on purpose) are not examples:
//! they live in `fixtures/`.
#![forbid(unsafe_code)]
