//! The build pipeline: a validated plan run stage by stage — base tree, packages (apk or
//! deb, picked by what the base is), account settings ([`accounts`]), ext4 image —
//! publishing `OUT/rootfs.ext4` only when everything succeeded. Time comes in as a
//! parameter.

pub mod accounts;

use std::path::PathBuf;

use crate::cache::Cache;
use crate::ext4::{self, Ext4Options};
use crate::fetch::Fetcher;
use crate::pkg::apk;
use crate::pkg::deb::{self, DebOptions, DebReport, Progress};
use crate::tree::{Time, Tree};
use crate::unpack::{self, UnpackOptions};

/// Where the base tree comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// A rootfs tarball on the host (`rootfs:FILE`).
    RootfsTar(PathBuf),
}

impl std::str::FromStr for Base {
    type Err = String;
    fn from_str(s: &str) -> Result<Base, String> {
        match s.split_once(':') {
            Some(("rootfs", p)) if !p.is_empty() => Ok(Base::RootfsTar(p.into())),
            _ => Err(format!(
                "unsupported base {s:?}: give rootfs:FILE (a rootfs tarball)"
            )),
        }
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base could not be read.
    #[error("base {path}: {why}")]
    Base {
        /// The base.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// Package installation (deb).
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    /// Package installation (apk).
    #[error(transparent)]
    Apk(#[from] apk::ApkError),
    /// The apk lock file does not parse.
    #[error(transparent)]
    ApkLock(#[from] apk::BadLock),
    /// Account settings.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    /// Packages were asked for but the base has no known package manager.
    #[error(
        "the base has neither /var/lib/dpkg/status nor /etc/apk: cannot install packages into it"
    )]
    UnknownDistro,
    /// The image could not be written.
    #[error(transparent)]
    Ext4(#[from] crate::ext4::Ext4Error),
    /// The output directory.
    #[error("{path}: {why}")]
    Output {
        /// The path.
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// apk settings of a build (used when the base is Alpine-like).
#[derive(Debug, Clone, Default)]
pub struct ApkPlan {
    /// Packages (dependency atoms) to add.
    pub packages: Vec<String>,
    /// Repository, key and mirror overrides.
    pub overrides: apk::repo::Overrides,
    /// The lock file's text, when it exists (pins the set).
    pub lock: Option<String>,
    /// How long a cached index is used without asking the mirror.
    pub index_max_age: std::time::Duration,
}

/// A validated build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The base.
    pub base: Base,
    /// Deb packages (used when the base is Debian-like).
    pub deb: DebOptions,
    /// apk packages (used when the base is Alpine-like).
    pub apk: ApkPlan,
    /// Root's password as a SHA-512 crypt hash.
    pub root_password_hash: Option<String>,
    /// Output directory; `rootfs.ext4` is written in it.
    pub out_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: Option<i64>,
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The deb stage, if it ran.
    pub deb: Option<DebReport>,
    /// The apk stage, if it ran.
    pub apk: Option<apk::Report>,
    /// Seconds spent in the package stage.
    pub install_secs: f64,
    /// The image written.
    pub image: PathBuf,
    /// Image size.
    pub size: u64,
}

/// Loads the base tree.
pub fn load_base(base: &Base) -> Result<Tree, BuildError> {
    let mut tree = Tree::new();
    match base {
        Base::RootfsTar(p) => {
            let f = std::fs::File::open(p).map_err(|e| BuildError::Base {
                path: p.display().to_string(),
                why: format!("{e}; check the path"),
            })?;
            unpack::apply_tar(
                &mut tree,
                std::io::BufReader::new(f),
                &UnpackOptions::default(),
            )
            .map_err(|e| BuildError::Base {
                path: p.display().to_string(),
                why: e.to_string(),
            })?;
        }
    }
    Ok(tree)
}

/// The package reports of a build.
type Installed = (Option<DebReport>, Option<apk::Report>);

/// Runs the package stage on `tree` (dispatching on the base's package manager).
pub fn install_packages(
    tree: &mut Tree,
    plan: &Plan,
    cache: &Cache,
    fetcher: &Fetcher,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Installed, BuildError> {
    if tree.lookup(b"/etc/apk").is_some() {
        if plan.apk.packages.is_empty() && plan.apk.lock.is_none() {
            return Ok((None, None));
        }
        let lock = plan.apk.lock.as_deref().map(apk::parse_lock).transpose()?;
        let opts = apk::Options {
            packages: plan.apk.packages.clone(),
            overrides: plan.apk.overrides.clone(),
            lock,
            cache: Some(apk::cache::Cache::new(cache.root())),
            index_max_age: plan.apk.index_max_age,
            epoch: Time::secs(plan.epoch.unwrap_or(plan.deb.now)),
        };
        return Ok((None, Some(apk::install(tree, &opts, fetcher)?)));
    }
    if plan.deb.packages.is_empty() && plan.deb.lock.is_none() {
        return Ok((None, None));
    }
    if tree.lookup(b"/var/lib/dpkg/status").is_some() {
        return Ok((
            Some(deb::run(tree, &plan.deb, cache, fetcher, progress)?),
            None,
        ));
    }
    Err(BuildError::UnknownDistro)
}

/// Runs the whole build.
pub fn run(
    plan: &Plan,
    cache: &Cache,
    fetcher: &Fetcher,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Report, BuildError> {
    let mut tree = load_base(&plan.base)?;
    let t = std::time::Instant::now();
    let (deb, apk) = install_packages(&mut tree, plan, cache, fetcher, progress)?;
    if let Some(h) = &plan.root_password_hash {
        accounts::set_root_password_hash(
            &mut tree,
            h,
            Time::secs(plan.epoch.unwrap_or(plan.deb.now)),
        )?;
    }
    let install_secs = t.elapsed().as_secs_f64();
    let created = !plan.out_dir.exists();
    std::fs::create_dir_all(&plan.out_dir).map_err(|e| BuildError::Output {
        path: plan.out_dir.display().to_string(),
        why: e.to_string(),
    })?;
    let image = plan.out_dir.join("rootfs.ext4");
    let opts = Ext4Options {
        epoch: plan.epoch,
        ..Ext4Options::default()
    };
    match ext4::write_image(&tree, &image, &opts, &mut |_, _| {}) {
        Ok(r) => Ok(Report {
            deb,
            apk,
            install_secs,
            image,
            size: r.size,
        }),
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir(&plan.out_dir);
            }
            Err(e.into())
        }
    }
}
