//! The staging tree: one in-memory filesystem that every stage writes into and the ext4
//! writer serialises. It holds everything ext4 can store (all file types, hard links,
//! ownership, nanosecond times, xattrs) without root, keeps file contents out of RAM (see
//! [`content`]), orders entries by name so every walk is deterministic, and resolves
//! paths and symlinks inside itself, so nothing can ever reach the host filesystem.

pub mod content;
pub mod node;
pub mod path;

pub use content::{Content, Store};
pub use node::{Dir, Inode, InodeId, Kind, Meta, Time, Xattrs};
pub use path::{Follow, PathBytes, PathError};

use path::{Component, MAX_SYMLINKS};

/// Why a tree edit failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The path could not be resolved.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A name that no directory entry can carry.
    #[error("{0:?}: invalid file name (empty, `.`, `..`, or contains `/` or NUL)")]
    BadName(PathBytes),
    /// A hard link to a directory.
    #[error("{0}: cannot hard-link a directory")]
    LinkToDir(PathBytes),
    /// The root cannot be replaced or removed.
    #[error("the root directory cannot be replaced by a {0}")]
    RootReplaced(&'static str),
    /// Reading or storing content failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBytes,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One entry met by [`Tree::walk`].
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Absolute path (`/` for the root).
    pub path: Vec<u8>,
    /// The directory holding it (the root's own parent is the root).
    pub parent: InodeId,
    /// The inode.
    pub id: InodeId,
}

/// The staging tree.
#[derive(Debug)]
pub struct Tree {
    inodes: Vec<Inode>,
    store: Store,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

const ROOT: InodeId = InodeId(0);

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// An empty tree: a root directory, mode 0755, owned by root, time 0.
    pub fn new() -> Tree {
        let mut root = Inode::new(Kind::empty_dir(), Meta::new(0o755, Time::default()));
        root.links = 1;
        Tree {
            inodes: vec![root],
            store: Store::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> InodeId {
        ROOT
    }

    /// An inode by id.
    pub fn inode(&self, id: InodeId) -> &Inode {
        &self.inodes[id.index()]
    }

    /// An inode by id, to change its metadata or content.
    pub fn inode_mut(&mut self, id: InodeId) -> &mut Inode {
        &mut self.inodes[id.index()]
    }

    /// The content store (for reading file bytes).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The content store (for adding file bytes).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Resolves `path` from the root. Symlinks in the middle are always followed (per
    /// `follow`); the last component is followed only when `follow_last` is set.
    pub fn resolve(
        &self,
        path: &[u8],
        follow: Follow,
        follow_last: bool,
    ) -> Result<InodeId, PathError> {
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut stack: Vec<InodeId> = vec![ROOT];
        let mut hops = 0u32;
        // Components are consumed from the end of `pending` (reversed order).
        let mut comps: Vec<Vec<u8>> = components_owned(path);
        comps.reverse();
        pending.append(&mut comps);
        let err_path = || PathBytes(path.to_vec());
        while let Some(comp) = pending.pop() {
            if comp == b".." {
                if stack.len() == 1 {
                    if follow == Follow::Strict {
                        return Err(PathError::Escape(err_path()));
                    }
                } else {
                    stack.pop();
                }
                continue;
            }
            let cur = *stack.last().expect("stack never empty");
            let Kind::Dir(dir) = &self.inode(cur).kind else {
                return Err(PathError::NotADir(err_path()));
            };
            let Some(child) = dir.get(&comp) else {
                return Err(PathError::NotFound(err_path()));
            };
            let is_last = pending.is_empty();
            match &self.inode(child).kind {
                Kind::Symlink(target) if !is_last || follow_last => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(PathError::Loop(err_path()));
                    }
                    if target.first() == Some(&b'/') {
                        if follow == Follow::Strict {
                            return Err(PathError::ThroughAbsoluteSymlink(err_path()));
                        }
                        stack.truncate(1);
                    }
                    let mut t = components_owned(target);
                    t.reverse();
                    pending.append(&mut t);
                }
                _ => stack.push(child),
            }
        }
        Ok(*stack.last().expect("stack never empty"))
    }

