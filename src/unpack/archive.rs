//! A tar stream (ustar, GNU, PAX; any compression) applied to the staging tree, entry by
//! entry, streaming. Untrusted input: every path is normalised inside the root, parents are
//! walked with [`Follow::Strict`], and each failure names the entry.

use std::io::{self, Read};

use crate::tree::path::{normalize, PathBytes};
use crate::tree::{Follow, Inode, Kind, Meta, PathError, Time, Tree, TreeError};

use super::compression::{decompress, Compression};
use super::pax::PaxFields;

/// Settings for applying one archive.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Map every entry to this owner (`--owner 0:0`).
    pub owner: Option<(u32, u32)>,
    /// Apply OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) against what lower layers put in
    /// the tree, instead of storing them as files (see [`super::whiteout`]).
    pub whiteouts: bool,
}

/// What was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// The compression found.
    pub compression: Option<&'static str>,
    /// Entries applied.
    pub entries: u64,
    /// Bytes of file content stored.
    pub file_bytes: u64,
    /// Decompressed archive bytes read.
    pub tar_bytes: u64,
}

/// Why one entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// `..` climbing above the root.
    #[error("path climbs out of the root")]
    Traversal,
    /// A hard link whose target is not an earlier entry inside the root.
    #[error("hard link to {0}, which is not an earlier entry inside the archive's root")]
    LinkTarget(PathBytes),
    /// An entry type rootsmith does not store.
    #[error("unsupported tar entry type {0:?}")]
    Unsupported(char),
    /// A header field out of range or malformed.
    #[error("bad header: {0}")]
    Header(String),
    /// The tree refused the entry.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The entry's data could not be read (corrupt stream).
    #[error("reading its data: {0}")]
    Data(io::Error),
    /// The stream ends inside the entry's data.
    #[error("truncated archive: {0}")]
    Truncated(io::Error),
}

/// Why an archive could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// One entry is bad.
    #[error("tar entry {entry}: {source}")]
    Entry {
        /// The entry's path as written in the archive.
        entry: PathBytes,
        /// What is wrong.
        source: EntryError,
    },
    /// The stream itself is broken (corrupt compression, truncated, not a tar).
    #[error("{what} (after {entries} entries{last}): {source}")]
    Stream {
        /// What went wrong, in words.
        what: &'static str,
        /// Entries applied before the failure.
        entries: u64,
        /// `, last: <path>` or nothing.
        last: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Counts bytes and remembers whether the underlying stream hit its end, which tells a
/// proper end-of-archive marker from a truncated archive.
struct Tracked<R> {
    inner: R,
    bytes: u64,
    eof: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Applies a tar archive (compression detected by magic bytes) to `tree`.
pub fn apply_tar(
    tree: &mut Tree,
    input: impl Read,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let (kind, reader) = decompress(input).map_err(|source| UnpackError::Stream {
        what: "cannot start decompressing",
        entries: 0,
        last: String::new(),
        source,
    })?;
    let mut stats = apply_plain_tar(tree, reader, opts)?;
    stats.compression = Some(kind.name()).filter(|_| kind != Compression::None);
    Ok(stats)
}

/// Applies an uncompressed tar stream to `tree`.
pub fn apply_plain_tar(
    tree: &mut Tree,
    reader: impl Read,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let mut tracked = Tracked {
        inner: reader,
        bytes: 0,
        eof: false,
    };
    let mut stats = UnpackStats::default();
    let mut last = PathBytes(Vec::new());
    let mut layer = opts.whiteouts.then(super::whiteout::LayerState::default);
    {
        let mut archive = ::tar::Archive::new(&mut tracked);
        let stream_err =
            |what, stats: &UnpackStats, last: &PathBytes, source| UnpackError::Stream {
                what,
                entries: stats.entries,
                last: if last.0.is_empty() {
                    String::new()
                } else {
                    format!(", last: {last}")
                },
                source,
            };
        let entries = archive
            .entries()
            .map_err(|e| stream_err("not a tar archive", &stats, &last, e))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| stream_err("corrupt or truncated archive", &stats, &last, e))?;
            let path = PathBytes(entry.path_bytes().into_owned());
            let stored = apply_entry(tree, &mut entry, opts, layer.as_mut()).map_err(|source| {
                // A read error inside an entry is a broken stream more often than a bad entry;
                // either way the entry is named.
                UnpackError::Entry {
                    entry: path.clone(),
                    source,
                }
            })?;
            stats.entries += 1;
            stats.file_bytes += stored;
            last = path;
        }
    }
    if tracked.eof {
        return Err(UnpackError::Stream {
            what: "truncated archive: it ends without the end-of-archive marker",
            entries: stats.entries,
            last: format!(", last: {last}"),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected end of stream"),
        });
    }
    // Drain the rest so a compressed stream's trailer (CRC, sizes) is checked too.
    io::copy(&mut tracked, &mut io::sink()).map_err(|source| UnpackError::Stream {
        what: "corrupt data after the end of the archive",
        entries: stats.entries,
        last: format!(", last: {last}"),
        source,
    })?;
    stats.tar_bytes = tracked.bytes;
    Ok(stats)
}

