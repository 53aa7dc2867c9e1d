//! The static file handler (content phase). Paths are resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the root
//! directory's descriptor, so the kernel itself refuses any path or symlink
//! that leads outside the root: such paths get 403 and are never opened.
//! (Where `openat2` is missing, the fallback canonicalizes the path and
//! checks it stays under the canonical root before opening it with
//! `O_NOFOLLOW`.) A directory is served by its `index.html`; a directory
//! named without its trailing slash is redirected (301) to the name with it.
//!
//! Per worker it keeps Flash's caches in one map: normalized path → open
//! file, validators and the pre-formatted response header lines (pathname
//! translation, open-fd and response-head caches). An entry is trusted for
//! the `revalidate` interval, then checked again by re-resolving the path and
//! comparing identity, size and mtime; `0` checks on every request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::cache::{CachedBody, FileCache};
use crate::error::Error;
use crate::handler::{Handler, Outcome, RequestCtx};
use crate::http::conditional::{
    Preconditions, RangeRequest, Verdict, evaluate, if_range_matches, parse_range,
};
use crate::http::request::Method;
use crate::http::response::push_decimal;
use crate::response::{Body, HeaderLines, Response};

pub mod compress;
mod entry;
mod multipart;
mod slow_disk;
mod variants;

use entry::FileEntry;

/// Files larger than this are answered from the file with `sendfile`, not
/// from the unified cache: the cache's bytes are written to sockets from
/// memory (the kernel copies them; page references into a pool whose space
/// gets reused would be unsafe: `send::Chunks`), and past the size that
/// goes out with the head in one `writev`, `sendfile` from the file's page
/// cache costs less: A/B on loopback, 2 workers, wrk 2×64, 2026-11-27,
/// limit 1 MiB → 32 KiB: the Zipf walk 19.0 → 14.9 µs of server CPU per
/// request, 256 KiB 77 → 52 µs. The server never reuses a file's
/// page-cache pages under a socket (nginx's method: a file changed while
/// it is sent is the writer's business, as there). Such files are not
/// loaded into the cache by HTTP requests; modules still get them from it
/// (`cached_agg`).
pub const FILE_SEND_MIN: u64 = 32 << 10;

enum Resolved {
    /// The file, and the index file name when a directory was asked for
    /// (its extension gives the media type).
    File(File, Option<usize>),
    /// A directory named without its trailing slash.
    Redirect,
}

/// Serves files under one root directory.
#[derive(Debug)]
pub struct StaticFiles {
    root: Arc<OwnedFd>,
    root_path: PathBuf,
    revalidate: Duration,
    max_entries: usize,
    cache: RefCell<HashMap<Box<[u8]>, Rc<FileEntry>>>,
    openat2_works: Cell<bool>,
    /// The process's unified cache: the bytes of files up to its threshold.
    bodies: Option<Arc<FileCache>>,
    /// The location this handler serves: paths at or under it.
    prefix: Box<[u8]>,
    /// Whether the prefix is stripped before resolving under `root` (a
    /// location with its own root), or kept (the server's root).
    strip_prefix: bool,
    /// Index files tried in order for a directory.
    index: Vec<Box<[u8]>>,
    /// Which files get compressed variants, and the pool that makes them.
    compress: Option<(compress::Compressible, Option<Arc<compress::Compressor>>)>,
}

