//! What an image is downloaded from (SmolVM's `ImageSource`): a root filesystem and
//! optionally a kernel and an initrd, each a URL, the SHA-256 of the bytes at that URL, the
//! file name it gets in the image directory, and whether it is zstd-compressed on the wire.

use std::fmt;

use super::layout::{self, INITRD, KERNEL, ROOTFS};
use super::ImagesError;
use crate::digest::{Digest, Hasher};

/// Which file of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The kernel (`vmlinux.bin`).
    Kernel,
    /// The initrd (`initrd.img`).
    Initrd,
    /// The root filesystem (`rootfs.ext4`).
    Rootfs,
}

impl Role {
    /// The lower-case name used in registries, JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Kernel => "kernel",
            Role::Initrd => "initrd",
            Role::Rootfs => "rootfs",
        }
    }

    /// The default file name in an image directory.
    pub fn default_file(self) -> &'static str {
        match self {
            Role::Kernel => KERNEL,
            Role::Initrd => INITRD,
            Role::Rootfs => ROOTFS,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a file is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// As is.
    #[default]
    None,
    /// zstd (decompressed while downloading).
    Zstd,
}

impl Compression {
    /// `zstd` when the URL's path ends in `.zst` (query and fragment ignored), else none.
    pub fn from_url(url: &str) -> Compression {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if path.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// `"zstd"` or `"none"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses `"zstd"`/`"none"`.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "zstd" => Some(Compression::Zstd),
            "none" => Some(Compression::None),
            _ => None,
        }
    }
}

/// One downloadable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Where it is (`http://` or `file:`).
    pub url: String,
    /// SHA-256 of the bytes at `url` (the compressed bytes when `compression` is zstd).
    pub sha256: Digest,
    /// Its (decompressed) file name in the image directory.
    pub file: String,
    /// How it is encoded at `url`.
    pub compression: Compression,
}

impl Asset {
    /// An asset whose compression follows the URL and whose file is the role's default.
    pub fn new(role: Role, url: &str, sha256: Digest) -> Asset {
        Asset {
            url: url.to_string(),
            sha256,
            file: role.default_file().to_string(),
            compression: Compression::from_url(url),
        }
    }
}

/// A named image to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The image directory's name.
    pub name: String,
    /// The root filesystem.
    pub rootfs: Asset,
    /// The kernel, when the image has one.
    pub kernel: Option<Asset>,
    /// The initrd, when the image has one.
    pub initrd: Option<Asset>,
}

impl ImageSource {
    /// The files, kernel first (SmolVM's order), each with its role.
    pub fn assets(&self) -> Vec<(Role, &Asset)> {
        let mut v = Vec::with_capacity(3);
        if let Some(k) = &self.kernel {
            v.push((Role::Kernel, k));
        }
        if let Some(i) = &self.initrd {
            v.push((Role::Initrd, i));
        }
        v.push((Role::Rootfs, &self.rootfs));
        v
    }

    /// Checks the name and that the file names are distinct plain names.
    pub fn check(&self) -> Result<(), String> {
        layout::check_name(&self.name).map_err(|e| e.to_string())?;
        let assets = self.assets();
        for (i, (role, a)) in assets.iter().enumerate() {
            if !layout::check_file_name(&a.file) {
                return Err(format!(
                    "image {:?}: {role}_filename {:?} must be a plain file name (no '/', not starting with '.')",
                    self.name, a.file
                ));
            }
            if let Some((other, _)) = assets[..i].iter().find(|(_, b)| b.file == a.file) {
                return Err(format!(
                    "image {:?}: {other} and {role} both map to {:?}; give them different file names",
                    self.name, a.file
                ));
            }
        }
        Ok(())
    }

