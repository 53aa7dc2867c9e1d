//! The `[[cgi]]` table: a folder of programs (`dir`) or one program for
//! the prefix (`program`), and what every program of the mount gets.

use toml::de::DeTable;

use super::file::{Cx, Val};
use super::mounts::{env_name_problem, placed};
use super::types::{CgiConfig, RunAs};
use super::validate::Draft;

const CGI_KEYS: &[&str] = &[
    "prefix",
    "dir",
    "program",
    "timeout",
    "env",
    "pass_env",
    "max_processes",
    "queue",
    "pass_authorization",
    "stream_chunked",
    "user",
    "tasks",
    "interpreters",
    "read_paths",
    "write_paths",
    "seccomp",
];

impl Cx<'_, '_> {
    pub(super) fn cgi(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let both = t.contains_key("dir") && t.contains_key("program");
        if both && let Some(v) = t.get("program") {
            self.bad(v, "cgi.program", "give `dir` or `program`, not both");
        }
        // Neither: reported as "missing required key `dir` or `program`".
        let path_key = match (t.contains_key("program"), t.contains_key("dir")) {
            (true, _) => "program",
            (false, true) => "dir",
            (false, false) => "dir` or `program",
        };
        let head = self.mount_head(tv, t, "[[cgi]]", "cgi", path_key);
        let mut c = CgiConfig::default();
        let mut path_at = None;
        let ok = self.mount_keys(t, "[[cgi]]", CGI_KEYS, |cx, key, v| {
            Some(match key {
                "dir" => cx
                    .path(v, "cgi.dir")
                    .map(|p| {
                        c.dir = p;
                        path_at = Some(cx.origin(&v.span()));
                    })
                    .is_some(),
                "program" => cx
                    .path(v, "cgi.program")
                    .map(|p| {
                        c.program = Some(p);
                        path_at = Some(cx.origin(&v.span()));
                    })
                    .is_some(),
                "timeout" => cx
                    .positive_duration(v, "cgi.timeout")
                    .map(|t| c.timeout = t)
                    .is_some(),
                "env" => cx.env_table(v, "cgi.env").map(|e| c.env = e).is_some(),
                "pass_env" => cx.cgi_pass_env(v).map(|e| c.pass_env = e).is_some(),
                "max_processes" => cx
                    .count(v, "cgi.max_processes", 1, 65_536)
                    .map(|n| c.max_processes = n as u32)
                    .is_some(),
                "queue" => cx
                    .count(v, "cgi.queue", 0, 1 << 20)
                    .map(|n| c.queue = n as u32)
                    .is_some(),
                "pass_authorization" => cx
                    .boolean(v, "cgi.pass_authorization")
                    .map(|b| c.pass_authorization = b)
                    .is_some(),
                "stream_chunked" => cx
                    .boolean(v, "cgi.stream_chunked")
                    .map(|b| c.stream_chunked = b)
                    .is_some(),
                "user" => cx.cgi_user(v).map(|u| c.user = Some(u)).is_some(),
                "tasks" => cx
                    .count(v, "cgi.tasks", 1, 1 << 22)
                    .map(|n| c.tasks = Some(n))
                    .is_some(),
                "interpreters" => cx.cgi_interpreters(v).map(|i| c.interpreters = i).is_some(),
                "read_paths" => cx
                    .existing_paths(v, "cgi.read_paths")
                    .map(|p| c.read_paths = p)
                    .is_some(),
                "write_paths" => cx
                    .existing_paths(v, "cgi.write_paths")
                    .map(|p| c.write_paths = p)
                    .is_some(),
                "seccomp" => cx
                    .boolean(v, "cgi.seccomp")
                    .map(|b| c.seccomp = b)
                    .is_some(),
                _ => return None,
            })
        });
        let complete = ok && !both && path_at.is_some();
        d.cgi
            .extend(placed(head, complete, c, path_at, |c| &mut c.prefix));
    }

    /// `interpreters = { py = "/usr/bin/python3" }`: extensions (no dot)
    /// and executable files.
    fn cgi_interpreters(&mut self, v: &Val<'_>) -> Option<Vec<(String, std::path::PathBuf)>> {
        use std::os::unix::fs::PermissionsExt;
        let t = self.table(v, "cgi.interpreters")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, value) in t.iter() {
            let ext = k.get_ref().as_ref();
            if ext.is_empty() || ext.contains(['.', '/', '\0']) {
                self.error(
                    k.span(),
                    format!(
                        "cgi.interpreters: {:?} is not a file extension (no dot)",
                        ext.escape_debug().to_string()
                    ),
                );
                ok = false;
                continue;
            }
            let key = format!("cgi.interpreters.{ext}");
            let Some(path) = self.path(value, &key) else {
                ok = false;
                continue;
            };
            let executable = std::fs::metadata(&path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !executable {
                self.bad(value, &key, format!("{path:?} is not an executable file"));
                ok = false;
                continue;
            }
            out.push((ext.to_owned(), path));
        }
        ok.then_some(out)
    }

    /// `user = "name"`: a user of the user database.
    fn cgi_user(&mut self, v: &Val<'_>) -> Option<RunAs> {
        let name = self.string(v, "cgi.user")?;
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some(RunAs {
                name: name.to_owned(),
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }),
            Ok(None) => {
                self.bad(v, "cgi.user", format!("no user named {name:?}"));
                None
            }
            Err(e) => {
                self.bad(v, "cgi.user", format!("looking up {name:?}: {e}"));
                None
            }
        }
    }

    /// `pass_env = ["NAME", ...]`.
    fn cgi_pass_env(&mut self, v: &Val<'_>) -> Option<Vec<String>> {
        let names = self.strings(v, "cgi.pass_env")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (name, span) in names {
            if let Some(problem) = env_name_problem(name) {
                self.error(span, format!("cgi.pass_env: {problem}"));
                ok = false;
            } else {
                out.push(name.to_owned());
            }
        }
        ok.then_some(out)
    }
}
