//! The tree as `mkext4` declarations: one deterministic walk (sorted names, parents first),
//! hard links declared once and linked after, zero-block runs declared as holes, and names
//! the crate cannot take rejected with the path rather than mangled.

use mkext4::{FsBuilder, InodeHandle, SparseSeg, SpecialKind, ROOT};

use crate::tree::{Content, InodeId, Kind, Meta, Time, Tree};

use super::Ext4Error;

/// A declared namespace and the files to fill, in declaration order.
pub struct Declared {
    /// The builder, ready to seal.
    pub builder: FsBuilder,
    /// Each regular file's handle and tree inode, in the order they were declared.
    pub files: Vec<(InodeHandle, InodeId)>,
}

fn ts(t: Time) -> (i64, u32) {
    (t.sec, t.nsec)
}

fn meta(m: &Meta, clamp: Option<Time>) -> mkext4::Meta {
    let c = |t: Time| clamp.map_or(t, |l| t.clamp_to(l));
    let mut out = mkext4::Meta::new(m.mode & 0o7777, m.uid, m.gid, ts(c(m.mtime)));
    out.atime = Some(ts(c(m.atime)));
    out.ctime = Some(ts(c(m.ctime)));
    out
}

fn crate_err(path: &[u8]) -> impl FnOnce(mkext4::Error) -> Ext4Error + '_ {
    move |e| match e {
        mkext4::Error::Invalid(why) if why.contains("too small") || why.contains("image full") => {
            Ext4Error::Full
        }
        other => Ext4Error::Declare {
            path: String::from_utf8_lossy(path).into_owned(),
            why: other.to_string(),
        },
    }
}

fn utf8<'a>(path: &[u8], bytes: &'a [u8], what: &str) -> Result<&'a str, Ext4Error> {
    std::str::from_utf8(bytes).map_err(|_| Ext4Error::Declare {
        path: String::from_utf8_lossy(path).into_owned(),
        why: format!("{what} is not valid UTF-8, which the ext4 writer cannot store; rename it"),
    })
}

/// The segment map of a file with `holes` (whole zero blocks) in `len` bytes.
pub fn segments(len: u64, holes: &[(u64, u64)]) -> Vec<SparseSeg> {
    let bs = super::plan::BLOCK;
    let mut segs = Vec::new();
    let mut pos = 0u64;
    for &(start, count) in holes {
        let hs = start * bs;
        if hs > pos {
            segs.push(SparseSeg::Data(hs - pos));
        }
        let he = (hs + count * bs).min(len);
        segs.push(SparseSeg::Hole(he - hs));
        pos = he;
    }
    if pos < len {
        segs.push(SparseSeg::Data(len - pos));
    }
    segs
}

/// Declares the whole tree into a builder made with `opts`.
pub fn declare(
    tree: &Tree,
    opts: mkext4::Options,
    clamp: Option<Time>,
) -> Result<Declared, Ext4Error> {
    let mut b = FsBuilder::new(opts).map_err(|e| Ext4Error::Options(e.to_string()))?;
    let mut handles: Vec<Option<InodeHandle>> = Vec::new();
    let mut files = Vec::new();
    for e in tree.walk() {
        let idx = e.id.index();
        if handles.len() <= idx {
            handles.resize(idx + 1, None);
        }
        let inode = tree.inode(e.id);
        let path = &e.path[..];
        if e.id == tree.root() {
            b.set_meta(ROOT, meta(&inode.meta, clamp))
                .map_err(crate_err(path))?;
            for (k, v) in &inode.meta.xattrs {
                b.set_xattr(ROOT, k, v).map_err(crate_err(path))?;
            }
            handles[idx] = Some(ROOT);
            continue;
        }
        let parent = handles[e.parent.index()].expect("parents are declared first");
        let name_bytes = &path[path.iter().rposition(|&c| c == b'/').map_or(0, |p| p + 1)..];
        if name_bytes.len() > 255 {
            return Err(Ext4Error::Declare {
                path: String::from_utf8_lossy(path).into_owned(),
                why: format!(
                    "name is {} bytes; ext4 allows at most 255",
                    name_bytes.len()
                ),
            });
        }
        let name = utf8(path, name_bytes, "the name")?;
        if let Some(h) = handles[idx] {
            b.hardlink(parent, name, h).map_err(crate_err(path))?;
            continue;
        }
        let m = meta(&inode.meta, clamp);
        let h = match &inode.kind {
            Kind::Dir(_) => b.mkdir(parent, name, m),
            Kind::File(c) => {
                let h = declare_file(&mut b, parent, name, m, c);
                if let Ok(h) = h {
                    files.push((h, e.id));
                }
                h
            }
            Kind::Symlink(t) => {
                let t = utf8(path, t, "the symlink target")?;
                b.symlink(parent, name, t, m)
            }
            Kind::CharDevice { major, minor } => b.mknod(
                parent,
                name,
                m,
                SpecialKind::Char {
                    major: *major,
                    minor: *minor,
                },
            ),
            Kind::BlockDevice { major, minor } => b.mknod(
                parent,
                name,
                m,
                SpecialKind::Block {
                    major: *major,
                    minor: *minor,
                },
            ),
            Kind::Fifo => b.mknod(parent, name, m, SpecialKind::Fifo),
            Kind::Socket => b.mknod(parent, name, m, SpecialKind::Socket),
        }
        .map_err(crate_err(path))?;
        for (k, v) in &inode.meta.xattrs {
            b.set_xattr(h, k, v).map_err(crate_err(path))?;
        }
        handles[idx] = Some(h);
    }
    Ok(Declared { builder: b, files })
}

fn declare_file(
    b: &mut FsBuilder,
    parent: InodeHandle,
    name: &str,
    m: mkext4::Meta,
    c: &Content,
) -> mkext4::Result<InodeHandle> {
    let holes = c.holes();
    if holes.is_empty() {
        b.file(parent, name, m, c.len())
    } else {
        b.file_sparse(parent, name, m, &segments(c.len(), &holes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_file_and_end_with_the_tail() {
        let segs = segments(5 * 4096 + 10, &[(1, 2), (4, 1)]);
        assert_eq!(
            segs,
            vec![
                SparseSeg::Data(4096),
                SparseSeg::Hole(8192),
                SparseSeg::Data(4096),
                SparseSeg::Hole(4096),
                SparseSeg::Data(10),
            ]
        );
        assert_eq!(segments(8192, &[(0, 2)]), vec![SparseSeg::Hole(8192)]);
    }
}
