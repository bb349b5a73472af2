//! Dependency atoms as they appear in `D:`, `p:`, `i:` and `/etc/apk/world`:
//! `name`, `name<op>version`, `!name` (a conflict), where a name may be a virtual like
//! `so:libc.musl-x86_64.so.1`, `cmd:sh`, `pc:zlib` or a path like `/bin/sh`. A world
//! entry may also carry a repository tag: `name@edge`.

use std::fmt;

use super::version::{self, Op};

/// One dependency atom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dep {
    /// The name depended on (a package name or a provided name).
    pub name: String,
    /// The version constraint, if any.
    pub constraint: Option<(Op, String)>,
    /// `!name`: the named thing must not be installed.
    pub conflict: bool,
    /// `name@tag`: only from repositories tagged `@tag` (world and command line only).
    pub tag: Option<String>,
}

/// Why an atom did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad dependency {0:?}: expected name, name<op>version or !name (op one of < <= = >= > ~)")]
pub struct BadDep(pub String);

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'=' | b'~' | b'!' | b'@'))
}

impl Dep {
    /// An unversioned dependency on `name`.
    pub fn on(name: &str) -> Dep {
        Dep {
            name: name.to_string(),
            constraint: None,
            conflict: false,
            tag: None,
        }
    }

    /// Parses one atom.
    pub fn parse(s: &str) -> Result<Dep, BadDep> {
        let bad = || BadDep(s.to_string());
        let (conflict, rest) = match s.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let op_at = rest.find(['<', '>', '=', '~']);
        let (head, constraint) = match op_at {
            None => (rest, None),
            Some(i) => {
                let tail = &rest[i..];
                let op_len = tail
                    .bytes()
                    .take_while(|b| matches!(b, b'<' | b'>' | b'=' | b'~'))
                    .count();
                let op = Op::parse(&tail[..op_len]).ok_or_else(bad)?;
                let ver = &tail[op_len..];
                if !version::is_valid(ver) {
                    return Err(bad());
                }
                (&rest[..i], Some((op, ver.to_string())))
            }
        };
        let (name, tag) = match head.split_once('@') {
            Some((n, t)) if !t.is_empty() && name_ok(t) => (n, Some(t.to_string())),
            Some(_) => return Err(bad()),
            None => (head, None),
        };
        if !name_ok(name) {
            return Err(bad());
        }
        Ok(Dep {
            name: name.to_string(),
            constraint,
            conflict,
            tag,
        })
    }

    /// Parses a space-separated list (the value of `D:`, `p:`, `i:`).
    pub fn parse_list(s: &str) -> Result<Vec<Dep>, BadDep> {
        s.split_ascii_whitespace().map(Dep::parse).collect()
    }

    /// True when a package providing this name at `version` (None: an unversioned
    /// provide) satisfies the constraint.
    pub fn satisfied_by(&self, version: Option<&str>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, want)), Some(have)) => op.matches(have, want),
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conflict {
            f.write_str("!")?;
        }
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, "@{t}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, "{}{v}", op.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms() {
        let d = Dep::parse("so:libc.musl-x86_64.so.1").unwrap();
        assert_eq!(d.name, "so:libc.musl-x86_64.so.1");
        assert!(d.constraint.is_none());
        let d = Dep::parse("openssh-keygen=9.7_p1-r4").unwrap();
        assert_eq!(d.constraint, Some((Op::Eq, "9.7_p1-r4".into())));
        let d = Dep::parse("!busybox-extras>=1.2").unwrap();
        assert!(d.conflict);
        assert_eq!(d.constraint, Some((Op::GreaterEq, "1.2".into())));
        let d = Dep::parse("libcrypto3~3.3").unwrap();
        assert_eq!(d.constraint, Some((Op::Fuzzy, "3.3".into())));
        let d = Dep::parse("/bin/sh").unwrap();
        assert_eq!(d.name, "/bin/sh");
        let d = Dep::parse("curl@edge").unwrap();
        assert_eq!(d.tag.as_deref(), Some("edge"));
        for bad in ["", "!", "a=", "a=>1", "=1", "a@", "a>=x.y"] {
            assert!(Dep::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Dep::parse("!a<=1.2-r0").unwrap().to_string(), "!a<=1.2-r0");
    }

    #[test]
    fn unversioned_provides_do_not_satisfy_versioned_deps() {
        let d = Dep::parse("foo>=1").unwrap();
        assert!(!d.satisfied_by(None));
        assert!(d.satisfied_by(Some("1.0")));
        assert!(Dep::on("foo").satisfied_by(None));
    }
}
