//! Helpers for the `iolite serve` integration tests, one file a concern:
//! the server under test and its site (`server`), the HTTP client side
//! (`http`), processes and named pipes (`proc`), module libraries
//! (`modules`), load and watches beside an attack (`load`), cluster nodes
//! (`cluster`). Each test
//! file declares `mod support;` and uses what it needs, so not every
//! helper is used by every test binary.
#![allow(dead_code, unused_imports)]

mod cluster;
mod http;
mod load;
mod modules;
mod proc;
mod server;

pub use cluster::*;
pub use http::*;
pub use load::*;
pub use modules::*;
pub use proc::*;
pub use server::*;
