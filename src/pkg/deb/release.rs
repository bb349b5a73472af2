//! `Release` files (the body of `InRelease`): suite metadata, `Valid-Until`, and the SHA256
//! list of index files with their sizes. Only ever parsed from signature-verified text.

use std::collections::BTreeMap;

use super::control;
use crate::digest::Digest;

/// Why a Release file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Not deb822.
    #[error("{name}: {source}")]
    Parse {
        /// The file.
        name: String,
        /// Parser error.
        source: control::ControlError,
    },
    /// A malformed field.
    #[error("{name}: bad {field} field: {why}")]
    Field {
        /// The file.
        name: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// `Valid-Until` is in the past.
    #[error("{name}: expired: Valid-Until {until} is before now ({now}); the mirror is stale or the clock is wrong")]
    Expired {
        /// The file.
        name: String,
        /// The `Valid-Until` text.
        until: String,
        /// The current time, seconds since the epoch.
        now: i64,
    },
}

/// One file listed in the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// SHA-256.
    pub sha256: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// A parsed Release.
#[derive(Debug, Clone, Default)]
pub struct Release {
    /// `Suite`.
    pub suite: String,
    /// `Codename`.
    pub codename: String,
    /// `Valid-Until` as seconds since the epoch.
    pub valid_until: Option<i64>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Components`.
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`.
    pub by_hash: bool,
    /// `SHA256` entries by path relative to the dists directory.
    pub files: BTreeMap<String, IndexFile>,
}

impl Release {
    /// Parses the verified text and checks `Valid-Until` against `now` (seconds).
    pub fn parse(name: &str, text: &str, now: i64) -> Result<Release, ReleaseError> {
        let paras = control::parse(text).map_err(|source| ReleaseError::Parse {
            name: name.into(),
            source,
        })?;
        let p = paras.into_iter().next().unwrap_or_default();
        let field = |field: &'static str, why: String| ReleaseError::Field {
            name: name.into(),
            field,
            why,
        };
        let words = |f: &str| -> Vec<String> {
            p.get(f)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut r = Release {
            suite: p.get("Suite").unwrap_or_default().to_string(),
            codename: p.get("Codename").unwrap_or_default().to_string(),
            architectures: words("Architectures"),
            components: words("Components"),
            by_hash: p
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            ..Release::default()
        };
        if let Some(v) = p.get("Valid-Until") {
            let t = parse_date(v)
                .ok_or_else(|| field("Valid-Until", format!("{v:?} is not an RFC 2822 date")))?;
            if t < now {
                return Err(ReleaseError::Expired {
                    name: name.into(),
                    until: v.to_string(),
                    now,
                });
            }
            r.valid_until = Some(t);
        }
        let sums = p
            .raw("SHA256")
            .ok_or_else(|| field("SHA256", "missing; apt needs SHA256 sums".into()))?;
        for line in sums.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut it = line.split_whitespace();
            let (Some(h), Some(s), Some(path), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(field("SHA256", format!("line {line:?}")));
            };
            let sha256: Digest = h
                .parse()
                .map_err(|_| field("SHA256", format!("hash {h:?}")))?;
            let size = s
                .parse()
                .map_err(|_| field("SHA256", format!("size {s:?}")))?;
            r.files.insert(path.to_string(), IndexFile { sha256, size });
        }
        Ok(r)
    }
}

/// Parses an RFC 2822 date as Release files write it (`Sat, 30 Nov 2026 10:00:00 UTC`, or
/// `+0000`). Returns seconds since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, r)| r).trim();
    let mut it = s.split_whitespace();
    let day: i64 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    let hms: Vec<i64> = it
        .next()?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let zone = it.next().unwrap_or("UTC");
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(mon))? as i64
        + 1;
    let (h, m, sec) = match hms[..] {
        [h, m, s] => (h, m, s),
        [h, m] => (h, m, 0),
        _ => return None,
    };
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let n: i64 = z[1..].parse().ok()?;
            let o = (n / 100) * 3600 + (n % 100) * 60;
            if z.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    if !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Suite: bookworm\nCodename: bookworm\nValid-Until: Sat, 30 Nov 2030 10:00:00 UTC\nArchitectures: amd64 arm64\nComponents: main\nSHA256:\n 672aab86b8f9ca3653a0292d0df6af8e974e4ec1f991fa29cf69f33e451c76a4            94184 main/binary-amd64/Packages\n";

    #[test]
    fn fields_and_sums() {
        let r = Release::parse("R", TEXT, 0).unwrap();
        assert_eq!(r.codename, "bookworm");
        assert_eq!(r.architectures, ["amd64", "arm64"]);
        assert_eq!(r.files["main/binary-amd64/Packages"].size, 94184);
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Mon, 23 Nov 2026 20:40:00 +0000"),
            Some(1795466400)
        );
    }

    #[test]
    fn expired_valid_until_is_refused() {
        let now = parse_date("Sun, 01 Dec 2030 00:00:00 UTC").unwrap();
        assert!(matches!(
            Release::parse("R", TEXT, now),
            Err(ReleaseError::Expired { .. })
        ));
    }
}
