//! [`FileEntry`]: one served file (or one of its variants) with
//! everything its response needs — validators and pre-formatted header
//! lines — and the variants it has ([`Variants`]).

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::cache::{CachedBody, FileKey, FileVersion};
use crate::http::accept_encoding::Coding;
use crate::http::date::format_http_date;
use crate::response::{Body, FileRange};

/// A file's variants, by coding (`Coding::index() - 1`): its
/// pre-compressed siblings and the cached variants seen by this worker.
#[derive(Debug, Default)]
pub(super) struct Variants {
    pub(super) siblings: RefCell<[Option<Rc<FileEntry>>; 3]>,
    pub(super) cached: RefCell<[Option<Rc<FileEntry>>; 3]>,
}

/// One served file with everything its response needs.
#[derive(Debug)]
pub(super) struct FileEntry {
    pub(super) file: Arc<File>,
    pub(super) len: u64,
    pub(super) mtime: u64,
    pub(super) identity: (u64, u64, i64, i64),
    /// The file in the unified cache: (device, inode) and (size, mtime).
    pub(super) key: FileKey,
    pub(super) version: FileVersion,
    /// The cached bytes, once looked up (checked for eviction on each use).
    /// Weak: a body the cache evicts must not stay pinned in the pool by
    /// the open-file entries of every worker that served it (its space comes
    /// back once the sends using it end).
    pub(super) body: RefCell<Option<std::sync::Weak<CachedBody>>>,
    pub(super) etag: Box<[u8]>,
    pub(super) content_type: &'static str,
    /// Content-Type, Last-Modified, ETag, Accept-Ranges.
    pub(super) lines_200: Arc<[u8]>,
    /// Where the Content-Type line of `lines_200` ends.
    pub(super) type_line_end: usize,
    /// Last-Modified and ETag, for 304.
    pub(super) validators: Arc<[u8]>,
    pub(super) checked: Cell<Instant>,
    /// Compressed variants may be sent for it (its answers carry `Vary`).
    pub(super) compressible: bool,
    /// Its pre-compressed siblings and cached variants, by coding.
    pub(super) variants: Variants,
}

impl FileEntry {
    pub(super) fn new(
        file: File,
        meta: &std::fs::Metadata,
        identity: (u64, u64, i64, i64),
        content_type: &'static str,
        now: Instant,
        compressible: bool,
    ) -> Self {
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let etag = etag(mtime, meta.mtime_nsec(), meta.len(), None);
        let (lines_200, type_line_end, validators) =
            head_lines(content_type, mtime, &etag, compressible.then_some(None));
        FileEntry {
            file: Arc::new(file),
            len: meta.len(),
            mtime,
            identity,
            key: (identity.0, identity.1),
            version: (meta.len(), identity.2, identity.3),
            body: RefCell::new(None),
            etag: etag.into(),
            content_type,
            lines_200: lines_200.into(),
            type_line_end,
            validators: validators.into(),
            checked: Cell::new(now),
            compressible,
            variants: Default::default(),
        }
    }

    /// The cached bytes this entry last saw, unless evicted since.
    pub(super) fn held(&self) -> Option<Arc<CachedBody>> {
        let held = self
            .body
            .borrow()
            .as_ref()
            .and_then(std::sync::Weak::upgrade);
        held.filter(|body| !body.is_evicted())
    }

    /// `len` bytes from `offset`: from the unified cache when `cached`
    /// holds the file, else from the file with sendfile.
    pub(super) fn range(&self, cached: Option<Arc<CachedBody>>, offset: u64, len: u64) -> Body {
        match cached {
            Some(body) => Body::Cached { body, offset, len },
            None => Body::File(FileRange {
                file: self.file.clone(),
                offset,
                len,
            }),
        }
    }
}

/// A strong ETag from a file's modification time and size, and the coding
/// of a variant.
pub(super) fn etag(mtime: u64, nsec: i64, len: u64, coding: Option<Coding>) -> Vec<u8> {
    let mut etag = b"\"".to_vec();
    push_hex(&mut etag, mtime);
    etag.push(b'.');
    push_hex(&mut etag, nsec.max(0) as u64);
    etag.push(b'-');
    push_hex(&mut etag, len);
    if let Some(c) = coding {
        etag.push(b'-');
        etag.extend_from_slice(c.token().as_bytes());
    }
    etag.push(b'"');
    etag
}

/// A 200's header lines (and where its Content-Type line ends) and the
/// validators a 304 repeats. `vary`: `None` for a resource that has no
/// variants; `Some(coding)` for one that has, sent in that coding.
pub(super) fn head_lines(
    content_type: &str,
    mtime: u64,
    etag: &[u8],
    vary: Option<Option<Coding>>,
) -> (Vec<u8>, usize, Vec<u8>) {
    let mut validators = b"Last-Modified: ".to_vec();
    validators.extend_from_slice(&format_http_date(mtime));
    validators.extend_from_slice(b"\r\nETag: ");
    validators.extend_from_slice(etag);
    validators.extend_from_slice(b"\r\n");
    if vary.is_some() {
        validators.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    let mut lines_200 = b"Content-Type: ".to_vec();
    lines_200.extend_from_slice(content_type.as_bytes());
    lines_200.extend_from_slice(b"\r\n");
    let type_line_end = lines_200.len();
    lines_200.extend_from_slice(&validators);
    if let Some(Some(coding)) = vary {
        lines_200.extend_from_slice(b"Content-Encoding: ");
        lines_200.extend_from_slice(coding.token().as_bytes());
        lines_200.extend_from_slice(b"\r\n");
    }
    lines_200.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    (lines_200, type_line_end, validators)
}

fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
