//! Alpine packages (APK v2) installed into the staging tree in pure Rust: signed indexes
//! ([`signature`], [`index`]), versions ([`version`]) and dependency atoms ([`dep`]),
//! package files ([`package`]), resolving ([`resolve`]), unpacking ([`install`]) and the
//! installed database ([`db`]). Trust comes only from the image's `/etc/apk/keys` plus
//! keys the user adds; no script from a package is ever run (they are stored in
//! `scripts.tar` as apk would, and reported).
//!
//! [`install`](fn@install) runs it all: read the image's configuration, load the indexes,
//! resolve, download and verify every package before touching the tree, then unpack and
//! update `/lib/apk/db/{installed,scripts.tar,triggers}` and `/etc/apk/world`.

pub mod accounts;
pub mod cache;
pub mod db;
pub mod dep;
pub mod index;
pub mod install;
pub mod package;
pub mod repo;
pub mod resolve;
pub mod signature;
pub mod version;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::fetch::{Fetch, FetchError};
use crate::tree::{Meta, Time, Tree};

use dep::Dep;
use index::Identity;

/// Why installing packages failed.
#[derive(Debug, thiserror::Error)]
pub enum ApkError {
    /// No `/etc/apk/arch`.
    #[error("the base image has no /etc/apk/arch: is it an Alpine image?")]
    NoArch,
    /// No repositories.
    #[error("no apk repositories: the base image's /etc/apk/repositories is missing or empty; pass --apk-repository URL")]
    NoRepositories,
    /// `--apk-mirror` cannot apply.
    #[error("repository {0} has no scheme://host part for --apk-mirror to replace")]
    Mirror(String),
    /// A user key is unusable.
    #[error("--apk-key: {0}")]
    Key(signature::BadKey),
    /// Download failed.
    #[error(transparent)]
    Fetch(FetchError),
    /// An index is not signed by a trusted key, or was modified.
    #[error("index {url}: {source}")]
    IndexSignature {
        /// The index URL.
        url: String,
        /// Why.
        source: signature::SignatureError,
    },
    /// An index does not parse.
    #[error("index {url}: {why}")]
    IndexFormat {
        /// The index URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The base's installed database does not parse.
    #[error("{path} in the base image: {source}")]
    Database {
        /// Where.
        path: String,
        /// Why.
        source: index::IndexError,
    },
    /// A requested package is not a dependency atom.
    #[error("--package: {0}")]
    BadPackage(dep::BadDep),
    /// No installable set.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// A package failed verification.
    #[error("package {pkg} from {url}: {source}")]
    Package {
        /// `name-version`.
        pkg: String,
        /// Where it came from.
        url: String,
        /// Why.
        source: package::PackageError,
    },
    /// A package is not the one the index named.
    #[error("package {pkg}: its .PKGINFO says {found}: the repository is inconsistent")]
    Mismatch {
        /// Expected `name-version`.
        pkg: String,
        /// What `.PKGINFO` says.
        found: String,
    },
    /// Unpacking failed.
    #[error(transparent)]
    Install(#[from] install::InstallError),
    /// The cache could not be written.
    #[error("package cache: {0}")]
    Cache(String),
    /// Writing a database file into the tree failed.
    #[error("writing {path} into the tree: {why}")]
    Tree {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// What to install and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names (dependency atoms) to add to the world.
    pub packages: Vec<String>,
    /// Repository, key and mirror overrides.
    pub overrides: repo::Overrides,
    /// `--lock` pins; new packages must be exactly these.
    pub lock: Option<Lock>,
    /// The download cache; `None` downloads everything.
    pub cache: Option<cache::Cache>,
    /// How long a cached index is used without asking the mirror.
    pub index_max_age: Duration,
    /// Timestamp for files rootsmith writes (database files).
    pub epoch: Time,
}

/// One package added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `C:` identity.
    pub identity: Identity,
}

/// What [`install`] did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Packages added, in install order.
    pub added: Vec<Added>,
    /// `name-version: .script` entries that were stored but not run.
    pub scripts_not_run: Vec<String>,
    /// Network requests made.
    pub requests: usize,
    /// Files and symlinks unpacked.
    pub files: usize,
    /// Users and groups created from the packages' `addgroup`/`adduser` commands.
    pub accounts: Vec<String>,
    /// Base packages upgraded: `name old → new`.
    pub upgraded: Vec<String>,
    /// A cached index turned out stale and the indexes were fetched again.
    pub refreshed_indexes: bool,
}

impl Report {
    /// The lock file text for this set (`name version identity` per line, sorted).
    pub fn lock_text(&self) -> String {
        let mut s = String::from(
            "# rootsmith apk lock: the exact packages a build adds (name version identity)\n",
        );
        let set: BTreeMap<&str, &Added> = self.added.iter().map(|a| (a.name.as_str(), a)).collect();
        for (n, a) in set {
            s.push_str(&format!("{n} {} {}\n", a.version, a.identity));
        }
        s
    }
}

/// A parsed lock file: versions (and, when given, `C:` identities) by package name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// `name → version`.
    pub versions: BTreeMap<String, String>,
    /// `name → identity`, for lines that carry one.
    pub identities: BTreeMap<String, Identity>,
}

