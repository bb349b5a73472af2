//! The SmolVM guest agent (a static vsock server started by `/init`), copied to
//! `/usr/local/bin/smolvm-guest-agent`, 0755 root.

use crate::tree::{Time, Tree};

use super::{put_file, OverlayError};

/// Where the agent goes.
pub const PATH: &str = "/usr/local/bin/smolvm-guest-agent";

/// Installs the agent `binary`.
pub fn apply(tree: &mut Tree, binary: &[u8], time: Time) -> Result<(), OverlayError> {
    if binary.is_empty() {
        return Err(OverlayError::new(PATH, "the guest agent file is empty"));
    }
    put_file(tree, PATH, binary, 0o755, (0, 0), time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lands_executable() {
        let mut t = Tree::new();
        apply(&mut t, b"\x7fELFagent", Time::secs(1)).unwrap();
        let id = t.lookup(PATH.as_bytes()).unwrap();
        assert_eq!(t.inode(id).meta.mode, 0o755);
        assert!(apply(&mut t, b"", Time::secs(1)).is_err());
    }
}
