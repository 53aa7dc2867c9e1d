//! The mount tables of a configuration file: `[[module]]` (with
//! `[module.sandbox]`), `[[fastcgi]]` and `[[wasm]]` (`[[cgi]]` is in
//! `cgi`). They are parsed and validated now so the format is stable;
//! `serve` refuses what is not served yet (see
//! `Config::not_yet_supported`).

use super::Origin;
use super::file::{Cx, Val};
use super::types::{
    FastCgiAddress, FastCgiConfig, ModuleConfig, ModuleTransfer, SandboxConfig, SandboxProfile,
    WasmConfig, WasmKind,
};
use super::validate::{Draft, Placed};
use super::wasm_kind::{self, kind_name, kind_words};
use toml::de::{DeTable, DeValue};

const MODULE_KEYS: &[&str] = &[
    "prefix",
    "path",
    "processes_min",
    "processes_max",
    "in_flight",
    "timeout",
    "idle_timeout",
    "max_requests",
    "memory_limit",
    "transfer",
    "lane_stall",
    "lane_idle",
    "check_timeout",
    "restart_backoff",
    "restart_backoff_max",
    "max_body",
    "env",
    "sandbox",
];
const SANDBOX_KEYS: &[&str] = &[
    "profile",
    "user",
    "seccomp",
    "landlock",
    "read_paths",
    "write_paths",
    "namespaces",
    "open_files",
    "tasks",
    "cpu_time",
    "low_priority",
];
const FASTCGI_KEYS: &[&str] = &[
    "prefix",
    "address",
    "root",
    "index",
    "connections",
    "timeout",
];
const WASM_KEYS: &[&str] = &["prefix", "path", "kind", "memory_limit", "timeout"];

/// What is wrong with `name` as an environment variable's name, if
/// anything.
pub(super) fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("an environment variable's name is empty")
    } else if name.contains('=') {
        Some("an environment variable's name cannot hold '='")
    } else if name.contains('\0') {
        Some("an environment variable's name cannot hold a NUL byte")
    } else {
        None
    }
}

