//! The build pipeline: a validated plan run stage by stage — base image layers into the
//! tree, packages (apk or deb, picked by what the base is), account settings
//! ([`accounts`]), the overlay (sshd, keys, `/init`, names, files), the kernel
//! ([`vmlinux`], or a distribution package's with its modules and an optional initramfs:
//! [`kernel_package`]), the ext4 image — publishing `rootfs.ext4` (and `vmlinux.bin`,
//! `initrd.img`) by rename
//! only when everything succeeded. The time every file gets is one parameter ([`epoch`]);
//! [`fingerprint`] names a build by its inputs.

pub mod accounts;
pub mod epoch;
pub mod fingerprint;
pub mod kernel_package;
pub mod vmlinux;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::Cache;
use crate::ext4::{self, Ext4Options};
use crate::fetch::Fetcher;
use crate::oci::{ImageSource, OciError};
use crate::overlay::{self, accounts as users, files::FileOp, sshd, OverlayError};
use crate::pkg::apk;
use crate::pkg::deb::{self, DebOptions, DebReport, Progress};
use crate::tree::{Time, Tree};
use crate::unpack::{self, UnpackOptions};

pub use vmlinux::KernelSource;

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
    /// An overlay step.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// Getting the base image.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The kernel.
    #[error("kernel: {0}")]
    Kernel(String),
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

/// What the overlay adds (every part optional).
#[derive(Debug, Clone, Default)]
pub struct OverlayPlan {
    /// `/init` bytes; with it come the mount points, no host keys and a resolv.conf file.
    pub init: Option<Vec<u8>>,
    /// The SmolVM guest agent's bytes.
    pub agent: Option<Vec<u8>>,
    /// sshd settings.
    pub sshd: Option<sshd::Settings>,
    /// Root's authorized keys (baked in).
    pub authorized_keys: Vec<String>,
    /// `/etc/hostname`.
    pub hostname: Option<String>,
    /// `/etc/fstab` lines.
    pub fstab: Vec<String>,
    /// Files and directories.
    pub files: Vec<FileOp>,
    /// Groups to add.
    pub groups: Vec<users::GroupSpec>,
    /// Users to add.
    pub users: Vec<users::UserSpec>,
}

impl OverlayPlan {
    /// Applies every part to `tree`; returns the host keys removed.
    pub fn apply(&self, tree: &mut Tree, time: Time) -> Result<Vec<String>, OverlayError> {
        let mut removed = Vec::new();
        if let Some(init) = &self.init {
            overlay::init::apply(tree, init, time)?;
            overlay::mount_points::apply(tree, time)?;
            overlay::network::resolv_conf(tree, time)?;
            removed = overlay::host_keys::remove(tree);
        }
        if let Some(s) = &self.sshd {
            overlay::sshd::apply(tree, s, time)?;
            removed.extend(overlay::host_keys::remove(tree));
        }
        overlay::accounts::apply(tree, &self.groups, &self.users, time)?;
        overlay::ssh_keys::apply(tree, &self.authorized_keys, time)?;
        if let Some(h) = &self.hostname {
            overlay::network::hostname(tree, h, time)?;
        }
        overlay::fstab::apply(tree, &self.fstab, time)?;
        if let Some(a) = &self.agent {
            overlay::agent::apply(tree, a, time)?;
        }
        overlay::files::apply(tree, &self.files, time)?;
        Ok(removed)
    }
}

/// A validated build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Deb packages (used when the base is Debian-like).
    pub deb: DebOptions,
    /// apk packages (used when the base is Alpine-like).
    pub apk: ApkPlan,
    /// Root's password as a SHA-512 crypt hash.
    pub root_password_hash: Option<String>,
    /// The overlay.
    pub overlay: OverlayPlan,
    /// Image size (`None`: from the tree).
    pub size: Option<u64>,
    /// The kernel to put beside the image.
    pub kernel: Option<KernelSource>,
    /// `SOURCE_DATE_EPOCH` as the user set it (else the base's creation time).
    pub epoch: Option<i64>,
}

/// Where a build publishes.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The directory (exists; temp files go here too).
    pub dir: PathBuf,
    /// The image's final path.
    pub rootfs: PathBuf,
    /// The kernel's final path.
    pub kernel: PathBuf,
    /// The initramfs's final path (written only with a kernel package and `initramfs`;
    /// an older one there is removed otherwise).
    pub initrd: PathBuf,
    /// A `.fingerprint` file to remove before anything is replaced (the caller writes the
    /// new one after).
    pub fingerprint: Option<PathBuf>,
}

