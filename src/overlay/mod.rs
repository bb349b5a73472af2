//! The overlay: what turns a distribution tree into a microVM image, as pure functions on
//! the staging tree, one module per concern: [`sshd`] settings, [`host_keys`] removal,
//! [`ssh_keys`] for root, [`init`] (`/init`), [`network`] (`/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf`), [`fstab`], [`mount_points`], [`agent`] (the SmolVM guest agent),
//! [`files`] and [`accounts`] from the recipe. Nothing here touches the host.

pub mod accounts;
pub mod agent;
pub mod files;
pub mod fstab;
pub mod host_keys;
pub mod init;
pub mod mount_points;
pub mod network;
pub mod ssh_keys;
pub mod sshd;

use crate::tree::{Follow, Inode, Kind, Meta, Time, Tree};

/// Why an overlay step failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct OverlayError {
    /// The path in the image.
    pub path: String,
    /// What went wrong, and what to do.
    pub why: String,
}

impl OverlayError {
    pub(crate) fn new(path: &str, why: impl std::fmt::Display) -> OverlayError {
        OverlayError {
            path: path.to_string(),
            why: why.to_string(),
        }
    }
}

/// Writes a regular file at `path` (replacing whatever entry is there, a symlink included;
/// missing parents are made 0755 root), owned `uid:gid`, with `mode`, stamped `time`.
pub fn put_file(
    tree: &mut Tree,
    path: &str,
    data: &[u8],
    mode: u16,
    owner: (u32, u32),
    time: Time,
) -> Result<(), OverlayError> {
    tree.write_file(
        path.as_bytes(),
        data,
        Meta::new(mode, time).owned(owner.0, owner.1),
    )
    .map(|_| ())
    .map_err(|e| OverlayError::new(path, e))
}

/// Makes `path` a directory with `mode` and `owner` (keeping its entries if it exists; a
/// non-directory there is replaced).
pub fn put_dir(
    tree: &mut Tree,
    path: &str,
    mode: u16,
    owner: (u32, u32),
    time: Time,
) -> Result<(), OverlayError> {
    let meta = Meta::new(mode, time).owned(owner.0, owner.1);
    if let Some(id) = tree.lookup(path.as_bytes()) {
        if tree.inode(id).is_dir() {
            let m = &mut tree.inode_mut(id).meta;
            m.mode = meta.mode;
            m.uid = meta.uid;
            m.gid = meta.gid;
            return Ok(());
        }
    }
    tree.insert(
        path.as_bytes(),
        Inode::new(Kind::empty_dir(), meta),
        &Meta::new(0o755, time),
        Follow::Scoped,
    )
    .map(|_| ())
    .map_err(|e| OverlayError::new(path, e))
}

/// Reads a text file of the tree, if it is there.
pub fn read_text(tree: &Tree, path: &str) -> Option<String> {
    tree.read_file(path.as_bytes())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The metadata of the file at `path`, or `default`, re-stamped with `time`.
pub fn meta_or(tree: &Tree, path: &str, default: Meta, time: Time) -> Meta {
    let mut m = tree
        .lookup(path.as_bytes())
        .map(|id| tree.inode(id).meta.clone())
        .unwrap_or(default);
    m.mtime = time;
    m.ctime = time;
    m.atime = time;
    m
}
