//! The repositories to use and the keys each one trusts: the image's own apt sources
//! (`/etc/apt/sources.list`, `sources.list.d/*.list` and `*.sources`) with their
//! `Signed-By` read inside the tree, or `--apt-source` lines whose `signed-by=` names a
//! host keyring; `--apt-mirror` replaces their hosts; `--apt-key` keyrings are trusted by
//! every source.

use super::keyring::{KeyError, Keyring};
use super::DebOptions;
use crate::etc::apt_sources::{self, AptSource, SignedBy};
use crate::tree::Tree;

/// Why the sources or their keys are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// A sources file or argument that cannot be parsed.
    #[error(transparent)]
    Parse(#[from] apt_sources::SourcesError),
    /// A keyring that cannot be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A keyring file that does not exist.
    #[error("{0}: keyring not found")]
    MissingKeyring(String),
    /// No repository at all.
    #[error("no apt sources: the image has none in /etc/apt/sources.list{{,.d}}; pass --apt-source \"deb [signed-by=KEYRING] URI SUITE COMPONENT\"")]
    None,
}

/// One repository: an archive root, a suite, its components and the keys it trusts.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Archive root URI.
    pub uri: String,
    /// Suite.
    pub suite: String,
    /// Components.
    pub components: Vec<String>,
    /// Trusted keys.
    pub keyring: Keyring,
}

