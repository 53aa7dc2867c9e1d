//! The server-wide tables of a configuration file: top-level keys,
//! `[admin]`, `[cache]`, `[limits]`, `[log]` and `[[location]]`.

use super::file::{Cx, Val, is_token_byte};
use super::types::{AccessLogTarget, CachePolicy, Location, LogLevel, MAX_WORKERS};
use super::validate::{Draft, Placed};
use super::value;
use toml::de::{DeTable, DeValue};

const TOP_KEYS: &[&str] = &[
    "listen",
    "root",
    "index",
    "workers",
    "admin",
    "cache",
    "limits",
    "log",
    "location",
    "module",
    "cgi",
    "fastcgi",
    "wasm",
    "cluster",
    "runner_uids",
    "headers",
    "headers_default",
    "headers_always",
    "listener",
];
const ADMIN_KEYS: &[&str] = &["listen"];
const CACHE_KEYS: &[&str] = &[
    "size",
    "revalidate",
    "large_file_threshold",
    "policy",
    "compress",
    "compress_types",
    "compress_min_size",
    "precompressed",
];
const LIMITS_KEYS: &[&str] = &[
    "max_uri",
    "max_head",
    "max_headers",
    "max_body",
    "header_timeout",
    "keepalive_timeout",
    "send_timeout",
    "shutdown_grace",
];
/// Header fields no `headers` table may set: the server writes them to
/// frame and route the answer, so a second copy would corrupt it.
const SERVER_OWNED_HEADERS: &[&str] = &[
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Date",
    "Server",
    "Content-Range",
];
const LOG_KEYS: &[&str] = &["access", "level"];
const LOCATION_KEYS: &[&str] = &[
    "prefix",
    "root",
    "index",
    "autoindex",
    "cache",
    "headers",
    "headers_default",
    "headers_always",
];

impl Cx<'_, '_> {
    pub(super) fn top(&mut self, doc: &DeTable<'_>, d: &mut Draft) {
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
                    if let Some(n) = self.count(v, "workers", 1, MAX_WORKERS as u64) {
                        d.workers = n as usize;
                    }
                }
                "admin" => self.admin(v, d),
                "runner_uids" => {
                    if let Some(text) = self.string(v, "runner_uids") {
                        match parse_uid_range(text) {
                            Ok(range) => d.runner_uids = Some((range, self.origin(&v.span()))),
                            Err(problem) => self.bad(v, "runner_uids", problem),
                        }
                    }
                }
                "headers" => {
                    if let Some(h) = self.headers(v, "headers") {
                        d.headers = h;
                    }
                }
                "headers_default" => {
                    if let Some(h) = self.headers(v, "headers_default") {
                        d.headers_default = h;
                    }
                }
                "headers_always" => {
                    if let Some(b) = self.boolean(v, "headers_always") {
                        d.headers_always = b;
                    }
                }
                "cache" => self.cache(v, d),
                "limits" => self.limits(v, d),
                "log" => self.log(v, d),
                "cluster" => self.cluster(v, d),
                "listener" => {
                    for (tv, t) in self.tables(v, "listener") {
                        self.listener(tv, t, d);
                    }
                }
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

    pub(super) fn listen(&mut self, v: &Val<'_>, d: &mut Draft) {
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

    pub(super) fn admin_addr(&mut self, v: &Val<'_>, key: &str, d: &mut Draft) {
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

    pub(super) fn admin(&mut self, v: &Val<'_>, d: &mut Draft) {
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

    pub(super) fn cache(&mut self, v: &Val<'_>, d: &mut Draft) {
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
                "compress" => {
                    if let Some(b) = self.boolean(v, "cache.compress") {
                        d.cache.compress.enabled = b;
                    }
                }
                "compress_types" => {
                    if let Some(types) = self.media_types(v, "cache.compress_types") {
                        d.cache.compress.types = types;
                    }
                }
                "compress_min_size" => {
                    if let Some(n) = self.size(v, "cache.compress_min_size") {
                        d.cache.compress.min_size = n;
                    }
                }
                "precompressed" => {
                    if let Some(b) = self.boolean(v, "cache.precompressed") {
                        d.cache.compress.precompressed = b;
                    }
                }
                _ => self.unknown(k, "[cache]", CACHE_KEYS),
            }
        }
    }

    /// Media types: `type/subtype` or `type/*`, lowercase ASCII tokens.
    fn media_types(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<String>> {
        let items = self.strings(v, key)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (s, span) in items {
            let token = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            let valid = s
                .split_once('/')
                .is_some_and(|(t, sub)| token(t) && (sub == "*" || token(sub)));
            if valid {
                out.push(s.to_ascii_lowercase());
            } else {
                self.error(
                    span,
                    format!("{key}: {s:?} is not a media type (type/subtype or type/*)"),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    pub(super) fn limits(&mut self, v: &Val<'_>, d: &mut Draft) {
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
                    if let Some(n) = self.count(
                        v,
                        "limits.max_headers",
                        1,
                        crate::http::request::MAX_HEADERS as u64,
                    ) {
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
                "send_timeout" => {
                    if let Some(t) = self.positive_duration(v, "limits.send_timeout") {
                        l.send_timeout = t;
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

    pub(super) fn log(&mut self, v: &Val<'_>, d: &mut Draft) {
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

    pub(super) fn headers(&mut self, v: &Val<'_>, key: &str) -> Option<Vec<(String, String)>> {
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
            if SERVER_OWNED_HEADERS
                .iter()
                .any(|own| own.eq_ignore_ascii_case(n))
            {
                self.error(
                    name.span(),
                    format!("{key}: {n:?} is written by the server itself (framing, connection)"),
                );
                ok = false;
                continue;
            }
            if out
                .iter()
                .any(|(seen, _): &(String, String)| seen.eq_ignore_ascii_case(n))
            {
                self.error(
                    name.span(),
                    format!("{key}: {n:?} is set twice (header names ignore case)"),
                );
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

    pub(super) fn location(&mut self, tv: &Val<'_>, t: &DeTable<'_>, d: &mut Draft) {
        let mut loc = Location {
            prefix: String::new(),
            root: None,
            index: None,
            autoindex: false,
            cache: true,
            headers: Vec::new(),
            headers_default: Vec::new(),
            headers_always: false,
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
                "headers_default" => match self.headers(v, "location.headers_default") {
                    Some(h) => loc.headers_default = h,
                    None => ok = false,
                },
                "headers_always" => match self.boolean(v, "location.headers_always") {
                    Some(b) => loc.headers_always = b,
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
}

/// `FIRST-LAST`, two uids, 0 < FIRST <= LAST.
pub(super) fn parse_uid_range(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected \"FIRST-LAST\" (uids, e.g. \"61000-61999\"), found {text:?}");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (first, last): (u32, u32) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if first == 0 {
        return Err("must not include uid 0 (root)".into());
    }
    if first > last {
        return Err(format!("{first} is above {last}"));
    }
    Ok((first, last))
}
