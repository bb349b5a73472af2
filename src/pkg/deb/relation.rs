//! Dependency fields (`Depends`, `Pre-Depends`, `Conflicts`, `Breaks`, `Provides`, ...):
//! a comma-separated AND of `|`-separated alternatives, each
//! `name[:arch] [(op version)] [[arch list]] [<profiles>]`.

use super::version::{Op, Version};

/// One package atom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    /// Package name.
    pub name: String,
    /// Architecture qualifier (`any`, `native`, `amd64`), if any.
    pub arch: Option<String>,
    /// Version constraint, if any.
    pub constraint: Option<(Op, Version)>,
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// A relation: one of the alternatives must hold.
pub type Alternatives = Vec<Atom>;

/// A dependency field that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad relation {0:?}: expected `name[:arch] [(op version)]`")]
pub struct BadRelation(pub String);

/// Parses a whole field. Empty alternatives (`a, , b`) are skipped like dpkg does.
pub fn parse(field: &str) -> Result<Vec<Alternatives>, BadRelation> {
    let mut out = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for a in group.split('|') {
            alts.push(parse_atom(a)?);
        }
        out.push(alts);
    }
    Ok(out)
}

/// Parses one atom.
pub fn parse_atom(s: &str) -> Result<Atom, BadRelation> {
    let bad = || BadRelation(s.trim().to_string());
    let mut rest = s.trim();
    // Drop `<profile>` and `[arch]` restrictions (build fields only).
    if let Some(i) = rest
        .find(['[', '<'])
        .filter(|&i| !rest[..i].contains('(') || rest[..i].contains(')'))
    {
        rest = rest[..i].trim();
    }
    let (head, constraint) = match rest.find('(') {
        Some(i) => {
            let inner = rest[i + 1..].strip_suffix(')').ok_or_else(bad)?.trim();
            let opend = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .ok_or_else(bad)?;
            let op = Op::parse(&inner[..opend]).ok_or_else(bad)?;
            let ver: Version = inner[opend..].trim().parse().map_err(|_| bad())?;
            (rest[..i].trim(), Some((op, ver)))
        }
        None => (rest, None),
    };
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    if !name_ok(name) || arch.as_deref().is_some_and(|a| !name_ok(a)) {
        return Err(bad());
    }
    Ok(Atom {
        name: name.to_ascii_lowercase(),
        arch,
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_versions_and_qualifiers() {
        let r = parse("libc6 (>= 2.36), usrmerge | usr-is-merged, python3:any (>> 3.9~), debconf (>= 0.5) | debconf-2.0, ,foo [amd64] <!nocheck>").unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0][0].constraint, Some((Op::Ge, "2.36".parse().unwrap())));
        assert_eq!(
            r[1].iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["usrmerge", "usr-is-merged"]
        );
        assert_eq!(r[2][0].arch.as_deref(), Some("any"));
        assert_eq!(r[2][0].constraint.as_ref().unwrap().0, Op::Gt);
        assert_eq!(r[4][0].name, "foo");
        assert_eq!(r[0][0].to_string(), "libc6 (>= 2.36)");
    }

    #[test]
    fn malformed_relations_are_errors() {
        for bad in [
            "foo (>= )",
            "foo (~ 1)",
            "foo (>= 1",
            "fo o",
            "(>= 1)",
            "a:",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
