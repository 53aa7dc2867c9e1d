//! The mount tables of a configuration file: `[[module]]` (with
//! `[module.sandbox]`), `[[cgi]]`, `[[fastcgi]]` and `[[wasm]]`. They are
//! parsed and validated now so the format is stable; `serve` runs modules
//! and refuses the others until their issues land (see
//! `Config::not_yet_supported`).

use super::file::{Cx, Val};
use super::validate::{Draft, Placed};
use super::{
    CgiConfig, FastCgiAddress, FastCgiConfig, ModuleConfig, ModuleTransfer, Origin, SandboxConfig,
    SandboxProfile, WasmConfig, WasmKind,
};
use toml::de::DeTable;

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
];
const CGI_KEYS: &[&str] = &["prefix", "dir", "timeout"];
const FASTCGI_KEYS: &[&str] = &[
    "prefix",
    "address",
    "root",
    "index",
    "connections",
    "timeout",
];
const WASM_KEYS: &[&str] = &["prefix", "path", "kind", "memory_limit", "timeout"];

impl Cx<'_, '_> {
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
    fn existing_paths(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<std::path::PathBuf>> {
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

    pub(super) fn module(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[module]]", "module", "path");
        let mut m = ModuleConfig::default();
        let mut path_at = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let good = match k.get_ref().as_ref() {
                "prefix" => true,
                "path" => self
                    .path(v, "module.path")
                    .map(|p| {
                        m.path = p;
                        path_at = Some(self.origin(&v.span()));
                    })
                    .is_some(),
                "processes_min" => self
                    .count(v, "module.processes_min", 0, 1024)
                    .map(|n| m.processes_min = n as u32)
                    .is_some(),
                "processes_max" => self
                    .count(v, "module.processes_max", 1, 1024)
                    .map(|n| m.processes_max = n as u32)
                    .is_some(),
                "in_flight" => self
                    .count(v, "module.in_flight", 1, 65_536)
                    .map(|n| m.in_flight = n as u32)
                    .is_some(),
                "timeout" => self
                    .positive_duration(v, "module.timeout")
                    .map(|t| m.timeout = t)
                    .is_some(),
                "idle_timeout" => self
                    .positive_duration(v, "module.idle_timeout")
                    .map(|t| m.idle_timeout = t)
                    .is_some(),
                "max_requests" => self
                    .count(v, "module.max_requests", 1, 1_000_000_000_000)
                    .map(|n| m.max_requests = Some(n))
                    .is_some(),
                "memory_limit" => self
                    .size(v, "module.memory_limit")
                    .filter(|&n| {
                        let big = n >= 16 << 20;
                        if !big {
                            self.bad(v, "module.memory_limit", "must be at least 16M");
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
                    self.choice(v, "module.transfer", "body transfer", &choices)
                        .map(|t| m.transfer = t)
                        .is_some()
                }
                "sandbox" => self.sandbox(v).map(|s| m.sandbox = s).is_some(),
                _ => {
                    self.unknown(k, "[[module]]", MODULE_KEYS);
                    true
                }
            };
            ok &= good;
        }
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
        if let (Some((prefix, prefix_at)), true, Some(_)) = (head, ok, &path_at) {
            m.prefix = prefix;
            d.modules.push(Placed {
                value: m,
                prefix_at,
                path_at,
            });
        }
    }

    pub(super) fn cgi(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[cgi]]", "cgi", "dir");
        let mut c = CgiConfig::default();
        let mut path_at = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let good = match k.get_ref().as_ref() {
                "prefix" => true,
                "dir" => self
                    .path(v, "cgi.dir")
                    .map(|p| {
                        c.dir = p;
                        path_at = Some(self.origin(&v.span()));
                    })
                    .is_some(),
                "timeout" => self
                    .positive_duration(v, "cgi.timeout")
                    .map(|t| c.timeout = t)
                    .is_some(),
                _ => {
                    self.unknown(k, "[[cgi]]", CGI_KEYS);
                    true
                }
            };
            ok &= good;
        }
        if let (Some((prefix, prefix_at)), true, Some(_)) = (head, ok, &path_at) {
            c.prefix = prefix;
            d.cgi.push(Placed {
                value: c,
                prefix_at,
                path_at,
            });
        }
    }

