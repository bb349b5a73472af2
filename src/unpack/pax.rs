//! PAX extended-header records that the `tar` crate leaves to its caller: nanosecond
//! times, 32-bit-overflowing ids, and xattrs (`SCHILY.xattr.*` raw, `LIBARCHIVE.xattr.*`
//! base64 with a percent-encoded name).

use crate::tree::{Time, Xattrs};

/// What the PAX records of one entry say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PaxFields {
    /// `mtime`.
    pub mtime: Option<Time>,
    /// `atime`.
    pub atime: Option<Time>,
    /// `ctime`.
    pub ctime: Option<Time>,
    /// `uid`.
    pub uid: Option<u64>,
    /// `gid`.
    pub gid: Option<u64>,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

/// A PAX record that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad PAX record {key}: {why}")]
pub struct BadPax {
    /// The record's key.
    pub key: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl PaxFields {
    /// Interprets one record; unknown keys are ignored (path, linkpath and size are applied
    /// by the `tar` crate itself).
    pub fn apply(&mut self, key: &[u8], value: &[u8]) -> Result<(), BadPax> {
        let key_s = String::from_utf8_lossy(key).into_owned();
        let bad = |why| BadPax {
            key: key_s.clone(),
            why,
        };
        let text = || std::str::from_utf8(value).map_err(|_| bad("value is not UTF-8"));
        match key {
            b"mtime" => self.mtime = Some(parse_time(text()?).ok_or_else(|| bad("not a time"))?),
            b"atime" => self.atime = Some(parse_time(text()?).ok_or_else(|| bad("not a time"))?),
            b"ctime" => self.ctime = Some(parse_time(text()?).ok_or_else(|| bad("not a time"))?),
            b"uid" => self.uid = Some(text()?.trim().parse().map_err(|_| bad("not a number"))?),
            b"gid" => self.gid = Some(text()?.trim().parse().map_err(|_| bad("not a number"))?),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    let name = String::from_utf8(name.to_vec())
                        .map_err(|_| bad("xattr name is not UTF-8"))?;
                    self.xattrs.insert(name, value.to_vec());
                } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                    let name =
                        String::from_utf8(percent_decode(name).ok_or_else(|| bad("bad %-escape"))?)
                            .map_err(|_| bad("xattr name is not UTF-8"))?;
                    let v = base64_decode(value).ok_or_else(|| bad("value is not base64"))?;
                    self.xattrs.insert(name, v);
                }
            }
        }
        Ok(())
    }
}

/// Parses a PAX time: `[-]seconds[.fraction]`, the fraction to nanosecond precision.
/// `-1.5` is 1.5 s before the epoch (sec -2, nsec 500000000).
pub fn parse_time(s: &str) -> Option<Time> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sec: i64 = whole.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some(Time { sec, nsec });
    }
    if nsec == 0 {
        Some(Time { sec: -sec, nsec: 0 })
    } else {
        Some(Time {
            sec: (-sec).checked_sub(1)?,
            nsec: 1_000_000_000 - nsec,
        })
    }
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Standard base64 (padding optional), as libarchive writes xattr values.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let s = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(&s);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | val(c)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_nanoseconds_and_sign() {
        assert_eq!(
            parse_time("1700000000.123456789"),
            Some(Time {
                sec: 1_700_000_000,
                nsec: 123_456_789
            })
        );
        assert_eq!(
            parse_time("-1.5"),
            Some(Time {
                sec: -2,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_time("-86400"),
            Some(Time {
                sec: -86400,
                nsec: 0
            })
        );
        assert_eq!(
            parse_time("4102444800.1"),
            Some(Time {
                sec: 4_102_444_800,
                nsec: 100_000_000
            })
        );
        assert_eq!(parse_time("x"), None);
        assert_eq!(parse_time("1.2.3"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn base64_and_libarchive_xattrs() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert!(base64_decode(b"a").is_none());
        let mut p = PaxFields::default();
        p.apply(b"LIBARCHIVE.xattr.user.a%3Db", b"aGk=").unwrap();
        p.apply(b"SCHILY.xattr.security.capability", b"\x01\x00")
            .unwrap();
        assert_eq!(p.xattrs["user.a=b"], b"hi");
        assert_eq!(p.xattrs["security.capability"], b"\x01\x00");
    }
}
