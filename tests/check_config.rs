//! `iolite check-config FILE` and `iolite serve --config FILE` run as the
//! real binary: exit codes and the exact lines they print.

use std::path::Path;
use std::process::{Command, Output};

mod support;

fn iolite(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run iolite")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_good_file_prints_a_summary_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        "listen = [\"127.0.0.1:0\", \"[::1]:8443\"]\nroot = \"site\"\nworkers = 2\nadmin = \"none\"\n\
         [cache]\nsize = \"64M\"\n[log]\naccess = \"off\"\n",
    )
    .unwrap();
    let out = iolite(&["check-config", "good.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "good.toml: ok");
    assert!(
        lines.contains(&"  listen      127.0.0.1:0, [::1]:8443"),
        "{stdout}"
    );
    assert!(lines.contains(&"  root        site"), "{stdout}");
    assert!(lines.contains(&"  workers     2"), "{stdout}");
    assert!(lines.contains(&"  admin       none"), "{stdout}");
    assert!(
        lines.contains(&"  cache       64 MiB gdsf, revalidate 1s, files over 8 MiB sent uncached"),
        "{stdout}"
    );
    assert!(lines.contains(&"  access log  off"), "{stdout}");
}

#[test]
fn a_bad_file_prints_every_error_with_its_position_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "root = \"site\"\nworkers = 0\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n\
         [cache]\nsize = \"1Z\"\npolicy = \"arc\"\n[[module]]\nprefix = \"/app\"\n",
    )
    .unwrap();
    let want = [
        "bad.toml:2:11: workers: must be at least 1, found 0",
        "bad.toml:3:27: listen: 127.0.0.1:80 is listed twice (first at 3:11)",
        "bad.toml:5:8: cache.size: bad size \"1Z\": expected a number of bytes with an optional suffix K, M, G or T (such as 256M)",
        "bad.toml:6:10: cache.policy: unknown cache policy \"arc\": expected \"gdsf\" or \"lru\"",
        "bad.toml:7:1: [[module]]: missing required key `path`",
        "5 errors in the configuration",
    ];

    let out = iolite(&["check-config", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr).lines().collect::<Vec<_>>(), want);

    // serve refuses to start with the same messages.
    let out = iolite(&["serve", "--config", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[..want.len()], want[..]);
    assert_eq!(lines[want.len()..], ["iolite serve: not started"]);
}

#[test]
fn a_syntax_error_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        "root = \"site\"\n[cache\nsize = 1\n",
    )
    .unwrap();
    let out = iolite(&["check-config", "broken.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("broken.toml:2:7: syntax error: "),
        "{stderr}"
    );

    let out = iolite(&["check-config", "absent.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("absent.toml: cannot read the configuration file: "),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_bad_flags_and_unusable_mounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    std::fs::write(dir.path().join("mod.so"), b"").unwrap();

    // clap refuses a malformed flag value before anything starts.
    let out = iolite(&["serve", "--listen", "localhost:80"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "invalid value 'localhost:80' for '--listen <ADDR>': bad address \"localhost:80\""
        ),
        "{stderr}"
    );

    // A well-formed flag that fails validation is reported with its flag.
    let out = iolite(
        &["serve", "--root", "missing", "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).lines().collect::<Vec<_>>(),
        [
            "--root: directory \"missing\" does not exist",
            "1 error in the configuration",
            "iolite serve: not started",
        ]
    );

    // A module mount is checked before anything starts: a file that is not
    // a module library is refused with the loader's reason.
    let out = iolite(
        &[
            "serve",
            "--root",
            "site",
            "--listen",
            "127.0.0.1:0",
            "--module",
            "/app=mod.so",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("iolite serve: module at /app: ")
            && stderr.contains("cannot load module mod.so"),
        "{stderr}"
    );
    assert!(stderr.contains("iolite serve: not started"), "{stderr}");
}

#[test]
fn check_config_names_the_uid_each_module_gets_or_that_they_share_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    // A real module: check-config loads it.
    std::fs::copy(
        support::module_lib(&["iolite-example-hello"], "hello"),
        dir.path().join("mod.so"),
    )
    .unwrap();
    let modules = "[[module]]\nprefix = \"/a\"\npath = \"mod.so\"\n\
                   [[module]]\nprefix = \"/b\"\npath = \"mod.so\"\n";
    std::fs::write(
        dir.path().join("uids.toml"),
        format!("root = \"site\"\nrunner_uids = \"61000-61001\"\n{modules}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("shared.toml"),
        format!("root = \"site\"\n{modules}"),
    )
    .unwrap();
    let out = iolite(&["check-config", "uids.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("  runner uids 61000-61001, one per module: /a 61000, /b 61001\n"),
        "{}",
        text(&out.stdout)
    );
    let out = iolite(&["check-config", "shared.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("  runner uids none: modules share a user"),
        "{}",
        text(&out.stdout)
    );
}

/// Module libraries are checked as `serve` checks them (a sandboxed runner
/// with a time limit loads each), and every failure is reported: one built
/// for another ABI, and one whose constructor never returns.
#[test]
fn module_libraries_are_checked_and_every_failure_reported() {
    let libs = |name: &str| {
        support::module_lib(
            &[
                "iolite-example-hello",
                "iolite-fixture-abi-mismatch",
                "iolite-fixture-ctor-sleep",
            ],
            name,
        )
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    let module = |prefix: &str, name: &str| {
        format!(
            "[[module]]\nprefix = \"{prefix}\"\npath = \"{}\"\ncheck_timeout = \"2s\"\n",
            libs(name)
        )
    };
    std::fs::write(
        dir.path().join("mods.toml"),
        format!("root = \"site\"\n{}", module("/ok", "hello")),
    )
    .unwrap();
    let out = iolite(&["check-config", "mods.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    std::fs::write(
        dir.path().join("mods.toml"),
        format!(
            "root = \"site\"\n{}{}{}",
            module("/ok", "hello"),
            module("/abi", "abi_mismatch"),
            module("/sleepy", "ctor_sleep")
        ),
    )
    .unwrap();
    let out = iolite(&["check-config", "mods.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with("mods.toml: module at /abi: ")
            && lines[0].contains("ABI version 9999"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("mods.toml: module at /sleepy: ")
            && lines[1].contains("did not finish within the check_timeout of 2s"),
        "{stderr}"
    );
    assert_eq!(lines[2], "2 module library check(s) failed");
    assert_eq!(text(&out.stdout), "");
}
