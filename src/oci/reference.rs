//! Image references as users type them: `alpine:3.20` is `docker.io/library/alpine:3.20`;
//! `host:port/repo:tag`, `repo@sha256:…` and `repo:tag@sha256:…` also work (the grammar of
//! the distribution project's `reference` package, without its rarely used corners).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";

/// A registry reference: where an image lives and which one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with the port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    /// Tag, if given (`latest` when neither a tag nor a digest was).
    pub tag: Option<String>,
    /// Digest, if given; it wins over the tag.
    pub digest: Option<Digest>,
}

/// Why a reference did not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad image reference {input:?}: {why} (examples: alpine:3.20, 127.0.0.1:5000/team/app:1.0, debian@sha256:<64 hex>)")]
pub struct BadReference {
    /// What was given.
    pub input: String,
    /// What is wrong.
    pub why: &'static str,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by `.`, `_`, `__` or `-`s.
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
        && b.iter().all(|&x| {
            x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    (1..=128).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

impl FromStr for Reference {
    type Err = BadReference;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadReference {
            input: input.to_string(),
            why,
        };
        let s = input.strip_prefix("docker://").unwrap_or(input);
        let s = s.strip_prefix("//").unwrap_or(s);
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !d.starts_with("sha256:") {
                    return Err(bad("only sha256 digests are supported"));
                }
                (
                    n,
                    Some(
                        d.parse::<Digest>()
                            .map_err(|_| bad("the digest is not sha256:<64 hex digits>"))?,
                    ),
                )
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(
                    "the tag may only hold letters, digits, `.`, `_` and `-` (at most 128)",
                ));
            }
        }
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if registry.is_empty()
            || registry.bytes().any(|b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
            })
        {
            return Err(bad("the registry host is not a valid host[:port]"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository names must be lower case"));
        }
        if !path.split('/').all(valid_component) {
            return Err(bad(
                "the repository may only hold lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// True when the registry is on this machine (`localhost`, `127.0.0.0/8`, `[::1]`):
    /// plain HTTP is allowed there.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => self.registry.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback())
    }

    /// The same image, by digest.
    pub fn with_digest(&self, d: Digest) -> Reference {
        Reference {
            digest: Some(d),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn short_names_expand_like_docker() {
        assert_eq!(r("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(r("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(r("docker://alpine"), "docker.io/library/alpine:latest");
        assert_eq!(r("team/app:1"), "docker.io/team/app:1");
        assert_eq!(
            r("index.docker.io/library/debian:bookworm-slim"),
            "docker.io/library/debian:bookworm-slim"
        );
        assert_eq!(
            r("127.0.0.1:5000/alpine:3.20.3"),
            "127.0.0.1:5000/alpine:3.20.3"
        );
        assert_eq!(r("localhost/a/b"), "localhost/a/b:latest");
        assert_eq!(r("ghcr.io/o/r"), "ghcr.io/o/r:latest");
        let d = "sha256:4e4b2e0570819215922d48b788db4d5a43f5dedd2a34d2a4ad6a2a17d47c5a73";
        assert_eq!(
            r(&format!("alpine@{d}")),
            format!("docker.io/library/alpine@{d}")
        );
        assert_eq!(r(&format!("h:1/a:t@{d}")), format!("h:1/a:t@{d}"));
    }

    #[test]
    fn bad_references_say_why() {
        for s in [
            "",
            "Alpine",
            "a:b:c",
            "a@sha256:12",
            "a@md5:00",
            "h:1/a:",
            "a//b",
            "a:-x",
        ] {
            assert!(s.parse::<Reference>().is_err(), "{s}");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!("127.0.0.1:5000/a"
            .parse::<Reference>()
            .unwrap()
            .is_loopback());
        assert!("localhost:5000/a"
            .parse::<Reference>()
            .unwrap()
            .is_loopback());
        assert!("[::1]:5000/a".parse::<Reference>().unwrap().is_loopback());
        assert!(!"ghcr.io/a".parse::<Reference>().unwrap().is_loopback());
        assert!(!"alpine".parse::<Reference>().unwrap().is_loopback());
    }
}
