//! `publish`: turn a cached image into release assets (the base-rootfs plan's upload):
//! `OUT/rootfs.ext4.zst` (zstd level 19 by default, multithreaded, with the frame checksum
//! and content size `zstd -19` writes), `OUT/vmlinux.bin` and `OUT/initrd.img` when the image
//! has them, a `sha256` file in `sha256sum` format for those files (so `sha256sum -c sha256`
//! passes in OUT), and `registry.json`, a one-image registry with relative URLs, so serving
//! OUT is enough for `rootsmith images ensure NAME --registry URL/registry.json`. Every file
//! is written to a temp name in OUT and renamed.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::local::LocalImage;
use super::ImagesError;
use crate::digest::{Digest, Hasher};

/// The compressed root filesystem's name.
pub const ROOTFS_ZST: &str = "rootfs.ext4.zst";
/// The checksum file's name.
pub const SHA256_FILE: &str = "sha256";
/// The registry file's name.
pub const REGISTRY_FILE: &str = "registry.json";
/// Prefix of the temp files written in OUT (renamed when complete).
pub const TEMP_PREFIX: &str = ".rootsmith-publish-";

/// How to compress.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    /// zstd level (1–22; 19 as the release plan says).
    pub level: i32,
    /// zstd worker threads (0 = compress on the calling thread).
    pub threads: u32,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            level: 19,
            threads: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedFile {
    /// Its name in OUT.
    pub file: String,
    /// Its SHA-256.
    pub sha256: Digest,
    /// Its size.
    pub size: u64,
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct Published {
    /// OUT.
    pub dir: PathBuf,
    /// The files listed in `sha256`, rootfs first.
    pub files: Vec<PublishedFile>,
    /// SHA-256 of the uncompressed root filesystem.
    pub rootfs_sha256: Digest,
    /// Its size.
    pub rootfs_size: u64,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImagesError + '_ {
    move |source| ImagesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `sha256sum`'s text format: `<hex>  <name>` per line (two spaces: binary-agnostic mode).
pub fn sha256sum_text(files: &[PublishedFile]) -> String {
    files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256.hex(), f.file))
        .collect()
}

/// Parses `sha256sum` output (`<hex>  <name>` or `<hex> *<name>`); `None` on a bad line.
pub fn parse_sha256sum(text: &str) -> Option<Vec<(Digest, String)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (hex, rest) = l.split_once(' ')?;
            let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
            Some((hex.parse().ok()?, name.to_string()))
        })
        .collect()
}

/// The one-image registry for OUT (relative URLs; see [`super::registry`]).
pub fn registry_json(name: &str, files: &[PublishedFile]) -> String {
    let mut entry = serde_json::Map::new();
    for f in files {
        let role = match f.file.as_str() {
            ROOTFS_ZST => "rootfs",
            super::layout::KERNEL => "kernel",
            super::layout::INITRD => "initrd",
            _ => continue,
        };
        entry.insert(format!("{role}_url"), f.file.clone().into());
        entry.insert(format!("{role}_sha256"), f.sha256.hex().into());
    }
    let mut doc = serde_json::Map::new();
    doc.insert(name.to_string(), entry.into());
    let mut s = serde_json::to_string_pretty(&serde_json::Value::Object(doc))
        .expect("a registry serialises");
    s.push('\n');
    s
}

/// A writer that hashes and counts what passes into it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn temp_in(out: &Path, name: &str) -> Result<tempfile::NamedTempFile, ImagesError> {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{name}."))
        .suffix(".tmp")
        .tempfile_in(out)
        .map_err(io_at(out))
}

fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), ImagesError> {
    tmp.as_file().sync_all().map_err(io_at(tmp.path()))?;
    tmp.persist(path).map_err(|e| io_at(path)(e.error))?;
    Ok(())
}

