//! Names and resolution: `/etc/hostname`, `/etc/hosts` (localhost plus the host name), and
//! a regular-file `/etc/resolv.conf` placeholder that `/init` overwrites at boot (a symlink
//! into `/run`, as Ubuntu ships, would point into an empty tmpfs in the VM).

use crate::tree::{Kind, Time, Tree};

use super::{put_file, OverlayError};

/// Writes `/etc/hostname` and `/etc/hosts` for `hostname`.
pub fn hostname(tree: &mut Tree, hostname: &str, time: Time) -> Result<(), OverlayError> {
    put_file(
        tree,
        "/etc/hostname",
        format!("{hostname}\n").as_bytes(),
        0o644,
        (0, 0),
        time,
    )?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    );
    put_file(tree, "/etc/hosts", hosts.as_bytes(), 0o644, (0, 0), time)
}

/// Makes `/etc/resolv.conf` a regular file (a placeholder) unless it already is one.
pub fn resolv_conf(tree: &mut Tree, time: Time) -> Result<(), OverlayError> {
    if let Some(id) = tree.lookup_nofollow(b"/etc/resolv.conf") {
        if matches!(tree.inode(id).kind, Kind::File(_)) {
            return Ok(());
        }
    }
    put_file(
        tree,
        "/etc/resolv.conf",
        b"# Written at boot by /init (the VM's gateway first).\n",
        0o644,
        (0, 0),
        time,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Follow, Inode, Meta};

    #[test]
    fn hostname_and_hosts() {
        let mut t = Tree::new();
        hostname(&mut t, "smolvm", Time::secs(1)).unwrap();
        assert_eq!(t.read_file(b"/etc/hostname").unwrap(), b"smolvm\n");
        let h = String::from_utf8(t.read_file(b"/etc/hosts").unwrap()).unwrap();
        assert!(h.contains("127.0.1.1\tsmolvm\n") && h.starts_with("127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn resolv_symlink_becomes_a_file() {
        let mut t = Tree::new();
        let m = Meta::new(0o777, Time::secs(1));
        t.insert(
            b"/etc/resolv.conf",
            Inode::new(
                Kind::Symlink(b"../run/systemd/resolve/stub-resolv.conf".to_vec()),
                m.clone(),
            ),
            &m,
            Follow::Scoped,
        )
        .unwrap();
        resolv_conf(&mut t, Time::secs(2)).unwrap();
        let id = t.lookup_nofollow(b"/etc/resolv.conf").unwrap();
        assert!(matches!(t.inode(id).kind, Kind::File(_)));
        // A regular file is kept as it is.
        t.write_file(
            b"/etc/resolv.conf",
            b"nameserver 1.1.1.1\n",
            Meta::new(0o644, Time::secs(1)),
        )
        .unwrap();
        resolv_conf(&mut t, Time::secs(2)).unwrap();
        assert_eq!(
            t.read_file(b"/etc/resolv.conf").unwrap(),
            b"nameserver 1.1.1.1\n"
        );
    }
}
