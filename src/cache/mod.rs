//! The content-addressed blob cache: `blobs/sha256/<hex>` under `$ROOTSMITH_CACHE` or the
//! XDG cache dir. Blobs are streamed to a temp file in the same directory tree while being
//! hashed and counted, checked against the expected digest and size, fsynced and renamed,
//! so a final path only ever holds verified bytes. A cached blob is hashed again before it
//! is trusted; a corrupt one is removed so it is fetched again. A file lock (`lock`)
//! serialises writers across processes. Tags map to digests in `refs/`.

pub mod verify;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

pub use verify::VerifyingReader;

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("cache {}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The bytes do not hash to the digest they were fetched as.
    #[error("blob {expected} has wrong content (its sha256 is {actual}); it was not stored")]
    Digest {
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// More or fewer bytes than the descriptor said.
    #[error(
        "blob {digest} is {actual} bytes, but its descriptor says {expected}; it was not stored"
    )]
    Size {
        /// The blob.
        digest: Digest,
        /// Descriptor size.
        expected: u64,
        /// Bytes received (at least this many when too long).
        actual: u64,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cache directory to use: `$ROOTSMITH_CACHE`, else `$XDG_CACHE_HOME/rootsmith`, else
/// `$HOME/.cache/rootsmith`. The caller passes the environment values (read once by the CLI).
pub fn default_root(
    rootsmith_cache: Option<&str>,
    xdg_cache_home: Option<&str>,
    home: Option<&str>,
) -> Option<PathBuf> {
    let nonempty = |s: Option<&str>| s.filter(|v| !v.is_empty()).map(PathBuf::from);
    nonempty(rootsmith_cache)
        .or_else(|| nonempty(xdg_cache_home).map(|p| p.join("rootsmith")))
        .or_else(|| nonempty(home).map(|p| p.join(".cache").join("rootsmith")))
}

/// An open cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Holds the cache's exclusive lock until dropped.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

impl Cache {
    /// Opens (creating as needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for sub in ["blobs/sha256", "tmp", "refs"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        Ok(Cache {
            root: root.to_owned(),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive cross-process lock (blocks while another run holds it).
    pub fn lock(&self) -> Result<CacheLock, CacheError> {
        use fs4::fs_std::FileExt;
        let p = self.root.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_at(&p))?;
        f.lock_exclusive().map_err(io_at(&p))?;
        Ok(CacheLock { _file: f })
    }

    /// Where blob `d` lives (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// True when blob `d` is cached with `size` bytes and the right content. A cached file
    /// with other content is removed (it will be fetched again).
    pub fn has_valid(&self, d: &Digest, size: u64) -> Result<bool, CacheError> {
        let p = self.blob_path(d);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_at(&p)(e)),
        };
        let len = f.metadata().map_err(io_at(&p))?.len();
        let ok = len == size && {
            let mut h = Hasher::new();
            io::copy(&mut f, &mut h).map_err(io_at(&p))?;
            h.finish() == *d
        };
        if !ok {
            fs::remove_file(&p).map_err(io_at(&p))?;
        }
        Ok(ok)
    }

    /// A verifying reader over cached blob `d` (errors at its end if the content is wrong).
    pub fn open_blob(&self, d: &Digest, size: u64) -> Result<VerifyingReader<File>, CacheError> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(io_at(&p))?;
        Ok(VerifyingReader::new(f, *d, size))
    }

    /// Reads a small cached blob whole, verified.
    pub fn read_blob(&self, d: &Digest, size: u64) -> Result<Vec<u8>, CacheError> {
        let mut r = self.open_blob(d, size)?;
        let mut out = Vec::new();
        let p = self.blob_path(d);
        r.read_to_end(&mut out).map_err(io_at(&p))?;
        Ok(out)
    }

    /// Starts writing blob `d` of `size` bytes.
    pub fn writer(&self, d: Digest, size: u64) -> Result<BlobWriter, CacheError> {
        let dir = self.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", &d.hex()[..12]))
            .tempfile_in(&dir)
            .map_err(io_at(&dir))?;
        Ok(BlobWriter {
            tmp,
            hasher: Hasher::new(),
            count: 0,
            digest: d,
            size,
            dest: self.blob_path(&d),
        })
    }

    /// Stores bytes already in memory as blob `d` (verified).
    pub fn put(&self, d: Digest, bytes: &[u8]) -> Result<(), CacheError> {
        let mut w = self.writer(d, bytes.len() as u64)?;
        w.write_chunk(bytes)?;
        w.commit()
    }

    fn ref_path(&self, key: &str) -> PathBuf {
        // Keys are `registry/repository:tag`; `:` and `/` become path parts.
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/') {
                    c
                } else {
                    '+'
                }
            })
            .collect();
        let mut p = self.root.join("refs");
        for part in safe
            .split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        {
            p.push(part);
        }
        p
    }

    /// Records that `key` (a tag reference) resolved to `d`.
    pub fn set_ref(&self, key: &str, d: &Digest) -> Result<(), CacheError> {
        let p = self.ref_path(key);
        let dir = p.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_at(&dir))?;
        tmp.write_all(d.to_string().as_bytes()).map_err(io_at(&p))?;
        tmp.persist(&p).map_err(|e| io_at(&p)(e.error))?;
        Ok(())
    }

    /// What `key` last resolved to, if recorded less than `max_age` ago (a repository's
    /// `InRelease` is reused for a while so a warm build makes no request).
    pub fn get_ref_fresh(
        &self,
        key: &str,
        max_age: std::time::Duration,
    ) -> Result<Option<Digest>, CacheError> {
        let p = self.ref_path(key);
        let fresh = fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age <= max_age);
        if !fresh {
            return Ok(None);
        }
        self.get_ref(key)
    }

    /// Reads cached blob `d` whole when present and intact (any size).
    pub fn read_any(&self, d: &Digest) -> Option<Vec<u8>> {
        let b = fs::read(self.blob_path(d)).ok()?;
        (Digest::of(&b) == *d).then_some(b)
    }

    /// What `key` last resolved to, if recorded.
    pub fn get_ref(&self, key: &str) -> Result<Option<Digest>, CacheError> {
        let p = self.ref_path(key);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&p)(e)),
        }
    }
}

