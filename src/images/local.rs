//! The images in the cache (SmolVM's `LocalImage`): a directory under the root with a root
//! filesystem, whether `rootsmith build --smolvm` or `images ensure` put it there. Each has
//! its paths, its fingerprint (`.fingerprint`), its size and when it was last written.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::layout::{self, FINGERPRINT, SOURCE};
use super::source::Role;
use super::stamp::Stamp;
use super::ImagesError;

/// A cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// Its name (the directory's).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The root filesystem.
    pub rootfs_path: PathBuf,
    /// The kernel, when present.
    pub kernel_path: Option<PathBuf>,
    /// The initrd, when present.
    pub initrd_path: Option<PathBuf>,
    /// The first line of `.fingerprint`, when present.
    pub fingerprint: Option<String>,
    /// Apparent size of the rootfs, kernel and initrd together.
    pub size: u64,
    /// Bytes they occupy on disk (less than `size` for sparse images).
    pub disk_usage: u64,
    /// The newest modification time among them.
    pub modified: SystemTime,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImagesError + '_ {
    move |source| ImagesError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LocalImage {
    /// Reads image `name` under `root`; `None` when it has no root filesystem.
    pub fn read(root: &Path, name: &str) -> Result<Option<LocalImage>, ImagesError> {
        let dir = layout::image_dir(root, name)?;
        let stamp = fs::read_to_string(dir.join(SOURCE))
            .ok()
            .and_then(|t| Stamp::parse(&t))
            .unwrap_or_default();
        let file = |role: Role| {
            dir.join(
                stamp
                    .file_for(role)
                    .filter(|f| layout::check_file_name(f))
                    .unwrap_or(role.default_file()),
            )
        };
        let meta = |p: &Path| -> Result<Option<fs::Metadata>, ImagesError> {
            match fs::metadata(p) {
                Ok(m) if m.is_file() => Ok(Some(m)),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_at(p)(e)),
            }
        };
        let rootfs_path = file(Role::Rootfs);
        let Some(rootfs_meta) = meta(&rootfs_path)? else {
            return Ok(None);
        };
        let mut size = rootfs_meta.len();
        let mut disk_usage = rootfs_meta.blocks().saturating_mul(512);
        let mut modified = rootfs_meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mut optional = |role: Role| -> Result<Option<PathBuf>, ImagesError> {
            let p = file(role);
            Ok(meta(&p)?.map(|m| {
                size = size.saturating_add(m.len());
                disk_usage = disk_usage.saturating_add(m.blocks().saturating_mul(512));
                if let Ok(t) = m.modified() {
                    modified = modified.max(t);
                }
                p
            }))
        };
        let kernel_path = optional(Role::Kernel)?;
        let initrd_path = optional(Role::Initrd)?;
        let fingerprint = fs::read_to_string(dir.join(FINGERPRINT))
            .ok()
            .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
            .filter(|l| !l.is_empty());
        Ok(Some(LocalImage {
            name: name.to_string(),
            dir,
            rootfs_path,
            kernel_path,
            initrd_path,
            fingerprint,
            size,
            disk_usage,
            modified,
        }))
    }

    /// Seconds since it was last written (0 when its time is in the future).
    pub fn age_seconds(&self, now: SystemTime) -> u64 {
        now.duration_since(self.modified)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Every image under `root`, by name. Entries that are not image directories (SmolVM's
/// `custom/`, `_kernel/`, `_guest-agent/`, stray files, names rootsmith would not accept)
/// are skipped. A missing root is an empty cache.
pub fn list(root: &Path) -> Result<Vec<LocalImage>, ImagesError> {
    let entries = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(root)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_at(root))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if layout::check_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(img) = LocalImage::read(root, &name)? {
            out.push(img);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A short human age: `42s`, `5m`, `3h`, `12d`.
pub fn format_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A short human size in binary units: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::layout::{KERNEL, ROOTFS};

    #[test]
    fn ages_and_sizes_read_short() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(60), "1m");
        assert_eq!(format_age(7200), "2h");
        assert_eq!(format_age(3 * 86_400 + 5), "3d");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(4096), "4.0 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn lists_image_directories_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("b")).unwrap();
        fs::write(r.join("b").join(ROOTFS), vec![1u8; 100]).unwrap();
        fs::write(r.join("b").join(KERNEL), vec![2u8; 10]).unwrap();
        fs::write(r.join("b").join(FINGERPRINT), "abc\n").unwrap();
        fs::create_dir_all(r.join("a")).unwrap();
        fs::write(r.join("a").join(ROOTFS), b"x").unwrap();
        fs::create_dir_all(r.join("custom/x/fp")).unwrap(); // SmolVM's builder cache
        fs::create_dir_all(r.join("empty")).unwrap();
        fs::write(r.join("stray"), b"").unwrap();
        let v = list(r).unwrap();
        let names: Vec<_> = v.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(v[1].size, 110);
        assert_eq!(v[1].fingerprint.as_deref(), Some("abc"));
        assert_eq!(v[1].kernel_path, Some(r.join("b").join(KERNEL)));
        assert_eq!(v[0].kernel_path, None);
        assert!(list(&r.join("missing")).unwrap().is_empty());
    }
}