fn tree_text(tree: &Tree, path: &str) -> Option<String> {
    tree.read_file(path.as_bytes())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn dir_names(tree: &Tree, dir: &str) -> Vec<String> {
    let Some(id) = tree.lookup(dir.as_bytes()) else {
        return Vec::new();
    };
    tree.inode(id)
        .as_dir()
        .map(|d| {
            d.entries()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The image's default keys: `/etc/apt/trusted.gpg.d/*.{gpg,asc}` and `/etc/apt/trusted.gpg`.
fn default_keyring(tree: &Tree) -> Result<Keyring, SourcesError> {
    let mut k = Keyring::default();
    for n in dir_names(tree, "/etc/apt/trusted.gpg.d") {
        if n.ends_with(".gpg") || n.ends_with(".asc") {
            let p = format!("/etc/apt/trusted.gpg.d/{n}");
            if let Ok(b) = tree.read_file(p.as_bytes()) {
                k.add_bytes(&p, &b)?;
            }
        }
    }
    if let Ok(b) = tree.read_file(b"/etc/apt/trusted.gpg") {
        k.add_bytes("/etc/apt/trusted.gpg", &b)?;
    }
    Ok(k)
}

fn keyring_for(
    s: &AptSource,
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
    default: &dyn Fn() -> Result<Keyring, SourcesError>,
) -> Result<Keyring, SourcesError> {
    Ok(match &s.signed_by {
        None => default()?,
        Some(SignedBy::Paths(paths)) => {
            let mut k = Keyring::default();
            for p in paths {
                let b = read(p).ok_or_else(|| SourcesError::MissingKeyring(p.clone()))?;
                k.add_bytes(p, &b)?;
            }
            k
        }
        Some(SignedBy::Fingerprints(f)) => default()?.only(f),
        Some(SignedBy::Inline(text)) => {
            let mut k = Keyring::default();
            k.add_bytes("inline Signed-By", text.as_bytes())?;
            k
        }
    })
}

/// The image's sources.
pub fn image_sources(tree: &Tree) -> Result<Vec<AptSource>, SourcesError> {
    let mut out = Vec::new();
    if let Some(t) = tree_text(tree, "/etc/apt/sources.list") {
        out.extend(apt_sources::parse_one_line("/etc/apt/sources.list", &t)?);
    }
    for n in dir_names(tree, "/etc/apt/sources.list.d") {
        let p = format!("/etc/apt/sources.list.d/{n}");
        let Some(t) = tree_text(tree, &p) else {
            continue;
        };
        if n.ends_with(".list") {
            out.extend(apt_sources::parse_one_line(&p, &t)?);
        } else if n.ends_with(".sources") {
            out.extend(apt_sources::parse_deb822(&p, &t)?);
        }
    }
    Ok(out)
}

/// Every repository for this build, with its keys.
pub fn repositories(tree: &Tree, opts: &DebOptions) -> Result<Vec<Repository>, SourcesError> {
    let mut extra = Keyring::default();
    for p in &opts.extra_keys {
        let b =
            std::fs::read(p).map_err(|_| SourcesError::MissingKeyring(p.display().to_string()))?;
        extra.add_bytes(&p.display().to_string(), &b)?;
    }
    let default_cell: std::cell::OnceCell<Keyring> = std::cell::OnceCell::new();
    let default = || -> Result<Keyring, SourcesError> {
        if let Some(k) = default_cell.get() {
            return Ok(k.clone());
        }
        let k = default_keyring(tree)?;
        Ok(default_cell.get_or_init(|| k).clone())
    };
    let mut list: Vec<(AptSource, Keyring)> = Vec::new();
    if opts.extra_sources.is_empty() || opts.keep_image_sources {
        let read = |p: &str| tree.read_file(p.as_bytes()).ok();
        for s in image_sources(tree)? {
            let k = keyring_for(&s, &read, &default)?;
            list.push((s, k));
        }
    }
    for (n, line) in opts.extra_sources.iter().enumerate() {
        let read = |p: &str| std::fs::read(p).ok();
        for s in apt_sources::parse_one_line(&format!("--apt-source #{}", n + 1), line)? {
            let k = keyring_for(&s, &read, &default)?;
            list.push((s, k));
        }
    }
    let mut out = Vec::new();
    for (s, mut k) in list {
        k.extend(extra.clone());
        k.now = opts.now;
        for uri in &s.uris {
            let uri = match &opts.mirror {
                Some(m) => apt_sources::with_mirror(uri, m),
                None => uri.clone(),
            };
            for suite in &s.suites {
                out.push(Repository {
                    uri: uri.trim_end_matches('/').to_string(),
                    suite: suite.clone(),
                    components: s.components.clone(),
                    keyring: k.clone(),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(SourcesError::None);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Meta, Time};

    fn tree() -> Tree {
        let mut t = Tree::new();
        let m = Meta::new(0o644, Time::default());
        t.write_file(
            b"/etc/apt/sources.list.d/debian.sources",
            b"Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n",
            m.clone(),
        )
        .unwrap();
        t.write_file(b"/etc/apt/sources.list", b"# empty\n", m)
            .unwrap();
        t
    }

    #[test]
    fn image_sources_mirror_and_overrides() {
        let t = tree();
        let opts = DebOptions {
            mirror: Some("http://127.0.0.1:9".into()),
            ..DebOptions::default()
        };
        let r = repositories(&t, &opts).unwrap();
        let got: Vec<String> = r.iter().map(|r| format!("{} {}", r.uri, r.suite)).collect();
        assert_eq!(
            got,
            [
                "http://127.0.0.1:9/debian bookworm",
                "http://127.0.0.1:9/debian bookworm-updates",
                "http://127.0.0.1:9/debian-security bookworm-security"
            ]
        );
        let over = DebOptions {
            extra_sources: vec!["deb http://127.0.0.1:9/x stable main".into()],
            ..DebOptions::default()
        };
        assert_eq!(repositories(&t, &over).unwrap().len(), 1);
        let keep = DebOptions {
            keep_image_sources: true,
            ..over
        };
        assert_eq!(repositories(&t, &keep).unwrap().len(), 4);
        let missing = DebOptions {
            extra_sources: vec!["deb [signed-by=/nonexistent.gpg] http://x/ s main".into()],
            ..DebOptions::default()
        };
        assert!(matches!(
            repositories(&t, &missing),
            Err(SourcesError::MissingKeyring(_))
        ));
        assert!(matches!(
            repositories(&Tree::new(), &DebOptions::default()),
            Err(SourcesError::None)
        ));
    }
}
