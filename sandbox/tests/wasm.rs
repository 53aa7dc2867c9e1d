//! Regression tests for the wasmtime behaviours iolite relies on (an
//! upgrade that changes one fails here, loudly): the epoch deadline stops
//! a loop, a memory cannot grow past its limit, code compiled by the
//! server's engine (no pool) loads into a runner's (pooling) engine, and
//! the cache finds what it wrote.

use std::time::{Duration, Instant};

use iolite_sandbox::wasm::code::{Origin, compile_cached, load};
use iolite_sandbox::wasm::{EpochTicker, Limits, compiler, engine};
use wasmtime::{Instance, Module, Store, StoreLimits, StoreLimitsBuilder, Trap};

fn limits() -> Limits {
    Limits {
        memory: 1 << 20,
        timeout: Duration::from_millis(200),
        instances: 2,
        max_stack: 256 << 10,
    }
}

#[test]
fn the_epoch_deadline_stops_an_infinite_loop() {
    let limits = limits();
    let engine = engine(&limits).unwrap();
    let wasm = wat::parse_str(r#"(module (func (export "spin") (loop (br 0))))"#).unwrap();
    let module = Module::new(&engine, wasm).unwrap();
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(limits.deadline_ticks());
    store.epoch_deadline_trap();
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let spin = instance
        .get_typed_func::<(), ()>(&mut store, "spin")
        .unwrap();
    let _ticker = EpochTicker::start(&engine).unwrap();
    let started = Instant::now();
    let e = spin.call(&mut store, ()).unwrap_err();
    assert_eq!(e.downcast_ref::<Trap>(), Some(&Trap::Interrupt), "{e:#}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_memory_cannot_grow_past_its_limit() {
    let limits = limits();
    let engine = engine(&limits).unwrap();
    // 16 pages is the limit (1 MiB); growing by 1 from 16 must trap.
    let wasm = wat::parse_str(
        r#"(module (memory 16) (func (export "grow") (result i32) (memory.grow (i32.const 1))))"#,
    )
    .unwrap();
    let module = Module::new(&engine, wasm).unwrap();
    let store_limits: StoreLimits = StoreLimitsBuilder::new()
        .memory_size(limits.memory as usize)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(&engine, store_limits);
    store.limiter(|l| l);
    // With epoch interruption on, a store's deadline starts at 0: a store
    // that sets none traps at its first check.
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let grow = instance
        .get_typed_func::<(), i32>(&mut store, "grow")
        .unwrap();
    let e = grow.call(&mut store, ()).unwrap_err();
    assert!(format!("{e:#}").contains("grow"), "{e:#}");
    // A module declaring a memory above the limit is refused whole.
    let big = wat::parse_str("(module (memory 17))").unwrap();
    let e = Module::new(&engine, big).unwrap_err();
    assert!(format!("{e:#}").contains("exceeds the limit"), "{e:#}");
}

#[test]
fn code_compiled_by_the_server_loads_in_a_runner_and_is_cached() {
    let limits = limits();
    let wasm = wat::parse_str(
        r#"(component (core module (func (export "f"))) (core instance (instantiate 0)))"#,
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("wasm");
    let server = compiler(&limits).unwrap();
    let (path, origin) = compile_cached(&server, &wasm, &dir).unwrap();
    assert_eq!(origin, Origin::Compiled);
    assert!(path.starts_with(&dir));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the cache folder is the server's alone"
    );
    let (again, origin) = compile_cached(&server, &wasm, &dir).unwrap();
    assert_eq!((again.as_path(), origin), (path.as_path(), Origin::Cached));
    // Other limits shape other code: another key.
    let other = compiler(&Limits {
        memory: 2 << 20,
        ..limits
    })
    .unwrap();
    let (other_path, _) = compile_cached(&other, &wasm, &dir).unwrap();
    assert_ne!(other_path, path);
    // The runner's engine (pooling) takes the server's code.
    let runner = engine(&limits).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    load(&runner, &file).unwrap();
    // ...and refuses code shaped by other limits.
    let file = std::fs::File::open(&other_path).unwrap();
    assert!(load(&runner, &file).is_err());
}
