//! Debian and Ubuntu packages, installed into the staging tree in pure Rust: sources and
//! keys from the image ([`sources`]), signed indexes ([`keyring`], [`release`],
//! [`packages`]), apt-like resolution ([`resolve`]), `.deb` reading ([`archive`]), dpkg-style
//! extraction ([`install`]), the dpkg database ([`dpkg_db`]) and declarative
//! maintainer-script effects ([`effects`]). [`run`] ties them together.

pub mod archive;
pub mod control;
pub mod dpkg_db;
pub mod effects;
pub mod install;
pub mod keyring;
pub mod packages;
pub mod relation;
pub mod release;
pub mod repo;
pub mod resolve;
pub mod sources;
pub mod version;

use std::time::Instant;

use crate::cache::Cache;
use crate::digest::Digest;
use crate::fetch::{FetchError, Fetcher};
use crate::tree::{Meta, Time, Tree, TreeError};

pub use resolve::{Available, Installed, Plan};

/// Everything that can stop a deb install.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// Sources or keys.
    #[error(transparent)]
    Sources(#[from] sources::SourcesError),
    /// Index download or verification.
    #[error(transparent)]
    Repo(#[from] repo::RepoError),
    /// Resolution.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// A package download.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A `.deb` that cannot be read.
    #[error("{package}: {source}")]
    Deb {
        /// The package.
        package: String,
        /// What is wrong.
        source: archive::DebError,
    },
    /// Extraction.
    #[error("{package}: {source}")]
    Install {
        /// The package.
        package: String,
        /// What is wrong.
        source: install::InstallError,
    },
    /// A tree edit.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The base's dpkg database.
    #[error("/var/lib/dpkg/status in the base: {0}")]
    Status(String),
    /// The base is not Debian-like.
    #[error(
        "the base image has no /var/lib/dpkg/status; deb packages need a Debian or Ubuntu base"
    )]
    NotDebian,
}

/// What to install and from where.
#[derive(Debug, Clone, Default)]
pub struct DebOptions {
    /// Package names (optionally `name (op version)`-free plain names).
    pub packages: Vec<String>,
    /// Extra one-line sources (`deb [signed-by=HOSTFILE] URI SUITE COMP...`).
    pub extra_sources: Vec<String>,
    /// Keep the image's sources alongside `extra_sources`.
    pub keep_image_sources: bool,
    /// Replace the host of every source URI.
    pub mirror: Option<String>,
    /// Host keyrings trusted for every source.
    pub extra_keys: Vec<std::path::PathBuf>,
    /// Install Recommends too.
    pub recommends: bool,
    /// A lock file's text to replay exactly.
    pub lock: Option<String>,
    /// Architecture (default: the base's dpkg architecture).
    pub arch: Option<String>,
    /// Now, seconds since the epoch (for `Valid-Until`).
    pub now: i64,
    /// `SOURCE_DATE_EPOCH`, for times written into the tree.
    pub epoch: Option<i64>,
}

/// One installed package.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed1 {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// `.deb` size.
    pub size: u64,
}

/// What an install did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DebReport {
    /// Installed packages in order.
    pub packages: Vec<Installed1>,
    /// Sum of `.deb` sizes.
    pub deb_bytes: u64,
    /// Bytes downloaded (0 when everything came from the cache).
    pub downloaded: u64,
    /// Warnings (scripts not run, ...).
    pub warnings: Vec<String>,
    /// The lock text for this set.
    pub lock: String,
    /// Seconds spent per stage: indexes, resolve, download, install.
    pub timings: [f64; 4],
}

/// Progress reported while installing (for a progress bar or `--json` events).
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// `.deb` bytes fetched or found in the cache so far, of all planned.
    Downloading {
        /// Bytes done.
        done: u64,
        /// Bytes planned.
        total: u64,
    },
    /// A package is being extracted.
    Installing {
        /// Its name.
        package: &'a str,
        /// Packages done before it.
        done: usize,
        /// Packages planned.
        total: usize,
    },
}