/// A blob being written: a temp file beside the final place, hashed and counted as bytes
/// arrive. Dropping it without [`BlobWriter::commit`] removes the temp file.
pub struct BlobWriter {
    tmp: tempfile::NamedTempFile,
    hasher: Hasher,
    count: u64,
    digest: Digest,
    size: u64,
    dest: PathBuf,
}

impl BlobWriter {
    /// Appends bytes; more than the declared size is an error at once.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), CacheError> {
        let n = self.count.saturating_add(chunk.len() as u64);
        if n > self.size {
            return Err(CacheError::Size {
                digest: self.digest,
                expected: self.size,
                actual: n,
            });
        }
        self.hasher.update(chunk);
        self.tmp.write_all(chunk).map_err(io_at(self.tmp.path()))?;
        self.count = n;
        Ok(())
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Checks size and digest, fsyncs and renames into place.
    pub fn commit(self) -> Result<(), CacheError> {
        if self.count != self.size {
            return Err(CacheError::Size {
                digest: self.digest,
                expected: self.size,
                actual: self.count,
            });
        }
        let actual = self.hasher.finish();
        if actual != self.digest {
            return Err(CacheError::Digest {
                expected: self.digest,
                actual,
            });
        }
        self.tmp
            .as_file()
            .sync_all()
            .map_err(io_at(self.tmp.path()))?;
        let dest = self.dest;
        self.tmp.persist(&dest).map_err(|e| io_at(&dest)(e.error))?;
        if let Some(dir) = dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verified_blobs_reach_their_final_path() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let data = b"hello blob";
        let d = Digest::of(data);
        // Wrong content.
        let mut w = c.writer(d, data.len() as u64).unwrap();
        w.write_chunk(b"hello blub").unwrap();
        assert!(matches!(w.commit(), Err(CacheError::Digest { .. })));
        // Too long.
        let mut w = c.writer(d, 3).unwrap();
        assert!(matches!(w.write_chunk(data), Err(CacheError::Size { .. })));
        drop(w);
        // Too short.
        let mut w = c.writer(d, data.len() as u64).unwrap();
        w.write_chunk(b"hello").unwrap();
        assert!(matches!(w.commit(), Err(CacheError::Size { .. })));
        assert!(!c.blob_path(&d).exists());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "temp files left"
        );
        c.put(d, data).unwrap();
        assert!(c.has_valid(&d, data.len() as u64).unwrap());
        assert_eq!(c.read_blob(&d, data.len() as u64).unwrap(), data);
    }

    #[test]
    fn a_corrupt_cached_blob_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let d = Digest::of(b"abc");
        c.put(d, b"abc").unwrap();
        fs::write(c.blob_path(&d), b"abd").unwrap();
        let mut r = c.open_blob(&d, 3).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(!c.has_valid(&d, 3).unwrap());
        assert!(!c.blob_path(&d).exists());
    }

    #[test]
    fn refs_round_trip_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        c.set_ref("127.0.0.1:5000/a/../b:1", &d).unwrap();
        assert_eq!(c.get_ref("127.0.0.1:5000/a/../b:1").unwrap(), Some(d));
        assert_eq!(c.get_ref("other:1").unwrap(), None);
        assert!(c.ref_path("../../x").starts_with(dir.path().join("refs")));
    }

    #[test]
    fn the_cache_root_follows_the_environment() {
        let p = |a, b, c| default_root(a, b, c).map(|p| p.display().to_string());
        assert_eq!(p(Some("/c"), Some("/x"), Some("/h")).as_deref(), Some("/c"));
        assert_eq!(
            p(Some(""), Some("/x"), Some("/h")).as_deref(),
            Some("/x/rootsmith")
        );
        assert_eq!(
            p(None, None, Some("/h")).as_deref(),
            Some("/h/.cache/rootsmith")
        );
        assert_eq!(p(None, None, None), None);
    }

    #[test]
    fn the_lock_is_exclusive_across_handles() {
        use fs4::fs_std::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let held = c.lock().unwrap();
        let f = File::options()
            .write(true)
            .open(dir.path().join("lock"))
            .unwrap();
        assert!(!f.try_lock_exclusive().unwrap_or(false));
        drop(held);
        assert!(f.try_lock_exclusive().unwrap());
    }
}
