//! Where packages come from: the image's `/etc/apk/repositories`, `/etc/apk/arch` and
//! `/etc/apk/keys`, with the user's overrides (repositories replace the image's, keys add
//! to them, a mirror replaces the host), and fetching a repository's signed index through
//! the cache.

use std::io::Read;
use std::time::Duration;

use super::cache::Cache;
use super::index::{self, Package};
use super::signature::{self, Keyring};
use super::ApkError;
use crate::etc::apk_repositories::{self, Repository};
use crate::fetch::Fetch;
use crate::tree::{Kind, Tree};

/// Largest index accepted (compressed and decompressed).
const MAX_INDEX: u64 = 256 << 20;

/// What the image and the user say about repositories and trust.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repositories to use, in priority order.
    pub repositories: Vec<Repository>,
    /// The package architecture.
    pub arch: String,
    /// Trusted keys.
    pub keys: Keyring,
}

/// The user's overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--apk-repository URL` (replace the image's list when non-empty).
    pub repositories: Vec<String>,
    /// `--apk-key FILE`, as (file name, PEM bytes).
    pub keys: Vec<(String, Vec<u8>)>,
    /// `--apk-mirror URL`: replaces scheme and host of every repository.
    pub mirror: Option<String>,
}

/// Reads the configuration from the tree and applies the overrides.
pub fn config(tree: &Tree, o: &Overrides) -> Result<Config, ApkError> {
    let arch = tree
        .read_file(b"/etc/apk/arch")
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .ok()
        .filter(|a| !a.is_empty())
        .ok_or(ApkError::NoArch)?;
    let mut repositories = if o.repositories.is_empty() {
        let text = tree
            .read_file(b"/etc/apk/repositories")
            .map_err(|_| ApkError::NoRepositories)?;
        apk_repositories::parse(&String::from_utf8_lossy(&text))
    } else {
        o.repositories
            .iter()
            .flat_map(|r| apk_repositories::parse(r))
            .collect()
    };
    if let Some(m) = &o.mirror {
        for r in &mut repositories {
            r.url = apk_repositories::with_mirror(&r.url, m)
                .ok_or_else(|| ApkError::Mirror(r.url.clone()))?;
        }
    }
    if repositories.is_empty() {
        return Err(ApkError::NoRepositories);
    }
    let mut keys = Keyring::new();
    if let Some(dir) = tree.lookup(b"/etc/apk/keys") {
        if let Some(d) = tree.inode(dir).as_dir() {
            let names: Vec<Vec<u8>> = d.entries().map(|(n, _)| n.to_vec()).collect();
            for n in names {
                let mut p = b"/etc/apk/keys/".to_vec();
                p.extend_from_slice(&n);
                let is_file = tree
                    .lookup(&p)
                    .is_some_and(|id| matches!(tree.inode(id).kind, Kind::File(_)));
                if !is_file {
                    continue;
                }
                if let Ok(pem) = tree.read_file(&p) {
                    // Keys that do not parse are not trusted (apk skips them too).
                    let _ = keys.add_pem(&String::from_utf8_lossy(&n), &pem);
                }
            }
        }
    }
    for (name, pem) in &o.keys {
        keys.add_pem(name, pem).map_err(ApkError::Key)?;
    }
    Ok(Config {
        repositories,
        arch,
        keys,
    })
}

/// The index URL of a repository.
pub fn index_url(repo: &Repository, arch: &str) -> String {
    format!("{}/{arch}/APKINDEX.tar.gz", repo.url)
}

/// The package URL in a repository.
pub fn package_url(repo: &Repository, arch: &str, pkg: &Package) -> String {
    format!("{}/{arch}/{}-{}.apk", repo.url, pkg.name, pkg.version)
}

/// Verifies a whole `APKINDEX.tar.gz` and returns its records.
pub fn read_index(data: &[u8], keys: &Keyring, what: &str) -> Result<Vec<Package>, ApkError> {
    let (_, signed) =
        signature::verify_file(data, keys).map_err(|source| ApkError::IndexSignature {
            url: what.to_string(),
            source,
        })?;
    let bad = |why: String| ApkError::IndexFormat {
        url: what.to_string(),
        why,
    };
    let dec = flate2::read::GzDecoder::new(signed).take(MAX_INDEX);
    let mut ar = tar::Archive::new(dec);
    let mut text = None;
    for e in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut e = e.map_err(|e| bad(e.to_string()))?;
        if e.path_bytes().as_ref() == b"APKINDEX" {
            let mut s = Vec::new();
            e.read_to_end(&mut s).map_err(|e| bad(e.to_string()))?;
            text = Some(s);
            break;
        }
    }
    let text = text.ok_or_else(|| bad("no APKINDEX entry".into()))?;
    let text = String::from_utf8(text).map_err(|_| bad("APKINDEX is not UTF-8".into()))?;
    let (pkgs, errors) = index::parse_lenient(&text);
    if pkgs.is_empty() {
        if let Some(e) = errors.into_iter().next() {
            return Err(bad(e.to_string()));
        }
    }
    Ok(pkgs)
}

/// Fetches (or takes from the cache) and verifies one repository's index. Returns the
/// records and whether the network was used.
pub fn load_index(
    repo: &Repository,
    cfg: &Config,
    fetch: &dyn Fetch,
    cache: Option<&Cache>,
    max_age: Duration,
) -> Result<(Vec<Package>, bool), ApkError> {
    let url = index_url(repo, &cfg.arch);
    if let Some(data) = cache.and_then(|c| c.index(&url, max_age)) {
        if let Ok(p) = read_index(&data, &cfg.keys, &url) {
            return Ok((p, false));
        }
    }
    let data = fetch
        .get_limited(&url, MAX_INDEX)
        .map_err(ApkError::Fetch)?;
    let pkgs = read_index(&data, &cfg.keys, &url)?;
    if let Some(c) = cache {
        c.put_index(&url, &data)
            .map_err(|e| ApkError::Cache(e.to_string()))?;
    }
    Ok((pkgs, true))
}