impl Cx<'_, '_> {
    /// A table of environment variables, `{ NAME = "value" }` (`key` names
    /// it in messages: `module.env`, `cgi.env`): names without `=` or NUL,
    /// string values without NUL.
    pub(super) fn env_table(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<(String, String)>> {
        let t = self.table(v, key)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            if let Some(problem) = env_name_problem(name) {
                self.error(k.span(), format!("{key}: {problem}"));
                ok = false;
                continue;
            }
            match value.get_ref() {
                DeValue::String(s) if s.contains('\0') => {
                    self.bad(value, key, "a value cannot hold a NUL byte");
                    ok = false;
                }
                DeValue::String(s) => out.push((name.to_owned(), s.to_string())),
                _ => {
                    self.wrong_type(value, &format!("{key}.{name}"), "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn sandbox(&mut self, v: &Val<'_>) -> Option<SandboxConfig> {
        let t = self.table(v, "module.sandbox")?;
        let profile = match t.get("profile") {
            Some(p) => self.choice(
                p,
                "module.sandbox.profile",
                "sandbox profile",
                &[
                    ("strict", SandboxProfile::Strict),
                    ("none", SandboxProfile::None),
                ],
            )?,
            None => SandboxProfile::Strict,
        };
        let mut s = SandboxConfig::for_profile(profile);
        let mut ok = true;
        for (k, v) in t.iter() {
            let good = match k.get_ref().as_ref() {
                "profile" => true,
                "user" => match self.string(v, "module.sandbox.user") {
                    Some("") => {
                        self.bad(v, "module.sandbox.user", "the user name is empty");
                        false
                    }
                    Some(u) => {
                        s.user = Some(u.to_owned());
                        true
                    }
                    None => false,
                },
                "seccomp" => self
                    .boolean(v, "module.sandbox.seccomp")
                    .map(|b| s.seccomp = b)
                    .is_some(),
                "landlock" => self
                    .boolean(v, "module.sandbox.landlock")
                    .map(|b| s.landlock = b)
                    .is_some(),
                "read_paths" => self
                    .existing_paths(v, "module.sandbox.read_paths")
                    .map(|p| s.read_paths = p)
                    .is_some(),
                "write_paths" => self
                    .existing_paths(v, "module.sandbox.write_paths")
                    .map(|p| s.write_paths = p)
                    .is_some(),
                "namespaces" => self
                    .boolean(v, "module.sandbox.namespaces")
                    .map(|b| s.namespaces = b)
                    .is_some(),
                "open_files" => self
                    .count(v, "module.sandbox.open_files", 8, 1 << 20)
                    .map(|n| s.open_files = Some(n))
                    .is_some(),
                "tasks" => self
                    .count(v, "module.sandbox.tasks", 1, 1 << 20)
                    .map(|n| s.tasks = Some(n))
                    .is_some(),
                "cpu_time" => self
                    .positive_duration(v, "module.sandbox.cpu_time")
                    .map(|t| s.cpu_time = Some(t))
                    .is_some(),
                "low_priority" => self
                    .boolean(v, "module.sandbox.low_priority")
                    .map(|b| s.low_priority = b)
                    .is_some(),
                _ => {
                    self.unknown(k, "[module.sandbox]", SANDBOX_KEYS);
                    true
                }
            };
            ok &= good;
        }
        ok.then_some(s)
    }

    /// A path or an array of paths (relative to the file's directory), each
    /// of which must exist: landlock rules are made from open paths.
    pub(super) fn existing_paths(
        &mut self,
        v: &Val<'_>,
        key: &str,
    ) -> Option<Vec<std::path::PathBuf>> {
        let items = self.strings(v, key)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (s, span) in items {
            let problem = if s.is_empty() {
                Some("the path is empty".to_owned())
            } else {
                let path = self.base.join(s);
                let missing = std::fs::symlink_metadata(&path).is_err();
                out.push(path);
                missing.then(|| format!("{s:?} does not exist"))
            };
            if let Some(problem) = problem {
                self.error(span, format!("{key}: {problem}"));
                ok = false;
            }
        }
        ok.then_some(out)
    }

    /// The common part of every mount table: the prefix (required) and the
    /// path-like key (`path_key`, required). Returns None after reporting.
    pub(super) fn mount_head(
        &mut self,
        tv: &Val<'_>,
        t: &DeTable<'_>,
        header: &str,
        kind: &str,
        path_key: &str,
    ) -> Option<(String, Origin)> {
        if !t.contains_key(path_key) {
            self.missing(tv, header, path_key);
        }
        match t.get("prefix") {
            Some(v) => {
                let p = self.prefix(v, &format!("{kind}.prefix"))?;
                Some((p, self.origin(&v.span())))
            }
            None => {
                self.missing(tv, header, "prefix");
                None
            }
        }
    }

    /// Walks a mount table's keys: `prefix` was read by
    /// [`mount_head`](Cx::mount_head); `each` reads the others, answering
    /// whether the value was good, or None for a key it does not know (then
    /// reported as unknown among `known`). Whether every value was good.
    pub(super) fn mount_keys(
        &mut self,
        t: &DeTable<'_>,
        header: &str,
        known: &[&str],
        mut each: impl FnMut(&mut Self, &str, &Val<'_>) -> Option<bool>,
    ) -> bool {
        let mut ok = true;
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            if key == "prefix" {
                continue;
            }
            ok &= each(self, key, v).unwrap_or_else(|| {
                self.unknown(k, header, known);
                true
            });
        }
        ok
    }

    pub(super) fn module(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[module]]", "module", "path");
        let mut m = ModuleConfig::default();
        let mut path_at = None;
        let mut ok = self.mount_keys(t, "[[module]]", MODULE_KEYS, |cx, key, v| {
            Some(match key {
                "path" => cx
                    .path(v, "module.path")
                    .map(|p| {
                        m.path = p;
                        path_at = Some(cx.origin(&v.span()));
                    })
                    .is_some(),
                "processes_min" => cx
                    .count(v, "module.processes_min", 0, 1024)
                    .map(|n| m.processes_min = n as u32)
                    .is_some(),
                "processes_max" => cx
                    .count(v, "module.processes_max", 1, 1024)
                    .map(|n| m.processes_max = n as u32)
                    .is_some(),
                "in_flight" => cx
                    .count(v, "module.in_flight", 1, 65_536)
                    .map(|n| m.in_flight = n as u32)
                    .is_some(),
                "timeout" => cx
                    .positive_duration(v, "module.timeout")
                    .map(|t| m.timeout = t)
                    .is_some(),
                "idle_timeout" => cx
                    .positive_duration(v, "module.idle_timeout")
                    .map(|t| m.idle_timeout = t)
                    .is_some(),
                "lane_stall" => cx
                    .duration(v, "module.lane_stall")
                    .map(|t| m.lane_stall = t)
                    .is_some(),
                "lane_idle" => cx
                    .positive_duration(v, "module.lane_idle")
                    .map(|t| m.lane_idle = t)
                    .is_some(),
                "check_timeout" => cx
                    .positive_duration(v, "module.check_timeout")
                    .map(|t| m.check_timeout = t)
                    .is_some(),
                "restart_backoff" => cx
                    .positive_duration(v, "module.restart_backoff")
                    .map(|t| m.restart_backoff = t)
                    .is_some(),
                "restart_backoff_max" => cx
                    .positive_duration(v, "module.restart_backoff_max")
                    .map(|t| m.restart_backoff_max = t)
                    .is_some(),
                "max_body" => cx
                    .size(v, "module.max_body")
                    .map(|n| m.max_body = Some(n))
                    .is_some(),
                "env" => cx.env_table(v, "module.env").map(|e| m.env = e).is_some(),
                "max_requests" => cx
                    .count(v, "module.max_requests", 1, 1_000_000_000_000)
                    .map(|n| m.max_requests = Some(n))
                    .is_some(),
                "memory_limit" => cx
                    .size(v, "module.memory_limit")
                    .filter(|&n| {
                        let big = n >= 16 << 20;
                        if !big {
                            cx.bad(v, "module.memory_limit", "must be at least 16M");
                        }
                        big
                    })
                    .map(|n| m.memory_limit = Some(n))
                    .is_some(),
                "transfer" => {
                    let choices = [
                        ("shared", ModuleTransfer::Shared),
                        ("copy", ModuleTransfer::Copy),
                    ];
                    cx.choice(v, "module.transfer", "body transfer", &choices)
                        .map(|t| m.transfer = t)
                        .is_some()
                }
                "sandbox" => cx.sandbox(v).map(|s| m.sandbox = s).is_some(),
                _ => return None,
            })
        });
        if m.processes_min > m.processes_max {
            let at = t.get("processes_min").map_or(tv.span(), |v| v.span());
            self.error(
                at,
                format!(
                    "module.processes_min ({}) is larger than module.processes_max ({})",
                    m.processes_min, m.processes_max
                ),
            );
            ok = false;
        }
        if ok && m.restart_backoff > m.restart_backoff_max {
            let at = t.get("restart_backoff").map_or(tv.span(), |v| v.span());
            self.error(
                at,
                format!(
                    "module.restart_backoff ({}) is longer than module.restart_backoff_max ({})",
                    super::format_duration(m.restart_backoff),
                    super::format_duration(m.restart_backoff_max)
                ),
            );
            ok = false;
        }
        let complete = ok && path_at.is_some();
        d.modules
            .extend(placed(head, complete, m, path_at, |m| &mut m.prefix));
    }

    pub(super) fn fastcgi(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[fastcgi]]", "fastcgi", "address");
        let mut f = FastCgiConfig::default();
        let mut have_address = false;
        let mut root_at = None;
        let ok = self.mount_keys(t, "[[fastcgi]]", FASTCGI_KEYS, |cx, key, v| {
            Some(match key {
                "address" => match cx.string(v, "fastcgi.address").map(FastCgiAddress::parse) {
                    Some(Ok(FastCgiAddress::Unix(p))) => {
                        f.address = FastCgiAddress::Unix(cx.base.join(p));
                        have_address = true;
                        true
                    }
                    Some(Ok(a)) => {
                        f.address = a;
                        have_address = true;
                        true
                    }
                    Some(Err(problem)) => {
                        cx.bad(v, "fastcgi.address", problem);
                        false
                    }
                    None => false,
                },
                "root" => cx
                    .path(v, "fastcgi.root")
                    .map(|p| {
                        f.root = Some(p);
                        root_at = Some(cx.origin(&v.span()));
                    })
                    .is_some(),
                "index" => match cx.string(v, "fastcgi.index") {
                    Some(s) if !s.is_empty() && !s.contains('/') => {
                        f.index = s.to_owned();
                        true
                    }
                    Some(s) => {
                        cx.bad(
                            v,
                            "fastcgi.index",
                            format!("bad index file name {s:?}: a plain file name is needed"),
                        );
                        false
                    }
                    None => false,
                },
                "connections" => cx
                    .count(v, "fastcgi.connections", 1, 4096)
                    .map(|n| f.connections = n as u32)
                    .is_some(),
                "timeout" => cx
                    .positive_duration(v, "fastcgi.timeout")
                    .map(|t| f.timeout = t)
                    .is_some(),
                _ => return None,
            })
        });
        let complete = ok && have_address;
        d.fastcgi
            .extend(placed(head, complete, f, root_at, |f| &mut f.prefix));
    }

    pub(super) fn wasm(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[wasm]]", "wasm", "path");
        let mut w = WasmConfig::default();
        let mut path_at = None;
        let mut kind_at = None;
        let ok = self.mount_keys(t, "[[wasm]]", WASM_KEYS, |cx, key, v| {
            Some(match key {
                "path" => cx
                    .path(v, "wasm.path")
                    .map(|p| {
                        w.path = p;
                        path_at = Some(cx.origin(&v.span()));
                    })
                    .is_some(),
                "kind" => cx
                    .choice(
                        v,
                        "wasm.kind",
                        "wasm kind",
                        &[
                            ("wasi-http", WasmKind::WasiHttp),
                            ("wagi", WasmKind::Wagi),
                            ("sdk", WasmKind::Sdk),
                        ],
                    )
                    .map(|k| {
                        w.kind = k;
                        kind_at = Some(v.span());
                    })
                    .is_some(),
                "memory_limit" => cx
                    .size(v, "wasm.memory_limit")
                    .filter(|&n| {
                        let ok = n >= 64 << 10;
                        if !ok {
                            cx.bad(
                                v,
                                "wasm.memory_limit",
                                "must be at least 64K (one wasm page)",
                            );
                        }
                        ok
                    })
                    .map(|n| w.memory_limit = n)
                    .is_some(),
                "timeout" => cx
                    .positive_duration(v, "wasm.timeout")
                    .map(|t| w.timeout = t)
                    .is_some(),
                _ => return None,
            })
        });
        let mut complete = ok && path_at.is_some();
        if complete && let Some(detected) = wasm_kind::detect_file(&w.path) {
            match (detected, kind_at) {
                (Ok(kind), Some(span)) if kind != w.kind => {
                    self.error(
                        span,
                        format!(
                            "wasm.kind: \"{}\" contradicts {}: it is {} (kind = \"{}\", or leave kind out)",
                            kind_name(w.kind),
                            w.path.display(),
                            kind_words(kind),
                            kind_name(kind)
                        ),
                    );
                    complete = false;
                }
                (Ok(kind), _) => w.kind = kind,
                (Err(problem), _) => {
                    if let Some(v) = t.get("path") {
                        self.bad(v, "wasm.path", format!("{}: {problem}", w.path.display()));
                    }
                    complete = false;
                }
            }
        }
        d.wasm
            .extend(placed(head, complete, w, path_at, |w| &mut w.prefix));
    }
}

/// A mount that was read whole (`complete`: every value good and the
/// required keys there) and has a prefix, placed for validation.
pub(super) fn placed<T>(
    head: Option<(String, Origin)>,
    complete: bool,
    mut value: T,
    path_at: Option<Origin>,
    prefix: impl FnOnce(&mut T) -> &mut String,
) -> Option<Placed<T>> {
    let (p, prefix_at) = head.filter(|_| complete)?;
    *prefix(&mut value) = p;
    Some(Placed {
        value,
        prefix_at,
        path_at,
    })
}
