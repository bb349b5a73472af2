//! Root's `authorized_keys` when keys are baked in: `/root/.ssh` 0700 and
//! `/root/.ssh/authorized_keys` 0600, both root-owned. (SmolVM passes the key at boot
//! instead; then nothing is written here.)

use crate::tree::{Time, Tree};

use super::{put_dir, put_file, OverlayError};

/// Writes `keys` (one per line) for root; does nothing for an empty list.
pub fn apply(tree: &mut Tree, keys: &[String], time: Time) -> Result<(), OverlayError> {
    if keys.is_empty() {
        return Ok(());
    }
    put_dir(tree, "/root", 0o700, (0, 0), time)?;
    put_dir(tree, "/root/.ssh", 0o700, (0, 0), time)?;
    let mut text = String::new();
    for k in keys {
        text.push_str(k.trim());
        text.push('\n');
    }
    put_file(
        tree,
        "/root/.ssh/authorized_keys",
        text.as_bytes(),
        0o600,
        (0, 0),
        time,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_contents() {
        let mut t = Tree::new();
        apply(
            &mut t,
            &["ssh-ed25519 AAAA a".into(), "ssh-rsa BBBB b\n".into()],
            Time::secs(3),
        )
        .unwrap();
        let d = t.lookup(b"/root/.ssh").unwrap();
        assert_eq!(t.inode(d).meta.mode, 0o700);
        let f = t.lookup(b"/root/.ssh/authorized_keys").unwrap();
        assert_eq!(t.inode(f).meta.mode, 0o600);
        assert_eq!(
            t.read_file(b"/root/.ssh/authorized_keys").unwrap(),
            b"ssh-ed25519 AAAA a\nssh-rsa BBBB b\n"
        );
        let mut e = Tree::new();
        apply(&mut e, &[], Time::secs(3)).unwrap();
        assert!(e.lookup(b"/root").is_none());
    }
}