/// A progress callback that ignores everything.
pub fn no_progress(_: Progress<'_>) {}

/// Installs the requested packages into `tree`.
pub fn run(
    tree: &mut Tree,
    opts: &DebOptions,
    cache: &Cache,
    fetcher: &Fetcher,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<DebReport, DebError> {
    let t0 = Instant::now();
    let status_text = match tree.read_file(b"/var/lib/dpkg/status") {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => return Err(DebError::NotDebian),
    };
    let status = packages::parse_all("/var/lib/dpkg/status", &status_text)
        .map_err(|e| DebError::Status(e.to_string()))?;
    let arch = opts.arch.clone().unwrap_or_else(|| native_arch(&status));
    let installed = Installed::new(status);
    let repos = sources::repositories(tree, opts)?;
    let mut downloaded = 0u64;
    let avail = repo::load_all(&repos, &arch, cache, fetcher, opts.now, &mut downloaded)?;
    let t1 = Instant::now();
    let plan = match &opts.lock {
        Some(text) => resolve::plan_from_lock(&avail, &installed, &resolve::parse_lock(text)?)?,
        None => resolve::resolve(&avail, &installed, &arch, &opts.packages, opts.recommends)?,
    };
    let t2 = Instant::now();
    let debs = download(&avail, &plan, cache, fetcher, &mut downloaded, progress)?;
    let t3 = Instant::now();
    let mut report = DebReport {
        lock: resolve::lock_text(&avail, &plan),
        downloaded,
        ..DebReport::default()
    };
    let time = Time::secs(opts.epoch.unwrap_or(opts.now));
    let epoch_days = opts.epoch.map(|e| e / 86400);
    let owners = install::Owners::from_tree(tree);
    let mut status_text = status_text;
    let mut unknown_scripts = Vec::new();
    for (k, (&i, bytes)) in plan.order.iter().zip(&debs).enumerate() {
        let p = &avail[i].pkg;
        progress(Progress::Installing {
            package: &p.name,
            done: k,
            total: plan.order.len(),
        });
        let d = archive::read(bytes).map_err(|source| DebError::Deb {
            package: p.name.clone(),
            source,
        })?;
        let conffiles = conffiles_of(&d);
        let x = install::extract(tree, d.data, &owners, &conffiles).map_err(|source| {
            DebError::Install {
                package: p.name.clone(),
                source,
            }
        })?;
        for k in &x.kept {
            report.warnings.push(format!(
                "{}: kept the base's changed {k}; the package's version is {k}.dpkg-dist",
                p.name
            ));
        }
        status_text = record(tree, &status_text, p, &d, &x, &conffiles, time)?;
        report.packages.push(Installed1 {
            name: p.name.clone(),
            version: p.version.to_string(),
            arch: p.arch.clone(),
            size: p.size,
        });
        report.deb_bytes += p.size;
        if d.control.contains_key("postinst") && !effects::KNOWN.contains(&p.name.as_str()) {
            unknown_scripts.push(p.name.clone());
        }
    }
    tree.write_file(
        b"/var/lib/dpkg/status",
        status_text.as_bytes(),
        meta_of(tree, b"/var/lib/dpkg/status", time),
    )?;
    for &i in &plan.order {
        effects::apply(tree, &avail[i].pkg.name, time, epoch_days)?;
    }
    if !unknown_scripts.is_empty() {
        report.warnings.push(format!(
            "postinst scripts not run (no known effects): {}",
            unknown_scripts.join(", ")
        ));
    }
    let t4 = Instant::now();
    report.timings = [t1 - t0, t2 - t1, t3 - t2, t4 - t3].map(|d| d.as_secs_f64());
    Ok(report)
}

fn meta_of(tree: &Tree, path: &[u8], time: Time) -> Meta {
    tree.lookup(path).map_or(Meta::new(0o644, time), |id| {
        let mut m = tree.inode(id).meta.clone();
        m.mtime = time;
        m
    })
}

/// The base's architecture: dpkg's own stanza, else the host's.
pub fn native_arch(status: &[packages::Package]) -> String {
    if let Some(p) = status.iter().find(|p| p.name == "dpkg" && p.arch != "all") {
        return p.arch.clone();
    }
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_string()
}

/// Downloads (or takes from the cache) every planned `.deb`, checked against its index
/// SHA-256, a few in parallel. Returned in plan order.
fn download(
    avail: &[Available],
    plan: &Plan,
    cache: &Cache,
    fetcher: &Fetcher,
    downloaded: &mut u64,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Vec<Vec<u8>>, DebError> {
    let jobs: Vec<(usize, String, Digest, u64)> = plan
        .order
        .iter()
        .map(|&i| {
            let a = &avail[i];
            let url = format!("{}/{}", a.base_uri.trim_end_matches('/'), a.pkg.filename);
            let sha = a
                .pkg
                .sha256
                .ok_or_else(|| DebError::Repo(repo::RepoError::NoHash(a.pkg.name.clone())))?;
            Ok((i, url, sha, a.pkg.size))
        })
        .collect::<Result<_, DebError>>()?;
    type Slot = Option<Result<(Vec<u8>, u64), FetchError>>;
    let results: std::sync::Mutex<Vec<Slot>> =
        std::sync::Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bytes_done = std::sync::atomic::AtomicU64::new(0);
    let total: u64 = jobs.iter().map(|j| j.3).sum();
    progress(Progress::Downloading { done: 0, total });
    std::thread::scope(|s| {
        for _ in 0..jobs.len().clamp(1, 4) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((_, url, sha, size)) = jobs.get(k) else {
                    break;
                };
                let hit = cache
                    .has_valid(sha, *size)
                    .unwrap_or(false)
                    .then(|| cache.read_blob(sha, *size).ok())
                    .flatten();
                let r = match hit {
                    Some(b) => Ok((b, 0)),
                    None => fetcher.get_verified(url, sha, Some(*size)).map(|b| {
                        let _ = cache.put(*sha, &b);
                        let n = b.len() as u64;
                        (b, n)
                    }),
                };
                let done = bytes_done.fetch_add(*size, std::sync::atomic::Ordering::Relaxed) + size;
                progress(Progress::Downloading { done, total });
                results.lock().expect("no panics while holding the lock")[k] = Some(r);
            });
        }
    });
    let mut out = Vec::with_capacity(jobs.len());
    for r in results.into_inner().expect("threads joined") {
        let (b, n) = r.expect("every job ran")?;
        *downloaded += n;
        out.push(b);
    }
    Ok(out)
}

