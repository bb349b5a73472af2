//! The x86 `bzImage` (Documentation/arch/x86/boot.rst) and the ELF `vmlinux` inside it.
//!
//! Firecracker and libkrun load an uncompressed ELF kernel; distributions ship a bzImage:
//! real-mode setup (`setup_sects` + 1 sectors), then the protected-mode part, which holds the
//! compressed `vmlinux` at `payload_offset`/`payload_length` (boot protocol ≥ 2.08; the
//! kernel appends the uncompressed size as a little-endian u32). [`extract_vmlinux`] reads
//! the header, decompresses (gzip, xz, zstd, lz4 legacy, bzip2, lzma) and checks that the
//! result is an x86-64 ELF executable; when the header is odd it falls back to what the
//! kernel's `scripts/extract-vmlinux` does: scan for each format's magic and keep the first
//! candidate that decompresses to an ELF. Untrusted bytes: nothing here panics, output is
//! capped, and the scan tries a bounded number of candidates.

use std::io::Read;

/// Most a decompressed kernel may grow to (a debug vmlinux with symbols is a few hundred MiB).
pub const MAX_VMLINUX: u64 = 1 << 30;
/// Most scan candidates tried before giving up (hostile input could hold many fake magics).
const MAX_CANDIDATES: usize = 64;
/// The LZ4 "legacy" frame magic the kernel's `lz4 -l` writes, and its block size.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// A compression format a kernel payload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (`1f 8b 08`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// LZ4 legacy frames (`02 21 4c 18`), what `CONFIG_KERNEL_LZ4` writes.
    Lz4,
    /// bzip2 (`BZh`).
    Bzip2,
    /// The old `.lzma` ("LZMA alone") format (`5d 00 00`).
    Lzma,
    /// LZO (`89 4c 5a 4f`): recognised but not supported.
    Lzo,
}

impl Compression {
    /// Every format with its magic, in the order `extract-vmlinux` tries them.
    pub const MAGICS: &'static [(Compression, &'static [u8])] = &[
        (Compression::Gzip, b"\x1f\x8b\x08"),
        (Compression::Xz, b"\xfd7zXZ\x00"),
        (Compression::Bzip2, b"BZh"),
        (Compression::Lzma, b"\x5d\x00\x00"),
        (Compression::Lzo, b"\x89LZO"),
        (Compression::Lz4, b"\x02\x21\x4c\x18"),
        (Compression::Zstd, b"\x28\xb5\x2f\xfd"),
    ];

    /// The format whose magic `data` starts with.
    pub fn detect(data: &[u8]) -> Option<Compression> {
        Compression::MAGICS
            .iter()
            .find(|(_, m)| data.starts_with(m))
            .map(|(c, _)| *c)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Bzip2 => "bzip2",
            Compression::Lzma => "lzma",
            Compression::Lzo => "lzo",
        }
    }
}

/// Why no ELF kernel came out.
#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    /// Neither a bzImage header nor any compressed ELF inside.
    #[error("not a bzImage and no compressed ELF kernel found inside it (pass an x86 bzImage, e.g. /boot/vmlinuz-*, or an ELF vmlinux)")]
    NotFound,
    /// The payload uses a format rootsmith cannot decompress.
    #[error("the kernel payload is {0}-compressed, which rootsmith cannot decompress; use a kernel built with gzip, xz, zstd, lz4, bzip2 or lzma")]
    Unsupported(&'static str),
    /// The payload is broken.
    #[error("the {format} kernel payload does not decompress: {why}")]
    Decompress {
        /// Format.
        format: &'static str,
        /// Decoder message.
        why: String,
    },
    /// The payload decompressed to more than [`MAX_VMLINUX`].
    #[error("the {0} kernel payload decompresses to more than 1 GiB; refusing")]
    TooLarge(&'static str),
    /// The payload decompressed, but not to an x86-64 ELF.
    #[error("the {format} kernel payload decompressed to {len} bytes that are not an x86-64 ELF executable ({why})")]
    NotElf {
        /// Format.
        format: &'static str,
        /// Decompressed length.
        len: usize,
        /// What is wrong with the ELF header.
        why: String,
    },
}

/// The parts of the x86 boot header rootsmith reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupHeader {
    /// `setup_sects` (0 means 4).
    pub setup_sects: u8,
    /// Boot protocol `version` (`0x020f` is 2.15).
    pub version: u16,
    /// `payload_offset`, from the start of the protected-mode code.
    pub payload_offset: u32,
    /// `payload_length`.
    pub payload_length: u32,
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl SetupHeader {
    /// Parses the header of a bzImage; `None` without the `HdrS` magic.
    pub fn parse(b: &[u8]) -> Option<SetupHeader> {
        if b.get(0x202..0x206)? != b"HdrS" || le16(b, 0x1fe)? != 0xAA55 {
            return None;
        }
        let version = le16(b, 0x206)?;
        let (payload_offset, payload_length) = if version >= 0x0208 {
            (le32(b, 0x248)?, le32(b, 0x24c)?)
        } else {
            (0, 0)
        };
        Some(SetupHeader {
            setup_sects: *b.get(0x1f1)?,
            version,
            payload_offset,
            payload_length,
        })
    }

    /// Where the protected-mode code starts in the file.
    pub fn protected_mode_start(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            usize::from(self.setup_sects)
        };
        (sects + 1) * 512
    }

    /// The payload's byte range in the file, when the header names one that fits.
    pub fn payload_range(&self, file_len: usize) -> Option<std::ops::Range<usize>> {
        if self.version < 0x0208 || self.payload_length == 0 {
            return None;
        }
        let start = self
            .protected_mode_start()
            .checked_add(usize::try_from(self.payload_offset).ok()?)?;
        let end = start.checked_add(usize::try_from(self.payload_length).ok()?)?;
        (end <= file_len).then_some(start..end)
    }
}

