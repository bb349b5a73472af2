//! Just enough ELF (the System V gABI, little-endian, 32- or 64-bit) to find a named
//! section: the section header table, `e_shstrndx` and the section name string table.
//! Kernel modules keep their metadata in `.modinfo`. Untrusted bytes: every offset is
//! checked, nothing panics.

/// Why a section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No `\x7fELF` magic.
    #[error("not an ELF file")]
    NotElf,
    /// Big-endian or an unknown class.
    #[error(
        "unsupported ELF flavour (class {class}, data {data}); only little-endian ELF is read"
    )]
    Unsupported {
        /// `EI_CLASS`.
        class: u8,
        /// `EI_DATA`.
        data: u8,
    },
    /// An offset or size points outside the file.
    #[error("truncated or corrupt ELF: {0}")]
    Corrupt(&'static str),
}

fn get<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], ElfError> {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Corrupt("header field past the end"))
}

fn u16_at(b: &[u8], off: usize) -> Result<usize, ElfError> {
    Ok(usize::from(u16::from_le_bytes(get(b, off)?)))
}

fn u32_at(b: &[u8], off: usize) -> Result<usize, ElfError> {
    usize::try_from(u32::from_le_bytes(get(b, off)?)).map_err(|_| ElfError::Corrupt("offset"))
}

fn u64_at(b: &[u8], off: usize) -> Result<usize, ElfError> {
    usize::try_from(u64::from_le_bytes(get(b, off)?)).map_err(|_| ElfError::Corrupt("offset"))
}

/// One section header: name offset, file offset, size.
struct Shdr {
    name: usize,
    offset: usize,
    size: usize,
    nobits: bool,
}

/// The bytes of the section called `name`, or `Ok(None)` when the file has none.
pub fn section<'a>(b: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    if !b.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    let (class, data) = (b.get(4).copied(), b.get(5).copied());
    let wide = match (class, data) {
        (Some(2), Some(1)) => true,
        (Some(1), Some(1)) => false,
        (c, d) => {
            return Err(ElfError::Unsupported {
                class: c.unwrap_or(0),
                data: d.unwrap_or(0),
            })
        }
    };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            u64_at(b, 0x28)?,
            u16_at(b, 0x3a)?,
            u16_at(b, 0x3c)?,
            u16_at(b, 0x3e)?,
        )
    } else {
        (
            u32_at(b, 0x20)?,
            u16_at(b, 0x2e)?,
            u16_at(b, 0x30)?,
            u16_at(b, 0x32)?,
        )
    };
    if shnum == 0 {
        return Ok(None);
    }
    if shentsize < if wide { 64 } else { 40 } {
        return Err(ElfError::Corrupt("section header entry too small"));
    }
    let shdr = |i: usize| -> Result<Shdr, ElfError> {
        let o = i
            .checked_mul(shentsize)
            .and_then(|x| x.checked_add(shoff))
            .ok_or(ElfError::Corrupt("section header offset"))?;
        let sh_type = u32_at(b, o + 4)?;
        let (offset, size) = if wide {
            (u64_at(b, o + 0x18)?, u64_at(b, o + 0x20)?)
        } else {
            (u32_at(b, o + 0x10)?, u32_at(b, o + 0x14)?)
        };
        Ok(Shdr {
            name: u32_at(b, o)?,
            offset,
            size,
            nobits: sh_type == 8,
        })
    };
    let bytes_of = |s: &Shdr| -> Result<&'a [u8], ElfError> {
        if s.nobits {
            return Ok(&[]);
        }
        s.offset
            .checked_add(s.size)
            .and_then(|end| b.get(s.offset..end))
            .ok_or(ElfError::Corrupt("section past the end of the file"))
    };
    if shstrndx >= shnum {
        return Err(ElfError::Corrupt("e_shstrndx out of range"));
    }
    let strtab = bytes_of(&shdr(shstrndx)?)?;
    for i in 0..shnum {
        let s = shdr(i)?;
        let Some(rest) = strtab.get(s.name..) else {
            continue;
        };
        let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return bytes_of(&s).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small relocatable ELF64 with the given sections (name, bytes).
    pub(crate) fn build(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut strtab = b"\0.shstrtab\0".to_vec();
        let mut body = Vec::new();
        let mut hdrs: Vec<(usize, usize, usize)> = Vec::new(); // name, offset, size
        for (n, data) in sections {
            let name = strtab.len();
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
            hdrs.push((name, 64 + body.len(), data.len()));
            body.extend_from_slice(data);
        }
        hdrs.push((1, 64 + body.len(), strtab.len()));
        body.extend_from_slice(&strtab);
        while body.len() % 8 != 0 {
            body.push(0);
        }
        let shoff = 64 + body.len();
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[0x10] = 1;
        e[0x12] = 62;
        e[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        let shnum = hdrs.len() + 1;
        e[0x3c..0x3e].copy_from_slice(&(shnum as u16).to_le_bytes());
        e[0x3e..0x40].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
        e.extend_from_slice(&body);
        e.extend_from_slice(&[0u8; 64]); // the null section
        for (name, off, size) in hdrs {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&(name as u32).to_le_bytes());
            h[4..8].copy_from_slice(&1u32.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            e.extend_from_slice(&h);
        }
        e
    }

    #[test]
    fn finds_sections() {
        let e = build(&[(".text", b"\x90\x90"), (".modinfo", b"license=GPL\0")]);
        assert_eq!(
            section(&e, ".modinfo").unwrap(),
            Some(&b"license=GPL\0"[..])
        );
        assert_eq!(section(&e, ".text").unwrap(), Some(&b"\x90\x90"[..]));
        assert_eq!(section(&e, ".data").unwrap(), None);
        assert_eq!(section(b"nope", ".x"), Err(ElfError::NotElf));
        let mut be = e.clone();
        be[5] = 2;
        assert!(matches!(
            section(&be, ".x"),
            Err(ElfError::Unsupported { .. })
        ));
        for cut in [10, 70, e.len() - 30] {
            let _ = section(&e[..cut], ".modinfo");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), wide in proptest::prelude::any::<bool>()) {
            let mut img = if wide { b"\x7fELF\x02\x01".to_vec() } else { b"\x7fELF\x01\x01".to_vec() };
            img.extend_from_slice(&b);
            let _ = section(&img, ".modinfo");
        }
    }
}