impl StaticFiles {
    /// Opens `root` as the document root.
    pub fn open_root(root: &Path) -> Result<OwnedFd, Error> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_directory())
            .open(root)
            .map_err(|e| Error::Options(format!("document root {}: {e}", root.display())))?;
        Ok(file.into())
    }

    /// A handler serving the directory `root` (opened with
    /// [`StaticFiles::open_root`] from `root_path`), keeping at most
    /// `max_entries` files open.
    pub fn new(
        root: Arc<OwnedFd>,
        root_path: PathBuf,
        revalidate: Duration,
        max_entries: usize,
    ) -> Self {
        StaticFiles {
            root,
            root_path,
            revalidate,
            max_entries: max_entries.max(1),
            cache: RefCell::new(HashMap::new()),
            openat2_works: Cell::new(true),
            bodies: None,
            prefix: Box::from(&b"/"[..]),
            strip_prefix: false,
            index: vec![Box::from(&b"index.html"[..])],
            compress: None,
        }
    }

    /// Sends compressed variants of the files `settings` names: siblings
    /// on disk and, with `compressor`, variants it makes into the cache.
    pub fn with_compression(
        mut self,
        settings: Option<compress::Compressible>,
        compressor: Option<Arc<compress::Compressor>>,
    ) -> Self {
        self.compress = settings.map(|s| (s, compressor));
        self
    }

    /// Serves only paths at or under `prefix` (declining the rest); with
    /// `strip`, the prefix is removed before the path is resolved under the
    /// root (a location with a root of its own, like nginx's `alias`).
    pub fn for_location(mut self, prefix: &str, strip: bool) -> Self {
        self.prefix = prefix.as_bytes().into();
        self.strip_prefix = strip && prefix != "/";
        self
    }

    /// Index files tried in order for a directory (default: `index.html`).
    pub fn with_index(mut self, names: &[String]) -> Self {
        self.index = names.iter().map(|n| n.as_bytes().into()).collect();
        self
    }

    /// The bytes of the file at `path` (a request path such as
    /// `/header.html`, percent-decoded and normalized here) as slices of the
    /// unified cache pool, for a handler that includes a cached file in its
    /// response by reference: nothing is copied, and the module processes
    /// that map the cache pool read-only can be handed the same slices.
    ///
    /// Errors are those a GET of `path` would get (404, 403 for a path that
    /// leaves the root). `Ok(None)`: the file exists but is not served from
    /// the cache (no cache, above the threshold, or the pool is full of
    /// in-flight data), so the caller must fall back or refuse.
    pub fn cached_agg(&self, path: &[u8]) -> Result<Option<iolite_ipc::Agg>, Error> {
        let mut normalized = Vec::with_capacity(path.len());
        crate::http::target::normalize(path, &mut normalized)?;
        if !self.serves(&normalized) {
            return Err(Error::NotFound);
        }
        let entry = self.lookup(&normalized)?.ok_or(Error::NotFound)?;
        Ok(self.cached_body(&entry).map(|body| body.agg().clone()))
    }

    /// Whether `path` is at or under this handler's prefix.
    fn serves(&self, path: &[u8]) -> bool {
        let prefix = &*self.prefix;
        prefix == b"/"
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
    }

    /// Serves files up to the cache's threshold from the unified cache.
    pub fn with_cache(mut self, cache: Option<Arc<FileCache>>) -> Self {
        self.bodies = cache;
        self
    }

    /// The cached bytes of `entry`, loading them on a miss; `None` when the
    /// file is not to be cached (too large, no cache) or the pool is full, in
    /// which case the caller sends from the file.
    fn cached_body(&self, entry: &FileEntry) -> Option<Arc<CachedBody>> {
        let cache = self.bodies.as_ref()?;
        if entry.len > cache.threshold() {
            return None;
        }
        if let Some(body) = held_body(cache, entry) {
            return Some(body);
        }
        load_body(cache, entry)
    }

    fn lookup(&self, path: &[u8]) -> Result<Option<Rc<FileEntry>>, Error> {
        let now = Instant::now();
        let cached = self.cache.borrow().get(path).cloned();
        if let Some(entry) = &cached
            && now.duration_since(entry.checked.get()) < self.revalidate
        {
            return Ok(Some(entry.clone()));
        }
        let local = if self.strip_prefix {
            &path[self.prefix.len()..]
        } else {
            path
        };
        let resolved = if local.is_empty() {
            // The location's own name without its slash: its root directory.
            Ok(Resolved::Redirect)
        } else {
            self.resolve_local(local)
        };
        if cached.is_some() && !matches!(resolved, Ok(Resolved::File(..))) {
            self.cache.borrow_mut().remove(path);
        }
        let (file, index) = match resolved? {
            Resolved::File(file, index) => (file, index),
            Resolved::Redirect => return Ok(None),
        };
        let meta = file.metadata()?;
        let identity = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
        if let Some(entry) = cached
            && entry.identity == identity
            && entry.len == meta.len()
        {
            entry.checked.set(now);
            self.find_siblings(&entry, local, index);
            return Ok(Some(entry));
        }
        let type_name: &[u8] = match index {
            Some(i) => &self.index[i],
            None => path,
        };
        let media = content_type(type_name);
        let compressible = self
            .compress
            .as_ref()
            .is_some_and(|(c, _)| c.applies(media, meta.len()));
        let entry = Rc::new(FileEntry::new(
            file,
            &meta,
            identity,
            media,
            now,
            compressible,
        ));
        self.find_siblings(&entry, local, index);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= self.max_entries && !cache.contains_key(path) {
            // Crude but bounded; the unified cache replaces this map.
            cache.clear();
        }
        cache.insert(path.into(), entry.clone());
        Ok(Some(entry))
    }

    /// Resolves `path` (which starts with `/`, the prefix already stripped
    /// when this location strips it) under the root.
    fn resolve_local(&self, path: &[u8]) -> Result<Resolved, Error> {
        let rel = &path[1..];
        let dir_syntax = rel.is_empty() || rel.ends_with(b"/");
        let file = self.open_beneath(if rel.is_empty() { b"." } else { rel })?;
        let meta = file.metadata()?;
        if meta.is_file() {
            return Ok(Resolved::File(file, None));
        }
        if !meta.is_dir() {
            return Err(Error::Forbidden("not a regular file"));
        }
        if !dir_syntax {
            return Ok(Resolved::Redirect);
        }
        let mut candidate = rel.to_vec();
        for (i, name) in self.index.iter().enumerate() {
            candidate.truncate(rel.len());
            candidate.extend_from_slice(name);
            match self.open_beneath(&candidate) {
                Ok(file) if file.metadata()?.is_file() => return Ok(Resolved::File(file, Some(i))),
                Ok(_) | Err(Error::NotFound) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotFound)
    }

    fn open_beneath(&self, rel: &[u8]) -> Result<File, Error> {
        if self.openat2_works.get() {
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(
                &*self.root,
                OsStr::from_bytes(rel),
                flags,
                Mode::empty(),
                resolve,
            ) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(Errno::NOSYS) | Err(Errno::PERM) if self.openat2_works.get() => {
                    // Kernel older than 5.6, or openat2 filtered by seccomp.
                    tracing::warn!("openat2 unavailable; falling back to canonicalize-and-check");
                    self.openat2_works.set(false);
                }
                Err(Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG) => {
                    return Err(Error::NotFound);
                }
                Err(Errno::XDEV | Errno::LOOP) => {
                    return Err(Error::Forbidden("path leaves the root"));
                }
                Err(Errno::ACCESS) => return Err(Error::Forbidden("permission denied")),
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
        self.open_checked(rel)
    }

    /// Fallback without openat2: canonicalize, require the result under the
    /// canonical root, open it without following a final symlink.
    fn open_checked(&self, rel: &[u8]) -> Result<File, Error> {
        let root = std::fs::canonicalize(&self.root_path)?;
        let full = match std::fs::canonicalize(root.join(OsStr::from_bytes(rel))) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(Error::Io(e)),
        };
        if !full.starts_with(&root) {
            return Err(Error::Forbidden("path leaves the root"));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32 | OFlags::NONBLOCK.bits() as i32)
            .open(full)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound,
                std::io::ErrorKind::PermissionDenied => Error::Forbidden("permission denied"),
                _ => Error::Io(e),
            })
    }
}

