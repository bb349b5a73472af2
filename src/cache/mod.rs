//! A content-addressed cache on the host: blobs stored under their SHA-256, written to a
//! temporary file, verified, fsynced and renamed into place; read back only when they still
//! hash to their name. Plus a small by-key store for files that have no digest yet (a
//! repository's `InRelease`), always re-verified by the caller.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }

    /// The blob with digest `d`, if cached and intact (a corrupt one is removed).
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        let p = self.blob_path(d);
        let b = fs::read(&p).ok()?;
        if &Digest::of(&b) == d {
            Some(b)
        } else {
            let _ = fs::remove_file(&p);
            None
        }
    }

    /// Stores `bytes` under their digest.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<Digest> {
        let d = Digest::of(bytes);
        self.write_atomic(&self.blob_path(&d), bytes)?;
        Ok(d)
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.root
            .join("by-key")
            .join(Digest::of(key.as_bytes()).hex())
    }

    /// The bytes stored under `key` if younger than `max_age`.
    pub fn get_key(&self, key: &str, max_age: Duration) -> Option<Vec<u8>> {
        let p = self.key_path(key);
        let age = fs::metadata(&p).ok()?.modified().ok()?;
        if SystemTime::now().duration_since(age).ok()? > max_age {
            return None;
        }
        fs::read(p).ok()
    }

    /// Stores `bytes` under `key`.
    pub fn put_key(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.write_atomic(&self.key_path(key), bytes)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().expect("cache paths have a parent");
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_corruption_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path());
        let d = c.put(b"hello").unwrap();
        assert_eq!(c.get(&d).unwrap(), b"hello");
        fs::write(c.blob_path(&d), b"tampered").unwrap();
        assert!(c.get(&d).is_none());
        c.put_key("http://x/InRelease", b"r").unwrap();
        assert_eq!(
            c.get_key("http://x/InRelease", Duration::from_secs(60))
                .unwrap(),
            b"r"
        );
    }
}