    /// Looks a path up like a process chrooted into the tree would (`stat`, following
    /// symlinks). `None` when it does not resolve.
    pub fn lookup(&self, path: &[u8]) -> Option<InodeId> {
        self.resolve(path, Follow::Scoped, true).ok()
    }

    /// Like [`Tree::lookup`] without following a final symlink (`lstat`).
    pub fn lookup_nofollow(&self, path: &[u8]) -> Option<InodeId> {
        self.resolve(path, Follow::Scoped, false).ok()
    }

    /// Splits `path` into its parent directory (resolved, symlinks followed per `follow`)
    /// and its last name. `None` as the name means the path names the root itself.
    pub fn resolve_parent(
        &self,
        path: &[u8],
        follow: Follow,
    ) -> Result<(InodeId, Option<Vec<u8>>), PathError> {
        let comps = components_owned(path);
        let Some((last, parents)) = comps.split_last() else {
            return Ok((ROOT, None));
        };
        if last == b".." {
            // `a/..` names a directory itself; resolve it whole.
            return Ok((self.resolve(path, follow, true)?, None));
        }
        let parent = self.resolve(&parents.join(&b'/'), follow, true)?;
        if !self.inode(parent).is_dir() {
            return Err(PathError::NotADir(PathBytes(path.to_vec())));
        }
        Ok((parent, Some(last.clone())))
    }

    /// Adds `inode` as `name` in directory `parent`, replacing what was there: a directory
    /// over a directory keeps the old children and takes the new metadata (as tar does);
    /// anything else replaces the old entry (and its whole subtree). Returns the inode now
    /// at that name.
    pub fn add(
        &mut self,
        parent: InodeId,
        name: &[u8],
        inode: Inode,
    ) -> Result<InodeId, TreeError> {
        if !valid_name(name) {
            return Err(TreeError::BadName(PathBytes(name.to_vec())));
        }
        if let Some(old) = self.child(parent, name)? {
            if self.inode(old).is_dir() && matches!(inode.kind, Kind::Dir(_)) {
                self.inode_mut(old).meta = inode.meta;
                return Ok(old);
            }
            self.remove(parent, name);
        }
        let id = InodeId(u32::try_from(self.inodes.len()).expect("fewer than 2^32 inodes"));
        self.inodes.push(inode);
        self.attach(parent, name, id);
        Ok(id)
    }

    /// Adds another name for a non-directory inode (a hard link), replacing what was there.
    pub fn link(&mut self, parent: InodeId, name: &[u8], target: InodeId) -> Result<(), TreeError> {
        if !valid_name(name) {
            return Err(TreeError::BadName(PathBytes(name.to_vec())));
        }
        if self.inode(target).is_dir() {
            return Err(TreeError::LinkToDir(PathBytes(name.to_vec())));
        }
        if let Some(old) = self.child(parent, name)? {
            if old == target {
                return Ok(());
            }
            self.remove(parent, name);
        }
        self.attach(parent, name, target);
        Ok(())
    }

    /// Removes `name` from `parent` (a whole subtree for a directory). Returns what was
    /// removed, or `None` when there was nothing.
    pub fn remove(&mut self, parent: InodeId, name: &[u8]) -> Option<InodeId> {
        let Kind::Dir(dir) = &mut self.inodes[parent.index()].kind else {
            return None;
        };
        let old = dir.entries.remove(name)?;
        // Drop one link of everything under `old`, so hard links elsewhere keep true counts.
        let mut work = vec![old];
        while let Some(id) = work.pop() {
            let inode = &mut self.inodes[id.index()];
            inode.links = inode.links.saturating_sub(1);
            if let Kind::Dir(d) = &inode.kind {
                work.extend(d.entries.values().copied());
            }
        }
        Some(old)
    }

    /// The entry `name` of directory `dir`, without following symlinks.
    pub fn child(&self, dir: InodeId, name: &[u8]) -> Result<Option<InodeId>, PathError> {
        match &self.inode(dir).kind {
            Kind::Dir(d) => Ok(d.get(name)),
            _ => Err(PathError::NotADir(PathBytes(name.to_vec()))),
        }
    }

    fn attach(&mut self, parent: InodeId, name: &[u8], id: InodeId) {
        self.inodes[id.index()].links += 1;
        let Kind::Dir(dir) = &mut self.inodes[parent.index()].kind else {
            unreachable!("callers checked that the parent is a directory");
        };
        dir.entries.insert(name.into(), id);
    }

