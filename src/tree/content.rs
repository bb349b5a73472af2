//! File contents of the staging tree, kept out of RAM: small files inline up to a budget,
//! larger ones in one unlinked spill file, host files by reference. Whole zero blocks are
//! recorded as holes as the bytes arrive, so the image writer can keep them sparse.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Block size used for hole detection (the ext4 block size).
pub const BLOCK: u64 = 4096;

/// Files up to this size are kept in memory while the inline budget lasts.
pub const INLINE_MAX: u64 = 64 * 1024;

/// Total bytes kept inline before everything else goes to the spill file.
pub const INLINE_BUDGET: u64 = 96 * 1024 * 1024;

/// Runs of whole zero blocks inside a file: `(first block, block count)`, sorted, disjoint.
pub type Holes = Box<[(u64, u64)]>;

/// Where a regular file's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Bytes in memory.
    Inline(Arc<[u8]>),
    /// Bytes in the tree's spill file at `offset` (holes are not written there).
    Spill {
        /// Offset in the spill file.
        offset: u64,
        /// File size.
        len: u64,
        /// Whole zero blocks.
        holes: Holes,
        /// Fingerprint of the bytes (see [`Content::fingerprint`]).
        fp: u128,
    },
    /// A file on the host, read again when the image is written.
    Host {
        /// Absolute or working-directory-relative path.
        path: PathBuf,
        /// Size when it was added; a different size at write time is an error.
        len: u64,
        /// Whole zero blocks found when it was added.
        holes: Holes,
        /// Fingerprint of the bytes when it was added.
        fp: u128,
    },
}

impl Content {
    /// Bytes given in memory.
    pub fn bytes(data: impl Into<Arc<[u8]>>) -> Content {
        Content::Inline(data.into())
    }

    /// The file size.
    pub fn len(&self) -> u64 {
        match self {
            Content::Inline(b) => b.len() as u64,
            Content::Spill { len, .. } | Content::Host { len, .. } => *len,
        }
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fast 128-bit fingerprint (XXH3-128) of the bytes, computed as they arrive: it
    /// feeds the image identity (UUID, hash seed) without another pass over the data.
    pub fn fingerprint(&self) -> u128 {
        match self {
            Content::Inline(b) => twox_hash::XxHash3_128::oneshot(b),
            Content::Spill { fp, .. } | Content::Host { fp, .. } => *fp,
        }
    }

    /// Whole zero blocks of the file.
    pub fn holes(&self) -> Holes {
        match self {
            Content::Inline(b) => zero_runs(b, 0).into_boxed_slice(),
            Content::Spill { holes, .. } | Content::Host { holes, .. } => holes.clone(),
        }
    }
}

/// Appends the runs of whole zero blocks in `buf` (which starts at block `first_block` of
/// the file) to a run list, merging with the last run.
fn push_zero_runs(runs: &mut Vec<(u64, u64)>, buf: &[u8], first_block: u64) {
    for (i, block) in buf.chunks(BLOCK as usize).enumerate() {
        if block.len() as u64 != BLOCK || block.iter().any(|&b| b != 0) {
            continue;
        }
        let n = first_block + i as u64;
        match runs.last_mut() {
            Some((start, count)) if *start + *count == n => *count += 1,
            _ => runs.push((n, 1)),
        }
    }
}

fn zero_runs(buf: &[u8], first_block: u64) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    push_zero_runs(&mut runs, buf, first_block);
    runs
}

/// The content store of one tree: an inline budget and a lazily created spill file.
#[derive(Debug, Default)]
pub struct Store {
    spill: Option<File>,
    spill_len: u64,
    inline_used: u64,
}

