//! One OCI layer blob into the tree: decompress (gzip, zstd or none, told by magic bytes) on
//! a second thread, apply with whiteouts, check the uncompressed bytes against the config's
//! diff_id, and read the blob to its very end so its own digest check (a verifying reader
//! from the source) runs even when the tar ends before the compressed stream does.

use std::io::{self, Read};
use std::sync::mpsc;

use crate::digest::{Digest, Hasher};
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
///
/// Two threads share the work: one reads the blob (whose reader verifies it), decompresses
/// and hashes the uncompressed bytes; this one parses the tar and builds the tree.
pub fn apply_layer(
    tree: &mut Tree,
    blob: impl Read + Send,
    diff_id: Option<Digest>,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let opts = UnpackOptions {
        whiteouts: true,
        ..opts.clone()
    };
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
        let producer = s.spawn(move || produce(blob, &tx));
        let reader = ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let applied = apply_plain_tar(tree, reader, &opts);
        // The reader is gone: a producer still sending stops at its next chunk.
        let produced = producer
            .join()
            .map_err(|_| LayerError::Blob(io::Error::other("the decompressing thread panicked")))?;
        let mut stats = applied?;
        let (kind, actual) = produced.map_err(LayerError::Blob)?;
        stats.compression = Some(kind.name()).filter(|_| kind != Compression::None);
        if let Some(expected) = diff_id {
            if expected != actual {
                return Err(LayerError::DiffId { expected, actual });
            }
        }
        Ok(stats)
    })
}

const CHUNK: usize = 256 << 10;

/// Decompresses `blob` into chunks on `tx`, hashing them; then drains the blob so its
/// verifying reader reaches its end. A read error is sent on (the tar side reports it with
/// its context) and also returned.
fn produce(
    mut blob: impl Read,
    tx: &mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<(Compression, Digest)> {
    let (kind, mut dec) = decompress(&mut blob)?;
    let mut hasher = Hasher::new();
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            match dec.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        hasher.update(&buf);
        if tx.send(Ok(buf)).is_err() {
            // The tar side stopped (an error there); nothing more to do.
            return Ok((kind, hasher.finish()));
        }
    }
    drop(dec);
    io::copy(&mut blob, &mut io::sink())?;
    Ok((kind, hasher.finish()))
}

/// Reads the chunks a producer thread sends; a closed channel is the end of the stream.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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