    /// Creates every missing directory of `path` with `meta` (existing ones, and symlinks to
    /// directories per `follow`, are kept as they are). Returns the directory.
    pub fn mkdir_all(
        &mut self,
        path: &[u8],
        meta: &Meta,
        follow: Follow,
    ) -> Result<InodeId, TreeError> {
        let mut cur = ROOT;
        let mut walked: Vec<u8> = Vec::new();
        for c in path::components(path) {
            match c {
                Component::Parent => {
                    walked.extend_from_slice(b"/..");
                    cur = self.resolve(&walked, follow, true)?;
                }
                Component::Name(n) => {
                    walked.push(b'/');
                    walked.extend_from_slice(n);
                    cur = match self.child(cur, n)? {
                        Some(_) => self.resolve(&walked, follow, true)?,
                        None => self.add(cur, n, Inode::new(Kind::empty_dir(), meta.clone()))?,
                    };
                    if !self.inode(cur).is_dir() {
                        return Err(PathError::NotADir(PathBytes(walked)).into());
                    }
                }
            }
        }
        Ok(cur)
    }

    /// Adds `inode` at `path`, creating missing parent directories with `parent_meta`.
    pub fn insert(
        &mut self,
        path: &[u8],
        inode: Inode,
        parent_meta: &Meta,
        follow: Follow,
    ) -> Result<InodeId, TreeError> {
        let comps = components_owned(path);
        let Some((name, parents)) = comps.split_last() else {
            if inode.is_dir() {
                self.inode_mut(ROOT).meta = inode.meta;
                return Ok(ROOT);
            }
            return Err(TreeError::RootReplaced(inode.kind.name()));
        };
        let parent = self.mkdir_all(&parents.join(&b'/'), parent_meta, follow)?;
        self.add(parent, name, inode)
    }

    /// Writes a regular file with in-memory bytes at `path` (parents 0755 root).
    pub fn write_file(
        &mut self,
        path: &[u8],
        data: &[u8],
        meta: Meta,
    ) -> Result<InodeId, TreeError> {
        let parent_meta = Meta::new(0o755, meta.mtime);
        let content = Content::bytes(data.to_vec());
        self.insert(
            path,
            Inode::new(Kind::File(content), meta),
            &parent_meta,
            Follow::Scoped,
        )
    }

    /// Reads a regular file at `path` (following symlinks) into memory.
    pub fn read_file(&self, path: &[u8]) -> Result<Vec<u8>, TreeError> {
        let id = self.resolve(path, Follow::Scoped, true)?;
        match &self.inode(id).kind {
            Kind::File(c) => self.store.read_all(c).map_err(|source| TreeError::Io {
                path: PathBytes(path.to_vec()),
                source,
            }),
            _ => Err(PathError::NotFound(PathBytes(path.to_vec())).into()),
        }
    }

    /// Every reachable entry, depth first, parents before children, names in byte order.
    /// The root comes first with path `/`.
    pub fn walk(&self) -> Vec<WalkEntry> {
        let mut out = Vec::new();
        let mut stack = vec![WalkEntry {
            path: b"/".to_vec(),
            parent: ROOT,
            id: ROOT,
        }];
        while let Some(e) = stack.pop() {
            if let Kind::Dir(d) = &self.inode(e.id).kind {
                let base = if e.path == b"/" {
                    &b""[..]
                } else {
                    &e.path[..]
                };
                for (name, child) in d.entries.iter().rev() {
                    let mut p = base.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(name);
                    stack.push(WalkEntry {
                        path: p,
                        parent: e.id,
                        id: *child,
                    });
                }
            }
            out.push(e);
        }
        out
    }

    /// Number of distinct reachable inodes (hard links counted once), root included.
    pub fn inode_count(&self) -> usize {
        let mut seen = vec![false; self.inodes.len()];
        let mut n = 0;
        for e in self.walk() {
            if !std::mem::replace(&mut seen[e.id.index()], true) {
                n += 1;
            }
        }
        n
    }
}