    /// A source from the command line: a root filesystem URL and its hash, an optional
    /// kernel, and a name (else one derived from the URL, see [`name_from_url`]).
    pub fn from_url(
        name: Option<&str>,
        rootfs_url: &str,
        rootfs_sha256: Digest,
        kernel: Option<(&str, Digest)>,
    ) -> Result<ImageSource, ImagesError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => {
                name_from_url(rootfs_url).ok_or_else(|| ImagesError::BadName(rootfs_url.into()))?
            }
        };
        layout::check_name(&name)?;
        let src = ImageSource {
            name,
            rootfs: Asset::new(Role::Rootfs, rootfs_url, rootfs_sha256),
            kernel: kernel.map(|(u, d)| Asset::new(Role::Kernel, u, d)),
            initrd: None,
        };
        src.check().map_err(|why| ImagesError::Registry {
            origin: "command line".into(),
            why,
        })?;
        Ok(src)
    }

    /// The image's fingerprint: SHA-256 hex over what it is made of (each file's role, name,
    /// pinned digest and encoding; not the URLs, so a mirror gives the same fingerprint).
    pub fn fingerprint(&self) -> String {
        let mut h = Hasher::new();
        h.update(b"rootsmith-image-source/1\n");
        for (role, a) in self.assets() {
            h.update(
                format!(
                    "{role} {} {} {}\n",
                    a.file,
                    a.sha256.hex(),
                    a.compression.as_str()
                )
                .as_bytes(),
            );
        }
        h.finish().hex()
    }
}

/// An image name from a root filesystem URL's last path component: `.zst`, `.ext4`,
/// `.img` and a trailing `-rootfs`/`.rootfs` are dropped, other characters outside
/// `[A-Za-z0-9._+-]` become `-` (`…/codex-amd64-rootfs.ext4.zst` → `codex-amd64`).
pub fn name_from_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let mut base = path.rsplit('/').next().unwrap_or(path);
    for suffix in [".zst", ".ext4", ".img", ".raw", "-rootfs", ".rootfs"] {
        base = base.strip_suffix(suffix).unwrap_or(base);
    }
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_start_matches('.').to_string();
    layout::check_name(&name).ok().map(|()| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: &[u8]) -> Digest {
        Digest::of(b)
    }

    #[test]
    fn compression_follows_the_url_path() {
        assert_eq!(
            Compression::from_url("http://h/a.ext4.zst"),
            Compression::Zstd
        );
        assert_eq!(
            Compression::from_url("http://h/a.ext4.zst?x=1"),
            Compression::Zstd
        );
        assert_eq!(Compression::from_url("http://h/a.ext4"), Compression::None);
        assert_eq!(Compression::from_url("http://h/zst?f=a"), Compression::None);
    }

    #[test]
    fn names_come_from_the_url() {
        let n = |u| name_from_url(u);
        assert_eq!(
            n("http://h/r/codex-amd64-rootfs.ext4.zst").as_deref(),
            Some("codex-amd64")
        );
        assert_eq!(n("file:///x/alpine.ext4").as_deref(), Some("alpine"));
        assert_eq!(n("http://h/a%20b.img?x").as_deref(), Some("a-20b"));
        assert_eq!(n("http://h/"), None);
        assert_eq!(n("http://h/rootfs.ext4").as_deref(), Some("rootfs"));
    }

    #[test]
    fn colliding_or_escaping_file_names_are_refused() {
        let mut s = ImageSource::from_url(
            Some("x"),
            "http://h/r.ext4",
            d(b"r"),
            Some(("http://h/k", d(b"k"))),
        )
        .unwrap();
        assert!(s.check().is_ok());
        s.kernel.as_mut().unwrap().file = "rootfs.ext4".into();
        assert!(s.check().unwrap_err().contains("both map to"));
        s.kernel.as_mut().unwrap().file = "../k".into();
        assert!(s.check().unwrap_err().contains("plain file name"));
    }

    #[test]
    fn the_fingerprint_follows_content_not_urls() {
        let a = ImageSource::from_url(Some("x"), "http://a/r.ext4", d(b"r"), None).unwrap();
        let b = ImageSource::from_url(Some("x"), "http://b/r.ext4", d(b"r"), None).unwrap();
        let c = ImageSource::from_url(Some("x"), "http://a/r.ext4", d(b"s"), None).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }
}
