//! Account settings applied to the tree through the `/etc` editors: root's password
//! from a SHA-512 crypt hash (password login, e.g. the alpine-ssh recipe).

use crate::etc::shadow::{self, Shadow};
use crate::tree::{Meta, Time, Tree};

/// Why an account edit failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The hash is not SHA-512 crypt.
    #[error(transparent)]
    Hash(#[from] shadow::BadHash),
    /// The tree has no usable /etc/shadow.
    #[error("/etc/shadow: {0}")]
    Tree(String),
}

/// Sets root's password hash in `/etc/shadow` (creating the entry or file if needed,
/// keeping every other line and the file's owner and mode).
pub fn set_root_password_hash(
    tree: &mut Tree,
    hash: &str,
    epoch: Time,
) -> Result<(), AccountError> {
    shadow::check_sha512_crypt(hash)?;
    let path = b"/etc/shadow";
    let (text, meta) = match tree.lookup(path) {
        Some(id) => {
            let data = tree
                .read_file(path)
                .map_err(|e| AccountError::Tree(e.to_string()))?;
            let mut m = tree.inode(id).meta.clone();
            m.mtime = epoch;
            m.ctime = epoch;
            (String::from_utf8_lossy(&data).into_owned(), m)
        }
        None => (String::new(), Meta::new(0o640, epoch)),
    };
    let mut s = Shadow::parse(&text);
    s.set_hash("root", hash);
    tree.write_file(path, s.render().as_bytes(), meta)
        .map_err(|e| AccountError::Tree(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_hash_lands_in_shadow() {
        let mut t = Tree::new();
        t.write_file(
            b"/etc/shadow",
            b"root:*::0:::::\nbin:!::0:::::\n",
            Meta::new(0o640, Time::secs(1)).owned(0, 42),
        )
        .unwrap();
        let h = "$6$saltsalt$GgLoCr48LXJ0o20h8MffRKBXJXhD2Hks2CuBS9.rKFSypqBFmmArjC2z4qn1owpS2zaHL3hFcOeASgtMV85kN1";
        set_root_password_hash(&mut t, h, Time::secs(5)).unwrap();
        let text = String::from_utf8(t.read_file(b"/etc/shadow").unwrap()).unwrap();
        assert_eq!(text, format!("root:{h}::0:::::\nbin:!::0:::::\n"));
        let id = t.lookup(b"/etc/shadow").unwrap();
        assert_eq!((t.inode(id).meta.gid, t.inode(id).meta.mode), (42, 0o640));
        assert!(set_root_password_hash(&mut t, "plain", Time::secs(5)).is_err());
    }
}
