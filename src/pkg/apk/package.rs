//! An `.apk` file (v2): three gzip members — signature tar, control tar (`.PKGINFO` and
//! install scripts), data tar. The signature covers the raw control member, the control's
//! `datahash` covers the raw data member, and the index's `C:` is the SHA-1 of the raw
//! control member, so a package is bound to the signed index even before its own
//! signature is checked. [`ApkFile::verify`] checks all three.

use std::io::Read;

use super::index::Identity;
use super::signature::{self, Keyring, SigEntry, SignatureError};

/// Control members larger than this (decompressed) are refused.
const MAX_CONTROL: u64 = 16 << 20;

/// Names of the scripts a control tar may carry.
pub const SCRIPT_NAMES: [&str; 7] = [
    ".pre-install",
    ".post-install",
    ".pre-upgrade",
    ".post-upgrade",
    ".pre-deinstall",
    ".post-deinstall",
    ".trigger",
];

/// Why a package is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Not a v2 `.apk`.
    #[error("not an apk v2 package: {0}")]
    Format(String),
    /// apk v3 (ADB) packages are not supported yet.
    #[error("apk v3 (ADB) packages are not supported yet; use a v2 repository")]
    V3,
    /// The package's own signature is bad or untrusted.
    #[error("package signature: {0}")]
    Signature(#[from] SignatureError),
    /// The control member does not match the index's `C:`.
    #[error("control checksum {found} does not match the index's C:{expected}: the package was modified or the index is stale")]
    Identity {
        /// From the index.
        expected: Identity,
        /// Of the downloaded file.
        found: Identity,
    },
    /// The data member does not match `.PKGINFO`'s `datahash`.
    #[error("data does not match datahash {expected} in .PKGINFO (found {found}): the package was modified")]
    DataHash {
        /// From `.PKGINFO`.
        expected: String,
        /// Of the data member.
        found: String,
    },
}

/// The `.PKGINFO` fields rootsmith uses (all are kept as `(key, value)` pairs too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkgInfo {
    /// Every `key = value` pair in order.
    pub fields: Vec<(String, String)>,
}

impl PkgInfo {
    /// Parses `key = value` lines (`#` comments).
    pub fn parse(text: &str) -> PkgInfo {
        let fields = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once(" = ").or_else(|| l.split_once('=')))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        PkgInfo { fields }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed `.apk` (borrowing the file's bytes).
#[derive(Debug)]
pub struct ApkFile<'a> {
    /// The signature entries (empty for an unsigned package).
    pub signatures: Vec<SigEntry>,
    /// Raw bytes of the control gzip member.
    pub control_raw: &'a [u8],
    /// Raw bytes of the data gzip member.
    pub data_raw: &'a [u8],
    /// `.PKGINFO`.
    pub info: PkgInfo,
    /// Install scripts by name (`.pre-install`, ...), in archive order.
    pub scripts: Scripts,
}

fn fmt_err(e: impl std::fmt::Display) -> PackageError {
    PackageError::Format(e.to_string())
}

/// Install scripts by name, in archive order.
pub type Scripts = Vec<(String, Vec<u8>)>;

/// Reads the control tar: `.PKGINFO` and scripts.
fn read_control(tar_bytes: &[u8]) -> Result<(Option<PkgInfo>, Scripts), PackageError> {
    let mut info = None;
    let mut scripts = Vec::new();
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().map_err(fmt_err)? {
        let mut e = e.map_err(fmt_err)?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).map_err(fmt_err)?;
        if name == ".PKGINFO" {
            info = Some(PkgInfo::parse(&String::from_utf8_lossy(&body)));
        } else if SCRIPT_NAMES.contains(&name.as_str()) {
            scripts.push((name, body));
        }
    }
    Ok((info, scripts))
}