/// The conffile paths a package declares (`remove-on-upgrade` entries are not files).
fn conffiles_of(d: &archive::Deb<'_>) -> Vec<String> {
    d.control
        .get("conffiles")
        .map(|(_, b)| {
            String::from_utf8_lossy(b)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty() && !l.starts_with("remove-on-upgrade"))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the dpkg info files for one package and returns the new status text.
fn record(
    tree: &mut Tree,
    status: &str,
    p: &packages::Package,
    d: &archive::Deb<'_>,
    x: &install::Extracted,
    conffiles: &[String],
    time: Time,
) -> Result<String, DebError> {
    let list = &x.list;
    let control_text = String::from_utf8_lossy(&d.control["control"].1).into_owned();
    let control = control::parse(&control_text)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| DebError::Deb {
            package: p.name.clone(),
            source: archive::DebError::Control("the control file is empty or malformed".into()),
        })?;
    let conf_sums = &x.conffiles;
    let md5sums = match d.control.get("md5sums") {
        Some((_, b)) => b.clone(),
        None => {
            let mut s = String::new();
            for path in list {
                if conffiles.contains(path) {
                    continue;
                }
                if let Some(id) = tree.lookup_nofollow(path.as_bytes()) {
                    if let crate::tree::Kind::File(c) = &tree.inode(id).kind {
                        let b = tree.store().read_all(c).map_err(|source| TreeError::Io {
                            path: crate::tree::PathBytes(path.as_bytes().to_vec()),
                            source,
                        })?;
                        s.push_str(&format!(
                            "{}  {}\n",
                            dpkg_db::md5_hex(&b),
                            path.trim_start_matches('/')
                        ));
                    }
                }
            }
            s.into_bytes()
        }
    };
    let mut files: Vec<(&str, Vec<u8>, u16)> = vec![
        ("list", (list.join("\n") + "\n").into_bytes(), 0o644),
        ("md5sums", md5sums, 0o644),
    ];
    for (name, (mode, data)) in &d.control {
        let keep = [
            "conffiles",
            "preinst",
            "postinst",
            "prerm",
            "postrm",
            "triggers",
            "shlibs",
            "symbols",
            "templates",
            "config",
        ];
        if keep.contains(&name.as_str()) {
            files.push((name.as_str(), data.clone(), (*mode & 0o7777) as u16));
        }
    }
    dpkg_db::write_info(tree, &p.dpkg_name(), &files, time)?;
    let stanza = dpkg_db::status_stanza(&control, conf_sums);
    dpkg_db::upsert(status, &stanza).map_err(|e| DebError::Status(e.to_string()))
}