fn header_err(what: &str, e: impl std::fmt::Display) -> EntryError {
    EntryError::Header(format!("{what}: {e}"))
}

fn id32(v: u64, what: &str) -> Result<u32, EntryError> {
    u32::try_from(v).map_err(|_| EntryError::Header(format!("{what} {v} does not fit in 32 bits")))
}

/// Applies one entry; returns the file bytes it stored. Public for package installers
/// that read their own per-entry records (e.g. apk's PAX checksums) around it.
pub fn apply_entry<R: Read>(
    tree: &mut Tree,
    entry: &mut ::tar::Entry<'_, R>,
    opts: &UnpackOptions,
    layer: Option<&mut super::whiteout::LayerState>,
) -> Result<u64, EntryError> {
    use ::tar::EntryType as T;
    let etype = entry.header().entry_type();
    if matches!(
        etype,
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
    ) {
        return Ok(0);
    }
    let mut pax = PaxFields::default();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| header_err("PAX header", e))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| header_err("PAX header", e))?;
            pax.apply(ext.key_bytes(), ext.value_bytes())
                .map_err(|e| EntryError::Header(e.to_string()))?;
        }
    }
    let raw_path = entry.path_bytes().into_owned();
    let names = normalize(&raw_path).ok_or(EntryError::Traversal)?;
    if let Some(state) = &layer {
        if names
            .last()
            .is_some_and(|n| n.starts_with(super::whiteout::PREFIX))
        {
            super::whiteout::apply(tree, state, &names)?;
            return Ok(0);
        }
    }
    let meta = entry_meta(entry.header(), &pax, opts)?;
    let parent_meta = Meta::new(0o755, meta.mtime);
    let kind = match etype {
        T::Regular | T::Continuous | T::GNUSparse => {
            let size = entry.size();
            let content = tree.store_mut().ingest(entry, size).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    EntryError::Truncated(e)
                } else {
                    EntryError::Data(e)
                }
            })?;
            Kind::File(content)
        }
        T::Directory => Kind::empty_dir(),
        T::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| EntryError::Header("symlink without a target".into()))?;
            if target.is_empty() {
                return Err(EntryError::Header("symlink with an empty target".into()));
            }
            Kind::Symlink(target.into_owned())
        }
        T::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| EntryError::Header("hard link without a target".into()))?
                .into_owned();
            link_entry(tree, &names, &target)?;
            if let Some(state) = layer {
                state.record(tree, &names)?;
            }
            return Ok(0);
        }
        T::Char | T::Block => {
            let major = entry
                .header()
                .device_major()
                .map_err(|e| header_err("device major", e))?
                .unwrap_or(0);
            let minor = entry
                .header()
                .device_minor()
                .map_err(|e| header_err("device minor", e))?
                .unwrap_or(0);
            if etype == T::Char {
                Kind::CharDevice { major, minor }
            } else {
                Kind::BlockDevice { major, minor }
            }
        }
        T::Fifo => Kind::Fifo,
        other => return Err(EntryError::Unsupported(other.as_byte() as char)),
    };
    let stored = match &kind {
        Kind::File(c) => c.len(),
        _ => 0,
    };
    let path = crate::tree::path::join(&names);
    tree.insert(&path, Inode::new(kind, meta), &parent_meta, Follow::Strict)?;
    if let Some(state) = layer {
        state.record(tree, &names)?;
    }
    Ok(stored)
}

