//! A file's compressed variants, per worker: its pre-compressed siblings
//! on disk and the variants the compressor put in the unified cache, each
//! a [`FileEntry`] of its own (its ETag, length, `Content-Encoding`), so
//! preconditions and single ranges work on it as on any file
//! ([`compress`](super::compress) says which files and in what order).

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::Arc;

use super::StaticFiles;
use super::compress::Job;
use super::entry::{FileEntry, Variants, etag, head_lines};
use crate::cache::CachedBody;
use crate::handler::RequestCtx;
use crate::http::accept_encoding::{Coding, preferred};

fn slot(coding: Coding) -> usize {
    usize::from(coding.index() - 1)
}

impl StaticFiles {
    /// Looks for `entry`'s siblings (`local` is its path under the root,
    /// with the index file name `index` when a directory was asked for):
    /// each coding's file, regular and no older than `entry`'s.
    pub(super) fn find_siblings(&self, entry: &FileEntry, local: &[u8], index: Option<usize>) {
        let wanted =
            entry.compressible && self.compress.as_ref().is_some_and(|(c, _)| c.precompressed);
        let mut siblings = entry.variants.siblings.borrow_mut();
        if !wanted {
            *siblings = Default::default();
            return;
        }
        let mut rel = local[1..].to_vec();
        if let Some(i) = index {
            rel.extend_from_slice(&self.index[i]);
        }
        let base = rel.len();
        for coding in Coding::ALL {
            rel.truncate(base);
            rel.extend_from_slice(coding.suffix().as_bytes());
            siblings[slot(coding)] = self.open_beneath(&rel).ok().and_then(|file| {
                let meta = file.metadata().ok()?;
                let fresh =
                    (meta.mtime(), meta.mtime_nsec()) >= (entry.identity.2, entry.identity.3);
                (meta.is_file() && fresh).then(|| {
                    let tag = etag(
                        meta.mtime() as u64,
                        meta.mtime_nsec(),
                        meta.len(),
                        Some(coding),
                    );
                    let identity = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
                    Rc::new(entry.variant(coding, Arc::new(file), &tag, meta.len(), identity))
                })
            });
        }
    }

    /// The variant to send for `req` instead of `entry`, and its cached
    /// bytes when it is a cache variant (`None`: send `entry`). Asks the
    /// compressor for the client's first choice when it is not ready.
    pub(super) fn encoded(
        &self,
        req: &RequestCtx<'_>,
        entry: &FileEntry,
    ) -> Option<(Rc<FileEntry>, Option<Arc<CachedBody>>)> {
        if !entry.compressible {
            return None;
        }
        let (settings, compressor) = self.compress.as_ref()?;
        let accept = req.get(req.head.accept_encoding?);
        // Several ranges go out of the file as it is (multipart parts of
        // a compressed representation help no client).
        if req.head.range.is_some_and(|r| req.get(r).contains(&b',')) {
            return None;
        }
        let on_the_fly = settings.on_the_fly && compressor.is_some() && self.bodies.is_some();
        let siblings = entry.variants.siblings.borrow();
        // On the stack: this runs for every request of a compressible file.
        let mut offered = [Coding::Br; 3];
        let mut n = 0;
        for c in Coding::ALL {
            if on_the_fly || siblings[slot(c)].is_some() {
                offered[n] = c;
                n += 1;
            }
        }
        let mut first = true;
        while let Some(coding) = preferred(accept, &offered[..n]) {
            if let Some(sibling) = &siblings[slot(coding)] {
                return Some((sibling.clone(), None));
            }
            if let Some((variant, body)) = self.cached_variant(entry, coding) {
                return Some((variant, Some(body)));
            }
            if first
                && let (Some(compressor), Some(cache)) = (compressor, &self.bodies)
                && entry.len <= cache.threshold()
            {
                compressor.request(Job {
                    key: entry.key,
                    coding,
                    version: entry.version,
                    file: entry.file.clone(),
                    len: entry.len,
                });
            }
            first = false;
            if let Some(i) = offered[..n].iter().position(|&c| c == coding) {
                offered.copy_within(i + 1..n, i);
                n -= 1;
            }
        }
        None
    }

    /// The `coding` variant of `entry` in the unified cache, if made.
    fn cached_variant(
        &self,
        entry: &FileEntry,
        coding: Coding,
    ) -> Option<(Rc<FileEntry>, Arc<CachedBody>)> {
        let cache = self.bodies.as_ref()?;
        let mut cached = entry.variants.cached.borrow_mut();
        if let Some(variant) = &cached[slot(coding)]
            && let Some(body) = variant.held()
        {
            cache.touch_variant(entry.key, coding);
            return Some((variant.clone(), body));
        }
        let body = cache.get_variant(entry.key, coding, entry.version)?;
        let len = body.agg().len() as u64;
        let tag = etag(entry.mtime, entry.identity.3, entry.len, Some(coding));
        let variant = entry.variant(coding, entry.file.clone(), &tag, len, entry.identity);
        *variant.body.borrow_mut() = Some(Arc::downgrade(&body));
        let variant = Rc::new(variant);
        cached[slot(coding)] = Some(variant.clone());
        Some((variant, body))
    }
}

impl FileEntry {
    /// A variant of this file in `coding`: `len` bytes, from `file` (a
    /// sibling) or from the cache (then `file` is this one's and never
    /// read for it).
    fn variant(
        &self,
        coding: Coding,
        file: Arc<std::fs::File>,
        etag: &[u8],
        len: u64,
        identity: (u64, u64, i64, i64),
    ) -> FileEntry {
        let (lines_200, type_line_end, validators) =
            head_lines(self.content_type, self.mtime, etag, Some(Some(coding)));
        FileEntry {
            file,
            len,
            mtime: self.mtime,
            identity,
            key: (identity.0, identity.1),
            version: (len, identity.2, identity.3),
            body: RefCell::new(None),
            etag: etag.into(),
            content_type: self.content_type,
            lines_200: lines_200.into(),
            type_line_end,
            validators: validators.into(),
            checked: self.checked.clone(),
            compressible: false,
            variants: Variants::default(),
        }
    }
}
