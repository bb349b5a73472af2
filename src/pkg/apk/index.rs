//! `APKINDEX` records: blank-line separated stanzas of `X:value` lines (`C: P: V: A: S: I:
//! T: U: L: o: m: t: c: k: D: p: i: r: q:`), the same header the installed database
//! (`/lib/apk/db/installed`) starts each package with. Also the package identity `C:`:
//! `Q1` + base64 of the SHA-1 of the package's control gzip member.

use std::fmt::Write as _;

use base64::Engine as _;

use super::dep::Dep;

/// A package identity: the SHA-1 of the `.apk`'s control member, written `Q1<base64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub [u8; 20]);

impl Identity {
    /// Parses `Q1<base64 of 20 bytes>`.
    pub fn parse(s: &str) -> Option<Identity> {
        let b64 = s.strip_prefix("Q1")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        Some(Identity(raw.try_into().ok()?))
    }

    /// The SHA-1 of `data` as an identity.
    pub fn of(data: &[u8]) -> Identity {
        use sha1::Digest as _;
        Identity(sha1::Sha1::digest(data).into())
    }

    /// Lower-case hex, for file names.
    pub fn hex(&self) -> String {
        self.0.iter().fold(String::with_capacity(40), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Q1{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

/// One package as the index (or the installed database) describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    /// `C:` identity.
    pub identity: Option<Identity>,
    /// `P:` name.
    pub name: String,
    /// `V:` version.
    pub version: String,
    /// `A:` architecture.
    pub arch: String,
    /// `S:` size of the `.apk` file.
    pub size: u64,
    /// `I:` installed size.
    pub installed_size: u64,
    /// `T:` description.
    pub description: String,
    /// `U:` project URL.
    pub url: String,
    /// `L:` licence.
    pub license: String,
    /// `o:` origin (source package).
    pub origin: String,
    /// `m:` maintainer.
    pub maintainer: String,
    /// `t:` build time.
    pub build_time: Option<i64>,
    /// `c:` source commit.
    pub commit: String,
    /// `k:` provider priority.
    pub provider_priority: Option<u32>,
    /// `D:` dependencies and `!conflicts`.
    pub depends: Vec<Dep>,
    /// `p:` provided names.
    pub provides: Vec<Dep>,
    /// `i:` install-if conditions.
    pub install_if: Vec<Dep>,
    /// `r:` packages whose files this one may overwrite.
    pub replaces: Vec<Dep>,
    /// `q:` replaces priority.
    pub replaces_priority: Option<u32>,
}

/// Why an index did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// A line is not `X:value`.
    #[error("line {line}: expected `X:value`, found {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line (shortened).
        text: String,
    },
    /// A field has a bad value.
    #[error("line {line}: bad {field}: {why}")]
    Field {
        /// 1-based line number.
        line: usize,
        /// The field letter.
        field: char,
        /// What is wrong.
        why: String,
    },
    /// A record without `P:` or `V:`.
    #[error("record ending at line {line} has no {what}")]
    Incomplete {
        /// Line where the record ends.
        line: usize,
        /// The missing field.
        what: &'static str,
    },
}

impl Package {
    /// `name-version`, as apk names packages in messages and file names.
    pub fn nv(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Applies one `X:value` field; unknown fields are ignored (apk has added many over
    /// the years). Returns false when the letter is not an index header field.
    fn apply(&mut self, line: usize, key: u8, value: &str) -> Result<bool, IndexError> {
        let field = |why: String| IndexError::Field {
            line,
            field: key as char,
            why,
        };
        let num = |v: &str| -> Result<u64, IndexError> {
            v.trim()
                .parse::<u64>()
                .map_err(|_| field(format!("{v:?} is not a number")))
        };
        let deps = |v: &str| Dep::parse_list(v).map_err(|e| field(e.to_string()));
        match key {
            b'C' => {
                self.identity = Some(
                    Identity::parse(value)
                        .ok_or_else(|| field(format!("{value:?} is not Q1<base64 sha1>")))?,
                )
            }
            b'P' => self.name = value.to_string(),
            b'V' => {
                if !super::version::is_valid(value) {
                    return Err(field(format!("{value:?} is not an apk version")));
                }
                self.version = value.to_string()
            }
            b'A' => self.arch = value.to_string(),
            b'S' => self.size = num(value)?,
            b'I' => self.installed_size = num(value)?,
            b'T' => self.description = value.to_string(),
            b'U' => self.url = value.to_string(),
            b'L' => self.license = value.to_string(),
            b'o' => self.origin = value.to_string(),
            b'm' => self.maintainer = value.to_string(),
            b't' => {
                self.build_time = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| field(format!("{value:?} is not a time")))?,
                )
            }
            b'c' => self.commit = value.to_string(),
            b'k' => {
                self.provider_priority = Some(
                    u32::try_from(num(value)?)
                        .map_err(|_| field("priority out of range".into()))?,
                )
            }
            b'D' => self.depends = deps(value)?,
            b'p' => self.provides = deps(value)?,
            b'i' => self.install_if = deps(value)?,
            b'r' => self.replaces = deps(value)?,
            b'q' => {
                self.replaces_priority = Some(
                    u32::try_from(num(value)?)
                        .map_err(|_| field("priority out of range".into()))?,
                )
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The header lines of this package in apk's order (used for the installed database).
    pub fn write_header(&self, out: &mut String) {
        let mut line = |k: char, v: &str| {
            if !v.is_empty() {
                let _ = writeln!(out, "{k}:{v}");
            }
        };
        if let Some(id) = &self.identity {
            line('C', &id.to_string());
        }
        line('P', &self.name);
        line('V', &self.version);
        line('A', &self.arch);
        line('S', &self.size.to_string());
        line('I', &self.installed_size.to_string());
        line('T', &self.description);
        line('U', &self.url);
        line('L', &self.license);
        line('o', &self.origin);
        line('m', &self.maintainer);
        if let Some(t) = self.build_time {
            line('t', &t.to_string());
        }
        line('c', &self.commit);
        if let Some(k) = self.provider_priority {
            line('k', &k.to_string());
        }
        let list = |v: &[Dep]| {
            v.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        line('D', &list(&self.depends));
        line('p', &list(&self.provides));
        line('i', &list(&self.install_if));
        line('r', &list(&self.replaces));
        if let Some(q) = self.replaces_priority {
            line('q', &q.to_string());
        }
    }
}

/// One `X:value` line split, or `None` for a blank line.
pub(crate) fn split_line(line: &str, n: usize) -> Result<Option<(u8, &str)>, IndexError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let b = line.as_bytes();
    if b.len() < 2 || b[1] != b':' || !b[0].is_ascii_alphabetic() {
        return Err(IndexError::Syntax {
            line: n,
            text: line.chars().take(60).collect(),
        });
    }
    Ok(Some((b[0], &line[2..])))
}

/// Parses a whole `APKINDEX` text; the first bad line or record is an error.
pub fn parse(text: &str) -> Result<Vec<Package>, IndexError> {
    let (pkgs, errors) = parse_lenient(text);
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(pkgs),
    }
}

/// Parses an `APKINDEX` text, dropping records that do not parse (as apk skips what it
/// cannot read) and returning their errors beside the good records. For signed indexes,
/// where one odd record among thousands must not make the repository unusable.
pub fn parse_lenient(text: &str) -> (Vec<Package>, Vec<IndexError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut cur: Option<Package> = None;
    let mut bad = false;
    let mut last_line = 0;
    let mut finish =
        |cur: &mut Option<Package>, bad: &mut bool, line: usize, errors: &mut Vec<IndexError>| {
            let p = cur.take();
            if std::mem::take(bad) {
                return;
            }
            if let Some(p) = p {
                if p.name.is_empty() {
                    errors.push(IndexError::Incomplete {
                        line,
                        what: "P: (name)",
                    });
                } else if p.version.is_empty() {
                    errors.push(IndexError::Incomplete {
                        line,
                        what: "V: (version)",
                    });
                } else {
                    out.push(p);
                }
            }
        };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        last_line = n;
        match split_line(line, n) {
            Ok(None) => finish(&mut cur, &mut bad, n, &mut errors),
            Ok(Some((k, v))) => {
                if bad {
                    continue;
                }
                if let Err(e) = cur.get_or_insert_with(Package::default).apply(n, k, v) {
                    errors.push(e);
                    bad = true;
                }
            }
            Err(e) => {
                errors.push(e);
                bad = true;
            }
        }
    }
    finish(&mut cur, &mut bad, last_line, &mut errors);
    (out, errors)
}

/// Applies one header field to `pkg` (for the installed-database reader). Returns false
/// for letters that are not header fields.
pub(crate) fn apply_field(
    pkg: &mut Package,
    line: usize,
    key: u8,
    value: &str,
) -> Result<bool, IndexError> {
    pkg.apply(line, key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=
P:alpine-baselayout
V:3.6.5-r0
A:x86_64
S:8515
I:315392
T:Alpine base dir structure and init scripts
U:https://example.invalid/alpine-baselayout
L:GPL-2.0-only
o:alpine-baselayout
m:Natanael Copa <ncopa@example.invalid>
t:1714981135
c:66187892e05b03a41d08e9acabd19b7576a1c875
D:alpine-baselayout-data=3.6.5-r0 /bin/sh
q:1000

C:Q1yB3CVUFMOjnLBOxSmVJqGxAGb6Q=
P:busybox-binsh
V:1.36.1-r29
A:x86_64
S:1547
I:1
T:busybox ash /bin/sh
k:100
D:busybox=1.36.1-r29
p:/bin/sh cmd:sh=1.36.1-r29
i:busybox=1.36.1-r29
";

    #[test]
    fn parses_records() {
        let pkgs = parse(SAMPLE).unwrap();
        assert_eq!(pkgs.len(), 2);
        let a = &pkgs[0];
        assert_eq!(a.name, "alpine-baselayout");
        assert_eq!(a.size, 8515);
        assert_eq!(a.build_time, Some(1714981135));
        assert_eq!(a.depends.len(), 2);
        assert_eq!(a.replaces_priority, Some(1000));
        assert_eq!(
            a.identity.unwrap().to_string(),
            "Q1qKcZ+j23xssAXmgQhkOO8dHnbWw="
        );
        let b = &pkgs[1];
        assert_eq!(b.provider_priority, Some(100));
        assert_eq!(b.provides[1].constraint.as_ref().unwrap().1, "1.36.1-r29");
        assert_eq!(b.install_if[0].name, "busybox");
        let mut s = String::new();
        b.write_header(&mut s);
        assert_eq!(parse(&s).unwrap()[0], *b);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("P:a\nV:1\nnonsense\n").unwrap_err().to_string(),
            "line 3: expected `X:value`, found \"nonsense\""
        );
        assert!(matches!(
            parse("P:a\n\nV:1\n"),
            Err(IndexError::Incomplete { .. })
        ));
        assert!(matches!(
            parse("P:a\nV:1\nS:x\n"),
            Err(IndexError::Field { field: 'S', .. })
        ));
        assert!(matches!(
            parse("P:a\nV:1\nC:Q2xx\n"),
            Err(IndexError::Field { field: 'C', .. })
        ));
        assert_eq!(parse("\n\n").unwrap(), vec![]);
        let (good, errs) = parse_lenient("P:a\nV:1\nS:x\n\nP:b\nV:2\n\nP:c\nV:3\n");
        assert_eq!(
            good.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(errs.len(), 1);
    }
}
