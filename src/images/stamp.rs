//! `<name>/.source.json`: what `images ensure` installed in an image directory — per file,
//! the URL, the pinned SHA-256 of the bytes at the URL, the encoding, and the SHA-256 and
//! size of the file as it sits on disk. A compressed download's file can then be checked
//! again later without the compressed copy; a file whose record does not match the source
//! asked for, or whose bytes no longer hash to the record, is downloaded again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::source::{Asset, Compression, Role};
use crate::digest::Digest;

/// The record of one installed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// `kernel`, `initrd` or `rootfs`.
    pub role: String,
    /// Where it came from.
    pub url: String,
    /// SHA-256 hex of the bytes at `url`.
    pub sha256: String,
    /// `none` or `zstd`.
    pub compression: String,
    /// SHA-256 hex of the file on disk.
    pub content_sha256: String,
    /// Its size on disk (apparent).
    pub size: u64,
}

/// The whole record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Format version (1).
    pub version: u32,
    /// The image name.
    pub name: String,
    /// The fingerprint of the source installed.
    pub fingerprint: String,
    /// By file name.
    pub files: BTreeMap<String, FileStamp>,
}

impl Stamp {
    /// An empty record for `name`.
    pub fn new(name: &str, fingerprint: &str) -> Stamp {
        Stamp {
            version: 1,
            name: name.to_string(),
            fingerprint: fingerprint.to_string(),
            files: BTreeMap::new(),
        }
    }

    /// Parses a record; anything unreadable is no record (the files are then checked
    /// against the source's own digests, or downloaded again).
    pub fn parse(text: &str) -> Option<Stamp> {
        serde_json::from_str::<Stamp>(text)
            .ok()
            .filter(|s| s.version == 1)
    }

    /// The record as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a stamp serialises");
        s.push('\n');
        s
    }

    /// The file name recorded for `role`, if any.
    pub fn file_for(&self, role: Role) -> Option<&str> {
        self.files
            .iter()
            .find(|(_, f)| f.role == role.as_str())
            .map(|(n, _)| n.as_str())
    }

    /// What the file of `asset` must hash to on disk, and its size when recorded: the
    /// pinned digest itself for an uncompressed asset; for a compressed one, the recorded
    /// content digest when the record is of this very download (same pinned digest and
    /// encoding), else `None` (it must be downloaded again).
    pub fn expected(&self, asset: &Asset) -> Option<(Digest, Option<u64>)> {
        let rec = self.files.get(&asset.file).filter(|f| {
            f.sha256 == asset.sha256.hex() && f.compression == asset.compression.as_str()
        });
        match asset.compression {
            Compression::None => Some((asset.sha256, rec.map(|r| r.size))),
            Compression::Zstd => {
                let r = rec?;
                Some((r.content_sha256.parse().ok()?, Some(r.size)))
            }
        }
    }

    /// True when the file of `asset` was not installed from this very pin — another
    /// version, or a file of unknown origin such as a local build — so a file that fails to
    /// match is replaced, not reported as corrupt.
    pub fn is_other_version(&self, asset: &Asset) -> bool {
        self.files
            .get(&asset.file)
            .is_none_or(|f| f.sha256 != asset.sha256.hex())
    }

    /// Records that `asset` (as `role`) is installed with `content` and `size`.
    pub fn record(&mut self, role: Role, asset: &Asset, content: Digest, size: u64) {
        self.files.insert(
            asset.file.clone(),
            FileStamp {
                role: role.as_str().to_string(),
                url: asset.url.clone(),
                sha256: asset.sha256.hex(),
                compression: asset.compression.as_str().to_string(),
                content_sha256: content.hex(),
                size,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(url: &str, body: &[u8]) -> Asset {
        Asset::new(Role::Rootfs, url, Digest::of(body))
    }

    #[test]
    fn an_uncompressed_file_is_checked_against_its_pin_even_without_a_record() {
        let a = asset("http://h/r.ext4", b"r");
        assert_eq!(
            Stamp::default().expected(&a),
            Some((Digest::of(b"r"), None))
        );
    }

    #[test]
    fn a_compressed_file_needs_the_record_of_that_download() {
        let a = asset("http://h/r.ext4.zst", b"compressed");
        let mut s = Stamp::new("x", "f");
        assert_eq!(s.expected(&a), None);
        s.record(Role::Rootfs, &a, Digest::of(b"plain"), 5);
        assert_eq!(s.expected(&a), Some((Digest::of(b"plain"), Some(5))));
        let round = Stamp::parse(&s.to_json()).unwrap();
        assert_eq!(round, s);
        assert_eq!(round.file_for(Role::Rootfs), Some("rootfs.ext4"));
        // A new release (another pinned digest) does not trust the old record.
        let b = asset("http://h/r.ext4.zst", b"compressed v2");
        assert_eq!(s.expected(&b), None);
        // Only a file installed from this very pin can be corrupt; others are replaced.
        assert!(!s.is_other_version(&a));
        assert!(s.is_other_version(&b));
        assert!(Stamp::default().is_other_version(&a));
    }

    #[test]
    fn garbage_is_no_record() {
        assert_eq!(Stamp::parse("{"), None);
        assert_eq!(
            Stamp::parse(r#"{"version":2,"name":"x","fingerprint":"","files":{}}"#),
            None
        );
    }
}
