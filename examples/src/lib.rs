//! iolite-examples holds the demo site (`examples/site`, what `iolite serve`
//! serves by default), the example modules and CGI scripts, and cluster
//! set-ups. Every example runs with one command, written on its first doc line.
//!
//! # Layout
//! - `site/`: the demo site.
//! - `modules/{hello,echo,template,jsonapi,stream}`: example modules (cdylib
//!   crates of the workspace); `modules/{faulty,hostile,forger,abi-mismatch}`:
//!   modules that misbehave on purpose, for the supervision and isolation
//!   tests (hostile and forger hold `unsafe` to attack with). See
//!   `examples/README.md`.
#![forbid(unsafe_code)]
