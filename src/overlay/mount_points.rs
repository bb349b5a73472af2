//! The directories `/init` mounts over or writes into: `/proc` and `/sys` (0555), `/dev`
//! and `/run` (0755), `/tmp` (1777). Existing directories keep their metadata.

use crate::tree::{Time, Tree};

use super::{put_dir, OverlayError};

/// Each mount point and the mode it gets when missing.
pub const MOUNT_POINTS: &[(&str, u16)] = &[
    ("/dev", 0o755),
    ("/proc", 0o555),
    ("/run", 0o755),
    ("/sys", 0o555),
    ("/tmp", 0o1777),
];

/// Creates the missing mount points.
pub fn apply(tree: &mut Tree, time: Time) -> Result<(), OverlayError> {
    for (p, mode) in MOUNT_POINTS {
        match tree.lookup(p.as_bytes()) {
            Some(id) if tree.inode(id).is_dir() => {}
            _ => put_dir(tree, p, *mode, (0, 0), time)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    #[test]
    fn missing_ones_are_made() {
        let mut t = Tree::new();
        t.mkdir_all(
            b"/tmp",
            &Meta::new(0o700, Time::secs(1)),
            crate::tree::Follow::Scoped,
        )
        .unwrap();
        apply(&mut t, Time::secs(2)).unwrap();
        let mode = |p: &str| t.inode(t.lookup(p.as_bytes()).unwrap()).meta.mode;
        assert_eq!(mode("/proc"), 0o555);
        assert_eq!(mode("/run"), 0o755);
        assert_eq!(mode("/tmp"), 0o700, "an existing directory is kept");
    }
}