/// An ELF kernel and where it came from.
#[derive(Debug, Clone)]
pub struct Vmlinux {
    /// The ELF bytes.
    pub elf: Vec<u8>,
    /// The payload's format (`None` when the input already was an ELF).
    pub compression: Option<Compression>,
    /// True when the setup header located the payload; false for the magic scan.
    pub from_header: bool,
    /// The payload's offset in the input.
    pub payload_offset: usize,
    /// The ELF entry point.
    pub entry: u64,
}

/// What the first bytes of an ELF say, for an x86-64 executable kernel.
pub fn check_elf_x86_64(b: &[u8]) -> Result<u64, String> {
    if !b.starts_with(b"\x7fELF") {
        return Err("no ELF magic".into());
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not 64-bit little-endian".into());
    }
    let e_type = le16(b, 0x10).ok_or("truncated ELF header")?;
    let machine = le16(b, 0x12).ok_or("truncated ELF header")?;
    if machine != 62 {
        return Err(format!("machine {machine}, not x86-64 (62)"));
    }
    if e_type != 2 {
        return Err(format!("ELF type {e_type}, not an executable (2)"));
    }
    let entry = le32(b, 0x18)
        .zip(le32(b, 0x1c))
        .map(|(lo, hi)| u64::from(hi) << 32 | u64::from(lo))
        .ok_or("truncated ELF header")?;
    let phnum = le16(b, 0x38).ok_or("truncated ELF header")?;
    if phnum == 0 {
        return Err("no program headers".into());
    }
    Ok(entry)
}

fn read_capped(mut r: impl Read, format: Compression) -> Result<Vec<u8>, BzImageError> {
    let mut out = Vec::new();
    (&mut r)
        .take(MAX_VMLINUX + 1)
        .read_to_end(&mut out)
        .map_err(|e| BzImageError::Decompress {
            format: format.name(),
            why: e.to_string(),
        })?;
    if out.len() as u64 > MAX_VMLINUX {
        return Err(BzImageError::TooLarge(format.name()));
    }
    Ok(out)
}

/// LZ4 legacy frames: magic, then blocks of `u32 compressed length` + data, each but the
/// last decompressing to exactly 8 MiB; a repeated magic starts a new frame.
fn unlz4_legacy(data: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let bad = |why: String| BzImageError::Decompress { format: "lz4", why };
    if le32(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err(bad("no legacy frame magic".into()));
    }
    let mut pos = 4usize;
    let mut out: Vec<u8> = Vec::new();
    while let Some(size) = le32(data, pos) {
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        let size = size as usize;
        let start = pos + 4;
        let Some(block) = start.checked_add(size).and_then(|end| data.get(start..end)) else {
            // The kernel's appended size (or trailing bytes) is not a block: the end.
            break;
        };
        if out.len() as u64 + LZ4_LEGACY_BLOCK as u64 > MAX_VMLINUX + LZ4_LEGACY_BLOCK as u64 {
            return Err(BzImageError::TooLarge("lz4"));
        }
        let at = out.len();
        out.resize(at + LZ4_LEGACY_BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[at..])
            .map_err(|e| bad(format!("block at byte {pos}: {e}")))?;
        out.truncate(at + n);
        pos = start + size;
        if n < LZ4_LEGACY_BLOCK {
            break;
        }
    }
    if out.is_empty() {
        return Err(bad("no blocks".into()));
    }
    if out.len() as u64 > MAX_VMLINUX {
        return Err(BzImageError::TooLarge("lz4"));
    }
    Ok(out)
}

