//! Compressed variants of static files: which files get them, and the
//! background pool that makes them.
//!
//! A compressible file (its media type in the configured list, at least
//! `min_size` bytes) asked for with an `Accept-Encoding` that names a
//! coding is answered, in this order: from a pre-compressed sibling on
//! disk (`file.br`, `file.zst`, `file.gz`, no older than the file: nginx's
//! `gzip_static`), from the variant in the unified cache, or — the first
//! time — as it is, while a job compresses the file off the request path.
//! The pool is bounded (one thread, a queue of [`QUEUE`] jobs, each
//! variant asked for once at a time); a job that finds no room is dropped
//! and asked for again by a later request.
//!
//! Crates: flate2 (gzip; its default Rust backend, miniz_oxide), brotli
//! (Dropbox's pure-Rust port of Google's encoder) and zstd (bindings to
//! the reference C library, Facebook's): the maintained implementations
//! of each format. Levels are high (gzip 9, brotli 9, zstd 12) since a
//! variant is made once and sent many times; nginx's `gzip on` compresses
//! every answer, at level 1 by default.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::cache::{FileCache, FileKey, FileVersion};
use crate::config::CompressConfig;
use crate::http::accept_encoding::Coding;

/// Jobs waiting at most.
pub const QUEUE: usize = 64;

/// Which files get variants (from `[cache]`'s `compress*` keys).
#[derive(Debug, Clone)]
pub struct Compressible {
    types: Vec<String>,
    min_size: u64,
    /// Pre-compressed siblings are looked for.
    pub precompressed: bool,
    /// Variants are made on the fly.
    pub on_the_fly: bool,
}

impl Compressible {
    /// The settings of `config`, `None` when compression is off.
    pub fn from_config(config: &CompressConfig) -> Option<Compressible> {
        config.enabled.then(|| Compressible {
            types: config.types.clone(),
            min_size: config.min_size,
            precompressed: config.precompressed,
            on_the_fly: true,
        })
    }

    /// Whether a file of `content_type` and `len` bytes gets variants.
    pub fn applies(&self, content_type: &str, len: u64) -> bool {
        len >= self.min_size && self.types.iter().any(|t| type_matches(t, content_type))
    }
}

/// `pattern` (`text/*` or a full media type) against a Content-Type value.
fn type_matches(pattern: &str, content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match pattern.strip_suffix("/*") {
        Some(top) => media
            .split_once('/')
            .is_some_and(|(t, _)| t.eq_ignore_ascii_case(top)),
        None => media.eq_ignore_ascii_case(pattern),
    }
}

/// A variant to make.
#[derive(Debug)]
pub struct Job {
    pub key: FileKey,
    pub coding: Coding,
    pub version: FileVersion,
    pub file: Arc<File>,
    pub len: u64,
}

/// The background pool.
#[derive(Debug)]
pub struct Compressor {
    jobs: SyncSender<Job>,
    pending: Arc<Mutex<HashSet<(FileKey, Coding)>>>,
}

impl Compressor {
    /// Starts the pool's thread, which stores what it makes in `cache`.
    pub fn start(cache: Arc<FileCache>) -> std::io::Result<Arc<Compressor>> {
        let (jobs, rx) = sync_channel(QUEUE);
        let pending = Arc::new(Mutex::new(HashSet::new()));
        let worker_pending = pending.clone();
        std::thread::Builder::new()
            .name("iolite-compress".into())
            .spawn(move || run(rx, &cache, &worker_pending))?;
        Ok(Arc::new(Compressor { jobs, pending }))
    }

    /// Asks for `job`'s variant unless it is being made or the queue is
    /// full (a later request asks again).
    pub fn request(&self, job: Job) {
        let id = (job.key, job.coding);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.insert(id) {
            return;
        }
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                pending.remove(&id);
            }
        }
    }
}

fn run(rx: Receiver<Job>, cache: &FileCache, pending: &Mutex<HashSet<(FileKey, Coding)>>) {
    for job in rx {
        let id = (job.key, job.coding);
        match make(&job) {
            Ok(Some(bytes)) => {
                if let Err(e) = cache.store_variant(job.key, job.coding, job.version, &bytes) {
                    tracing::debug!(error = %e, coding = job.coding.token(), "variant not cached");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, coding = job.coding.token(), "compressing a file"),
        }
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The compressed bytes of `job`'s file, `None` if it changed meanwhile.
fn make(job: &Job) -> std::io::Result<Option<Vec<u8>>> {
    let mut input = vec![0u8; job.len as usize];
    job.file.read_exact_at(&mut input, 0)?;
    let meta = job.file.metadata()?;
    if (meta.len(), meta.mtime(), meta.mtime_nsec()) != job.version {
        return Ok(None);
    }
    compress(job.coding, &input).map(Some)
}

/// `input` in `coding`.
pub fn compress(coding: Coding, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(input.len() / 3 + 64);
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::new(9));
            e.write_all(input)?;
            e.finish()
        }
        Coding::Br => {
            let mut e = brotli::CompressorWriter::new(out, 64 << 10, 9, 22);
            e.write_all(input)?;
            e.flush()?;
            Ok(e.into_inner())
        }
        Coding::Zstd => zstd::stream::encode_all(input, 12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_by_media_type_and_wildcard() {
        assert!(type_matches("text/*", "text/html; charset=utf-8"));
        assert!(type_matches("application/json", "application/json"));
        assert!(type_matches("image/svg+xml", "IMAGE/SVG+XML"));
        assert!(!type_matches("text/*", "image/png"));
        assert!(!type_matches("application/json", "application/jsonx"));
    }

    #[test]
    fn every_coding_round_trips() {
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of some text\n", i % 997).into_bytes())
            .collect();
        for coding in Coding::ALL {
            let packed = compress(coding, &input).unwrap();
            assert!(packed.len() < input.len() / 4, "{coding:?}");
            let mut unpacked = Vec::new();
            match coding {
                Coding::Gzip => {
                    std::io::copy(
                        &mut flate2::read::GzDecoder::new(&packed[..]),
                        &mut unpacked,
                    )
                    .unwrap();
                }
                Coding::Br => {
                    brotli::BrotliDecompress(&mut &packed[..], &mut unpacked).unwrap();
                }
                Coding::Zstd => unpacked = zstd::stream::decode_all(&packed[..]).unwrap(),
            }
            assert_eq!(unpacked, input, "{coding:?}");
        }
    }
}
