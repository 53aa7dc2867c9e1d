//! iolite-ipc owns IO-Lite's buffer layer for Linux: pools (sealed memfd
//! arenas), immutable reference-counted `Buf`s, buffer aggregates (`Agg`),
//! leases held by other processes, and the unix-socket channel that carries
//! postcard frames with file descriptors (SCM_RIGHTS). All memfd and mmap
//! `unsafe` code of the project lives here. It must not know HTTP, routing or
//! anything about modules: it moves bytes by reference and nothing more.
//!
//! # Layout
//! (filled in as the buffer layer lands; see the ipc issue.)
