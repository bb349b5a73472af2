//! `/init`: the static PID 1 (rootsmith-init), 0755 and root-owned, replacing whatever the
//! base had there.

use crate::tree::{Time, Tree};

use super::{put_file, OverlayError};

/// Installs `binary` as `/init`.
pub fn apply(tree: &mut Tree, binary: &[u8], time: Time) -> Result<(), OverlayError> {
    if !binary.starts_with(b"\x7fELF") {
        return Err(OverlayError::new(
            "/init",
            "the init binary is not an ELF executable; build it with `cargo build-init` or pass --init FILE",
        ));
    }
    put_file(tree, "/init", binary, 0o755, (0, 0), time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Kind;

    #[test]
    fn init_is_0755_root_and_replaces_a_symlink() {
        let mut t = Tree::new();
        t.insert(
            b"/init",
            crate::tree::Inode::new(
                Kind::Symlink(b"/sbin/init".to_vec()),
                crate::tree::Meta::new(0o777, Time::secs(1)),
            ),
            &crate::tree::Meta::new(0o755, Time::secs(1)),
            crate::tree::Follow::Scoped,
        )
        .unwrap();
        apply(&mut t, b"\x7fELF...", Time::secs(2)).unwrap();
        let id = t.lookup_nofollow(b"/init").unwrap();
        let i = t.inode(id);
        assert!(matches!(i.kind, Kind::File(_)));
        assert_eq!((i.meta.mode, i.meta.uid, i.meta.gid), (0o755, 0, 0));
        assert!(apply(&mut t, b"#!/bin/sh\n", Time::secs(2)).is_err());
    }
}
