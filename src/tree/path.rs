//! Path handling inside the staging tree: splitting into components and the errors a walk
//! can meet. Paths are byte strings; they never touch the host filesystem.

use std::fmt;

/// The most symlinks one lookup may follow (the kernel's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: u32 = 40;

/// A path as raw bytes, displayed lossily.
#[derive(Clone, PartialEq, Eq)]
pub struct PathBytes(pub Vec<u8>);

impl fmt::Display for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&[u8]> for PathBytes {
    fn from(p: &[u8]) -> Self {
        PathBytes(p.to_vec())
    }
}

impl From<&str> for PathBytes {
    fn from(p: &str) -> Self {
        PathBytes(p.as_bytes().to_vec())
    }
}

/// One step of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component<'a> {
    /// `..`
    Parent,
    /// A name (never empty, never `.` or `..`, never containing `/`).
    Name(&'a [u8]),
}

/// Splits a path into components, dropping empty ones and `.`. Whether it was absolute
/// does not matter inside the tree: every path starts at the tree's root.
pub fn components(path: &[u8]) -> impl Iterator<Item = Component<'_>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| {
            if c == b".." {
                Component::Parent
            } else {
                Component::Name(c)
            }
        })
}

/// Lexically normalises `path` into names under the root. `None` when a `..` would climb
/// above the root (a traversal attempt in an archive entry).
pub fn normalize(path: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in components(path) {
        match c {
            Component::Parent => {
                out.pop()?;
            }
            Component::Name(n) => out.push(n),
        }
    }
    Some(out)
}

/// Joins names into an absolute path (`/` for none).
pub fn join(names: &[&[u8]]) -> Vec<u8> {
    if names.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for n in names {
        out.push(b'/');
        out.extend_from_slice(n);
    }
    out
}

/// How symlinks met on the way are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Like a `chroot`: absolute targets start at the tree's root and `..` stops at it.
    /// Nothing can leave the tree; used by later stages reading their own image.
    Scoped,
    /// For untrusted input (archive entries): relative symlinks that stay inside the tree are
    /// followed (merged `/usr`), but an absolute symlink or a `..` above the root is an error.
    Strict,
}

/// Why a lookup in the tree failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No entry with that name.
    #[error("{0}: no such file or directory in the tree")]
    NotFound(PathBytes),
    /// A non-directory where a directory was needed.
    #[error("{0}: not a directory in the tree")]
    NotADir(PathBytes),
    /// More than [`MAX_SYMLINKS`] symlinks.
    #[error("{0}: too many levels of symbolic links (more than {MAX_SYMLINKS})")]
    Loop(PathBytes),
    /// A `..` or a symlink that would leave the root, under [`Follow::Strict`].
    #[error("{0}: leads outside the root")]
    Escape(PathBytes),
    /// An absolute symlink in the middle of a path, under [`Follow::Strict`].
    #[error("{0}: goes through an absolute symlink")]
    ThroughAbsoluteSymlink(PathBytes),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots_and_rejects_climbing_out() {
        assert_eq!(
            normalize(b"./a//b/../c/").unwrap(),
            vec![&b"a"[..], &b"c"[..]]
        );
        assert!(normalize(b"a/../../etc").is_none());
        assert!(normalize(b"/..").is_none());
        assert_eq!(normalize(b"/").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(join(&[b"a", b"b"]), b"/a/b".to_vec());
    }
}