fn libc_o_directory() -> i32 {
    OFlags::DIRECTORY.bits() as i32
}

/// The cached bytes of `entry` when the cache holds them (a hit, counted).
fn held_body(cache: &FileCache, entry: &FileEntry) -> Option<Arc<CachedBody>> {
    if let Some(body) = entry.held() {
        cache.touch(entry.key);
        return Some(body);
    }
    let body = cache.get(entry.key, entry.version)?;
    *entry.body.borrow_mut() = Some(Arc::downgrade(&body));
    Some(body)
}

/// Reads `entry` into the cache (after a miss); `None` when the pool is
/// full, in which case the caller sends from the file.
fn load_body(cache: &FileCache, entry: &FileEntry) -> Option<Arc<CachedBody>> {
    match cache.load(entry.key, entry.version, &entry.file, entry.len) {
        Ok(body) => {
            *entry.body.borrow_mut() = Some(Arc::downgrade(&body));
            Some(body)
        }
        Err(e) => {
            tracing::debug!(error = %e, "serving from the file");
            None
        }
    }
}

/// The media type for a file name, by extension (case-insensitive).
pub fn content_type(name: &[u8]) -> &'static str {
    let file = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    let Some(dot) = file.iter().rposition(|&b| b == b'.') else {
        return "application/octet-stream";
    };
    let mut ext = [0u8; 8];
    let raw = &file[dot + 1..];
    if raw.len() > ext.len() {
        return "application/octet-stream";
    }
    for (d, s) in ext.iter_mut().zip(raw) {
        *d = s.to_ascii_lowercase();
    }
    match &ext[..raw.len()] {
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" => "application/json",
        b"txt" => "text/plain; charset=utf-8",
        b"md" => "text/markdown; charset=utf-8",
        b"csv" => "text/csv; charset=utf-8",
        b"xml" => "application/xml",
        b"svg" => "image/svg+xml",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"ico" => "image/x-icon",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        b"wasm" => "application/wasm",
        b"pdf" => "application/pdf",
        b"zip" => "application/zip",
        b"gz" => "application/gzip",
        b"tar" => "application/x-tar",
        b"mp4" => "video/mp4",
        b"webm" => "video/webm",
        b"mp3" => "audio/mpeg",
        b"ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

impl Handler for StaticFiles {
    fn name(&self) -> &'static str {
        "static"
    }

    /// Answers GET and HEAD (`Done`), and 405 for other methods; declines
    /// paths outside its location (the site hands it only those inside).
    fn handle(&self, req: &mut RequestCtx<'_>) -> Result<Outcome, Error> {
        if !self.serves(req.path) {
            return Ok(Outcome::Declined);
        }
        if !matches!(req.head.method, Method::Get | Method::Head) {
            return Err(Error::MethodNotAllowed);
        }
        let Some(entry) = self.lookup(req.path)? else {
            return Ok(Outcome::Done(redirect_with_slash(req)?));
        };
        if let Some((variant, body)) = self.encoded(req, &entry) {
            return Ok(Outcome::Done(respond(req, &variant, |v| {
                body.or_else(|| {
                    (v.len <= FILE_SEND_MIN)
                        .then(|| self.cached_body(v))
                        .flatten()
                })
            })?));
        }
        if let Some(cache) = &self.bodies
            && cache.slow_disk().is_some()
            && entry.len <= cache.threshold()
        {
            if let Some(body) = held_body(cache, &entry) {
                return Ok(Outcome::Done(respond(req, &entry, |_| Some(body))?));
            }
            let response = respond(req, &entry, |_| None)?;
            let fill = cache.clone();
            let fill = move || drop(load_body(&fill, &entry));
            return Ok(slow_disk::after_the_disk(cache.clone(), response, fill));
        }
        // Files over FILE_SEND_MIN go out from the file (see there);
        // modules can still take them from the cache (`cached_agg`).
        Ok(Outcome::Done(respond(req, &entry, |e| {
            (e.len <= FILE_SEND_MIN)
                .then(|| self.cached_body(e))
                .flatten()
        })?))
    }
}

