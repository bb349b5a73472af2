//! Image sizes as recipes and `--size` write them: `512M`, `2G` (powers of 1024, like
//! mke2fs) or `auto` (the tree plus headroom).

use std::fmt;

/// An image size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Sized from the tree.
    Auto,
    /// Exactly this many bytes.
    Bytes(u64),
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Size::Auto);
        }
        // A bare number is ambiguous (mke2fs reads KiB, SmolVM MiB): ask for a unit.
        if t.bytes().last().is_some_and(|b| b.is_ascii_digit()) {
            return Err(format!(
                "bad size {s:?}: give a unit, like 512M or 2G, or auto"
            ));
        }
        let bytes = crate::ext4::parse_size(t)
            .map_err(|_| format!("bad size {s:?}: expected like 512M, 2G or auto"))?;
        if bytes < 8 << 20 {
            return Err(format!(
                "bad size {s:?}: an image needs at least 8M; give e.g. 512M or auto"
            ));
        }
        Ok(Size::Bytes(bytes))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Auto => f.write_str("auto"),
            Size::Bytes(b) if b % (1 << 30) == 0 => write!(f, "{}G", b >> 30),
            Size::Bytes(b) if b % (1 << 20) == 0 => write!(f, "{}M", b >> 20),
            Size::Bytes(b) => write!(f, "{}K", b >> 10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("512M".parse::<Size>(), Ok(Size::Bytes(512 << 20)));
        assert_eq!("2G".parse::<Size>(), Ok(Size::Bytes(2 << 30)));
        assert_eq!("2g".parse::<Size>(), Ok(Size::Bytes(2 << 30)));
        assert_eq!("auto".parse::<Size>(), Ok(Size::Auto));
        assert_eq!(Size::Bytes(2 << 30).to_string(), "2G");
        assert_eq!(Size::Bytes(512 << 20).to_string(), "512M");
    }

    #[test]
    fn bad_sizes_are_refused() {
        for s in ["", "512", "12Q", "M", "-1G", "1M", "0G", "huge"] {
            let e = s.parse::<Size>().unwrap_err();
            assert!(e.starts_with("bad size"), "{s}: {e}");
        }
    }
}