impl Outputs {
    /// `DIR/rootfs.ext4`, `DIR/vmlinux.bin`, `DIR/.fingerprint`.
    pub fn in_dir(dir: &Path) -> Outputs {
        Outputs {
            dir: dir.to_path_buf(),
            rootfs: dir.join("rootfs.ext4"),
            kernel: dir.join("vmlinux.bin"),
            initrd: dir.join("initrd.img"),
            fingerprint: Some(dir.join(".fingerprint")),
        }
    }
}

/// Seconds spent per stage.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stages {
    /// Unpacking the base image's layers.
    pub base: f64,
    /// Installing packages.
    pub packages: f64,
    /// The overlay (and account settings).
    pub overlay: f64,
    /// Getting the kernel.
    pub kernel: f64,
    /// Writing the ext4 image.
    pub ext4: f64,
}

/// What a build is doing, for progress bars.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A stage begins.
    Stage(&'static str),
    /// Base layer bytes read so far, of all.
    Unpacking {
        /// Bytes done.
        done: u64,
        /// Bytes in all layers.
        total: u64,
    },
    /// The package stage.
    Package(Progress<'a>),
    /// Image bytes written so far.
    Writing {
        /// Bytes done.
        done: u64,
        /// Bytes to write.
        total: u64,
    },
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
    /// The kernel written and its size.
    pub kernel: Option<(PathBuf, u64)>,
    /// The initramfs written and its size.
    pub initrd: Option<(PathBuf, u64)>,
    /// The kernel package used, its release and the modules the VM needs.
    pub kernel_package: Option<kernel_package::KernelPackageReport>,
    /// The epoch every timestamp was clamped to.
    pub epoch: i64,
    /// Host keys removed from the base.
    pub host_keys_removed: Vec<String>,
    /// Seconds per stage.
    pub stages: Stages,
    /// The ext4 writer's report.
    pub ext4: Option<ext4::Report>,
}

impl Report {
    /// The lock text of the package set installed, if any.
    pub fn lock_text(&self) -> Option<String> {
        match (&self.deb, &self.apk) {
            (Some(d), _) => Some(d.lock.clone()),
            (_, Some(a)) => Some(a.lock_text()),
            _ => None,
        }
    }

    /// Installed packages as (name, version).
    pub fn packages(&self) -> Vec<(String, String)> {
        match (&self.deb, &self.apk) {
            (Some(d), _) => d
                .packages
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect(),
            (_, Some(a)) => a
                .added
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Loads a rootfs tarball as a tree (a helper for tests and tools).
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

struct Counting<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    on: &'a (dyn Fn(Event<'_>) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.on)(Event::Unpacking {
            done: self.done,
            total: self.total,
        });
        Ok(n)
    }
}

/// Applies every layer of `src` to a new tree, base first.
pub fn unpack_base(
    src: &dyn ImageSource,
    on: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Tree, BuildError> {
    let image = src.image();
    let layers = image.layers()?;
    let total = layers.iter().map(|l| l.descriptor.size).sum();
    let mut tree = Tree::new();
    let mut done = 0;
    for (i, layer) in layers.iter().enumerate() {
        let blob = src.open_layer(i)?;
        let mut r = Counting {
            inner: blob,
            done,
            total,
            on,
        };
        unpack::apply_layer(&mut tree, &mut r, layer.diff_id, &UnpackOptions::default()).map_err(
            |e| BuildError::Base {
                path: image.name.clone(),
                why: format!(
                    "layer {}/{} ({}): {e}",
                    i + 1,
                    layers.len(),
                    layer.descriptor.digest
                ),
            },
        )?;
        done = r.done;
    }
    Ok(tree)
}

/// The package reports of a build.
type Installed = (Option<DebReport>, Option<apk::Report>);

/// Runs the package stage on `tree` (dispatching on the base's package manager); files
/// get `epoch`.
pub fn install_packages(
    tree: &mut Tree,
    plan: &Plan,
    epoch: i64,
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
            epoch: Time::secs(epoch),
        };
        return Ok((None, Some(apk::install(tree, &opts, fetcher)?)));
    }
    if plan.deb.packages.is_empty() && plan.deb.lock.is_none() {
        return Ok((None, None));
    }
    if tree.lookup(b"/var/lib/dpkg/status").is_some() {
        let mut opts = plan.deb.clone();
        opts.epoch = Some(epoch);
        return Ok((Some(deb::run(tree, &opts, cache, fetcher, progress)?), None));
    }
    Err(BuildError::UnknownDistro)
}

