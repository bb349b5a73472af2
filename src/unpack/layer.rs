//! One OCI layer blob into the tree: decompress (gzip, zstd or none, told by magic bytes),
//! apply with whiteouts, check the uncompressed bytes against the config's diff_id, and read
//! the blob to its very end so its own digest check (a verifying reader from the source)
//! runs even when the tar ends before the compressed stream does.

use std::io::{self, Read};

use crate::digest::{Digest, HashingReader};
use crate::tree::Tree;

use super::archive::{apply_plain_tar, UnpackError, UnpackOptions, UnpackStats};
use super::compression::{decompress, Compression};

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The tar stream or one of its entries.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The uncompressed bytes are not the ones the image config names.
    #[error("uncompressed layer has sha256 {actual}, but the image config's diff_id is {expected}: the layer or the config is corrupt")]
    DiffId {
        /// From the config.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The blob itself failed to read or verify.
    #[error("layer blob: {0}")]
    Blob(io::Error),
}

/// Applies one layer blob to `tree` with OCI whiteout semantics (`opts.whiteouts` is
/// forced on). `diff_id`, when known, is checked after the last byte.
pub fn apply_layer(
    tree: &mut Tree,
    mut blob: impl Read,
    diff_id: Option<Digest>,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let opts = UnpackOptions {
        whiteouts: true,
        ..opts.clone()
    };
    let (stats, actual) = {
        let (kind, dec) = decompress(&mut blob).map_err(LayerError::Blob)?;
        let mut hashing = HashingReader::new(dec);
        let mut stats = apply_plain_tar(tree, &mut hashing, &opts)?;
        stats.compression = Some(kind.name()).filter(|_| kind != Compression::None);
        let (actual, _, _) = hashing.finish();
        (stats, actual)
    };
    io::copy(&mut blob, &mut io::sink()).map_err(LayerError::Blob)?;
    if let Some(expected) = diff_id {
        if expected != actual {
            return Err(LayerError::DiffId { expected, actual });
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Kind;

    /// A tar from (path, kind, data-or-link-target): 'f' file, 'd' dir, 'l' symlink,
    /// 'h' hard link. Names are written raw (no checks), so hostile paths can be built.
    pub(crate) fn tar_of(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(if *kind == 'd' { 0o755 } else { 0o644 });
            h.set_mtime(1);
            h.set_uid(0);
            h.set_gid(0);
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            let body: &[u8] = match kind {
                'f' => {
                    h.set_entry_type(tar::EntryType::Regular);
                    data.as_bytes()
                }
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    &[]
                }
                'l' | 'h' => {
                    h.set_entry_type(if *kind == 'l' {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
                    &[]
                }
                _ => unreachable!(),
            };
            h.set_size(body.len() as u64);
            h.set_cksum();
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn paths(t: &Tree) -> Vec<String> {
        t.walk()
            .into_iter()
            .map(|e| String::from_utf8(e.path).unwrap())
            .collect()
    }

    fn apply(t: &mut Tree, entries: &[(&str, char, &str)]) {
        let tar = tar_of(entries);
        apply_layer(
            t,
            &tar[..],
            Some(Digest::of(&tar)),
            &UnpackOptions::default(),
        )
        .unwrap();
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        let mut t = Tree::new();
        apply(
            &mut t,
            &[
                ("a/", 'd', ""),
                ("a/x", 'f', "1"),
                ("a/y", 'f', "2"),
                ("b/", 'd', ""),
                ("b/z", 'f', "3"),
                ("c", 'f', "4"),
                ("d/", 'd', ""),
                ("d/old", 'f', ""),
            ],
        );
        apply(
            &mut t,
            &[
                // Own entry before its whiteout: survives.
                ("a/x", 'f', "new"),
                ("a/.wh.x", 'f', ""),
                // Lower entry: hidden.
                ("a/.wh.y", 'f', ""),
                // Missing path: fine.
                ("a/.wh.nothing", 'f', ""),
                ("nowhere/.wh.x", 'f', ""),
                // Opaque after own entry: b keeps itself and `b/new`.
                ("b/new", 'f', "n"),
                ("b/.wh..wh..opq", 'f', ""),
                // Delete and recreate in one layer.
                (".wh.c", 'f', ""),
                ("c/", 'd', ""),
                // A directory redeclared, then whited out: the lower children go.
                ("d/", 'd', ""),
                ("d/mine", 'f', ""),
                (".wh.d", 'f', ""),
            ],
        );
        assert_eq!(
            paths(&t),
            ["/", "/a", "/a/x", "/b", "/b/new", "/c", "/d", "/d/mine"]
        );
        assert_eq!(t.read_file(b"/a/x").unwrap(), b"new");
        assert!(t.inode(t.lookup(b"/c").unwrap()).is_dir());
    }

    #[test]
    fn opaque_first_then_entries_and_hard_links_across_layers() {
        let mut t = Tree::new();
        apply(
            &mut t,
            &[
                ("etc/", 'd', ""),
                ("etc/apk/", 'd', ""),
                ("etc/apk/keys/", 'd', ""),
                ("etc/apk/keys/k", 'f', "k"),
                ("bin/", 'd', ""),
                ("bin/busybox", 'f', "bb"),
            ],
        );
        apply(
            &mut t,
            &[
                ("etc/apk/.wh..wh..opq", 'f', ""),
                ("etc/apk/keys/", 'd', ""),
                ("etc/apk/new", 'f', "x"),
                ("usr/bin/hl", 'h', "bin/busybox"),
            ],
        );
        assert_eq!(
            paths(&t),
            [
                "/",
                "/bin",
                "/bin/busybox",
                "/etc",
                "/etc/apk",
                "/etc/apk/keys",
                "/etc/apk/new",
                "/usr",
                "/usr/bin",
                "/usr/bin/hl"
            ]
        );
        let bb = t.lookup(b"/bin/busybox").unwrap();
        assert_eq!(t.lookup(b"/usr/bin/hl"), Some(bb));
        assert_eq!(t.inode(bb).links(), 2);
        assert!(matches!(t.inode(bb).kind, Kind::File(_)));
    }

    #[test]
    fn whiteouts_are_plain_files_outside_layer_mode_and_diff_ids_are_checked() {
        let tar = tar_of(&[("a/.wh.b", 'f', "")]);
        let mut t = Tree::new();
        crate::unpack::apply_tar(&mut t, &tar[..], &UnpackOptions::default()).unwrap();
        assert!(t.lookup(b"/a/.wh.b").is_some());
        let mut t = Tree::new();
        let e = apply_layer(
            &mut t,
            &tar[..],
            Some(Digest::of(b"other")),
            &UnpackOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, LayerError::DiffId { .. }), "{e}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let s = apply_layer(
            &mut Tree::new(),
            &gz[..],
            Some(Digest::of(&tar)),
            &UnpackOptions::default(),
        )
        .unwrap();
        assert_eq!(s.compression, Some("gzip"));
    }

    #[test]
    fn hostile_whiteouts_fail_or_stay_inside() {
        let mut t = Tree::new();
        apply(&mut t, &[("a/", 'd', ""), ("a/f", 'f', "")]);
        let tar = tar_of(&[("../.wh.a", 'f', "")]);
        assert!(apply_layer(&mut t, &tar[..], None, &UnpackOptions::default()).is_err());
        let tar = tar_of(&[("a/.wh..", 'f', "")]);
        assert!(apply_layer(&mut t, &tar[..], None, &UnpackOptions::default()).is_err());
        assert!(t.lookup(b"/a/f").is_some());
    }
}
