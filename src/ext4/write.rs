//! Writing the image: seal at the planned size (growing an automatic size until the crate
//! accepts it), stream file contents behind the metadata into a temp file beside the output,
//! fsync, and rename it into place. An error leaves nothing at the final path.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use mkext4::RegionSink;

use crate::tree::{Kind, Time, Tree};

use super::declare::declare;
use super::plan::{self, Ext4Options, TreeFacts, BLOCK};
use super::{Ext4Error, Report};

/// Positioned writes into the temp file, combined while offsets are contiguous (the crate
/// emits metadata block by block); zero regions are left as holes.
struct Sink<'a> {
    file: &'a File,
    len: u64,
    buf: Vec<u8>,
    buf_at: u64,
    written: u64,
    progress: &'a mut dyn FnMut(u64),
}

const COMBINE: usize = 4 << 20;

impl Sink<'_> {
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.buf_at)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
            (self.progress)(self.written);
        }
        Ok(())
    }
}

impl RegionSink for Sink<'_> {
    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.buf_at + self.buf.len() as u64 != offset || self.buf.len() + bytes.len() > COMBINE {
            self.flush()?;
            self.buf_at = offset;
        }
        if bytes.len() >= COMBINE {
            self.file.write_all_at(bytes, offset)?;
            self.written += bytes.len() as u64;
            self.buf_at = offset + bytes.len() as u64;
            (self.progress)(self.written);
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }
    fn zeros(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::other("zeros past the end of the image"));
        }
        // Padding after a file's last partial block: keep the run contiguous rather than
        // splitting the write (the file is pre-sized, so the bytes are zero either way).
        let end = self.buf_at + self.buf.len() as u64;
        if !self.buf.is_empty()
            && offset == end
            && len <= 64 * 1024
            && self.buf.len() + (len as usize) <= COMBINE
        {
            self.buf.resize(self.buf.len() + len as usize, 0);
        }
        Ok(())
    }
}

/// Keeps only the primary superblock of the metadata pass: enough to learn how many blocks
/// a layout uses without writing anything.
struct SuperblockProbe {
    sb: [u8; 1024],
}

