//! iolite-sandbox owns starting isolated processes (namespaces, rlimits,
//! NO_NEW_PRIVS, seccomp, landlock, cgroup v2) and the WebAssembly engine.
//! It must not open sockets or route requests: callers hand it a program and a
//! profile and get back a supervised process.
//!
//! # Layout
//! (filled in by the modules issue.)

pub mod loader;
pub use loader::{LoadError, ModuleLibrary, spawn_inheriting, take_inherited_socket};
