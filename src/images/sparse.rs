//! A writer that leaves holes for all-zero 4 KiB blocks. Decompressed ext4 images are mostly
//! zeros; seeking over them instead of writing keeps a downloaded `rootfs.ext4` as sparse as
//! one `rootfs.ext4` built locally (and faster to write). Reads of a hole give zeros, so the
//! bytes are the same.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

const BLOCK: usize = 4096;

/// Writes runs of non-zero blocks and skips zero ones; [`SparseWriter::finish`] sets the
/// length so a trailing hole counts.
#[derive(Debug)]
pub struct SparseWriter<'a> {
    file: &'a File,
    /// Logical length written so far.
    pos: u64,
    /// Where the file's cursor is.
    cursor: u64,
}

impl<'a> SparseWriter<'a> {
    /// Writes into `file` from offset 0 (the file should be empty).
    pub fn new(file: &'a File) -> SparseWriter<'a> {
        SparseWriter {
            file,
            pos: 0,
            cursor: 0,
        }
    }

    /// Bytes written (holes included).
    pub fn len(&self) -> u64 {
        self.pos
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Appends `data`.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            // Blocks are aligned to the file offset, so a hole is always whole blocks.
            let in_block = (self.pos % BLOCK as u64) as usize;
            let first = (BLOCK - in_block).min(rest.len());
            let (head, tail) = rest.split_at(first);
            if head.iter().all(|&b| b == 0) {
                self.pos += head.len() as u64;
                rest = tail;
                continue;
            }
            // A run of non-zero blocks, written at once.
            let mut end = first;
            while end < rest.len() {
                let next = (end + BLOCK).min(rest.len());
                if rest[end..next].iter().all(|&b| b == 0) {
                    break;
                }
                end = next;
            }
            if self.cursor != self.pos {
                let mut f = self.file;
                f.seek(SeekFrom::Start(self.pos))?;
            }
            let mut f = self.file;
            f.write_all(&rest[..end])?;
            self.pos += end as u64;
            self.cursor = self.pos;
            rest = &rest[end..];
        }
        Ok(())
    }

    /// Sets the file's length to what was written (a trailing hole included).
    pub fn finish(self) -> io::Result<u64> {
        self.file.set_len(self.pos)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_bytes_read_back_equal_and_zero_blocks_are_holes() {
        let mut data = vec![0u8; 1 << 20];
        data[5] = 1; // first block
        data[300_000] = 2; // a middle block
        data.extend_from_slice(b"tail"); // a short last block
        let mut zeros_at_end = data.clone();
        zeros_at_end.extend(std::iter::repeat_n(0u8, 10_000));
        for want in [data, zeros_at_end] {
            let tmp = tempfile::tempfile().unwrap();
            let mut w = SparseWriter::new(&tmp);
            // Odd chunk sizes, so blocks straddle writes.
            for chunk in want.chunks(3001) {
                w.write_all(chunk).unwrap();
            }
            assert_eq!(w.finish().unwrap(), want.len() as u64);
            let mut got = Vec::new();
            (&tmp).seek(SeekFrom::Start(0)).unwrap();
            (&tmp).read_to_end(&mut got).unwrap();
            assert!(got == want, "content differs");
            let allocated = tmp.metadata().unwrap().blocks() * 512;
            assert!(
                allocated < 64 * 1024,
                "{allocated} bytes allocated for ~3 data blocks"
            );
        }
    }
}
