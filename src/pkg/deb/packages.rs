//! Package stanzas, as found in `Packages` indexes, `.deb` control files and the dpkg
//! `status` database, turned into typed [`Package`] values.

use super::control::{self, Paragraph};
use super::relation::{self, Alternatives, Atom};
use super::version::Version;
use crate::digest::Digest;

/// Why a stanza is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The text is not deb822.
    #[error("{name}: {source}")]
    Parse {
        /// The index.
        name: String,
        /// Parser error.
        source: control::ControlError,
    },
    /// A bad field in one stanza.
    #[error("{name}: package {package:?}: bad {field}: {why}")]
    Field {
        /// The index.
        name: String,
        /// The stanza's package.
        package: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// One package version.
#[derive(Debug, Clone)]
pub struct Package {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture`.
    pub arch: String,
    /// `Multi-Arch` (`same`, `foreign`, `allowed`, or empty).
    pub multi_arch: String,
    /// `Priority`.
    pub priority: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Pre-Depends`.
    pub pre_depends: Vec<Alternatives>,
    /// `Depends`.
    pub depends: Vec<Alternatives>,
    /// `Recommends`.
    pub recommends: Vec<Alternatives>,
    /// `Conflicts`.
    pub conflicts: Vec<Alternatives>,
    /// `Breaks`.
    pub breaks: Vec<Alternatives>,
    /// `Provides` (atoms, optionally `(= version)`).
    pub provides: Vec<Atom>,
    /// `Filename` relative to the archive root (index stanzas only).
    pub filename: String,
    /// `Size` (index stanzas only).
    pub size: u64,
    /// `SHA256` (index stanzas only).
    pub sha256: Option<Digest>,
    /// `Status` (status stanzas only).
    pub status: String,
    /// The stanza as read.
    pub paragraph: Paragraph,
}

impl Package {
    /// Builds a package from a stanza; `name` names the source for errors.
    pub fn from_paragraph(name: &str, p: Paragraph) -> Result<Package, PackageError> {
        let pkg = p.get("Package").unwrap_or_default().to_string();
        let field = |field: &'static str, why: String| PackageError::Field {
            name: name.to_string(),
            package: pkg.clone(),
            field,
            why,
        };
        if pkg.is_empty() {
            return Err(field("Package", "missing".into()));
        }
        let version: Version = p
            .get("Version")
            .ok_or_else(|| field("Version", "missing".into()))?
            .parse()
            .map_err(|e: super::version::BadVersion| field("Version", e.to_string()))?;
        let rel = |f: &'static str| -> Result<Vec<Alternatives>, PackageError> {
            match p.folded(f) {
                Some(v) => relation::parse(&v).map_err(|e| field(f, e.to_string())),
                None => Ok(Vec::new()),
            }
        };
        let provides = rel("Provides")?.into_iter().flatten().collect();
        Ok(Package {
            version,
            arch: p.get("Architecture").unwrap_or("all").to_string(),
            multi_arch: p.get("Multi-Arch").unwrap_or_default().to_ascii_lowercase(),
            priority: p.get("Priority").unwrap_or_default().to_string(),
            essential: p
                .get("Essential")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            pre_depends: rel("Pre-Depends")?,
            depends: rel("Depends")?,
            recommends: rel("Recommends")?,
            conflicts: rel("Conflicts")?,
            breaks: rel("Breaks")?,
            provides,
            filename: p.get("Filename").unwrap_or_default().to_string(),
            size: match p.get("Size") {
                Some(s) => s.parse().map_err(|_| field("Size", format!("{s:?}")))?,
                None => 0,
            },
            sha256: match p.get("SHA256") {
                Some(s) => Some(s.parse().map_err(|_| field("SHA256", format!("{s:?}")))?),
                None => None,
            },
            status: p.get("Status").unwrap_or_default().to_string(),
            name: pkg,
            paragraph: p,
        })
    }

    /// True for a status stanza of an installed (or at least unpacked-and-half-configured)
    /// package, which dpkg considers present.
    pub fn is_installed(&self) -> bool {
        let state = self.status.split_whitespace().nth(2).unwrap_or_default();
        matches!(
            state,
            "installed" | "half-configured" | "unpacked" | "triggers-awaited" | "triggers-pending"
        )
    }

    /// `name:arch` as dpkg names info files for `Multi-Arch: same`, else `name`.
    pub fn dpkg_name(&self) -> String {
        if self.multi_arch == "same" {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }
}

/// Parses every stanza of a Packages index or a status file.
pub fn parse_all(name: &str, text: &str) -> Result<Vec<Package>, PackageError> {
    control::parse(text)
        .map_err(|source| PackageError::Parse {
            name: name.to_string(),
            source,
        })?
        .into_iter()
        .map(|p| Package::from_paragraph(name, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_fields_become_typed() {
        let t = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nMulti-Arch: same\nDepends: libgcc-s1\nProvides: libc6-x (= 1.0)\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let p = parse_all("status", t).unwrap();
        assert!(p[0].is_installed());
        assert!(!p[1].is_installed());
        assert_eq!(p[0].dpkg_name(), "libc6:amd64");
        assert_eq!(p[0].provides[0].name, "libc6-x");
        assert!(parse_all("x", "Package: a\nVersion: not a version\n").is_err());
    }
}
