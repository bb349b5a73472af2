//! A build run stage by stage: load the base into the staging tree ([`base`]), install
//! packages with the distribution's own format (detected from the tree), apply account
//! settings ([`accounts`]), and write the ext4 image, published atomically — on any
//! error nothing is left at the output path. Time and the cache location are parameters.

pub mod accounts;
pub mod base;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ext4::{self, Ext4Options};
use crate::fetch::Fetch;
use crate::pkg::apk;
use crate::tree::{Time, Tree};

pub use base::BaseRef;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base could not be loaded.
    #[error(transparent)]
    Base(#[from] base::BaseError),
    /// The base's package format is not known.
    #[error("cannot tell the base's package format (no /etc/apk, no /var/lib/dpkg): packages cannot be installed into it")]
    UnknownDistro,
    /// The base uses a package format this build cannot install yet.
    #[error("the base is {0}-based; installing {0} packages is not supported by this build yet")]
    Unsupported(&'static str),
    /// Installing apk packages failed.
    #[error(transparent)]
    Apk(#[from] apk::ApkError),
    /// The lock file is unusable.
    #[error("{path}: {why}")]
    Lock {
        /// The lock file.
        path: String,
        /// Why.
        why: String,
    },
    /// Account edits failed.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    /// Writing the image failed.
    #[error(transparent)]
    Ext4(#[from] ext4::Ext4Error),
    /// The output directory could not be created.
    #[error("cannot create output directory {path}: {source}")]
    OutDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The package format of a base tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    /// Alpine and friends (`/etc/apk`).
    Apk,
    /// Debian and Ubuntu (`/var/lib/dpkg`).
    Deb,
}

/// Detects the package format from the tree.
pub fn detect(tree: &Tree) -> Option<Distro> {
    if tree.lookup(b"/etc/apk").is_some() {
        Some(Distro::Apk)
    } else if tree.lookup(b"/var/lib/dpkg").is_some() {
        Some(Distro::Deb)
    } else {
        None
    }
}

/// apk-specific settings of a build.
#[derive(Debug, Clone, Default)]
pub struct ApkPlan {
    /// Repository, key and mirror overrides.
    pub overrides: apk::repo::Overrides,
    /// `--lock FILE`: pins when it exists, written after a successful build otherwise.
    pub lock: Option<PathBuf>,
}

/// A validated build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The base image.
    pub base: BaseRef,
    /// Packages to add.
    pub packages: Vec<String>,
    /// apk settings.
    pub apk: ApkPlan,
    /// Root's password as a SHA-512 crypt hash.
    pub root_password_hash: Option<String>,
    /// Output directory (`rootfs.ext4` is written in it).
    pub out_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH`, if set.
    pub epoch: Option<i64>,
    /// The time to stamp files rootsmith writes when no epoch is set.
    pub now: i64,
    /// Download cache root, if any.
    pub cache_dir: Option<PathBuf>,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The image.
    pub image: PathBuf,
    /// The image report.
    pub ext4: ext4::Report,
    /// The apk report, when packages were installed.
    pub apk: Option<apk::Report>,
    /// Seconds spent loading the base.
    pub base_secs: f64,
    /// Seconds spent installing packages.
    pub install_secs: f64,
    /// Seconds spent writing the image.
    pub image_secs: f64,
}

/// Installs packages into `tree` per the plan (the package stage alone; used by [`run`]
/// and by benchmarks).
pub fn install_packages(
    tree: &mut Tree,
    plan: &Plan,
    fetch: &dyn Fetch,
) -> Result<Option<apk::Report>, BuildError> {
    if plan.packages.is_empty() {
        return Ok(None);
    }
    match detect(tree) {
        Some(Distro::Apk) => {}
        Some(Distro::Deb) => return Err(BuildError::Unsupported("deb")),
        None => return Err(BuildError::UnknownDistro),
    }
    let lock_err = |p: &Path, why: String| BuildError::Lock {
        path: p.display().to_string(),
        why,
    };
    let lock = match &plan.apk.lock {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p).map_err(|e| lock_err(p, e.to_string()))?;
            Some(apk::parse_lock(&text).map_err(|e| lock_err(p, e.to_string()))?)
        }
        _ => None,
    };
    let opts = apk::Options {
        packages: plan.packages.clone(),
        overrides: plan.apk.overrides.clone(),
        lock: lock.clone(),
        cache: plan.cache_dir.as_deref().map(apk::cache::Cache::new),
        index_max_age: Duration::from_secs(4 * 3600),
        epoch: Time::secs(plan.epoch.unwrap_or(plan.now)),
    };
    let report = apk::install(tree, &opts, fetch)?;
    Ok(Some(report))
}

/// Runs the whole build.
pub fn run(plan: &Plan, fetch: &dyn Fetch) -> Result<Outcome, BuildError> {
    let t0 = Instant::now();
    let mut tree = base::load(&plan.base)?;
    let base_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let report = install_packages(&mut tree, plan, fetch)?;
    if let Some(h) = &plan.root_password_hash {
        accounts::set_root_password_hash(&mut tree, h, Time::secs(plan.epoch.unwrap_or(plan.now)))?;
    }
    let install_secs = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    std::fs::create_dir_all(&plan.out_dir).map_err(|source| BuildError::OutDir {
        path: plan.out_dir.display().to_string(),
        source,
    })?;
    let image = plan.out_dir.join("rootfs.ext4");
    let opts = Ext4Options {
        epoch: plan.epoch,
        ..Ext4Options::default()
    };
    let ext4 = ext4::write_image(&tree, &image, &opts, &mut |_, _| {})?;
    let image_secs = t2.elapsed().as_secs_f64();
    if let (Some(path), Some(r)) = (&plan.apk.lock, &report) {
        if !path.exists() {
            std::fs::write(path, r.lock_text()).map_err(|e| BuildError::Lock {
                path: path.display().to_string(),
                why: format!("cannot write: {e}"),
            })?;
        }
    }
    Ok(Outcome {
        image,
        ext4,
        apk: report,
        base_secs,
        install_secs,
        image_secs,
    })
}
