//! The SmolVM image cache on disk: `<root>/<name>/{rootfs.ext4, vmlinux.bin, .fingerprint}`,
//! where `<root>` is `--images-dir`, else `$SMOLVM_IMAGE_DIR`, else `~/.smolvm/images`
//! (SmolVM's `resolve_image_dir`). Image names are single path components. One lock file
//! per image, `<root>/<name>/.rootsmith.lock` (the file `rootsmith build` locks too),
//! serialises every writer of that name: `images ensure`, `images rm`, `rootsmith build`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ImagesError;

/// The root filesystem's file name in an image directory.
pub const ROOTFS: &str = "rootfs.ext4";
/// The kernel's file name in an image directory.
pub const KERNEL: &str = "vmlinux.bin";
/// The initrd's file name in an image directory (SmolVM's `ImageSource` default).
pub const INITRD: &str = "initrd.img";
/// The build fingerprint (SHA-256 hex of every build input), written by `rootsmith build`.
pub const FINGERPRINT: &str = ".fingerprint";
/// What `images ensure` downloaded, and the digest of each file as it sits on disk.
pub const SOURCE: &str = ".source.json";
/// The per-image lock file.
pub const LOCK: &str = ".rootsmith.lock";
/// Prefix of the temp files `images ensure` downloads into (removed under the lock when a
/// killed run left them).
pub const TEMP_PREFIX: &str = ".rootsmith-dl-";

/// The cache root: `explicit` (`--images-dir`), else `smolvm_image_dir`
/// (`$SMOLVM_IMAGE_DIR`), else `<home>/.smolvm/images`. Empty values count as unset. The
/// caller passes the environment (read once by the CLI).
pub fn default_dir(
    explicit: Option<&Path>,
    smolvm_image_dir: Option<&str>,
    home: Option<&str>,
) -> Option<PathBuf> {
    explicit
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .or_else(|| {
            smolvm_image_dir
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            home.filter(|v| !v.is_empty())
                .map(|h| Path::new(h).join(".smolvm").join("images"))
        })
}

/// Checks that `name` can be an image directory: 1–200 bytes of ASCII letters, digits and
/// `.-_+`, not starting with `.` (so it cannot be `..`, a hidden file, or hold a `/`).
pub fn check_name(name: &str) -> Result<(), ImagesError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(ImagesError::BadName(name.to_string()))
    }
}

/// Checks that a file name from a registry is a plain file name inside the image directory
/// (SmolVM normalises these to basenames; we refuse anything else rather than guess).
pub fn check_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
}

/// The directory of image `name` under `root`.
pub fn image_dir(root: &Path, name: &str) -> Result<PathBuf, ImagesError> {
    check_name(name)?;
    Ok(root.join(name))
}

/// Holds an image's exclusive lock until dropped.
#[derive(Debug)]
pub struct ImageLock {
    _file: File,
    dir: PathBuf,
}

impl ImageLock {
    /// The locked image's directory (it exists while the lock is held, unless
    /// [`remove_image`] removed it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImagesError + '_ {
    move |source| ImagesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Takes image `name`'s lock, creating its directory; blocks while another process holds
/// it. If the holder removed the image meanwhile ([`remove_image`]), the lock is taken
/// again on a fresh directory, so a waiter never writes into an unlinked one.
pub fn lock_image(root: &Path, name: &str) -> Result<ImageLock, ImagesError> {
    use fs4::fs_std::FileExt;
    let dir = image_dir(root, name)?;
    let path = dir.join(LOCK);
    for _ in 0..100 {
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let f = match fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            // Removed between create_dir_all and open: start again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_at(&path)(e)),
        };
        f.lock_exclusive().map_err(io_at(&path))?;
        let held = f.metadata().map_err(io_at(&path))?;
        let still_there = fs::metadata(&path)
            .map(|m| m.ino() == held.ino() && m.dev() == held.dev())
            .unwrap_or(false);
        if still_there {
            return Ok(ImageLock { _file: f, dir });
        }
    }
    Err(ImagesError::Io {
        path,
        source: io::Error::other(
            "the image was removed and recreated 100 times while waiting for its lock",
        ),
    })
}

/// Removes a locked image: every file and scratch directory in it, then the lock file and
/// the directory (waiters then lock a fresh directory, see [`lock_image`]).
pub fn remove_image(lock: ImageLock) -> Result<(), ImagesError> {
    let dir = lock.dir.clone();
    let entries = fs::read_dir(&dir).map_err(io_at(&dir))?;
    for e in entries {
        let e = e.map_err(io_at(&dir))?;
        if e.file_name() == LOCK {
            continue;
        }
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            fs::remove_dir_all(&p).map_err(io_at(&p))?;
        } else {
            fs::remove_file(&p).map_err(io_at(&p))?;
        }
    }
    let lock_path = dir.join(LOCK);
    fs::remove_file(&lock_path).map_err(io_at(&lock_path))?;
    fs::remove_dir(&dir).map_err(io_at(&dir))?;
    drop(lock);
    Ok(())
}

/// Removes temp files a killed download left in a locked image's directory.
pub fn remove_stale_temps(lock: &ImageLock) -> Result<(), ImagesError> {
    let entries = fs::read_dir(&lock.dir).map_err(io_at(&lock.dir))?;
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let p = e.path();
            fs::remove_file(&p).map_err(io_at(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_follows_flag_then_environment_then_home() {
        let d = |a: Option<&str>, b, c| default_dir(a.map(Path::new), b, c);
        assert_eq!(d(Some("/x"), Some("/s"), Some("/h")), Some("/x".into()));
        assert_eq!(d(None, Some("/s"), Some("/h")), Some("/s".into()));
        assert_eq!(
            d(Some(""), Some(""), Some("/h")),
            Some("/h/.smolvm/images".into())
        );
        assert_eq!(d(None, None, None), None);
    }

    #[test]
    fn names_are_single_safe_components() {
        for ok in [
            "debian-ssh-key",
            "codex-v0.0.29-amd64-firecracker",
            "a_b+c",
            "x",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "é",
            &"a".repeat(201),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_file_name("rootfs.ext4"));
        for bad in ["", "../x", "a/b", ".lock"] {
            assert!(!check_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn removing_a_locked_image_leaves_nothing_and_it_can_be_locked_again() {
        let root = tempfile::tempdir().unwrap();
        let l = lock_image(root.path(), "img").unwrap();
        fs::write(l.dir().join(ROOTFS), b"x").unwrap();
        fs::create_dir(l.dir().join(".build-1234")).unwrap();
        remove_image(l).unwrap();
        assert!(!root.path().join("img").exists());
        let l = lock_image(root.path(), "img").unwrap();
        assert!(l.dir().join(LOCK).exists());
    }

    #[test]
    fn the_lock_is_exclusive_across_handles() {
        use fs4::fs_std::FileExt;
        let root = tempfile::tempdir().unwrap();
        let held = lock_image(root.path(), "img").unwrap();
        let f = File::options()
            .write(true)
            .open(root.path().join("img").join(LOCK))
            .unwrap();
        assert!(!f.try_lock_exclusive().unwrap_or(false));
        drop(held);
        assert!(f.try_lock_exclusive().unwrap());
    }
}
