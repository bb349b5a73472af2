//! The installed database, `/lib/apk/db/installed`: one stanza per package — the index
//! header ([`super::index`]), then per directory `F:<dir>` (+ `M:uid:gid:mode` unless
//! root:root 0755), per file `R:<name>` (+ `a:uid:gid:mode` unless root:root 0644) and
//! `Z:Q1<base64 sha1>` — separated by blank lines. Records rootsmith does not write are
//! kept as text, so the base's entries stay byte for byte.

use std::fmt::Write as _;

use super::index::{self, Identity, IndexError, Package};

/// A file owned by a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFile {
    /// File name inside its directory.
    pub name: String,
    /// `(uid, gid, mode)` from `a:`, if given.
    pub acl: Option<(u32, u32, u16)>,
    /// `Z:` content checksum (SHA-1; of the target for symlinks).
    pub checksum: Option<Identity>,
}

/// A directory owned by a package and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDir {
    /// Path without leading `/` (`usr/bin`; empty for the root).
    pub name: String,
    /// `(uid, gid, mode)` from `M:`, if given.
    pub acl: Option<(u32, u32, u16)>,
    /// Files directly in it.
    pub files: Vec<DbFile>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The index header.
    pub pkg: Package,
    /// Its directories and files.
    pub dirs: Vec<DbDir>,
}

fn parse_acl(v: &str) -> Option<(u32, u32, u16)> {
    let mut f = v.split(':');
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    let mode = u16::from_str_radix(f.next()?, 8).ok()?;
    Some((uid, gid, mode & 0o7777))
}

/// Parses the database text.
pub fn parse(text: &str) -> Result<Vec<Installed>, IndexError> {
    let mut out: Vec<Installed> = Vec::new();
    let mut cur: Option<Installed> = None;
    let mut flush = |cur: &mut Option<Installed>, line: usize| -> Result<(), IndexError> {
        if let Some(i) = cur.take() {
            if i.pkg.name.is_empty() || i.pkg.version.is_empty() {
                return Err(IndexError::Incomplete {
                    line,
                    what: "P: or V:",
                });
            }
            out.push(i);
        }
        Ok(())
    };
    let mut last = 0;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        last = n;
        let Some((k, v)) = index::split_line(line, n)? else {
            flush(&mut cur, n)?;
            continue;
        };
        let inst = cur.get_or_insert_with(|| Installed {
            pkg: Package::default(),
            dirs: Vec::new(),
        });
        let bad = |why: &str| IndexError::Field {
            line: n,
            field: k as char,
            why: why.to_string(),
        };
        match k {
            b'F' => inst.dirs.push(DbDir {
                name: v.to_string(),
                acl: None,
                files: Vec::new(),
            }),
            b'M' => {
                let d = inst
                    .dirs
                    .last_mut()
                    .ok_or_else(|| bad("M: before any F:"))?;
                d.acl = Some(parse_acl(v).ok_or_else(|| bad("expected uid:gid:octal-mode"))?);
            }
            b'R' => {
                if inst.dirs.is_empty() {
                    inst.dirs.push(DbDir {
                        name: String::new(),
                        acl: None,
                        files: Vec::new(),
                    });
                }
                let d = inst.dirs.last_mut().expect("pushed above");
                d.files.push(DbFile {
                    name: v.to_string(),
                    acl: None,
                    checksum: None,
                });
            }
            b'a' | b'Z' => {
                let f = inst
                    .dirs
                    .last_mut()
                    .and_then(|d| d.files.last_mut())
                    .ok_or_else(|| bad("file attribute before any R:"))?;
                if k == b'a' {
                    f.acl = Some(parse_acl(v).ok_or_else(|| bad("expected uid:gid:octal-mode"))?);
                } else {
                    // Only SHA-1 (Q1) checksums are understood; others are kept out.
                    f.checksum = Identity::parse(v);
                }
            }
            _ => {
                index::apply_field(&mut inst.pkg, n, k, v)?;
            }
        }
    }
    flush(&mut cur, last)?;
    Ok(out)
}

impl Installed {
    /// Every path this package owns (files and symlinks), without leading `/`.
    pub fn file_paths(&self) -> impl Iterator<Item = String> + '_ {
        self.dirs.iter().flat_map(|d| {
            d.files.iter().map(move |f| {
                if d.name.is_empty() {
                    f.name.clone()
                } else {
                    format!("{}/{}", d.name, f.name)
                }
            })
        })
    }

    /// The record as apk writes it, ending with a blank line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.pkg.write_header(&mut s);
        for d in &self.dirs {
            let _ = writeln!(s, "F:{}", d.name);
            if let Some((u, g, m)) = d.acl.filter(|a| *a != (0, 0, 0o755)) {
                let _ = writeln!(s, "M:{u}:{g}:{m:o}");
            }
            for f in &d.files {
                let _ = writeln!(s, "R:{}", f.name);
                if let Some((u, g, m)) = f.acl.filter(|a| *a != (0, 0, 0o644)) {
                    let _ = writeln!(s, "a:{u}:{g}:{m:o}");
                }
                if let Some(z) = &f.checksum {
                    let _ = writeln!(s, "Z:{z}");
                }
            }
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = "C:Q1qKcZ+j23xssAXmgQhkOO8dHnbWw=
P:alpine-baselayout
V:3.6.5-r0
A:x86_64
S:8515
I:315392
T:Alpine base dir structure and init scripts
D:alpine-baselayout-data=3.6.5-r0 /bin/sh
q:1000
F:dev
F:etc
R:motd
Z:Q1SLkS9hBidUbPwwrw+XR0Whv3ww8=
F:etc/crontabs
M:0:0:700
R:root
a:0:0:600
Z:Q1vfk1apUWI4yLJGhhNRd0kJixfvY=

";

    #[test]
    fn round_trip() {
        let db = parse(REC).unwrap();
        assert_eq!(db.len(), 1);
        let i = &db[0];
        assert_eq!(i.dirs.len(), 3);
        assert_eq!(i.dirs[2].acl, Some((0, 0, 0o700)));
        assert_eq!(i.dirs[2].files[0].acl, Some((0, 0, 0o600)));
        assert_eq!(
            i.file_paths().collect::<Vec<_>>(),
            ["etc/motd", "etc/crontabs/root"]
        );
        assert_eq!(i.render(), REC);
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse("P:a\nV:1\na:0:0:644\n").is_err());
        assert!(parse("P:a\nV:1\nF:x\nM:zz\n").is_err());
    }
}