/// Compresses `image`'s root filesystem into OUT and writes the rest (module docs).
/// `on(bytes)` reports input bytes read.
pub fn publish(
    image: &LocalImage,
    out: &Path,
    opts: &PublishOptions,
    on: &dyn Fn(u64),
) -> Result<Published, ImagesError> {
    fs::create_dir_all(out).map_err(io_at(out))?;
    let src_path = &image.rootfs_path;
    let src = File::open(src_path).map_err(io_at(src_path))?;
    let len = src.metadata().map_err(io_at(src_path))?.len();
    let tmp = temp_in(out, ROOTFS_ZST)?;
    let compress_err = |e: io::Error| ImagesError::Compress {
        path: src_path.clone(),
        why: e.to_string(),
    };
    let sink = HashingWriter {
        inner: io::BufWriter::with_capacity(
            1 << 20,
            tmp.as_file().try_clone().map_err(io_at(tmp.path()))?,
        ),
        hasher: Hasher::new(),
        count: 0,
    };
    let mut enc = zstd::stream::write::Encoder::new(sink, opts.level).map_err(compress_err)?;
    if opts.threads > 0 {
        enc.multithread(opts.threads).map_err(compress_err)?;
    }
    enc.include_checksum(true).map_err(compress_err)?;
    enc.include_contentsize(true).map_err(compress_err)?;
    enc.set_pledged_src_size(Some(len)).map_err(compress_err)?;
    let mut input = Hasher::new();
    let mut reader = BufReader::with_capacity(1 << 20, src);
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(src_path)(e)),
        };
        input.update(&buf[..n]);
        enc.write_all(&buf[..n]).map_err(compress_err)?;
        read += n as u64;
        on(n as u64);
    }
    if read != len {
        return Err(ImagesError::Compress {
            path: src_path.clone(),
            why: format!("it changed size while being read ({len} then {read} bytes); publish again when nothing writes it"),
        });
    }
    let mut sink = enc.finish().map_err(compress_err)?;
    sink.flush().map_err(io_at(tmp.path()))?;
    let HashingWriter {
        inner,
        hasher,
        count,
    } = sink;
    drop(inner);
    let zst = PublishedFile {
        file: ROOTFS_ZST.into(),
        sha256: hasher.finish(),
        size: count,
    };
    persist(tmp, &out.join(ROOTFS_ZST))?;
    let mut files = vec![zst];
    for (path, name) in [
        (&image.kernel_path, super::layout::KERNEL),
        (&image.initrd_path, super::layout::INITRD),
    ] {
        if let Some(p) = path {
            files.push(copy_hashed(p, out, name)?);
        }
    }
    let sums = temp_in(out, SHA256_FILE)?;
    (&mut sums.as_file())
        .write_all(sha256sum_text(&files).as_bytes())
        .map_err(io_at(sums.path()))?;
    persist(sums, &out.join(SHA256_FILE))?;
    let reg = temp_in(out, REGISTRY_FILE)?;
    (&mut reg.as_file())
        .write_all(registry_json(&image.name, &files).as_bytes())
        .map_err(io_at(reg.path()))?;
    persist(reg, &out.join(REGISTRY_FILE))?;
    if let Ok(d) = File::open(out) {
        let _ = d.sync_all();
    }
    Ok(Published {
        dir: out.to_path_buf(),
        files,
        rootfs_sha256: input.finish(),
        rootfs_size: len,
    })
}

fn copy_hashed(src: &Path, out: &Path, name: &str) -> Result<PublishedFile, ImagesError> {
    let tmp = temp_in(out, name)?;
    let f = File::open(src).map_err(io_at(src))?;
    let mut w = HashingWriter {
        inner: io::BufWriter::new(tmp.as_file().try_clone().map_err(io_at(tmp.path()))?),
        hasher: Hasher::new(),
        count: 0,
    };
    io::copy(&mut BufReader::new(f), &mut w).map_err(io_at(src))?;
    w.flush().map_err(io_at(tmp.path()))?;
    let HashingWriter {
        inner,
        hasher,
        count,
    } = w;
    drop(inner);
    let file = PublishedFile {
        file: name.into(),
        sha256: hasher.finish(),
        size: count,
    };
    persist(tmp, &out.join(name))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha256_file_is_sha256sums_format() {
        let files = vec![
            PublishedFile {
                file: ROOTFS_ZST.into(),
                sha256: Digest::of(b"a"),
                size: 1,
            },
            PublishedFile {
                file: "vmlinux.bin".into(),
                sha256: Digest::of(b"b"),
                size: 1,
            },
        ];
        let text = sha256sum_text(&files);
        assert_eq!(
            text.lines().next().unwrap(),
            format!("{}  rootfs.ext4.zst", Digest::of(b"a").hex())
        );
        let parsed = parse_sha256sum(&text).unwrap();
        assert_eq!(parsed[1], (Digest::of(b"b"), "vmlinux.bin".to_string()));
        assert!(parse_sha256sum("zz  x\n").is_none());
        assert!(parse_sha256sum(&format!("{} *x", Digest::of(b"").hex())).is_some());
    }

    #[test]
    fn the_registry_it_writes_reads_back() {
        let files = vec![
            PublishedFile {
                file: ROOTFS_ZST.into(),
                sha256: Digest::of(b"a"),
                size: 1,
            },
            PublishedFile {
                file: "vmlinux.bin".into(),
                sha256: Digest::of(b"b"),
                size: 1,
            },
        ];
        let reg = super::super::Registry::parse(
            &registry_json("img", &files),
            "http://h/out/registry.json",
        )
        .unwrap();
        let s = reg.get("img").unwrap();
        assert_eq!(s.rootfs.url, "http://h/out/rootfs.ext4.zst");
        assert_eq!(s.rootfs.compression, super::super::Compression::Zstd);
        assert_eq!(s.rootfs.sha256, Digest::of(b"a"));
        assert_eq!(s.kernel.as_ref().unwrap().url, "http://h/out/vmlinux.bin");
    }
}
