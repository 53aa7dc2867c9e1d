//! Module libraries for the server under test: example and fixture crates,
//! built on demand.

/// The path of `libNAME.so`, the library of one of the module crates
/// `packages` (examples `iolite-example-*`, fixtures `iolite-fixture-*`),
/// which are built first, once per test binary, next to the iolite binary
/// under test.
pub fn module_lib(packages: &[&str], name: &str) -> String {
    iolite_fixtures::build(packages)
        .join(format!("lib{name}.so"))
        .to_string_lossy()
        .into_owned()
}
