//! A library that claims module ABI version 9999 and is otherwise empty:
//! `iolite serve --module /x=target/debug/libabi_mismatch.so` must refuse
//! to start, naming both versions. Used by the integration tests.
#![deny(unsafe_code)]

/// The module ABI version this library claims.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn iolite_module_abi_version() -> u32 {
    9999
}

/// Never called: the runner refuses the library first.
///
/// # Safety
/// Nothing: it only returns.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iolite_module_main(_sock_fd: i32) -> i32 {
    1
}
