//! A host directory into the staging tree (`mkfs --from-dir`): types, modes, owners (or one
//! owner for all), nanosecond times, xattrs and hard links as `lstat` and `listxattr` see
//! them. Symlinks are stored, never followed.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::tree::{Content, Inode, InodeId, Kind, Meta, Time, Tree, TreeError, Xattrs};

use super::archive::{xattr_namespace_known, UnpackOptions, UnpackStats};

/// Why a host directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Reading the host failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The host path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The tree refused an entry.
    #[error("{}: {source}", path.display())]
    Tree {
        /// The host path.
        path: PathBuf,
        /// The error.
        source: TreeError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Splits a Linux `dev_t` into (major, minor).
pub fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn meta_of(path: &Path, md: &fs::Metadata, opts: &UnpackOptions) -> Result<Meta, DirError> {
    let t = |s: i64, ns: i64| Time {
        sec: s,
        nsec: ns.clamp(0, 999_999_999) as u32,
    };
    let (uid, gid) = opts.owner.unwrap_or((md.uid(), md.gid()));
    let mut xattrs = Xattrs::new();
    let names = match xattr::list(path) {
        Ok(n) => n.collect::<Vec<_>>(),
        // Filesystems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Vec::new(),
        Err(e) => return Err(io_err(path)(e)),
    };
    for name in names {
        let Some(name_s) = name.to_str() else {
            continue;
        };
        if !xattr_namespace_known(name_s) {
            continue;
        }
        if let Some(v) = xattr::get(path, &name).map_err(io_err(path))? {
            xattrs.insert(name_s.to_string(), v);
        }
    }
    Ok(Meta {
        mode: (md.mode() & 0o7777) as u16,
        uid,
        gid,
        atime: t(md.atime(), md.atime_nsec()),
        mtime: t(md.mtime(), md.mtime_nsec()),
        ctime: t(md.ctime(), md.ctime_nsec()),
        xattrs,
    })
}

/// Adds the contents of host directory `root` to the tree's root (the directory's own
/// metadata becomes the root's).
pub fn apply_dir(
    tree: &mut Tree,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, DirError> {
    let md = fs::symlink_metadata(root).map_err(io_err(root))?;
    if !md.is_dir() {
        return Err(io_err(root)(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    let tree_root = tree.root();
    tree.inode_mut(tree_root).meta = meta_of(root, &md, opts)?;
    let mut stats = UnpackStats::default();
    let mut seen: HashMap<(u64, u64), InodeId> = HashMap::new();
    let mut stack: Vec<(PathBuf, InodeId)> = vec![(root.to_owned(), tree_root)];
    while let Some((dir_path, dir_id)) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir_path)
            .map_err(io_err(&dir_path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir_path))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir_path.join(&name);
            let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let tree_err = |source| DirError::Tree {
                path: path.clone(),
                source,
            };
            let name_b = name.as_bytes();
            let key = (md.dev(), md.ino());
            if !md.is_dir() && md.nlink() > 1 {
                if let Some(&id) = seen.get(&key) {
                    tree.link(dir_id, name_b, id).map_err(tree_err)?;
                    stats.entries += 1;
                    continue;
                }
            }
            let meta = meta_of(&path, &md, opts)?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                Kind::empty_dir()
            } else if ft.is_file() {
                let c: Content = tree
                    .store_mut()
                    .host_file(&path, md.len())
                    .map_err(io_err(&path))?;
                stats.file_bytes += md.len();
                Kind::File(c)
            } else if ft.is_symlink() {
                let t = fs::read_link(&path).map_err(io_err(&path))?;
                Kind::Symlink(t.as_os_str().as_bytes().to_vec())
            } else if ft.is_char_device() || ft.is_block_device() {
                let (major, minor) = split_dev(md.rdev());
                if ft.is_char_device() {
                    Kind::CharDevice { major, minor }
                } else {
                    Kind::BlockDevice { major, minor }
                }
            } else if ft.is_fifo() {
                Kind::Fifo
            } else {
                Kind::Socket
            };
            let is_dir = ft.is_dir();
            let id = tree
                .add(dir_id, name_b, Inode::new(kind, meta))
                .map_err(tree_err)?;
            if !is_dir && md.nlink() > 1 {
                seen.insert(key, id);
            }
            if is_dir {
                stack.push((path, id));
            }
            stats.entries += 1;
        }
    }
    Ok(stats)
}