    pub(super) fn fastcgi(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[fastcgi]]", "fastcgi", "address");
        let mut f = FastCgiConfig::default();
        let mut have_address = false;
        let mut root_at = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let good = match k.get_ref().as_ref() {
                "prefix" => true,
                "address" => match self.string(v, "fastcgi.address").map(FastCgiAddress::parse) {
                    Some(Ok(FastCgiAddress::Unix(p))) => {
                        f.address = FastCgiAddress::Unix(self.base.join(p));
                        have_address = true;
                        true
                    }
                    Some(Ok(a)) => {
                        f.address = a;
                        have_address = true;
                        true
                    }
                    Some(Err(problem)) => {
                        self.bad(v, "fastcgi.address", problem);
                        false
                    }
                    None => false,
                },
                "root" => self
                    .path(v, "fastcgi.root")
                    .map(|p| {
                        f.root = Some(p);
                        root_at = Some(self.origin(&v.span()));
                    })
                    .is_some(),
                "index" => match self.string(v, "fastcgi.index") {
                    Some(s) if !s.is_empty() && !s.contains('/') => {
                        f.index = s.to_owned();
                        true
                    }
                    Some(s) => {
                        self.bad(
                            v,
                            "fastcgi.index",
                            format!("bad index file name {s:?}: a plain file name is needed"),
                        );
                        false
                    }
                    None => false,
                },
                "connections" => self
                    .count(v, "fastcgi.connections", 1, 4096)
                    .map(|n| f.connections = n as u32)
                    .is_some(),
                "timeout" => self
                    .positive_duration(v, "fastcgi.timeout")
                    .map(|t| f.timeout = t)
                    .is_some(),
                _ => {
                    self.unknown(k, "[[fastcgi]]", FASTCGI_KEYS);
                    true
                }
            };
            ok &= good;
        }
        if let (Some((prefix, prefix_at)), true, true) = (head, ok, have_address) {
            f.prefix = prefix;
            d.fastcgi.push(Placed {
                value: f,
                prefix_at,
                path_at: root_at,
            });
        }
    }

    pub(super) fn wasm(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let head = self.mount_head(tv, t, "[[wasm]]", "wasm", "path");
        let mut w = WasmConfig::default();
        let mut path_at = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let good = match k.get_ref().as_ref() {
                "prefix" => true,
                "path" => self
                    .path(v, "wasm.path")
                    .map(|p| {
                        w.path = p;
                        path_at = Some(self.origin(&v.span()));
                    })
                    .is_some(),
                "kind" => self
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
                    .map(|k| w.kind = k)
                    .is_some(),
                "memory_limit" => self
                    .size(v, "wasm.memory_limit")
                    .filter(|&n| {
                        let ok = n >= 64 << 10;
                        if !ok {
                            self.bad(
                                v,
                                "wasm.memory_limit",
                                "must be at least 64K (one wasm page)",
                            );
                        }
                        ok
                    })
                    .map(|n| w.memory_limit = n)
                    .is_some(),
                "timeout" => self
                    .positive_duration(v, "wasm.timeout")
                    .map(|t| w.timeout = t)
                    .is_some(),
                _ => {
                    self.unknown(k, "[[wasm]]", WASM_KEYS);
                    true
                }
            };
            ok &= good;
        }
        if let (Some((prefix, prefix_at)), true, Some(_)) = (head, ok, &path_at) {
            w.prefix = prefix;
            d.wasm.push(Placed {
                value: w,
                prefix_at,
                path_at,
            });
        }
    }
}
