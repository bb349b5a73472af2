//! Platforms (`os/arch[/variant]`), the host's, and choosing one manifest from an image
//! index with the variant taken into account (`image-index.md` § "Platform Variants").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A platform as an index entry or a config names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture in Go's names (`amd64`, `arm64`, `arm`, `riscv64`, ...).
    pub architecture: String,
    /// CPU variant (`v8` for arm64, `v7` for arm, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// Why a `--platform` value did not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")]
pub struct BadPlatform(pub String);

impl FromStr for Platform {
    type Err = BadPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPlatform(s.to_string());
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            os_version: None,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Maps the names people type (`x86_64`, `aarch64`) to the spec's (`amd64`, `arm64`).
fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" | "armv7" | "armv7l" => "arm",
        "i386" | "i686" => "386",
        other => other,
    }
}

/// The variant implied when none is given (arm64 means v8; amd64 means v1).
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "amd64" => Some("v1"),
        "arm" => Some("v7"),
        _ => None,
    }
}

impl Platform {
    /// The platform rootsmith runs on (Linux and the compile-time architecture).
    pub fn host() -> Platform {
        let arch = normalize_arch(std::env::consts::ARCH).to_string();
        Platform {
            os: "linux".into(),
            architecture: arch,
            variant: None,
            os_version: None,
        }
    }

    /// True when an image for `self` satisfies a request for `want`. A request without a
    /// variant takes any variant (the best one is chosen by [`select`]); a request with one
    /// matches it, treating a missing variant as the architecture's default.
    pub fn satisfies(&self, want: &Platform) -> bool {
        if self.os != want.os || normalize_arch(&self.architecture) != want.architecture {
            return false;
        }
        match &want.variant {
            None => true,
            Some(v) => {
                let mine = self
                    .variant
                    .as_deref()
                    .or(default_variant(&want.architecture));
                mine == Some(v.as_str())
                    || (self.variant.is_none() && default_variant(&want.architecture).is_none())
            }
        }
    }
}

/// Picks the entry for `want` among `(index position, platform)` candidates: an exact
/// variant match first, then the default variant, then the first one that satisfies.
/// `None` when nothing matches.
pub fn select<'a, I>(candidates: I, want: &Platform) -> Option<usize>
where
    I: IntoIterator<Item = (usize, Option<&'a Platform>)>,
{
    let mut best: Option<(u8, usize)> = None;
    for (i, p) in candidates {
        let Some(p) = p else { continue };
        if !p.satisfies(want) {
            continue;
        }
        let score = if p.variant == want.variant {
            0
        } else if p.variant.as_deref() == default_variant(&want.architecture) || p.variant.is_none()
        {
            1
        } else {
            2
        };
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm64/v8").variant.as_deref(), Some("v8"));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v8".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn variants_select_the_right_entry() {
        let list = [
            p("linux/amd64"),
            p("linux/arm/v6"),
            p("linux/arm/v7"),
            p("linux/arm64/v8"),
        ];
        let cands = || list.iter().enumerate().map(|(i, x)| (i, Some(x)));
        assert_eq!(select(cands(), &p("linux/arm/v7")), Some(2));
        assert_eq!(select(cands(), &p("linux/arm/v6")), Some(1));
        assert_eq!(select(cands(), &p("linux/arm")), Some(2));
        assert_eq!(select(cands(), &p("linux/arm64")), Some(3));
        assert_eq!(select(cands(), &p("linux/arm64/v8")), Some(3));
        assert_eq!(select(cands(), &p("linux/amd64")), Some(0));
        assert_eq!(select(cands(), &p("linux/riscv64")), None);
        assert_eq!(select(cands(), &p("linux/arm/v5")), None);
        // arm64 without a variant in the index still matches a request for v8.
        let bare = [p("linux/arm64")];
        assert_eq!(
            select(
                bare.iter().enumerate().map(|(i, x)| (i, Some(x))),
                &p("linux/arm64/v8")
            ),
            Some(0)
        );
    }
}