/// Builds the tree from `base` and publishes it (and the kernel) at `out`. On any error
/// nothing at `out`'s final paths has changed.
pub fn run(
    plan: &Plan,
    base: &dyn ImageSource,
    out: &Outputs,
    cache: &Cache,
    fetcher: &Fetcher,
    on: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Report, BuildError> {
    let mut stages = Stages::default();
    let t = Instant::now();
    on(Event::Stage("base"));
    let mut tree = unpack_base(base, on)?;
    stages.base = t.elapsed().as_secs_f64();
    let epoch = plan
        .epoch
        .or_else(|| {
            base.image()
                .config
                .created
                .as_deref()
                .and_then(epoch::parse_rfc3339)
        })
        .unwrap_or_else(|| epoch::newest_mtime(&tree));
    let time = Time::secs(epoch);

    let t = Instant::now();
    on(Event::Stage("packages"));
    let pkg_progress = |p: Progress<'_>| on(Event::Package(p));
    let (deb, apk) = install_packages(&mut tree, plan, epoch, cache, fetcher, &pkg_progress)?;
    stages.packages = t.elapsed().as_secs_f64();

    let t = Instant::now();
    on(Event::Stage("overlay"));
    if let Some(h) = &plan.root_password_hash {
        accounts::set_root_password_hash(&mut tree, h, time)?;
    }
    let host_keys_removed = plan.overlay.apply(&mut tree, time)?;
    stages.overlay = t.elapsed().as_secs_f64();

    let prefix = ext4::write::temp_prefix();
    let t = Instant::now();
    let mut initrd = None;
    let mut kernel_package = None;
    let kernel = match &plan.kernel {
        Some(KernelSource::Package(k)) => {
            on(Event::Stage("kernel"));
            let (kernel, rd, report) = kernel_package::stage(
                &mut tree,
                k,
                &plan.deb,
                plan.overlay.init.as_deref(),
                epoch,
                &out.dir,
                &prefix,
                cache,
                fetcher,
            )?;
            initrd = rd;
            kernel_package = Some(report);
            Some(kernel)
        }
        Some(k) => {
            on(Event::Stage("kernel"));
            Some(vmlinux::stage(k, &out.dir, &prefix, cache, fetcher)?)
        }
        None => None,
    };
    stages.kernel = t.elapsed().as_secs_f64();

    let t = Instant::now();
    on(Event::Stage("ext4"));
    let staged = out.dir.join(format!("{prefix}rootfs.ext4"));
    let opts = Ext4Options {
        epoch: Some(epoch),
        size: plan.size,
        ..Ext4Options::default()
    };
    let written = ext4::write_image(&tree, &staged, &opts, &mut |done, total| {
        on(Event::Writing { done, total })
    });
    let written = match written {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    };
    stages.ext4 = t.elapsed().as_secs_f64();

    // Publish: the old fingerprint goes first, so a crash in between is a rebuild.
    type Published = (Option<(PathBuf, u64)>, Option<(PathBuf, u64)>);
    let publish = || -> std::io::Result<Published> {
        if let Some(fp) = &out.fingerprint {
            match std::fs::remove_file(fp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&staged, &out.rootfs)?;
        let k = match kernel {
            Some((tmp, len)) => {
                tmp.persist(&out.kernel).map_err(|e| e.error)?;
                Some((out.kernel.clone(), len))
            }
            None => None,
        };
        let rd = match initrd {
            Some((tmp, len)) => {
                tmp.persist(&out.initrd).map_err(|e| e.error)?;
                Some((out.initrd.clone(), len))
            }
            None => {
                // An initrd.img from an earlier build does not belong to this kernel.
                match std::fs::remove_file(&out.initrd) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                None
            }
        };
        if let Ok(d) = std::fs::File::open(&out.dir) {
            let _ = d.sync_all();
        }
        Ok((k, rd))
    };
    let (kernel, initrd) = publish().map_err(|e| {
        let _ = std::fs::remove_file(&staged);
        BuildError::Output {
            path: out.rootfs.display().to_string(),
            why: e.to_string(),
        }
    })?;
    Ok(Report {
        deb,
        apk,
        install_secs: stages.packages,
        image: out.rootfs.clone(),
        size: written.size,
        kernel,
        initrd,
        kernel_package,
        epoch,
        host_keys_removed,
        stages,
        ext4: Some(written),
    })
}
