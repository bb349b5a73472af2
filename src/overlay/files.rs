//! The recipe's files (vmdb2's `create-file`, `create-dir`, `copy-file`): contents already
//! read by the caller, written with the given mode and owner.

use crate::tree::{Time, Tree};

use super::{put_dir, put_file, OverlayError};

/// What to make at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A directory.
    Dir,
    /// A regular file with these bytes.
    File(Vec<u8>),
}

/// One file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOp {
    /// Absolute path in the image.
    pub path: String,
    /// What to make.
    pub what: What,
    /// Permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Applies `ops` in order.
pub fn apply(tree: &mut Tree, ops: &[FileOp], time: Time) -> Result<(), OverlayError> {
    for op in ops {
        match &op.what {
            What::Dir => put_dir(tree, &op.path, op.mode, (op.uid, op.gid), time)?,
            What::File(b) => put_file(tree, &op.path, b, op.mode, (op.uid, op.gid), time)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_dirs() {
        let mut t = Tree::new();
        let ops = [
            FileOp {
                path: "/srv/data".into(),
                what: What::Dir,
                mode: 0o750,
                uid: 5,
                gid: 6,
            },
            FileOp {
                path: "/srv/data/x".into(),
                what: What::File(b"hi".to_vec()),
                mode: 0o600,
                uid: 5,
                gid: 6,
            },
        ];
        apply(&mut t, &ops, Time::secs(1)).unwrap();
        let d = t.inode(t.lookup(b"/srv/data").unwrap()).meta.clone();
        assert_eq!((d.mode, d.uid, d.gid), (0o750, 5, 6));
        assert_eq!(t.read_file(b"/srv/data/x").unwrap(), b"hi");
        let f = t.inode(t.lookup(b"/srv/data/x").unwrap()).meta.clone();
        assert_eq!((f.mode, f.uid), (0o600, 5));
    }
}
