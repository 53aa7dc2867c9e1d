//! WebAssembly mounts through the real binary: the example wasi:http
//! component (`examples/wasm/hello-http`) and a fixture that misbehaves
//! on purpose (`fixtures/wasm/http-faults`), both built here for
//! wasm32-wasip2 (scripts/install-deps adds the target).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod support;
use support::{Iolite, Response, Site, get, request};

/// The workspace's target directory (this test runs from its
/// `debug/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("a test runs from TARGET/PROFILE/deps")
        .to_owned()
}

/// Builds the component crate at `dir` (relative to the checkout) for
/// wasm32-wasip2, offline with its own lock file, and returns the .wasm.
fn build_component(dir: &str, name: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo.join(dir))
        .args([
            "build",
            "--offline",
            "--release",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "{dir} does not build for wasm32-wasip2:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target.join(format!("wasm32-wasip2/release/{name}.wasm"));
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    wasm
}

fn hello() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_component("examples/wasm/hello-http", "hello_http"))
}

fn faults() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_component("fixtures/wasm/http-faults", "http_faults"))
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn the_hello_component_answers_and_its_mount_is_logged() {
    let site = Site::new();
    let mount = format!("/w={}", hello().display());
    let server = Iolite::start(&site.root(), &["--wasm", &mount]);
    let r = get(&server, "/w/you");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(text(&r), "Hello, you! (from WebAssembly)\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let r = request(&server, "POST", "/w/me", &[b'a'; 3000]);
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        "Hello, me! (from WebAssembly)\nyou sent 3000 bytes\n"
    );
    // The kind told from the binary, and the limits applied.
    let lines = server.wait_for_lines(1, |l| l.contains("wasm mounted"));
    for piece in [
        "wasm=/w",
        "wasi:http component",
        "memory_limit=67108864",
        "timeout=10s",
        "max_wasm_stack=524288",
    ] {
        assert!(lines[0].contains(piece), "{piece} not in {}", lines[0]);
    }
    server.stop();
}

#[test]
fn a_guest_that_loops_traps_or_grows_fails_only_its_own_request() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wasm.toml");
    std::fs::write(
        &config,
        format!(
            "[[wasm]]\nprefix = \"/f\"\npath = {:?}\ntimeout = \"1s\"\nmemory_limit = \"16M\"\n",
            faults().display()
        ),
    )
    .unwrap();
    let server = Iolite::start(&site.root(), &["--config", config.to_str().unwrap()]);
    assert_eq!(text(&get(&server, "/f/ok")), "ok");
    // (path, status): each followed by a request that must succeed.
    for (path, status) in [("/f/loop", 504), ("/f/trap", 502), ("/f/grow", 502)] {
        let r = get(&server, path);
        assert_eq!(r.status, status, "{path}: {}", text(&r));
        let r = get(&server, "/f/ok");
        assert_eq!((r.status, text(&r)), (200, "ok".to_owned()), "after {path}");
    }
    // One instance per request: no state survives from one to the next.
    for _ in 0..3 {
        assert_eq!(text(&get(&server, "/f/count")), "1");
    }
    // No network for guests.
    let r = get(&server, "/f/fetch");
    assert_eq!(text(&r), "refused: ErrorCode::HttpRequestDenied");
    // Bodies both ways, whole.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = request(&server, "POST", "/f/echo", &body);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the echoed body differs");
    let r = get(&server, "/f/big?n=3000000");
    assert_eq!((r.status, r.body.len()), (200, 3_000_000));
    // Every failure stayed inside its store: the runner never died.
    assert_eq!(
        server.module_metric("iolite_module_restarts_total", "/f"),
        0
    );
    server.stop_expecting(|l| l.contains("/f"));
}

#[test]
fn check_config_refuses_a_kind_the_binary_contradicts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!(
            "root = \"site\"\n[[wasm]]\nprefix = \"/w\"\npath = {:?}\nkind = \"wagi\"\n",
            hello().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:5:8: wasm.kind: \"wagi\" contradicts {}: it is a wasi:http component (kind = \"wasi-http\", or leave kind out)",
        file.display(),
        hello().display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    // Left out, the kind is found.
    std::fs::write(
        &file,
        format!(
            "root = \"site\"\n[[wasm]]\nprefix = \"/w\"\npath = {:?}\n",
            hello().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iolite"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
