//! The TOML walker: reads a configuration file into a [`Draft`], reporting
//! every syntax error, unknown key, wrong type and bad value with its
//! position instead of stopping at the first.

use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::diag::LineIndex;
use super::validate::{Draft, Placed};
use super::{
    AccessLogTarget, CachePolicy, CgiConfig, Diagnostic, FastCgiAddress, FastCgiConfig, Location,
    LogLevel, ModuleConfig, Origin, SandboxConfig, SandboxProfile, WasmConfig, WasmKind, value,
};

type Val<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

const TOP_KEYS: &[&str] = &[
    "listen", "root", "index", "workers", "admin", "cache", "limits", "log", "location", "module",
    "cgi", "fastcgi", "wasm",
];
const ADMIN_KEYS: &[&str] = &["listen"];
const CACHE_KEYS: &[&str] = &["size", "revalidate", "large_file_threshold", "policy"];
const LIMITS_KEYS: &[&str] = &[
    "max_uri",
    "max_head",
    "max_headers",
    "max_body",
    "header_timeout",
    "keepalive_timeout",
    "shutdown_grace",
];
const LOG_KEYS: &[&str] = &["access", "level"];
const LOCATION_KEYS: &[&str] = &["prefix", "root", "index", "autoindex", "cache", "headers"];
const MODULE_KEYS: &[&str] = &[
    "prefix",
    "path",
    "processes_min",
    "processes_max",
    "in_flight",
    "timeout",
    "memory_limit",
    "sandbox",
];
const SANDBOX_KEYS: &[&str] = &[
    "profile",
    "user",
    "seccomp",
    "landlock",
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

/// Reads `text` (the content of `path`) into `draft`, adding a diagnostic per
/// problem. Returns false when the file has syntax errors: those are all
/// reported and nothing of the file is applied.
pub(crate) fn apply(
    draft: &mut Draft,
    path: &Path,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let mut cx = Cx {
        lines: LineIndex::new(text),
        path: Arc::from(path),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        diags,
    };
    if !syntax.is_empty() {
        for e in &syntax {
            let span = e.span().unwrap_or(0..0);
            let message = match (e.message(), text.get(span.clone())) {
                ("duplicate key", Some(key)) if !key.is_empty() => {
                    format!("duplicate key `{key}`")
                }
                (m, _) => m.to_owned(),
            };
            cx.error(span, format!("syntax error: {message}"));
        }
        return false;
    }
    cx.top(doc.get_ref(), draft);
    true
}

struct Cx<'s, 'd> {
    lines: LineIndex<'s>,
    path: Arc<Path>,
    base: PathBuf,
    diags: &'d mut Vec<Diagnostic>,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Cx<'_, '_> {
    fn origin(&self, span: &Range<usize>) -> Origin {
        let (line, column) = self.lines.position(span.start);
        Origin::At {
            path: self.path.clone(),
            line,
            column,
        }
    }

    fn error(&mut self, span: Range<usize>, message: String) {
        let origin = self.origin(&span);
        self.diags.push(Diagnostic { origin, message });
    }

    fn bad(&mut self, v: &Val<'_>, key: &str, problem: impl Display) {
        self.error(v.span(), format!("{key}: {problem}"));
    }

    fn wrong_type(&mut self, v: &Val<'_>, key: &str, expected: &str) {
        let found = type_name(v.get_ref());
        self.bad(v, key, format!("expected {expected}, found {found}"));
    }

    fn unknown(&mut self, k: &Key<'_>, table: &str, allowed: &[&str]) {
        let name = k.get_ref();
        let place = if table.is_empty() {
            "unknown top-level key".to_owned()
        } else {
            format!("unknown key in {table}:")
        };
        let hint = match closest(name, allowed) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("expected one of: {}", allowed.join(", ")),
        };
        self.error(k.span(), format!("{place} `{name}` ({hint})"));
    }

    fn missing(&mut self, table: &Val<'_>, header: &str, key: &str) {
        self.error(
            table.span(),
            format!("{header}: missing required key `{key}`"),
        );
    }

    fn string<'v>(&mut self, v: &'v Val<'_>, key: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Val<'_>, key: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, key, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, v: &Val<'_>, key: &str) -> Option<i128> {
        match v.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.bad(v, key, "the number is too large");
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "an integer");
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    fn count(&mut self, v: &Val<'_>, key: &str, min: u64, max: u64) -> Option<u64> {
        let n = self.integer(v, key)?;
        if n < i128::from(min) {
            self.bad(v, key, format!("must be at least {min}, found {n}"));
            None
        } else if n > i128::from(max) {
            self.bad(v, key, format!("must be at most {max}, found {n}"));
            None
        } else {
            u64::try_from(n).ok()
        }
    }

    /// A byte size: a non-negative integer or a string such as "256M".
    fn size(&mut self, v: &Val<'_>, key: &str) -> Option<u64> {
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(v, key)?;
                if n < 0 {
                    self.bad(v, key, format!("a size cannot be negative, found {n}"));
                    return None;
                }
                match u64::try_from(n) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.bad(v, key, "the size is too large");
                        None
                    }
                }
            }
            DeValue::String(s) => match value::parse_size(s) {
                Ok(n) => Some(n),
                Err(problem) => {
                    self.bad(v, key, problem);
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "a size such as \"256M\" or a number of bytes");
                None
            }
        }
    }

    /// A size that must fit a `usize` and be at least 1.
    fn size_usize(&mut self, v: &Val<'_>, key: &str) -> Option<usize> {
        let n = self.size(v, key)?;
        if n == 0 {
            self.bad(v, key, "must be at least 1 byte");
            return None;
        }
        usize::try_from(n).ok()
    }

    fn duration(&mut self, v: &Val<'_>, key: &str) -> Option<Duration> {
        match v.get_ref() {
            DeValue::String(s) => match value::parse_duration(s) {
                Ok(d) => Some(d),
                Err(problem) => {
                    self.bad(v, key, problem);
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "a duration such as \"1s\" or \"250ms\"");
                None
            }
        }
    }

    /// A duration that must not be zero.
    fn positive_duration(&mut self, v: &Val<'_>, key: &str) -> Option<Duration> {
        let d = self.duration(v, key)?;
        if d.is_zero() {
            self.bad(v, key, "must be longer than 0");
            return None;
        }
        Some(d)
    }

    /// A path, relative to the file's directory unless absolute.
    fn path(&mut self, v: &Val<'_>, key: &str) -> Option<PathBuf> {
        let s = self.string(v, key)?;
        if s.is_empty() {
            self.bad(v, key, "the path is empty");
            return None;
        }
        Some(self.base.join(s))
    }

    fn prefix(&mut self, v: &Val<'_>, key: &str) -> Option<String> {
        let s = self.string(v, key)?;
        match value::parse_prefix(s) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.bad(v, key, problem);
                None
            }
        }
    }

    /// One of `choices` (exact, lower case).
    fn choice<T: Copy>(
        &mut self,
        v: &Val<'_>,
        key: &str,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, key)?;
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        self.bad(
            v,
            key,
            format!("unknown {what} {s:?}: expected {}", or_list(&names)),
        );
        None
    }

    fn table<'v, 'i>(&mut self, v: &'v Val<'i>, key: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, key, &format!("a table ([{key}])"));
                None
            }
        }
    }

    /// The tables of an array of tables (`[[key]]`).
    fn tables<'v, 'i>(&mut self, v: &'v Val<'i>, key: &str) -> Vec<(&'v Val<'i>, &'v DeTable<'i>)> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(v, key, &format!("an array of tables ([[{key}]])"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((item, t)),
                _ => self.wrong_type(item, key, &format!("a table ([[{key}]])")),
            }
        }
        out
    }

    /// A string or an array of strings, each with its span.
    fn strings<'v>(&mut self, v: &'v Val<'_>, key: &str) -> Option<Vec<(&'v str, Range<usize>)>> {
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.as_ref(), v.span())]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.as_ref(), item.span())),
                        _ => {
                            self.wrong_type(item, key, "a string");
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.wrong_type(v, key, "a string or an array of strings");
                None
            }
        }
    }

    /// Index file names: plain names, no `/`.
    fn index(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<String>> {
        let names = self.strings(v, key)?;
        if names.is_empty() {
            self.bad(v, key, "at least one index file name is needed");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (name, span) in names {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                self.error(
                    span,
                    format!("{key}: bad index file name {name:?}: a plain file name is needed"),
                );
                ok = false;
            } else {
                out.push(name.to_owned());
            }
        }
        ok.then_some(out)
    }

    fn top(&mut self, doc: &DeTable<'_>, d: &mut Draft) {
        for (k, v) in doc.iter() {
            match k.get_ref().as_ref() {
                "listen" => self.listen(v, d),
                "root" => match self.path(v, "root") {
                    Some(p) => d.root = (p, self.origin(&v.span())),
                    None => d.root_reported = true,
                },
                "index" => {
                    if let Some(i) = self.index(v, "index") {
                        d.index = i;
                    }
                }
                "workers" => {
                    if let Some(n) = self.count(v, "workers", 1, super::MAX_WORKERS as u64) {
                        d.workers = n as usize;
                    }
                }
                "admin" => self.admin(v, d),
                "cache" => self.cache(v, d),
                "limits" => self.limits(v, d),
                "log" => self.log(v, d),
                "location" => {
                    for (tv, t) in self.tables(v, "location") {
                        self.location(tv, t, d);
                    }
                }
                "module" => {
                    for (tv, t) in self.tables(v, "module") {
                        self.module(tv, t, d);
                    }
                }
                "cgi" => {
                    for (tv, t) in self.tables(v, "cgi") {
                        self.cgi(tv, t, d);
                    }
                }
                "fastcgi" => {
                    for (tv, t) in self.tables(v, "fastcgi") {
                        self.fastcgi(tv, t, d);
                    }
                }
                "wasm" => {
                    for (tv, t) in self.tables(v, "wasm") {
                        self.wasm(tv, t, d);
                    }
                }
                _ => self.unknown(k, "", TOP_KEYS),
            }
        }
    }

    fn listen(&mut self, v: &Val<'_>, d: &mut Draft) {
        let Some(items) = self.strings(v, "listen") else {
            return;
        };
        if items.is_empty() {
            self.bad(v, "listen", "at least one address is needed");
            return;
        }
        let mut out = Vec::new();
        for (s, span) in items {
            match value::parse_addr(s) {
                Ok(a) => out.push((a, self.origin(&span))),
                Err(problem) => self.error(span, format!("listen: {problem}")),
            }
        }
        d.listeners = out;
    }

    fn admin_addr(&mut self, v: &Val<'_>, key: &str, d: &mut Draft) {
        let Some(s) = self.string(v, key) else {
            return;
        };
        let at = self.origin(&v.span());
        if s == "none" || s == "off" {
            d.admin = (None, at);
            return;
        }
        match value::parse_addr(s) {
            Ok(a) => d.admin = (Some(a), at),
            Err(problem) => self.bad(v, key, format!("{problem}, or \"none\"")),
        }
    }

    fn admin(&mut self, v: &Val<'_>, d: &mut Draft) {
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    match k.get_ref().as_ref() {
                        "listen" => self.admin_addr(v, "admin.listen", d),
                        _ => self.unknown(k, "[admin]", ADMIN_KEYS),
                    }
                }
            }
            DeValue::String(_) => self.admin_addr(v, "admin", d),
            _ => self.wrong_type(v, "admin", "an address, \"none\" or a table ([admin])"),
        }
    }

    fn cache(&mut self, v: &Val<'_>, d: &mut Draft) {
        let Some(t) = self.table(v, "cache") else {
            return;
        };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "size" => {
                    if let Some(n) = self.size(v, "cache.size") {
                        d.cache.size = n;
                    }
                }
                "revalidate" => {
                    if let Some(t) = self.duration(v, "cache.revalidate") {
                        d.cache.revalidate = t;
                    }
                }
                "large_file_threshold" => {
                    if let Some(n) = self.size(v, "cache.large_file_threshold") {
                        d.cache_threshold = Some(n);
                    }
                }
                "policy" => {
                    let choices = [("gdsf", CachePolicy::Gdsf), ("lru", CachePolicy::Lru)];
                    if let Some(p) = self.choice(v, "cache.policy", "cache policy", &choices) {
                        d.cache.policy = p;
                    }
                }
                _ => self.unknown(k, "[cache]", CACHE_KEYS),
            }
        }
    }

    fn limits(&mut self, v: &Val<'_>, d: &mut Draft) {
        let Some(t) = self.table(v, "limits") else {
            return;
        };
        let l = &mut d.limits;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "max_uri" => {
                    if let Some(n) = self.size_usize(v, "limits.max_uri") {
                        l.max_uri = n;
                        d.max_uri_at = self.origin(&v.span());
                    }
                }
                "max_head" => {
                    if let Some(n) = self.size_usize(v, "limits.max_head") {
                        l.max_head = n;
                    }
                }
                "max_headers" => {
                    if let Some(n) = self.count(v, "limits.max_headers", 1, 10_000) {
                        l.max_headers = n as usize;
                    }
                }
                "max_body" => {
                    if let Some(n) = self.size(v, "limits.max_body") {
                        l.max_body = n;
                    }
                }
                "header_timeout" => {
                    if let Some(t) = self.positive_duration(v, "limits.header_timeout") {
                        l.header_timeout = t;
                    }
                }
                "keepalive_timeout" => {
                    if let Some(t) = self.duration(v, "limits.keepalive_timeout") {
                        l.keepalive_timeout = t;
                    }
                }
                "shutdown_grace" => {
                    if let Some(t) = self.duration(v, "limits.shutdown_grace") {
                        l.shutdown_grace = t;
                    }
                }
                _ => self.unknown(k, "[limits]", LIMITS_KEYS),
            }
        }
    }

    fn log(&mut self, v: &Val<'_>, d: &mut Draft) {
        let Some(t) = self.table(v, "log") else {
            return;
        };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "access" => {
                    let Some(s) = self.string(v, "log.access") else {
                        continue;
                    };
                    match AccessLogTarget::parse(s) {
                        Ok(AccessLogTarget::File(p)) => {
                            d.log.access = AccessLogTarget::File(self.base.join(p));
                            d.access_at = self.origin(&v.span());
                        }
                        Ok(target) => {
                            d.log.access = target;
                            d.access_at = self.origin(&v.span());
                        }
                        Err(problem) => self.bad(v, "log.access", problem),
                    }
                }
                "level" => {
                    let choices = [
                        ("error", LogLevel::Error),
                        ("warn", LogLevel::Warn),
                        ("info", LogLevel::Info),
                        ("debug", LogLevel::Debug),
                        ("trace", LogLevel::Trace),
                    ];
                    if let Some(l) = self.choice(v, "log.level", "log level", &choices) {
                        d.log.level = l;
                    }
                }
                _ => self.unknown(k, "[log]", LOG_KEYS),
            }
        }
    }

    fn headers(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<(String, String)>> {
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type(v, key, "a table of header names to values");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (name, value) in t.iter() {
            let n = name.get_ref().as_ref();
            if n.is_empty() || !n.bytes().all(is_token_byte) {
                self.error(name.span(), format!("{key}: bad header name {n:?}"));
                ok = false;
                continue;
            }
            let Some(s) = self.string(value, &format!("{key}.{n}")) else {
                ok = false;
                continue;
            };
            if s.chars().any(|c| c.is_control() && c != '\t') {
                self.bad(
                    value,
                    &format!("{key}.{n}"),
                    "control characters are not allowed in a header value",
                );
                ok = false;
                continue;
            }
            out.push((n.to_owned(), s.to_owned()));
        }
        ok.then_some(out)
    }

    fn location(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let mut loc = Location {
            prefix: String::new(),
            root: None,
            index: None,
            autoindex: false,
            cache: true,
            headers: Vec::new(),
        };
        let mut prefix_at = None;
        let mut root_at = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "prefix" => match self.prefix(v, "location.prefix") {
                    Some(p) => {
                        loc.prefix = p;
                        prefix_at = Some(self.origin(&v.span()));
                    }
                    None => ok = false,
                },
                "root" => match self.path(v, "location.root") {
                    Some(p) => {
                        loc.root = Some(p);
                        root_at = Some(self.origin(&v.span()));
                    }
                    None => ok = false,
                },
                "index" => match self.index(v, "location.index") {
                    Some(i) => loc.index = Some(i),
                    None => ok = false,
                },
                "autoindex" => match self.boolean(v, "location.autoindex") {
                    Some(b) => loc.autoindex = b,
                    None => ok = false,
                },
                "cache" => match self.boolean(v, "location.cache") {
                    Some(b) => loc.cache = b,
                    None => ok = false,
                },
                "headers" => match self.headers(v, "location.headers") {
                    Some(h) => loc.headers = h,
                    None => ok = false,
                },
                _ => self.unknown(k, "[[location]]", LOCATION_KEYS),
            }
        }
        let Some(prefix_at) = prefix_at else {
            if !t.contains_key("prefix") {
                self.missing(tv, "[[location]]", "prefix");
            }
            return;
        };
        if ok {
            d.locations.push(Placed {
                value: loc,
                prefix_at,
                path_at: root_at,
            });
        }
    }

    fn sandbox(&mut self, v: &Val<'_>) -> Option<SandboxConfig> {
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
                        s.user = u.to_owned();
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
                "namespaces" => self
                    .boolean(v, "module.sandbox.namespaces")
                    .map(|b| s.namespaces = b)
                    .is_some(),
                "open_files" => self
                    .count(v, "module.sandbox.open_files", 8, 1 << 20)
                    .map(|n| s.open_files = n)
                    .is_some(),
                "tasks" => self
                    .count(v, "module.sandbox.tasks", 1, 1 << 20)
                    .map(|n| s.tasks = n)
                    .is_some(),
                "cpu_time" => self
                    .positive_duration(v, "module.sandbox.cpu_time")
                    .map(|t| s.cpu_time = t)
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

    /// The common part of every mount table: the prefix (required) and the
    /// path-like key (`path_key`, required). Returns None after reporting.
    fn mount_head(
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

    fn module(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
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
                "memory_limit" => self
                    .size(v, "module.memory_limit")
                    .filter(|&n| {
                        let big = n >= 16 << 20;
                        if !big {
                            self.bad(v, "module.memory_limit", "must be at least 16M");
                        }
                        big
                    })
                    .map(|n| m.memory_limit = n)
                    .is_some(),
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

    fn cgi(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
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

    fn fastcgi(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
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

    fn wasm(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
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

/// The allowed key nearest to `name`, if it is a likely typo (at most two
/// edits away, and fewer edits than half its length).
fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|&(d, k)| d <= 2 && d * 2 < k.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// RFC 9110 token characters (header field names).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn typos_find_their_key() {
        let keys = super::CACHE_KEYS;
        assert_eq!(super::closest("sise", keys), Some("size"));
        assert_eq!(super::closest("revalidte", keys), Some("revalidate"));
        assert_eq!(super::closest("polcy", keys), Some("policy"));
        assert_eq!(super::closest("zzz", keys), None);
        assert_eq!(super::closest("", keys), None);
        assert_eq!(super::edit_distance("kitten", "sitting"), 3);
        assert_eq!(super::edit_distance("", "abc"), 3);
        assert_eq!(super::edit_distance("é", "e"), 1);
    }
}