/// Why a lock file did not parse.
#[derive(Debug, thiserror::Error)]
#[error("lock file line {line}: expected `name version [Q1identity]`, found {text:?}")]
pub struct BadLock {
    /// 1-based line.
    pub line: usize,
    /// The line.
    pub text: String,
}

/// Parses a lock file (`name version [identity]` lines, `#` comments).
pub fn parse_lock(text: &str) -> Result<Lock, BadLock> {
    let mut out = Lock::default();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut w = l.split_whitespace();
        let (n, v, id) = (w.next(), w.next(), w.next());
        let id = match id.map(Identity::parse) {
            None => Ok(None),
            Some(Some(i)) => Ok(Some(i)),
            Some(None) => Err(()),
        };
        match (n, v, id, w.next()) {
            (Some(n), Some(v), Ok(id), None) if version::is_valid(v) => {
                out.versions.insert(n.to_string(), v.to_string());
                if let Some(id) = id {
                    out.identities.insert(n.to_string(), id);
                }
            }
            _ => {
                return Err(BadLock {
                    line: i + 1,
                    text: l.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// Where the base keeps the installed database (`/lib/apk/db`, or `/usr/lib/apk/db` on
/// images that moved it).
fn db_dir(tree: &Tree) -> &'static str {
    if tree.lookup(b"/lib/apk/db/installed").is_none()
        && tree.lookup(b"/usr/lib/apk/db/installed").is_some()
    {
        "/usr/lib/apk/db"
    } else {
        "/lib/apk/db"
    }
}

fn read_text(tree: &Tree, path: &str) -> String {
    tree.read_file(path.as_bytes())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn write_text(tree: &mut Tree, path: &str, data: &[u8], epoch: Time) -> Result<(), ApkError> {
    let meta = match tree.lookup(path.as_bytes()) {
        Some(id) => {
            let mut m = tree.inode(id).meta.clone();
            m.mtime = epoch;
            m.ctime = epoch;
            m
        }
        None => Meta::new(0o644, epoch),
    };
    tree.write_file(path.as_bytes(), data, meta)
        .map_err(|e| ApkError::Tree {
            path: path.to_string(),
            why: e.to_string(),
        })?;
    Ok(())
}

/// Removes a non-directory at `rel` (no leading `/`) from the tree, if present.
fn remove_file(tree: &mut Tree, rel: &str) {
    let abs = format!("/{rel}");
    let Ok((parent, Some(name))) = tree.resolve_parent(abs.as_bytes(), crate::tree::Follow::Scoped)
    else {
        return;
    };
    if let Ok(Some(id)) = tree.child(parent, &name) {
        if !tree.inode(id).is_dir() {
            tree.remove(parent, &name);
        }
    }
}

/// The database text without the stanza of package `name`.
fn drop_stanza(text: &str, name: &str) -> String {
    let p = format!("P:{name}");
    let kept: Vec<&str> = text
        .split("\n\n")
        .filter(|st| !st.trim().is_empty() && !st.lines().any(|l| l == p))
        .collect();
    let mut out = kept.join("\n\n");
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out
}

/// A package fetched and verified, waiting to be unpacked.
struct Fetched {
    cand: usize,
    data: Vec<u8>,
}

/// Installs `opts.packages` (and what they need) into `tree`.
pub fn install(tree: &mut Tree, opts: &Options, fetch: &dyn Fetch) -> Result<Report, ApkError> {
    match install_once(tree, opts, fetch) {
        // A package the cached index names is gone from the mirror: the index is stale.
        // Nothing in the tree has changed yet (downloads come first), so start over with
        // fresh indexes.
        Err(ApkError::Fetch(FetchError::NotFound { .. }))
            if opts.cache.is_some() && opts.index_max_age > Duration::ZERO =>
        {
            let mut fresh = opts.clone();
            fresh.index_max_age = Duration::ZERO;
            let mut r = install_once(tree, &fresh, fetch)?;
            r.refreshed_indexes = true;
            Ok(r)
        }
        other => other,
    }
}

fn install_once(tree: &mut Tree, opts: &Options, fetch: &dyn Fetch) -> Result<Report, ApkError> {
    let mut report = Report::default();
    let cfg = repo::config(tree, &opts.overrides)?;
    let dbd = db_dir(tree);
    let installed_path = format!("{dbd}/installed");
    let installed_text = read_text(tree, &installed_path);
    let base = db::parse(&installed_text).map_err(|source| ApkError::Database {
        path: installed_path.clone(),
        source,
    })?;

    let mut u = resolve::Universe::new(&cfg.arch);
    for i in &base {
        u.add(resolve::Candidate {
            pkg: i.pkg.clone(),
            repo: None,
            tag: None,
        });
    }
    for (ri, r) in cfg.repositories.iter().enumerate() {
        let (pkgs, net) =
            repo::load_index(r, &cfg, fetch, opts.cache.as_ref(), opts.index_max_age)?;
        report.requests += usize::from(net);
        for p in pkgs {
            u.add(resolve::Candidate {
                pkg: p,
                repo: Some(ri),
                tag: r.tag.clone(),
            });
        }
    }

    let world_path = "/etc/apk/world";
    let world_text = read_text(tree, world_path);
    let mut world: Vec<Dep> = Vec::new();
    for w in world_text.split_whitespace() {
        // Entries this reader does not understand are kept in the file, not resolved.
        if let Ok(d) = Dep::parse(w) {
            world.push(d);
        }
    }
    let mut requested = Vec::new();
    for p in &opts.packages {
        requested.push(Dep::parse(p).map_err(ApkError::BadPackage)?);
    }
    let mut all = world.clone();
    all.extend(requested.iter().cloned());
    let res = resolve::resolve(&u, &all, opts.lock.as_ref().map(|l| &l.versions))?;
    if let Some(lock) = &opts.lock {
        for &c in &res.install {
            let p = &u.cands[c].pkg;
            if let (Some(want), Some(have)) = (lock.identities.get(&p.name), p.identity) {
                if *want != have {
                    return Err(ApkError::Resolve(resolve::ResolveError::Lock(format!(
                        "{} is locked as {want} but the repository's index now says {have} (rebuilt under the same version)",
                        p.nv()
                    ))));
                }
            }
        }
    }

    // Download and verify everything before the tree changes.
    let mut fetched = Vec::new();
    for &c in &res.install {
        let cand = &u.cands[c];
        let pkg = &cand.pkg;
        let r = &cfg.repositories[cand.repo.expect("resolution adds repository packages only")];
        let url = repo::package_url(r, &cfg.arch, pkg);
        let verify = |data: &[u8]| -> Result<(), ApkError> {
            let f = package::ApkFile::parse(data).map_err(|source| ApkError::Package {
                pkg: pkg.nv(),
                url: url.clone(),
                source,
            })?;
            f.verify(pkg.identity, &cfg.keys)
                .map_err(|source| ApkError::Package {
                    pkg: pkg.nv(),
                    url: url.clone(),
                    source,
                })?;
            let (n, v) = (
                f.info.get("pkgname").unwrap_or(""),
                f.info.get("pkgver").unwrap_or(""),
            );
            if n != pkg.name || v != pkg.version {
                return Err(ApkError::Mismatch {
                    pkg: pkg.nv(),
                    found: format!("{n}-{v}"),
                });
            }
            Ok(())
        };
        let cached = match (&opts.cache, pkg.identity) {
            (Some(cache), Some(id)) => match cache.package(&id) {
                Some(d) if verify(&d).is_ok() => Some(d),
                Some(_) => {
                    cache.forget_package(&id);
                    None
                }
                None => None,
            },
            _ => None,
        };
        let data = match cached {
            Some(d) => d,
            None => {
                let limit = pkg.size.max(1).saturating_mul(2).max(64 << 20);
                let d = fetch.get_limited(&url, limit).map_err(ApkError::Fetch)?;
                report.requests += 1;
                verify(&d)?;
                if let (Some(cache), Some(id)) = (&opts.cache, pkg.identity) {
                    cache
                        .put_package(&id, &d)
                        .map_err(|e| ApkError::Cache(e.to_string()))?;
                }
                d
            }
        };
        fetched.push(Fetched { cand: c, data });
    }

    // Unpack, in dependency order.
    let mut owners: HashMap<String, String> = HashMap::new();
    for i in &base {
        for p in i.file_paths() {
            owners.insert(p, i.pkg.name.clone());
        }
    }
    // Upgraded base packages: their files and records go before the new ones arrive.
    let mut installed_text = installed_text;
    for &(new, old) in &res.upgrades {
        let (name, old_v) = (&u.cands[old].pkg.name, &u.cands[old].pkg.version);
        if let Some(rec) = base
            .iter()
            .find(|i| &i.pkg.name == name && &i.pkg.version == old_v)
        {
            for p in rec.file_paths() {
                owners.remove(&p);
                remove_file(tree, &p);
            }
        }
        installed_text = drop_stanza(&installed_text, name);
        report
            .upgraded
            .push(format!("{name} {old_v} → {}", u.cands[new].pkg.version));
    }
    let mut accts = accounts::Accounts::parse(
        &read_text(tree, "/etc/passwd"),
        &read_text(tree, "/etc/group"),
        &read_text(tree, "/etc/shadow"),
    );
    let mut new_records = String::new();
    let mut scripts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut triggers = String::new();
    for f in &fetched {
        let pkg = &u.cands[f.cand].pkg;
        let apk = package::ApkFile::parse(&f.data).map_err(|source| ApkError::Package {
            pkg: pkg.nv(),
            url: String::new(),
            source,
        })?;
        let id = apk.identity();
        for (name, body) in &apk.scripts {
            if name == ".pre-install" || name == ".post-install" {
                accts.apply_script(&String::from_utf8_lossy(body));
            }
            scripts.push((format!("{}.{}{}", pkg.nv(), id, name), body.clone()));
            if name != ".trigger" {
                report.scripts_not_run.push(format!("{}: {name}", pkg.nv()));
            }
        }
        let ids = accts.ids();
        let dirs = install::extract(
            tree,
            apk.data_raw,
            &pkg.name,
            &pkg.nv(),
            &pkg.replaces,
            &mut owners,
            &ids,
        )?;
        report.files += dirs.iter().map(|d| d.files.len()).sum::<usize>();
        let mut rec_pkg = pkg.clone();
        rec_pkg.identity = Some(id);
        new_records.push_str(&db::Installed { pkg: rec_pkg, dirs }.render());
        if let Some(t) = apk.info.get("triggers") {
            if !t.trim().is_empty() {
                triggers.push_str(&format!("{id} {}\n", t.trim()));
            }
        }
        report.added.push(Added {
            name: pkg.name.clone(),
            version: pkg.version.clone(),
            identity: id,
        });
    }

    if !accts.log.is_empty() {
        write_text(
            tree,
            "/etc/passwd",
            accts.passwd.render().as_bytes(),
            opts.epoch,
        )?;
        write_text(
            tree,
            "/etc/group",
            accts.group.render().as_bytes(),
            opts.epoch,
        )?;
        write_text(
            tree,
            "/etc/shadow",
            accts.shadow.render().as_bytes(),
            opts.epoch,
        )?;
        report.accounts = std::mem::take(&mut accts.log);
    }

    // The database: base records stay as they were; new ones are appended.
    let mut text = installed_text.clone();
    if !text.is_empty() && !text.ends_with("\n\n") {
        text.push_str(if text.ends_with('\n') { "\n" } else { "\n\n" });
    }
    text.push_str(&new_records);
    write_text(tree, &installed_path, text.as_bytes(), opts.epoch)?;
    if !scripts.is_empty() {
        let path = format!("{dbd}/scripts.tar");
        let tar = append_scripts(tree.read_file(path.as_bytes()).ok(), &scripts, opts.epoch)
            .map_err(|e| ApkError::Tree {
                path: path.clone(),
                why: e.to_string(),
            })?;
        write_text(tree, &path, &tar, opts.epoch)?;
    }
    if !triggers.is_empty() {
        let path = format!("{dbd}/triggers");
        let mut t = read_text(tree, &path);
        t.push_str(&triggers);
        write_text(tree, &path, t.as_bytes(), opts.epoch)?;
    }
    let mut names: BTreeSet<String> = world_text.split_whitespace().map(str::to_string).collect();
    names.extend(requested.iter().map(|d| d.to_string()));
    let mut w = names.into_iter().collect::<Vec<_>>().join("\n");
    w.push('\n');
    write_text(tree, world_path, w.as_bytes(), opts.epoch)?;
    Ok(report)
}

/// `scripts.tar` with `new` entries appended to the existing archive's entries.
fn append_scripts(
    existing: Option<Vec<u8>>,
    new: &[(String, Vec<u8>)],
    epoch: Time,
) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    if let Some(old) = existing {
        let mut ar = tar::Archive::new(&old[..]);
        for e in ar.entries()? {
            let mut e = e?;
            let mut h = e.header().clone();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body)?;
            let path = e.path_bytes().into_owned();
            b.append_data(&mut h, String::from_utf8_lossy(&path).as_ref(), &body[..])?;
        }
    }
    for (name, body) in new {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_size(body.len() as u64);
        h.set_mtime(u64::try_from(epoch.sec).unwrap_or(0));
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, &body[..])?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_round_trip() {
        let r = Report {
            added: vec![Added {
                name: "b".into(),
                version: "1.0-r0".into(),
                identity: Identity([0; 20]),
            }],
            ..Report::default()
        };
        let l = parse_lock(&r.lock_text()).unwrap();
        assert_eq!(l.versions["b"], "1.0-r0");
        assert_eq!(l.identities["b"], Identity([0; 20]));
        assert_eq!(parse_lock("a 1-r0\n").unwrap().identities.len(), 0);
        assert!(parse_lock("a 1-r0 Q2x\n").is_err());
        assert!(parse_lock("a 1 b c\n").is_err());
        assert!(parse_lock("a\n").is_err());
    }
}
