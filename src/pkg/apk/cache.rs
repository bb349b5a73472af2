//! A small on-disk cache for apk indexes and packages (TO UNIFY with `src/cache/` once
//! the shared content store lands). Packages are keyed by their index identity (`C:`) and
//! indexes by their URL; entries are written to a temporary file, synced and renamed, so
//! a reader never sees half a file. Nothing read from here is trusted: callers verify
//! signatures and checksums on every use and refetch when verification fails.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

use super::index::Identity;

/// The cache directory (`<root>/apk/{index,pkg}`).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

fn url_key(url: &str) -> String {
    crate::digest::Digest(sha2::Sha256::digest(url.as_bytes()).into()).hex()
}

impl Cache {
    /// A cache under `root` (created on first write).
    pub fn new(root: &Path) -> Cache {
        Cache {
            root: root.join("apk"),
        }
    }

    fn index_path(&self, url: &str) -> PathBuf {
        self.root
            .join("index")
            .join(format!("{}.tar.gz", url_key(url)))
    }

    fn pkg_path(&self, id: &Identity) -> PathBuf {
        self.root.join("pkg").join(format!("{}.apk", id.hex()))
    }

    /// A cached index for `url` younger than `max_age`.
    pub fn index(&self, url: &str, max_age: Duration) -> Option<Vec<u8>> {
        let p = self.index_path(url);
        let age = fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())?;
        if age >= max_age {
            return None;
        }
        fs::read(p).ok()
    }

    /// Stores an index (already verified by the caller).
    pub fn put_index(&self, url: &str, data: &[u8]) -> std::io::Result<()> {
        publish(&self.index_path(url), data)
    }

    /// A cached package by identity.
    pub fn package(&self, id: &Identity) -> Option<Vec<u8>> {
        fs::read(self.pkg_path(id)).ok()
    }

    /// Stores a package (already verified by the caller).
    pub fn put_package(&self, id: &Identity, data: &[u8]) -> std::io::Result<()> {
        publish(&self.pkg_path(id), data)
    }

    /// Drops a cached package that failed verification.
    pub fn forget_package(&self, id: &Identity) {
        let _ = fs::remove_file(self.pkg_path(id));
    }
}

/// Writes `data` to a temporary file beside `path`, syncs it and renames it into place.
fn publish(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_age() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path());
        assert!(c.index("http://x/i", Duration::from_secs(60)).is_none());
        c.put_index("http://x/i", b"abc").unwrap();
        assert_eq!(
            c.index("http://x/i", Duration::from_secs(60)).unwrap(),
            b"abc"
        );
        let id = Identity::of(b"ctl");
        c.put_package(&id, b"pkg").unwrap();
        assert_eq!(c.package(&id).unwrap(), b"pkg");
        c.forget_package(&id);
        assert!(c.package(&id).is_none());
    }
}
