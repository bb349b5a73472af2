//! `/etc/fstab` from the recipe's lines (left as the base has it when the recipe gives none).

use crate::tree::{Time, Tree};

use super::{put_file, OverlayError};

/// Writes `lines` as `/etc/fstab`.
pub fn apply(tree: &mut Tree, lines: &[String], time: Time) -> Result<(), OverlayError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = String::from("# <file system> <mount point> <type> <options> <dump> <pass>\n");
    for l in lines {
        text.push_str(l.trim_end());
        text.push('\n');
    }
    put_file(tree, "/etc/fstab", text.as_bytes(), 0o644, (0, 0), time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines() {
        let mut t = Tree::new();
        apply(&mut t, &["/dev/vda / ext4 rw 0 1".into()], Time::secs(1)).unwrap();
        let s = String::from_utf8(t.read_file(b"/etc/fstab").unwrap()).unwrap();
        assert!(s.ends_with("\n/dev/vda / ext4 rw 0 1\n"));
        let mut e = Tree::new();
        apply(&mut e, &[], Time::secs(1)).unwrap();
        assert!(e.lookup(b"/etc/fstab").is_none());
    }
}