fn link_entry(tree: &mut Tree, names: &[&[u8]], target: &[u8]) -> Result<(), EntryError> {
    let outside = || EntryError::LinkTarget(PathBytes(target.to_vec()));
    let tnames = normalize(target).ok_or_else(outside)?;
    let tpath = crate::tree::path::join(&tnames);
    let target_id = tree
        .resolve(&tpath, Follow::Strict, false)
        .map_err(|_| outside())?;
    if tree.inode(target_id).is_dir() {
        return Err(TreeError::LinkToDir(PathBytes(target.to_vec())).into());
    }
    let Some((name, parents)) = names.split_last() else {
        return Err(TreeError::RootReplaced("hard link").into());
    };
    let parent_meta = tree.inode(target_id).meta.clone();
    let parent_meta = Meta::new(0o755, parent_meta.mtime);
    let dir = tree.mkdir_all(
        &crate::tree::path::join(parents),
        &parent_meta,
        Follow::Strict,
    )?;
    tree.link(dir, name, target_id)?;
    Ok(())
}

fn entry_meta(
    h: &::tar::Header,
    pax: &PaxFields,
    opts: &UnpackOptions,
) -> Result<Meta, EntryError> {
    let mode = h.mode().map_err(|e| header_err("mode", e))?;
    let mtime = match pax.mtime {
        Some(t) => t,
        None => {
            let s = h.mtime().map_err(|e| header_err("mtime", e))?;
            Time::secs(
                i64::try_from(s)
                    .map_err(|_| EntryError::Header(format!("mtime {s} out of range")))?,
            )
        }
    };
    let (uid, gid) = match opts.owner {
        Some(o) => o,
        None => (
            id32(
                match pax.uid {
                    Some(u) => u,
                    None => h.uid().map_err(|e| header_err("uid", e))?,
                },
                "uid",
            )?,
            id32(
                match pax.gid {
                    Some(g) => g,
                    None => h.gid().map_err(|e| header_err("gid", e))?,
                },
                "gid",
            )?,
        ),
    };
    for name in pax.xattrs.keys() {
        if !xattr_namespace_known(name) {
            return Err(EntryError::Header(format!(
                "xattr {name:?} has no namespace ext4 stores (user., trusted., security., system.)"
            )));
        }
    }
    Ok(Meta {
        mode: (mode & 0o7777) as u16,
        uid,
        gid,
        atime: pax.atime.unwrap_or(mtime),
        mtime,
        ctime: pax.ctime.unwrap_or(mtime),
        xattrs: pax.xattrs.clone(),
    })
}

/// True for xattr names ext4 can store.
pub fn xattr_namespace_known(name: &str) -> bool {
    ["user.", "trusted.", "security.", "system."]
        .iter()
        .any(|p| name.starts_with(p) && name.len() > p.len())
        || name == "system.posix_acl_access"
        || name == "system.posix_acl_default"
}

