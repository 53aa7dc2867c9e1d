//! Real CGI programs from Debian packages through the real binary:
//! git-http-backend (a real `git clone` of a repository with 300 commits
//! and 60 tags, whose want list git sends gzip-encoded, protocol v2 named
//! in `Git-Protocol`, and a real `git push`, chunked) and gitweb (the
//! project list and a commit page). scripts/install-deps installs git and
//! gitweb.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{Iolite, children, get};

const BACKEND: &str = "/usr/lib/git-core/git-http-backend";
const GITWEB: &str = "/usr/share/gitweb/gitweb.cgi";
const COMMITS: usize = 300;
/// Tags on as many commits: a clone then wants 61 objects, a request body
/// past the 1 KiB from which git gzips it.
const TAGS: usize = 60;

/// Runs git with `args` in `dir`, failing the test if it fails.
fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .expect("git is installed (scripts/install-deps)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bare repository `repos/project.git` with [`COMMITS`] commits on
/// `main` and [`TAGS`] tags (made with fast-import: one process, not three
/// hundred).
fn make_repository(repos: &Path) -> PathBuf {
    let bare = repos.join("project.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--bare", "-q", "-b", "main"]);
    let mut stream = String::new();
    for i in 1..=COMMITS {
        let message = format!("commit number {i}\n");
        let content = format!("line {i}\n").repeat(i % 7 + 1);
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{i}\ncommitter Test <test@example.com> {} +0000\ndata {}\n{message}",
            1_700_000_000 + i,
            message.len()
        ));
        if i > 1 {
            stream.push_str(&format!("from :{}\n", i - 1));
        }
        stream.push_str(&format!(
            "M 644 inline file{}.txt\ndata {}\n{content}\n",
            i % 20,
            content.len()
        ));
    }
    for t in 1..=TAGS {
        stream.push_str(&format!("reset refs/tags/t{t}\nfrom :{}\n\n", t * 5));
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&bare)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    bare
}

/// The server with git-http-backend at `/git` (through `record`, a shell
/// script that appends the request's method, content encoding and
/// `Git-Protocol` to `dir/requests` and execs it) and gitweb at
/// `/gitweb`, both over `repos`.
fn start(dir: &Path, repos: &Path) -> Iolite {
    let record = dir.join("record");
    std::fs::write(
        &record,
        format!(
            "#!/bin/sh\necho \"$REQUEST_METHOD enc=$HTTP_CONTENT_ENCODING proto=$HTTP_GIT_PROTOCOL\" >> {}\n\
             exec {BACKEND}\n",
            dir.join("requests").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(
        dir.join("gitweb.conf"),
        format!(
            "our $projectroot = \"{}\";\nour $git_temp = \"{}\";\n",
            repos.display(),
            dir.join("tmp").display()
        ),
    )
    .unwrap();
    let config = dir.join("iolite.toml");
    std::fs::write(
        &config,
        format!(
            "[[cgi]]\nprefix = \"/git\"\nprogram = \"{}\"\n\
             env = {{ GIT_PROJECT_ROOT = \"{}\", GIT_HTTP_EXPORT_ALL = \"1\" }}\n\
             [[cgi]]\nprefix = \"/gitweb\"\nprogram = \"{GITWEB}\"\n\
             env = {{ GITWEB_CONFIG = \"{}\" }}\n",
            record.display(),
            repos.display(),
            dir.join("gitweb.conf").display()
        ),
    )
    .unwrap();
    Iolite::start(&root, &["--config", config.to_str().unwrap()])
}

/// Waits (20 s at most) until the server has no child process: every
/// program it ran was reaped.
fn no_program_left(server: &Iolite) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !children(server.pid()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "programs left");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn count(dir: &Path, rev: &str) -> usize {
    let out = git(dir, &["rev-list", "--count", rev]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn git_clones_and_pushes_through_git_http_backend() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let bare = make_repository(&repos);
    git(&bare, &["config", "http.receivepack", "true"]);
    let server = start(dir.path(), &repos);
    let url = format!("http://{}/git/project.git", server.addr);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(
        &work,
        &["-c", "protocol.version=2", "clone", "-q", &url, "clone"],
    );
    let clone = work.join("clone");
    assert_eq!(count(&clone, "HEAD"), COMMITS);
    let tags = git(&clone, &["tag", "--list"]);
    assert_eq!(String::from_utf8_lossy(&tags.stdout).lines().count(), TAGS);
    let requests = std::fs::read_to_string(dir.path().join("requests")).unwrap();
    assert!(
        requests.lines().any(|l| l.starts_with("POST enc=gzip ")),
        "no gzip-encoded request body reached git-http-backend:\n{requests}"
    );
    assert!(
        requests.lines().all(|l| l.ends_with("proto=version=2")),
        "Git-Protocol did not reach git-http-backend on every request:\n{requests}"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("file0.txt")).unwrap(),
        "line 300\n".repeat(300 % 7 + 1)
    );
    // A push larger than the post buffer: its body goes chunked.
    let blob: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(clone.join("blob.bin"), &blob).unwrap();
    git(&clone, &["add", "blob.bin"]);
    git(
        &clone,
        &[
            "-c",
            "user.name=Pusher",
            "-c",
            "user.email=p@example.com",
            "commit",
            "-q",
            "-m",
            "pushed over HTTP",
        ],
    );
    git(
        &clone,
        &[
            "-c",
            "http.postBuffer=65536",
            "push",
            "-q",
            "origin",
            "main",
        ],
    );
    assert_eq!(count(&bare, "main"), COMMITS + 1);
    let shown = git(&bare, &["show", "main:blob.bin"]);
    assert_eq!(shown.stdout, blob);
    // A fetch that negotiates (a shallow clone made whole).
    let second = work.join("second");
    git(&work, &["clone", "-q", "--depth", "5", &url, "second"]);
    git(&second, &["fetch", "-q", "--unshallow"]);
    assert_eq!(count(&second, "HEAD"), COMMITS + 1);
    no_program_left(&server);
    server.stop();
}

#[test]
fn gitweb_lists_projects_and_shows_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    let bare = make_repository(&repos);
    std::fs::write(bare.join("description"), "the test project\n").unwrap();
    let server = start(dir.path(), &repos);
    let list = get(&server, "/gitweb/");
    let text = String::from_utf8_lossy(&list.body);
    assert_eq!(list.status, 200, "{text}");
    assert!(text.contains("project.git"), "{text}");
    assert!(text.contains("the test project"), "{text}");
    let head = git(&bare, &["rev-parse", "main"]);
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let page = get(
        &server,
        &format!("/gitweb/?p=project.git;a=commit;h={head}"),
    );
    let text = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200, "{text}");
    assert!(text.contains(&format!("commit number {COMMITS}")), "{text}");
    assert!(text.contains(&head), "{text}");
    no_program_left(&server);
    server.stop();
}