impl<'a> ApkFile<'a> {
    /// Splits and parses a package file; checks nothing yet (see [`ApkFile::verify`]).
    pub fn parse(data: &'a [u8]) -> Result<ApkFile<'a>, PackageError> {
        if data.starts_with(b"ADB") {
            return Err(PackageError::V3);
        }
        if !data.starts_with(&[0x1f, 0x8b]) {
            return Err(PackageError::Format(
                "it does not start with a gzip member".into(),
            ));
        }
        let (first, after_first) = signature::split_member(data, MAX_CONTROL).map_err(fmt_err)?;
        let sigs = signature::read_entries(&first)?;
        let (control_raw, control_tar, after_control) = if sigs.is_empty() {
            // Unsigned: the first member is the control member.
            let len = data.len() - after_first.len();
            (&data[..len], first, after_first)
        } else {
            let (ctl, rest) = signature::split_member(after_first, MAX_CONTROL).map_err(fmt_err)?;
            let len = after_first.len() - rest.len();
            (&after_first[..len], ctl, rest)
        };
        let (info, scripts) = read_control(&control_tar)?;
        let info =
            info.ok_or_else(|| PackageError::Format("no .PKGINFO in the control member".into()))?;
        if after_control.is_empty() {
            return Err(PackageError::Format(
                "no data member after the control member".into(),
            ));
        }
        Ok(ApkFile {
            signatures: sigs,
            control_raw,
            data_raw: after_control,
            info,
            scripts,
        })
    }

    /// The package identity (SHA-1 of the control member).
    pub fn identity(&self) -> Identity {
        Identity::of(self.control_raw)
    }

    /// Checks the identity against the index, the signature against `keys` and the data
    /// against `datahash`. Returns the name of the key that signed it.
    pub fn verify(
        &self,
        expected: Option<Identity>,
        keys: &Keyring,
    ) -> Result<String, PackageError> {
        if let Some(expected) = expected {
            let found = self.identity();
            if found != expected {
                return Err(PackageError::Identity { expected, found });
            }
        }
        let key = signature::verify(&self.signatures, self.control_raw, keys)?;
        self.check_datahash()?;
        Ok(key)
    }

    /// Checks the data member against `.PKGINFO`'s `datahash` (required).
    pub fn check_datahash(&self) -> Result<(), PackageError> {
        use sha2::Digest as _;
        let Some(want) = self.info.get("datahash") else {
            return Err(PackageError::Format(".PKGINFO has no datahash".into()));
        };
        let found = crate::digest::Digest(sha2::Sha256::digest(self.data_raw).into()).hex();
        if !want.eq_ignore_ascii_case(&found) {
            return Err(PackageError::DataHash {
                expected: want.to_string(),
                found,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkginfo_lines() {
        let i = PkgInfo::parse("# c\npkgname = a\npkgver = 1-r0\ndepend = b\ndepend = c\n");
        assert_eq!(i.get("pkgname"), Some("a"));
        assert_eq!(i.fields.len(), 4);
    }

    #[test]
    fn junk_is_refused() {
        assert!(matches!(ApkFile::parse(b"ADBd"), Err(PackageError::V3)));
        assert!(ApkFile::parse(b"").is_err());
        assert!(ApkFile::parse(b"\x1f\x8b\x08\x00\x00").is_err());
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn real() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/apk/alpine-baselayout-3.2.0-r23.apk"
        ))
        .expect("tests/data/apk is in the repository")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Flipped bytes anywhere in a real package: reading, verifying and unpacking may
        /// fail, never panic; any change to the signed part is caught.
        #[test]
        fn mutated_packages_never_panic(flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..4)) {
            let mut data = real();
            for (i, x) in &flips {
                let at = i.index(data.len());
                data[at] ^= x;
            }
            if let Ok(f) = ApkFile::parse(&data) {
                let _ = f.verify(None, &Keyring::new());
                if f.check_datahash().is_ok() {
                    let mut t = crate::tree::Tree::new();
                    let _ = super::super::install::extract(&mut t, f.data_raw, "p", "p-1", &[], &mut HashMap::new(), &Default::default());
                }
            }
        }

        /// Arbitrary text as an index or database never panics.
        #[test]
        fn arbitrary_index_text(text in "([A-Za-z]:[ -~]{0,30}\n|\n){0,40}") {
            let _ = super::super::index::parse_lenient(&text);
            let _ = super::super::db::parse(&text);
        }
    }
}
