//! A reader that checks a blob as it streams: it fails as soon as more bytes than the
//! declared size arrive, and at the end if the size or the sha256 is wrong. Consumers must
//! read it to its end (a tar reader stops early; drain the rest) for the check to happen.

use std::io::{self, Read};

use crate::digest::{Digest, Hasher};

/// Verifies `inner` against a digest and a size.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    count: u64,
    digest: Digest,
    size: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield exactly `size` bytes hashing to `digest`.
    pub fn new(inner: R, digest: Digest, size: u64) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new()),
            count: 0,
            digest,
            size,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        // Ask for at most one byte past the declared size, to notice an overlong blob
        // without reading it all.
        let room = self.size.saturating_sub(self.count).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.count = self.count.saturating_add(n as u64);
        if self.count > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than the {} bytes its descriptor says",
                    self.digest, self.size
                ),
            ));
        }
        if n > 0 {
            hasher.update(&buf[..n]);
            return Ok(n);
        }
        let actual = self.hasher.take().expect("checked above").finish();
        if self.count != self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "blob {} ends after {} of {} bytes",
                    self.digest, self.count, self.size
                ),
            ));
        }
        if actual != self.digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} has wrong content (its sha256 is {actual})",
                    self.digest
                ),
            ));
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8], d: Digest, size: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        VerifyingReader::new(data, d, size).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn checks_size_and_digest() {
        let d = Digest::of(b"abcdef");
        assert_eq!(read(b"abcdef", d, 6).unwrap(), b"abcdef");
        assert!(read(b"abcdeg", d, 6).is_err());
        assert!(read(b"abcde", d, 6).is_err());
        assert!(read(b"abcdefg", d, 6).is_err());
        // A huge declared size on a short stream fails at the end, having allocated nothing.
        assert!(read(b"abcdef", d, 10 << 30).is_err());
    }
}