impl From<PathError> for EntryError {
    fn from(e: PathError) -> Self {
        EntryError::Tree(TreeError::Path(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw tar entry (GNU header) with any name, type and body.
    fn entry(out: &mut Vec<u8>, name: &[u8], kind: u8, link: &[u8], body: &[u8], size: u64) {
        let mut h = ::tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
        h.as_gnu_mut().expect("gnu").linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(::tar::EntryType::new(kind));
        h.set_mode(0o644);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(512), 0);
    }

    fn finish(mut v: Vec<u8>) -> Vec<u8> {
        v.extend_from_slice(&[0u8; 1024]);
        v
    }

    fn apply(bytes: &[u8]) -> (Tree, Result<UnpackStats, UnpackError>) {
        let mut t = Tree::new();
        let r = apply_tar(&mut t, bytes, &UnpackOptions::default());
        (t, r)
    }

    fn err_text(bytes: &[u8]) -> String {
        apply(bytes).1.expect_err("must fail").to_string()
    }

    #[test]
    fn traversal_is_refused_and_names_the_entry() {
        let mut v = Vec::new();
        entry(&mut v, b"a/../../etc/passwd", b'0', b"", b"x", 1);
        let e = err_text(&finish(v));
        assert!(
            e.contains("a/../../etc/passwd") && e.contains("climbs out"),
            "{e}"
        );
    }

    #[test]
    fn a_file_through_an_absolute_or_escaping_symlink_is_refused() {
        for target in [&b"/etc"[..], b"../../../etc"] {
            let mut v = Vec::new();
            entry(&mut v, b"link", b'2', target, b"", 0);
            entry(&mut v, b"link/passwd", b'0', b"", b"x", 1);
            let (t, r) = apply(&finish(v));
            let e = r.expect_err("must fail").to_string();
            assert!(e.contains("link/passwd"), "{e}");
            assert!(
                t.lookup(b"/etc").is_none(),
                "nothing created through the link"
            );
        }
    }

    #[test]
    fn relative_symlinks_inside_the_tree_are_followed_like_merged_usr() {
        let mut v = Vec::new();
        entry(&mut v, b"usr/bin/", b'5', b"", b"", 0);
        entry(&mut v, b"bin", b'2', b"usr/bin", b"", 0);
        entry(&mut v, b"bin/sh", b'0', b"", b"sh", 2);
        let (t, r) = apply(&finish(v));
        r.expect("applies");
        assert_eq!(t.read_file(b"/usr/bin/sh").unwrap(), b"sh");
        assert!(matches!(
            t.inode(t.lookup_nofollow(b"/bin").unwrap()).kind,
            Kind::Symlink(_)
        ));
    }

    #[test]
    fn hard_links_must_name_an_earlier_entry_inside() {
        let mut v = Vec::new();
        entry(&mut v, b"evil", b'1', b"../../etc/shadow", b"", 0);
        assert!(err_text(&finish(v)).contains("hard link"));
        let mut v = Vec::new();
        entry(&mut v, b"later", b'1', b"missing", b"", 0);
        assert!(err_text(&finish(v)).contains("hard link"));
        let mut v = Vec::new();
        entry(&mut v, b"a", b'0', b"", b"data", 4);
        entry(&mut v, b"d/b", b'1', b"a", b"", 0);
        let (t, r) = apply(&finish(v));
        r.expect("applies");
        assert_eq!(t.lookup(b"/a"), t.lookup(b"/d/b"));
        assert_eq!(t.inode(t.lookup(b"/a").unwrap()).links(), 2);
    }

    #[test]
    fn a_lying_size_is_a_truncation_not_an_allocation() {
        let mut v = Vec::new();
        entry(&mut v, b"huge", b'0', b"", b"short", 10 << 30);
        let e = err_text(&v);
        assert!(e.contains("huge") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn a_missing_end_marker_is_a_truncation() {
        let mut v = Vec::new();
        entry(&mut v, b"a", b'0', b"", b"data", 4);
        assert!(err_text(&v).contains("truncated"));
        assert!(apply(&finish(v)).1.is_ok());
    }

    #[test]
    fn later_entries_replace_earlier_ones_and_parents_appear() {
        let mut v = Vec::new();
        entry(&mut v, b"x/y/f", b'0', b"", b"one", 3);
        entry(&mut v, b"x/y/f", b'0', b"", b"two!", 4);
        let (t, r) = apply(&finish(v));
        assert_eq!(r.expect("applies").entries, 2);
        assert_eq!(t.read_file(b"/x/y/f").unwrap(), b"two!");
        assert_eq!(t.inode(t.lookup(b"/x/y").unwrap()).meta.mode, 0o755);
    }

    #[test]
    fn garbage_never_panics() {
        for len in [0usize, 1, 100, 511, 512, 1024, 3000] {
            let junk: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let _ = apply(&junk);
        }
    }
}
