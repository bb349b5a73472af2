//! Fetching a repository's indexes: `InRelease` (or `Release` + `Release.gpg`) verified
//! against the repository's keys, then `Packages.xz|gz|plain` for the architecture and
//! `all`, each checked against the SHA256 the verified Release lists. Indexes are cached
//! by hash; a verified `InRelease` is reused for an hour so a warm build needs no network.

use std::io::Read;
use std::time::Duration;

use super::packages::{self, PackageError};
use super::release::{Release, ReleaseError};
use super::resolve::Available;
use super::sources::Repository;
use crate::cache::Cache;
use crate::fetch::{FetchError, Fetcher};

/// How long a verified `InRelease` is reused without asking the mirror again.
pub const RELEASE_TTL: Duration = Duration::from_secs(3600);

/// Why a repository's indexes are unusable.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Download.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Signature.
    #[error(transparent)]
    Key(#[from] super::keyring::KeyError),
    /// Release content.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// Packages content.
    #[error(transparent)]
    Packages(#[from] PackageError),
    /// No Release file at all.
    #[error("{0}: the repository has no InRelease or Release file; check the URI and suite")]
    NoRelease(String),
    /// The Release lists no index for the architecture.
    #[error("{url}: the signed Release lists no Packages index for {what}")]
    NoIndex {
        /// The Release URL.
        url: String,
        /// `main/binary-amd64`.
        what: String,
    },
    /// A decompression failure.
    #[error("{0}: corrupt compressed index: {1}")]
    Corrupt(String, String),
    /// A Packages stanza without SHA256.
    #[error("package {0} has no SHA256 in its index; refusing to download it unchecked")]
    NoHash(String),
}

fn release_text(
    repo: &Repository,
    cache: &Cache,
    fetcher: &Fetcher,
    now: i64,
    downloaded: &mut u64,
) -> Result<(String, Release), RepoError> {
    let base = format!("{}/dists/{}", repo.uri, repo.suite);
    let inrelease = format!("{base}/InRelease");
    let verify_in = |bytes: &[u8]| -> Result<(String, Release), RepoError> {
        let text = String::from_utf8_lossy(bytes);
        let signed = repo.keyring.verify_cleartext(&inrelease, &text)?;
        let r = Release::parse(&inrelease, &signed, now)?;
        Ok((inrelease.clone(), r))
    };
    let key = format!("deb/{inrelease}");
    let cached = cache
        .get_ref_fresh(&key, RELEASE_TTL)
        .ok()
        .flatten()
        .and_then(|d| cache.read_any(&d));
    if let Some(b) = cached {
        if let Ok(r) = verify_in(&b) {
            return Ok(r);
        }
    }
    match fetcher.get(&inrelease) {
        Ok(b) => {
            *downloaded += b.len() as u64;
            let r = verify_in(&b)?;
            let d = crate::digest::Digest::of(&b);
            if cache.put(d, &b).is_ok() {
                let _ = cache.set_ref(&key, &d);
            }
            Ok(r)
        }
        Err(FetchError::NotFound { .. }) => {
            let url = format!("{base}/Release");
            let body = match fetcher.get(&url) {
                Ok(b) => b,
                Err(FetchError::NotFound { .. }) => return Err(RepoError::NoRelease(base)),
                Err(e) => return Err(e.into()),
            };
            let sig = match fetcher.get(&format!("{url}.gpg")) {
                Ok(s) => s,
                Err(FetchError::NotFound { .. }) => {
                    return Err(super::keyring::KeyError::Untrusted {
                        name: url,
                        detail: "no InRelease and no Release.gpg: the repository is unsigned"
                            .into(),
                    }
                    .into())
                }
                Err(e) => return Err(e.into()),
            };
            *downloaded += (body.len() + sig.len()) as u64;
            repo.keyring.verify_detached(&url, &body, &sig)?;
            let r = Release::parse(&url, &String::from_utf8_lossy(&body), now)?;
            Ok((url, r))
        }
        Err(e) => Err(e.into()),
    }
}

fn decompress(name: &str, bytes: &[u8]) -> Result<String, RepoError> {
    let (_, mut r) = crate::unpack::decompress(bytes)
        .map_err(|e| RepoError::Corrupt(name.into(), e.to_string()))?;
    let mut s = String::new();
    r.read_to_string(&mut s)
        .map_err(|e| RepoError::Corrupt(name.into(), e.to_string()))?;
    Ok(s)
}

/// Loads one repository's packages for `arch` (and `all`).
pub fn load(
    repo: &Repository,
    arch: &str,
    cache: &Cache,
    fetcher: &Fetcher,
    now: i64,
    downloaded: &mut u64,
) -> Result<Vec<Available>, RepoError> {
    let (rel_url, rel) = release_text(repo, cache, fetcher, now, downloaded)?;
    let base = format!("{}/dists/{}", repo.uri, repo.suite);
    let mut out = Vec::new();
    let mut found_any = false;
    let components = if repo.components.is_empty() {
        rel.components.clone()
    } else {
        repo.components.clone()
    };
    for comp in &components {
        // Some releases name components `updates/main` but store them under `main`.
        let comp = comp.rsplit('/').next().unwrap_or(comp);
        for a in [arch, "all"] {
            let dir = format!("{comp}/binary-{a}/Packages");
            let found = ["xz", "gz", ""].iter().find_map(|ext| {
                let p = if ext.is_empty() {
                    dir.clone()
                } else {
                    format!("{dir}.{ext}")
                };
                rel.files.get(&p).map(|f| (p, f.clone()))
            });
            let Some((path, file)) = found else {
                // Like apt: a component or `all` the release does not carry is skipped.
                continue;
            };
            found_any |= a == arch;
            let hit = cache
                .has_valid(&file.sha256, file.size)
                .unwrap_or(false)
                .then(|| cache.read_blob(&file.sha256, file.size).ok())
                .flatten();
            let bytes = match hit {
                Some(b) => b,
                None => {
                    let url = if rel.by_hash {
                        let d = path.rsplit_once('/').map_or("", |(d, _)| d);
                        format!("{base}/{d}/by-hash/SHA256/{}", file.sha256.hex())
                    } else {
                        format!("{base}/{path}")
                    };
                    let b = match fetcher.get_verified(&url, &file.sha256, Some(file.size)) {
                        Err(FetchError::NotFound { .. }) if rel.by_hash => fetcher.get_verified(
                            &format!("{base}/{path}"),
                            &file.sha256,
                            Some(file.size),
                        )?,
                        r => r?,
                    };
                    *downloaded += b.len() as u64;
                    let _ = cache.put(file.sha256, &b);
                    b
                }
            };
            let text = decompress(&format!("{base}/{path}"), &bytes)?;
            for pkg in packages::parse_all(&format!("{base}/{path}"), &text)? {
                if pkg.arch == arch || pkg.arch == "all" {
                    out.push(Available {
                        pkg,
                        base_uri: repo.uri.clone(),
                    });
                }
            }
        }
    }
    if !found_any {
        return Err(RepoError::NoIndex {
            url: rel_url,
            what: format!("{}/binary-{arch}", components.join(",")),
        });
    }
    Ok(out)
}

/// Loads every repository.
pub fn load_all(
    repos: &[Repository],
    arch: &str,
    cache: &Cache,
    fetcher: &Fetcher,
    now: i64,
    downloaded: &mut u64,
) -> Result<Vec<Available>, RepoError> {
    let mut out = Vec::new();
    for r in repos {
        out.extend(load(r, arch, cache, fetcher, now, downloaded)?);
    }
    Ok(out)
}
