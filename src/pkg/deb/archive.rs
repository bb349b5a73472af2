//! The `.deb` archive: an `ar` archive holding `debian-binary` (`2.0`), `control.tar[.gz|.xz|.zst]`
//! and `data.tar[.gz|.xz|.zst|.bz2]`. Untrusted bytes: sizes are checked, nothing panics.

use std::collections::BTreeMap;
use std::io::Read;

/// Why a `.deb` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// Not an ar archive, or a broken member header.
    #[error("not a .deb: {0}")]
    Ar(String),
    /// A required member is missing.
    #[error("not a .deb: no {0} member")]
    Missing(&'static str),
    /// The control archive is broken.
    #[error("control archive: {0}")]
    Control(String),
}

/// The parts of a `.deb`.
#[derive(Debug, Clone)]
pub struct Deb<'a> {
    /// Files of the control archive by name (`control`, `md5sums`, `conffiles`, `postinst`,
    /// ...), with their modes.
    pub control: BTreeMap<String, (u32, Vec<u8>)>,
    /// The (compressed) data archive.
    pub data: &'a [u8],
}

/// Splits an ar archive into `(name, bytes)` members.
pub fn ar_members(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, DebError> {
    let mut rest = bytes
        .strip_prefix(b"!<arch>\n")
        .ok_or_else(|| DebError::Ar("missing the !<arch> magic".into()))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 60 {
            return Err(DebError::Ar("truncated member header".into()));
        }
        let (h, body) = rest.split_at(60);
        if &h[58..60] != b"`\n" {
            return Err(DebError::Ar("bad member header terminator".into()));
        }
        let name = String::from_utf8_lossy(&h[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: usize = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| DebError::Ar(format!("member {name:?}: bad size")))?;
        if size > body.len() {
            return Err(DebError::Ar(format!(
                "member {name:?}: {size} bytes but only {} left",
                body.len()
            )));
        }
        out.push((name, &body[..size]));
        let next = size + (size & 1);
        rest = body.get(next..).unwrap_or_default();
    }
    Ok(out)
}

/// Reads a `.deb`: checks the format version, unpacks the control archive into memory.
pub fn read(bytes: &[u8]) -> Result<Deb<'_>, DebError> {
    let members = ar_members(bytes)?;
    let mut control_tar = None;
    let mut data = None;
    let mut version = None;
    for (name, body) in members {
        if name == "debian-binary" {
            version = Some(body);
        } else if name.starts_with("control.tar") {
            control_tar = Some(body);
        } else if name.starts_with("data.tar") {
            data = Some(body);
        }
    }
    let v = version.ok_or(DebError::Missing("debian-binary"))?;
    if !v.starts_with(b"2.") {
        return Err(DebError::Ar(format!(
            "format {:?}, expected 2.0",
            String::from_utf8_lossy(v).trim()
        )));
    }
    let control_tar = control_tar.ok_or(DebError::Missing("control.tar"))?;
    let data = data.ok_or(DebError::Missing("data.tar"))?;
    let (_, reader) =
        crate::unpack::decompress(control_tar).map_err(|e| DebError::Control(e.to_string()))?;
    let mut control = BTreeMap::new();
    let mut ar = tar::Archive::new(reader);
    let entries = ar.entries().map_err(|e| DebError::Control(e.to_string()))?;
    for e in entries {
        let mut e = e.map_err(|e| DebError::Control(e.to_string()))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        if path.contains('/') || path.is_empty() {
            continue;
        }
        let mode = e.header().mode().unwrap_or(0o644);
        let size = e.size();
        if size > 64 << 20 {
            return Err(DebError::Control(format!(
                "{path}: {size} bytes is too large for a control file"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        e.read_to_end(&mut buf)
            .map_err(|e| DebError::Control(e.to_string()))?;
        control.insert(path, (mode, buf));
    }
    if !control.contains_key("control") {
        return Err(DebError::Missing("control file in control.tar"));
    }
    Ok(Deb { control, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar_parsing_rejects_garbage_without_panicking() {
        assert!(ar_members(b"junk").is_err());
        assert!(ar_members(b"!<arch>\nshort").is_err());
        let mut a = b"!<arch>\n".to_vec();
        a.extend_from_slice(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                "debian-binary", 0, 0, 0, 100644, 999
            )
            .as_bytes(),
        );
        a.extend_from_slice(b"2.0\n");
        assert!(matches!(ar_members(&a), Err(DebError::Ar(_))));
        let mut ok = b"!<arch>\n".to_vec();
        ok.extend_from_slice(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                "debian-binary", 0, 0, 0, 100644, 3
            )
            .as_bytes(),
        );
        ok.extend_from_slice(b"2.0\n");
        assert_eq!(ar_members(&ok).unwrap()[0].1, b"2.0");
        assert!(matches!(read(&ok), Err(DebError::Missing(_))));
    }
}