impl RegionSink for SuperblockProbe {
    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let (start, end) = (offset, offset + bytes.len() as u64);
        if start < 2048 && end > 1024 {
            let from = start.max(1024);
            let to = end.min(2048);
            self.sb[(from - 1024) as usize..(to - 1024) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }
    fn zeros(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Blocks a sealed layout uses (everything but free space), from its superblock.
fn used_blocks(layout: &mkext4::Layout) -> Result<u64, Ext4Error> {
    let mut probe = SuperblockProbe { sb: [0; 1024] };
    drop(
        layout
            .writer(&mut probe)
            .map_err(|e| Ext4Error::Write(e.to_string()))?,
    );
    let c = super::superblock::counts(&probe.sb)
        .ok_or_else(|| Ext4Error::Write("the planned superblock has no ext4 magic".into()))?;
    Ok(c.s_blocks_count - c.s_free_blocks_count)
}

/// Reads a file's bytes with its hole blocks skipped: what `fill` expects for a sparse file.
struct SkipHoles<'a> {
    inner: Box<dyn Read + 'a>,
    holes: Box<[(u64, u64)]>,
    next_hole: usize,
    pos: u64,
    len: u64,
}

impl Read for SkipHoles<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.len {
                return Ok(0);
            }
            if let Some(&(start, count)) = self.holes.get(self.next_hole) {
                let hs = start * BLOCK;
                let he = ((start + count) * BLOCK).min(self.len);
                if self.pos >= hs {
                    // Inside a hole: read and drop it.
                    let mut skip = (&mut self.inner).take(he - self.pos);
                    let n = io::copy(&mut skip, &mut io::sink())?;
                    if n != he - self.pos {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.pos = he;
                    self.next_hole += 1;
                    continue;
                }
                let want = (hs - self.pos).min(buf.len() as u64) as usize;
                let n = self.inner.read(&mut buf[..want])?;
                self.pos += n as u64;
                return Ok(n);
            }
            let want = (self.len - self.pos).min(buf.len() as u64) as usize;
            let n = self.inner.read(&mut buf[..want])?;
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// The options handed to the crate for one attempt.
fn crate_options(
    size: u64,
    inodes: u32,
    facts: &TreeFacts,
    opts: &Ext4Options,
    epoch: i64,
) -> mkext4::Options {
    let (derived_uuid, seed) = plan::identity(&facts.digest);
    let uuid = opts.uuid.unwrap_or(derived_uuid);
    let mut o = mkext4::Options::new(size, uuid, epoch);
    if opts.uuid.is_none() {
        o.hash_seed = seed;
    }
    o.inodes = mkext4::InodeCount::Exact(inodes);
    o.label = opts.label.clone();
    o.reserved_percent = opts.reserved_percent;
    o.journal_blocks = Some(plan::journal_blocks(size));
    o
}

/// A sealed layout and the files to fill, in declaration order.
type Sealed = (
    mkext4::Layout,
    Vec<(mkext4::InodeHandle, crate::tree::InodeId)>,
);

/// Tries to seal at `size`: `Ok(None)` when the image is too small.
fn try_seal(
    tree: &Tree,
    o: mkext4::Options,
    clamp: Option<Time>,
) -> Result<Option<Sealed>, Ext4Error> {
    let d = match declare(tree, o, clamp) {
        Ok(d) => d,
        Err(Ext4Error::Full) => return Ok(None),
        Err(Ext4Error::Options(why)) if why.contains("too small") || why.contains("journal") => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    match d.builder.seal() {
        Ok(l) => Ok(Some((l, d.files))),
        Err(mkext4::Error::Invalid(why))
            if why.contains("too small") || why.contains("image full") =>
        {
            Ok(None)
        }
        Err(mkext4::Error::Unsupported(why))
            if why.contains("journal") || why.contains("too small") =>
        {
            Ok(None)
        }
        Err(e) => Err(Ext4Error::Seal(e.to_string())),
    }
}

/// The prefix of this process's temp images (`.rootsmith-<pid>-`), so an interrupted run
/// can remove its own and only its own.
pub fn temp_prefix() -> String {
    format!(".rootsmith-{}-", std::process::id())
}

/// Writes `tree` as an ext4 image at `out`. `progress(done, total)` is called as bytes are
/// written.
pub fn write_image(
    tree: &Tree,
    out: &Path,
    opts: &Ext4Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, Ext4Error> {
    if let Some(l) = &opts.label {
        if l.len() > 16 {
            return Err(Ext4Error::Options(format!(
                "label {l:?} is longer than 16 bytes"
            )));
        }
    }
    let clamp = opts.epoch.map(Time::secs);
    let facts = plan::facts(tree, clamp);
    let epoch = opts
        .epoch
        .unwrap_or(facts.latest.sec)
        .clamp(0, i64::from(u32::MAX));
    let inodes_for = |size: Option<u64>| {
        opts.inodes
            .unwrap_or_else(|| plan::default_inodes(facts.inodes, size))
    };
    if u64::from(inodes_for(opts.size)) < facts.inodes {
        return Err(Ext4Error::Options(format!(
            "--inodes {} is fewer than the {} inodes the tree needs",
            inodes_for(opts.size),
            facts.inodes
        )));
    }

    let (size, layout, files) = match opts.size {
        Some(size) => {
            let inodes = inodes_for(Some(size));
            match try_seal(
                tree,
                crate_options(size, inodes, &facts, opts, epoch),
                clamp,
            )? {
                Some((l, f)) => (size, l, f),
                None => {
                    let needed = minimum_size(tree, &facts, opts, epoch, clamp, inodes_for(None))?;
                    return Err(Ext4Error::TooSmall {
                        given: size,
                        needed,
                    });
                }
            }
        }
        None => {
            let inodes = inodes_for(None);
            // Seal once at the estimate to learn what the tree really uses, then size the
            // image to that plus headroom.
            let mut size = plan::estimate_min_size(&facts, inodes);
            let mut attempt = 0;
            let used = loop {
                if let Some((l, _)) = try_seal(
                    tree,
                    crate_options(size, inodes, &facts, opts, epoch),
                    clamp,
                )? {
                    break used_blocks(&l)? * BLOCK;
                }
                attempt += 1;
                if attempt > 40 {
                    return Err(Ext4Error::Seal(
                        "could not find an image size that holds the tree".into(),
                    ));
                }
                size = (size + size / 10).next_multiple_of(1 << 20);
            };
            let headroom = (used * u64::from(opts.headroom_percent) / 100).max(4 << 20);
            let mut size = (used + headroom).next_multiple_of(1 << 20).max(16 << 20);
            let mut attempt = 0;
            loop {
                if let Some((l, f)) = try_seal(
                    tree,
                    crate_options(size, inodes, &facts, opts, epoch),
                    clamp,
                )? {
                    break (size, l, f);
                }
                attempt += 1;
                if attempt > 40 {
                    return Err(Ext4Error::Seal(
                        "could not find an image size that holds the tree".into(),
                    ));
                }
                size = (size + size / 20).next_multiple_of(1 << 20);
            }
        }
    };

    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let io_err = |source: io::Error| Ext4Error::Output {
        path: out.display().to_string(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .suffix(".ext4.part")
        .tempfile_in(&dir)
        .map_err(io_err)?;
    tmp.as_file().set_len(size).map_err(io_err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
    }
    let mut report_progress = |done: u64| progress(done, facts.file_bytes);
    let mut sink = Sink {
        file: tmp.as_file(),
        len: size,
        buf: Vec::with_capacity(COMBINE),
        buf_at: 0,
        written: 0,
        progress: &mut report_progress,
    };
    let mut w = layout
        .writer(&mut sink)
        .map_err(|e| Ext4Error::Write(e.to_string()))?;
    for (h, id) in &files {
        if layout.extents(*h).is_empty() {
            continue;
        }
        let Kind::File(c) = &tree.inode(*id).kind else {
            unreachable!("only files are filled")
        };
        let path_of = || {
            tree.walk()
                .into_iter()
                .find(|e| e.id == *id)
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .unwrap_or_default()
        };
        let inner = tree.store().open(c).map_err(|source| Ext4Error::Content {
            path: path_of(),
            source,
        })?;
        let mut reader = SkipHoles {
            inner,
            holes: c.holes(),
            next_hole: 0,
            pos: 0,
            len: c.len(),
        };
        w.fill(*h, &mut reader).map_err(|e| Ext4Error::Content {
            path: path_of(),
            source: io::Error::other(e.to_string()),
        })?;
    }
    w.finish().map_err(|e| Ext4Error::Write(e.to_string()))?;
    sink.flush().map_err(io_err)?;
    drop(sink);
    let file = tmp.as_file();
    file.sync_all().map_err(io_err)?;
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, 1024).map_err(io_err)?;
    let counts = super::superblock::counts(&sb)
        .ok_or_else(|| Ext4Error::Write("the written superblock has no ext4 magic".into()))?;
    tmp.persist(out).map_err(|e| io_err(e.error))?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    let uuid = opts.uuid.unwrap_or(plan::identity(&facts.digest).0);
    Ok(Report {
        size,
        uuid: plan::format_uuid(&uuid),
        inodes: counts.s_inodes_count,
        inodes_used: counts.s_inodes_count - counts.s_free_inodes_count,
        blocks: counts.s_blocks_count,
        blocks_used: counts.s_blocks_count - counts.s_free_blocks_count,
        file_bytes: facts.file_bytes,
        tree_digest: facts.digest.to_string(),
        epoch,
    })
}

/// The smallest size (in whole MiB) the crate accepts for this tree.
fn minimum_size(
    tree: &Tree,
    facts: &TreeFacts,
    opts: &Ext4Options,
    epoch: i64,
    clamp: Option<Time>,
    inodes: u32,
) -> Result<u64, Ext4Error> {
    let mut size = plan::estimate_min_size(facts, inodes);
    // Step down while it still fits, then up until it does.
    let step = (size / 50).next_multiple_of(1 << 20).max(1 << 20);
    while size > step
        && try_seal(
            tree,
            crate_options(size - step, inodes, facts, opts, epoch),
            clamp,
        )?
        .is_some()
    {
        size -= step;
    }
    for _ in 0..200 {
        if try_seal(tree, crate_options(size, inodes, facts, opts, epoch), clamp)?.is_some() {
            return Ok(size);
        }
        size += step;
    }
    Err(Ext4Error::Seal(
        "could not find an image size that holds the tree".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Content, Follow, Inode, Meta};

    fn tree_with(name: &[u8]) -> Tree {
        let mut t = Tree::new();
        let m = Meta::new(0o644, Time::secs(1));
        let mut path = b"/d/".to_vec();
        path.extend_from_slice(name);
        t.insert(
            &path,
            Inode::new(Kind::File(Content::bytes(&b"x"[..])), m.clone()),
            &m,
            Follow::Scoped,
        )
        .expect("insert");
        t
    }

    #[test]
    fn names_the_writer_cannot_take_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.ext4");
        for (name, why) in [(&b"bad\xff"[..], "UTF-8"), (&[b'n'; 256][..], "255")] {
            let e = write_image(
                &tree_with(name),
                &out,
                &Ext4Options::default(),
                &mut |_, _| {},
            )
            .expect_err("must fail")
            .to_string();
            assert!(e.starts_with("/d/") && e.contains(why), "{e}");
            assert!(!out.exists());
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "temp file left"
            );
        }
        write_image(
            &tree_with(&[b'n'; 255]),
            &out,
            &Ext4Options::default(),
            &mut |_, _| {},
        )
        .expect("255 bytes fit");
    }

    #[test]
    fn a_given_size_too_small_says_what_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.ext4");
        let mut t = Tree::new();
        let m = Meta::new(0o644, Time::secs(1));
        let data = vec![1u8; 40 << 20];
        let c = t
            .store_mut()
            .ingest(&mut &data[..], data.len() as u64)
            .unwrap();
        t.insert(
            b"/big",
            Inode::new(Kind::File(c), m.clone()),
            &m,
            Follow::Scoped,
        )
        .unwrap();
        let opts = Ext4Options {
            size: Some(20 << 20),
            ..Ext4Options::default()
        };
        match write_image(&t, &out, &opts, &mut |_, _| {}) {
            Err(Ext4Error::TooSmall { needed, .. }) => {
                assert!(needed > 40 << 20 && needed < 64 << 20, "{needed}")
            }
            other => panic!("expected TooSmall, got {other:?}"),
        }
        assert!(!out.exists());
    }

    #[test]
    fn source_date_epoch_clamps_times_and_fixes_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tree_with(b"f");
        let id = t.lookup(b"/d/f").unwrap();
        t.inode_mut(id).meta.mtime = Time::secs(2_000_000_000);
        let opts = Ext4Options {
            epoch: Some(1_000),
            ..Ext4Options::default()
        };
        let a = dir.path().join("a.ext4");
        let b = dir.path().join("b.ext4");
        let ra = write_image(&t, &a, &opts, &mut |_, _| {}).unwrap();
        write_image(&t, &b, &opts, &mut |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(ra.epoch, 1_000);
        let fs = ext4_view::Ext4::load_from_path(&a).unwrap();
        let md = fs.metadata("/d/f").unwrap();
        assert_eq!(
            md.modified().seconds(),
            1_000,
            "mtime clamped to SOURCE_DATE_EPOCH"
        );
    }
}