/// Decompresses one payload that starts at the beginning of `data` (trailing bytes after
/// the compressed stream are ignored).
pub fn decompress(format: Compression, data: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let bad = |why: String| BzImageError::Decompress {
        format: format.name(),
        why,
    };
    match format {
        Compression::Gzip => read_capped(flate2::read::GzDecoder::new(data), format),
        Compression::Xz => read_capped(liblzma::read::XzDecoder::new(data), format),
        Compression::Lzma => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX)
                .map_err(|e| bad(e.to_string()))?;
            read_capped(liblzma::read::XzDecoder::new_stream(data, stream), format)
        }
        Compression::Bzip2 => read_capped(bzip2::read::BzDecoder::new(data), format),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| bad(e.to_string()))?
                .single_frame();
            read_capped(d, format)
        }
        Compression::Lz4 => unlz4_legacy(data),
        Compression::Lzo => Err(BzImageError::Unsupported("lzo")),
    }
}

fn to_vmlinux(
    format: Compression,
    payload: &[u8],
    from_header: bool,
    payload_offset: usize,
) -> Result<Vmlinux, BzImageError> {
    let elf = decompress(format, payload)?;
    let entry = check_elf_x86_64(&elf).map_err(|why| BzImageError::NotElf {
        format: format.name(),
        len: elf.len(),
        why,
    })?;
    Ok(Vmlinux {
        elf,
        compression: Some(format),
        from_header,
        payload_offset,
        entry,
    })
}

/// The ELF `vmlinux` of a bzImage (or the input itself when it already is an x86-64 ELF).
pub fn extract_vmlinux(image: &[u8]) -> Result<Vmlinux, BzImageError> {
    if let Ok(entry) = check_elf_x86_64(image) {
        return Ok(Vmlinux {
            elf: image.to_vec(),
            compression: None,
            from_header: false,
            payload_offset: 0,
            entry,
        });
    }
    let mut header_err = None;
    if let Some(range) = SetupHeader::parse(image).and_then(|h| h.payload_range(image.len())) {
        let payload = &image[range.clone()];
        match Compression::detect(payload) {
            Some(format) => match to_vmlinux(format, payload, true, range.start) {
                Ok(v) => return Ok(v),
                Err(e) => header_err = Some(e),
            },
            None => header_err = Some(BzImageError::NotFound),
        }
    }
    match scan(image) {
        Ok(v) => Ok(v),
        // The header's own error says more than "not found" from the scan.
        Err(BzImageError::NotFound) => Err(header_err.unwrap_or(BzImageError::NotFound)),
        Err(e) => Err(header_err.unwrap_or(e)),
    }
}