fn components_owned(path: &[u8]) -> Vec<Vec<u8>> {
    path::components(path)
        .map(|c| match c {
            Component::Parent => b"..".to_vec(),
            Component::Name(n) => n.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tree: &mut Tree, path: &str, data: &str) -> InodeId {
        tree.write_file(
            path.as_bytes(),
            data.as_bytes(),
            Meta::new(0o644, Time::secs(1)),
        )
        .unwrap()
    }

    fn symlink(tree: &mut Tree, path: &str, target: &str) {
        let m = Meta::new(0o777, Time::secs(1));
        tree.insert(
            path.as_bytes(),
            Inode::new(Kind::Symlink(target.as_bytes().to_vec()), m.clone()),
            &m,
            Follow::Scoped,
        )
        .unwrap();
    }

    #[test]
    fn symlinks_resolve_inside_the_tree_and_never_above_it() {
        let mut t = Tree::new();
        let f = file(&mut t, "/usr/bin/env", "x");
        symlink(&mut t, "/bin", "usr/bin");
        symlink(&mut t, "/up", "../../../../usr");
        symlink(&mut t, "/abs", "/usr/bin/env");
        assert_eq!(t.lookup(b"/bin/env"), Some(f));
        assert_eq!(t.lookup(b"/up/bin/env"), Some(f));
        assert_eq!(t.lookup(b"/abs"), Some(f));
        assert_eq!(
            t.resolve(b"/up/bin/env", Follow::Strict, true),
            Err(PathError::Escape(b"/up/bin/env"[..].into()))
        );
        assert!(matches!(
            t.resolve(b"/abs", Follow::Strict, true),
            Err(PathError::ThroughAbsoluteSymlink(_))
        ));
        assert_eq!(t.resolve(b"/bin/env", Follow::Strict, true), Ok(f));
    }

    #[test]
    fn symlink_loops_stop_after_forty_hops() {
        let mut t = Tree::new();
        symlink(&mut t, "/a", "b");
        symlink(&mut t, "/b", "a");
        assert!(matches!(
            t.resolve(b"/a", Follow::Scoped, true),
            Err(PathError::Loop(_))
        ));
        // A chain of exactly 40 resolves; 41 does not.
        for i in 0..41 {
            symlink(&mut t, &format!("/l{i}"), &format!("l{}", i + 1));
        }
        file(&mut t, "/l41", "end");
        assert!(t.lookup(b"/l1").is_some());
        assert!(t.lookup(b"/l0").is_none());
    }

    #[test]
    fn hard_links_share_an_inode_and_count_links() {
        let mut t = Tree::new();
        let f = file(&mut t, "/a/f", "x");
        let d = t
            .mkdir_all(b"/b", &Meta::new(0o755, Time::default()), Follow::Scoped)
            .unwrap();
        t.link(d, b"g", f).unwrap();
        assert_eq!(t.inode(f).links(), 2);
        let a = t.lookup(b"/a").unwrap();
        let _ = a;
        t.remove(t.root(), b"a");
        assert_eq!(t.inode(f).links(), 1);
        assert_eq!(t.lookup(b"/b/g"), Some(f));
        assert_eq!(t.inode_count(), 3);
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_and_dirs_merge() {
        let mut t = Tree::new();
        file(&mut t, "/d/x", "1");
        let m = Meta::new(0o700, Time::secs(5));
        let d = t
            .insert(
                b"/d",
                Inode::new(Kind::empty_dir(), m.clone()),
                &m,
                Follow::Scoped,
            )
            .unwrap();
        assert_eq!(t.inode(d).meta.mode, 0o700);
        assert!(t.lookup(b"/d/x").is_some());
        file(&mut t, "/d", "now a file");
        assert!(t.lookup(b"/d/x").is_none());
        assert_eq!(t.read_file(b"/d").unwrap(), b"now a file");
    }

    #[test]
    fn walk_is_sorted_and_parents_come_first() {
        let mut t = Tree::new();
        file(&mut t, "/b/z", "");
        file(&mut t, "/a", "");
        file(&mut t, "/b/a", "");
        let paths: Vec<_> = t
            .walk()
            .into_iter()
            .map(|e| String::from_utf8(e.path).unwrap())
            .collect();
        assert_eq!(paths, ["/", "/a", "/b", "/b/a", "/b/z"]);
    }
}