fn respond(
    req: &RequestCtx<'_>,
    entry: &FileEntry,
    cached: impl FnOnce(&FileEntry) -> Option<Arc<CachedBody>>,
) -> Result<Response, Error> {
    let head = req.head;
    let field = |span: Option<crate::http::request::Span>| span.map(|s| req.get(s));
    let preconditions = Preconditions {
        if_match: field(head.if_match),
        if_unmodified_since: field(head.if_unmodified_since),
        if_none_match: field(head.if_none_match),
        if_modified_since: field(head.if_modified_since),
    };
    match evaluate(&preconditions, &entry.etag, entry.mtime, true) {
        Verdict::Proceed => {}
        Verdict::NotModified => {
            return Ok(Response::new(
                304,
                HeaderLines::Shared(entry.validators.clone()),
                Body::Empty,
            ));
        }
        Verdict::Failed => return Err(Error::PreconditionFailed),
    }
    let range = match head.range {
        Some(r) if head.method == Method::Get => {
            let current = head
                .if_range
                .is_none_or(|ir| if_range_matches(req.get(ir), &entry.etag, entry.mtime));
            if current {
                parse_range(req.get(r), entry.len)
            } else {
                RangeRequest::Full
            }
        }
        _ => RangeRequest::Full,
    };
    match range {
        RangeRequest::Full => Ok(Response::new(
            200,
            HeaderLines::Shared(entry.lines_200.clone()),
            entry.range(cached(entry), 0, entry.len),
        )),
        RangeRequest::Unsatisfiable => Err(Error::RangeNotSatisfiable { len: entry.len }),
        RangeRequest::Multi(set) => {
            let body = cached(entry);
            // None: the framing would outweigh the file; the whole file
            // goes out (a server may always send it).
            Ok(multipart::respond(
                &set,
                entry.len,
                entry.content_type,
                &entry.lines_200[entry.type_line_end..],
                |offset, len| entry.range(body.clone(), offset, len),
            )
            .unwrap_or_else(|| {
                Response::new(
                    200,
                    HeaderLines::Shared(entry.lines_200.clone()),
                    entry.range(body, 0, entry.len),
                )
            }))
        }
        RangeRequest::Partial { start, end } => {
            let mut lines = Vec::with_capacity(entry.lines_200.len() + 48);
            lines.extend_from_slice(&entry.lines_200);
            lines.extend_from_slice(b"Content-Range: bytes ");
            push_decimal(&mut lines, start);
            lines.push(b'-');
            push_decimal(&mut lines, end);
            lines.push(b'/');
            push_decimal(&mut lines, entry.len);
            lines.extend_from_slice(b"\r\n");
            Ok(Response::new(
                206,
                HeaderLines::Owned(lines),
                entry.range(cached(entry), start, end - start + 1),
            ))
        }
    }
}