impl Store {
    /// Reads exactly `len` bytes from `src` into the store. A stream that ends early is an
    /// `UnexpectedEof` error; nothing is allocated from `len` alone, so a lying size costs
    /// nothing.
    pub fn ingest(&mut self, src: &mut dyn Read, len: u64) -> io::Result<Content> {
        if len <= INLINE_MAX && self.inline_used + len <= INLINE_BUDGET {
            // One read for a whole small file: no trailing read for EOF.
            let mut buf = vec![0u8; len as usize];
            let got = read_full(src, &mut buf)?;
            if got as u64 != len {
                return Err(short(len, got as u64));
            }
            self.inline_used += len;
            return Ok(Content::Inline(buf.into()));
        }
        if self.spill.is_none() {
            self.spill = Some(tempfile::tempfile()?);
        }
        let spill = self.spill.as_ref().expect("created above");
        let offset = self.spill_len;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        let mut holes = Vec::new();
        let mut hasher = twox_hash::XxHash3_128::new();
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = read_full(src, &mut buf[..want])?;
            if n == 0 {
                return Err(short(len, done));
            }
            push_zero_runs(&mut holes, &buf[..n], done / BLOCK);
            hasher.write(&buf[..n]);
            // Holes are skipped in the spill file too: it stays sparse.
            write_skipping_zero_blocks(spill, &buf[..n], offset + done)?;
            done += n as u64;
        }
        self.spill_len = offset + len.div_ceil(BLOCK) * BLOCK;
        // Trailing zero blocks were skipped: extend the file so reads see them as zeros.
        if spill.metadata()?.len() < offset + len {
            spill.set_len(offset + len)?;
        }
        Ok(Content::Spill {
            offset,
            len,
            holes: holes.into_boxed_slice(),
            fp: hasher.finish_128(),
        })
    }

    /// A host file of `len` bytes: small ones are read into memory now (one read, as
    /// `mke2fs -d` does); larger ones are read once to find zero blocks and fingerprint them,
    /// and again when the image is written.
    pub fn host_file(&mut self, path: &Path, len: u64) -> io::Result<Content> {
        let mut f = File::open(path)?;
        if len <= INLINE_MAX && self.inline_used + len <= INLINE_BUDGET {
            return self.ingest(&mut f, len).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    changed(path)
                } else {
                    e
                }
            });
        }
        let mut holes = Vec::new();
        let mut hasher = twox_hash::XxHash3_128::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = read_full(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            push_zero_runs(&mut holes, &buf[..n], done / BLOCK);
            hasher.write(&buf[..n]);
            done += n as u64;
        }
        if done != len {
            return Err(changed(path));
        }
        Ok(Content::Host {
            path: path.to_owned(),
            len,
            holes: holes.into_boxed_slice(),
            fp: hasher.finish_128(),
        })
    }

    /// A reader over the whole content of a file.
    pub fn open<'a>(&'a self, content: &'a Content) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match content {
            Content::Inline(b) => Box::new(&b[..]),
            Content::Spill { offset, len, .. } => {
                let file = self
                    .spill
                    .as_ref()
                    .ok_or_else(|| io::Error::other("spilled content without a spill file"))?;
                Box::new(SpillReader {
                    file,
                    pos: *offset,
                    end: offset + len,
                })
            }
            Content::Host { path, len, .. } => {
                let f = File::open(path)?;
                if f.metadata()?.len() != *len {
                    return Err(changed(path));
                }
                Box::new(f.take(*len))
            }
        })
    }

    /// Reads a whole file into memory (for small configuration files edited by later stages).
    pub fn read_all(&self, content: &Content) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(content)?.read_to_end(&mut out)?;
        Ok(out)
    }
}

fn write_skipping_zero_blocks(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    // `at` is block-aligned for every call but the last of a file, whose tail is written
    // as is.
    let mut off = 0usize;
    while off < buf.len() {
        let end = (off + BLOCK as usize).min(buf.len());
        let chunk = &buf[off..end];
        if chunk.len() as u64 != BLOCK || chunk.iter().any(|&b| b != 0) {
            // Coalesce consecutive non-zero blocks into one write.
            let mut stop = end;
            while stop < buf.len() {
                let next = (stop + BLOCK as usize).min(buf.len());
                let c = &buf[stop..next];
                if c.len() as u64 == BLOCK && c.iter().all(|&b| b == 0) {
                    break;
                }
                stop = next;
            }
            file.write_all_at(&buf[off..stop], at + off as u64)?;
            off = stop;
        } else {
            off = end;
        }
    }
    Ok(())
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn short(want: u64, got: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("data ends after {got} of {want} bytes"),
    )
}

fn changed(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} changed size while rootsmith was reading it",
        path.display()
    ))
}

struct SpillReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpillReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spill file shorter than recorded",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_read_back_as_zeros() {
        let mut store = Store::default();
        let mut data = vec![7u8; INLINE_MAX as usize + 3 * BLOCK as usize + 5];
        data[BLOCK as usize..3 * BLOCK as usize].fill(0);
        let c = store.ingest(&mut &data[..], data.len() as u64).unwrap();
        assert!(matches!(c, Content::Spill { .. }));
        assert_eq!(&c.holes()[..], &[(1, 2)]);
        assert_eq!(store.read_all(&c).unwrap(), data);
    }

    #[test]
    fn short_stream_is_an_error_not_a_partial_file() {
        let mut store = Store::default();
        let data = [1u8; 10];
        let e = store.ingest(&mut &data[..], 1 << 40).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = store.ingest(&mut &data[..], 11).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