/// `scripts/extract-vmlinux`: every offset where a format's magic appears, in file order,
/// until one decompresses to an ELF. The first real error is kept for the message.
pub fn scan(image: &[u8]) -> Result<Vmlinux, BzImageError> {
    let mut candidates: Vec<(usize, Compression)> = Vec::new();
    for (format, magic) in Compression::MAGICS {
        let mut from = 0usize;
        while let Some(i) = image
            .get(from..)
            .and_then(|rest| rest.windows(magic.len()).position(|w| w == *magic))
        {
            candidates.push((from + i, *format));
            from += i + 1;
            if candidates.len() > 4 * MAX_CANDIDATES {
                break;
            }
        }
    }
    candidates.sort_unstable_by_key(|(i, _)| *i);
    let mut first_err = None;
    for (at, format) in candidates.into_iter().take(MAX_CANDIDATES) {
        match to_vmlinux(format, &image[at..], false, at) {
            Ok(v) => return Ok(v),
            Err(e @ (BzImageError::TooLarge(_) | BzImageError::Unsupported(_))) => {
                first_err.get_or_insert(e);
            }
            Err(BzImageError::NotElf { .. }) | Err(_) => {}
        }
    }
    Err(first_err.unwrap_or(BzImageError::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal x86-64 ELF executable header followed by filler.
    pub(crate) fn fake_elf(len: usize) -> Vec<u8> {
        let mut e = vec![0u8; len.max(64)];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
        e[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        e[0x18..0x20].copy_from_slice(&0x0100_0000u64.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        for (i, b) in e.iter_mut().enumerate().skip(64) {
            *b = (i % 251) as u8 ^ (i / 4096) as u8;
        }
        e
    }

    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    pub(crate) fn compress(format: Compression, data: &[u8]) -> Vec<u8> {
        match format {
            Compression::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Xz => {
                let mut w = liblzma::write::XzEncoder::new(Vec::new(), 1);
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Lzma => {
                let opts = liblzma::stream::LzmaOptions::new_preset(1).unwrap();
                let s = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
                let mut w = liblzma::write::XzEncoder::new_stream(Vec::new(), s);
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
            Compression::Lz4 => lz4_legacy(data),
            Compression::Lzo => b"\x89LZO\0\r\n\x1a\n".to_vec(),
        }
    }

    /// A bzImage-shaped file: 2 setup sectors, a header, some stub code, the payload with
    /// its appended size, then trailing bytes.
    pub(crate) fn fake_bzimage(format: Compression, elf: &[u8], version: u16) -> Vec<u8> {
        let payload = {
            let mut p = compress(format, elf);
            p.extend_from_slice(&(elf.len() as u32).to_le_bytes());
            p
        };
        let mut b = vec![0u8; 3 * 512];
        b[0x1f1] = 2;
        b[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        let stub = 300u32;
        b[0x248..0x24c].copy_from_slice(&stub.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend(std::iter::repeat_n(0x90u8, stub as usize));
        b.extend_from_slice(&payload);
        b.extend_from_slice(&[0xcc; 1000]);
        b
    }

    #[test]
    fn every_format_through_the_header() {
        let elf = fake_elf(20_000);
        for format in [
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Bzip2,
            Compression::Lzma,
        ] {
            let img = fake_bzimage(format, &elf, 0x020f);
            let v = extract_vmlinux(&img).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(v.elf, elf, "{format:?}");
            assert_eq!(v.compression, Some(format));
            assert!(v.from_header, "{format:?}");
            assert_eq!(v.payload_offset, 3 * 512 + 300);
            assert_eq!(v.entry, 0x0100_0000);
        }
    }

    #[test]
    fn old_boot_protocol_falls_back_to_the_scan() {
        let elf = fake_elf(5000);
        for format in [Compression::Gzip, Compression::Zstd, Compression::Lz4] {
            let img = fake_bzimage(format, &elf, 0x0206);
            let v = extract_vmlinux(&img).unwrap();
            assert!(!v.from_header);
            assert_eq!(v.elf, elf);
        }
    }

    #[test]
    fn lz4_spanning_several_blocks() {
        let elf = fake_elf(LZ4_LEGACY_BLOCK * 2 + 12345);
        let img = fake_bzimage(Compression::Lz4, &elf, 0x020f);
        assert_eq!(extract_vmlinux(&img).unwrap().elf, elf);
    }

    #[test]
    fn an_elf_is_returned_as_is_and_other_elves_are_refused() {
        let elf = fake_elf(100);
        let v = extract_vmlinux(&elf).unwrap();
        assert_eq!(v.compression, None);
        let mut arm = elf.clone();
        arm[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
        assert!(check_elf_x86_64(&arm).unwrap_err().contains("183"));
        let img = fake_bzimage(Compression::Gzip, &arm, 0x020f);
        let e = extract_vmlinux(&img).unwrap_err();
        assert!(matches!(e, BzImageError::NotElf { .. }), "{e}");
        assert!(e.to_string().contains("not x86-64"), "{e}");
    }

    #[test]
    fn garbage_and_lzo_give_clear_errors() {
        assert!(matches!(
            extract_vmlinux(b"hello"),
            Err(BzImageError::NotFound)
        ));
        let img = fake_bzimage(Compression::Lzo, &fake_elf(100), 0x020f);
        assert!(matches!(
            extract_vmlinux(&img),
            Err(BzImageError::Unsupported("lzo"))
        ));
        // A truncated payload.
        let mut img = fake_bzimage(Compression::Xz, &fake_elf(50_000), 0x020f);
        img.truncate(3 * 512 + 300 + 200);
        let e = extract_vmlinux(&img).unwrap_err();
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn header_fields() {
        let img = fake_bzimage(Compression::Gzip, &fake_elf(64), 0x020f);
        let h = SetupHeader::parse(&img).unwrap();
        assert_eq!(h.setup_sects, 2);
        assert_eq!(h.protected_mode_start(), 1536);
        assert!(h.payload_range(img.len()).is_some());
        assert!(h.payload_range(1600).is_none());
        assert!(SetupHeader::parse(&img[..0x200]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), at in 0usize..3000, which in 0usize..7) {
            // Plant a magic and a header sometimes, so the interesting paths run.
            let (_, magic) = Compression::MAGICS[which];
            if at + magic.len() <= b.len() {
                b[at..at + magic.len()].copy_from_slice(magic);
            }
            if b.len() > 0x250 && which % 2 == 0 {
                b[0x202..0x206].copy_from_slice(b"HdrS");
                b[0x1fe] = 0x55;
                b[0x1ff] = 0xAA;
            }
            let _ = extract_vmlinux(&b);
        }
    }
}