/// 301 to the same target with a slash after the path (query kept).
fn redirect_with_slash(req: &RequestCtx<'_>) -> Result<Response, Error> {
    let target = req.target();
    let path = crate::http::target::target_path(target)?;
    let query = target
        .iter()
        .position(|&b| b == b'?')
        .map_or(&b""[..], |i| &target[i..]);
    let mut lines = b"Location: ".to_vec();
    lines.extend_from_slice(path);
    lines.push(b'/');
    lines.extend_from_slice(query);
    lines.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\n");
    Ok(Response::new(
        301,
        HeaderLines::Owned(lines),
        Body::Static(b"301 Moved Permanently\n"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_agg_hands_out_the_pool_slices_of_a_file_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inc")).unwrap();
        std::fs::write(dir.path().join("inc/header.html"), b"<header>hi</header>").unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let cache = FileCache::new(1 << 20, 1 << 17, Default::default(), metrics).unwrap();
        let root = Arc::new(StaticFiles::open_root(dir.path()).unwrap());
        let files = StaticFiles::new(root, dir.path().into(), Duration::from_secs(1), 16)
            .with_cache(Some(Arc::new(cache)));
        let copied = iolite_ipc::copied::total();
        let agg = files.cached_agg(b"/inc/header.html").unwrap().unwrap();
        let again = files.cached_agg(b"/inc/%68eader.html").unwrap().unwrap();
        assert!(
            agg.bufs()[0].same_as(&again.bufs()[0]),
            "one copy in the pool"
        );
        assert_eq!(
            agg.iter().flatten().copied().collect::<Vec<_>>(),
            b"<header>hi</header>"
        );
        assert_eq!(iolite_ipc::copied::total(), copied);
        assert!(matches!(
            files.cached_agg(b"/missing"),
            Err(Error::NotFound)
        ));
        assert!(matches!(files.cached_agg(b"/inc"), Err(Error::NotFound)));
        assert!(files.cached_agg(b"/../etc/passwd").is_err());
        let uncached = StaticFiles::new(
            Arc::new(StaticFiles::open_root(dir.path()).unwrap()),
            dir.path().into(),
            Duration::from_secs(1),
            16,
        );
        assert!(uncached.cached_agg(b"/inc/header.html").unwrap().is_none());
    }

    #[test]
    fn content_types_table() {
        let table: &[(&str, &str)] = &[
            ("/index.html", "text/html; charset=utf-8"),
            ("/A.HTM", "text/html; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/img/logo.svg", "image/svg+xml"),
            ("/x.tar.gz", "application/gzip"),
            ("/noext", "application/octet-stream"),
            ("/dir.d/noext", "application/octet-stream"),
            ("/weird.extension", "application/octet-stream"),
            ("/", "application/octet-stream"),
        ];
        for (name, want) in table {
            assert_eq!(content_type(name.as_bytes()), *want, "{name}");
        }
    }
}
