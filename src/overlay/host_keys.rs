//! No SSH host keys in the image: every VM makes its own at first boot (SmolVM #229, where
//! one baked key gave every VM the same identity). Removes `/etc/ssh/ssh_host_*`.

use crate::tree::Tree;

/// Removes every `/etc/ssh/ssh_host_*` entry; returns the names removed.
pub fn remove(tree: &mut Tree) -> Vec<String> {
    let Some(dir) = tree.lookup(b"/etc/ssh") else {
        return Vec::new();
    };
    let names: Vec<Vec<u8>> = match tree.inode(dir).as_dir() {
        Some(d) => d
            .entries()
            .filter(|(n, _)| n.starts_with(b"ssh_host_"))
            .map(|(n, _)| n.to_vec())
            .collect(),
        None => return Vec::new(),
    };
    for n in &names {
        tree.remove(dir, n);
    }
    names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Meta, Time};

    #[test]
    fn host_keys_go_config_stays() {
        let mut t = Tree::new();
        let m = Meta::new(0o600, Time::secs(1));
        for f in [
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
            "ssh_host_rsa_key",
            "sshd_config",
            "moduli",
        ] {
            t.write_file(format!("/etc/ssh/{f}").as_bytes(), b"x", m.clone())
                .unwrap();
        }
        assert_eq!(remove(&mut t).len(), 3);
        assert!(t.lookup(b"/etc/ssh/ssh_host_rsa_key").is_none());
        assert!(t.lookup(b"/etc/ssh/sshd_config").is_some());
        assert!(t.lookup(b"/etc/ssh/moduli").is_some());
        assert!(remove(&mut Tree::new()).is_empty());
    }
}
