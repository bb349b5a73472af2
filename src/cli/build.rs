//! `rootsmith build`: a recipe (a file or a shipped name like `debian-ssh-key`) or an inline
//! one (`--base REF --package P ...`), with command-line overrides, into `rootfs.ext4` (and
//! `vmlinux.bin`) in `--out DIR` or the SmolVM image cache. The recipe is validated and
//! every local input read before any network access ([`super::build_plan`]); a build whose
//! fingerprint matches the output's `.fingerprint` is a cache hit. Deb-specific flags live
//! in [`DebArgs`], apk-specific ones in [`ApkArgs`]; the package format follows the base.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;

use crate::build::{self, ApkPlan, Event, Outputs, Plan};
use crate::cache::Cache;
use crate::fetch::Fetcher;
use crate::pkg::apk::repo::Overrides;
use crate::pkg::deb::{DebOptions, Progress};
use crate::recipe::Size;

use super::build_plan::{self, Spec};
use super::image::{ImageArgs, Show};

/// Flags for Alpine bases.
#[derive(Debug, Args)]
pub struct ApkArgs {
    /// Use this repository instead of the image's /etc/apk/repositories (repeatable;
    /// `@tag URL` for a tagged one).
    #[arg(long = "apk-repository", value_name = "URL")]
    pub apk_repositories: Vec<String>,
    /// Trust this public key in addition to the image's /etc/apk/keys (repeatable).
    #[arg(long = "apk-key", value_name = "FILE")]
    pub apk_keys: Vec<PathBuf>,
    /// Replace scheme and host of every apk repository with this mirror (http://host[:port]).
    #[arg(long = "apk-mirror", value_name = "URL")]
    pub apk_mirror: Option<String>,
}

/// Flags for Debian/Ubuntu bases.
#[derive(Debug, Args)]
pub struct DebArgs {
    /// An extra apt source, one-line format: "deb [signed-by=HOST-KEYRING] URI SUITE COMPONENT...".
    /// Replaces the image's sources for this build unless --keep-image-sources.
    #[arg(long = "apt-source", value_name = "LINE")]
    pub apt_source: Vec<String>,
    /// Use the image's sources as well as --apt-source ones.
    #[arg(long)]
    pub keep_image_sources: bool,
    /// Replace the scheme and host of every apt source URI (a local mirror or proxy); with a
    /// path, replaces the whole archive root.
    #[arg(long = "apt-mirror", value_name = "URI")]
    pub apt_mirror: Option<String>,
    /// A host keyring (.gpg or .asc) trusted for every apt source, like a file in
    /// /etc/apt/trusted.gpg.d.
    #[arg(long = "apt-key", value_name = "KEYRING")]
    pub apt_key: Vec<PathBuf>,
    /// Install Recommends too (apt's default; off here).
    #[arg(long)]
    pub with_recommends: bool,
    /// Lock file: when it exists, install exactly the set it records; otherwise write it.
    /// (Recipe builds also keep one beside the image, `.packages.lock`.)
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Debian architecture (default: the base's).
    #[arg(long = "deb-arch", value_name = "ARCH")]
    pub deb_arch: Option<String>,
}

/// Arguments of `rootsmith build`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rootsmith build debian-ssh-key --smolvm\n  rootsmith build alpine-ssh --password-file pw.txt --out out/\n  rootsmith build my-recipe.toml --out out/ --json\n  rootsmith build --base debian:bookworm-slim --package openssh-server --authorized-key ~/.ssh/id_ed25519.pub --out out/\n\nShipped recipes: alpine-ssh, alpine-ssh-key, debian-ssh-key, ubuntu-ssh-key (and -minimal\nvariants with only OpenSSH). Nothing at the output changes unless the whole build succeeds."
)]
pub struct BuildArgs {
    /// A recipe file (.toml) or the name of a shipped recipe. Without one, --base (and
    /// --package) give an inline recipe.
    #[arg(value_name = "RECIPE|NAME")]
    pub recipe: Option<String>,
    /// The base image (overrides the recipe's): a registry reference, oci:DIR[:TAG],
    /// docker-archive:FILE or rootfs:FILE.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// A package to install (repeatable; added to the recipe's).
    #[arg(short, long = "package", value_name = "NAME")]
    pub packages: Vec<String>,
    /// Output directory: rootfs.ext4 (and vmlinux.bin) are written there. Default: the
    /// SmolVM image cache, NAME under it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write into the SmolVM image cache: <--smolvm-dir or $SMOLVM_IMAGE_DIR or
    /// ~/.smolvm/images>/<name>/{rootfs.ext4, vmlinux.bin, .fingerprint}.
    #[arg(long, conflicts_with = "out")]
    pub smolvm: bool,
    /// The SmolVM image cache directory.
    #[arg(
        long,
        value_name = "DIR",
        env = "SMOLVM_IMAGE_DIR",
        conflicts_with = "out"
    )]
    pub smolvm_dir: Option<PathBuf>,
    /// Image name (overrides the recipe's; names the SmolVM cache entry).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Image size: 512M, 2G, or auto (overrides the recipe's).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Bake this public key file into /root/.ssh/authorized_keys (repeatable). SmolVM
    /// passes its key at boot instead, so key-only images need none.
    #[arg(long = "authorized-key", value_name = "FILE")]
    pub authorized_keys: Vec<PathBuf>,
    /// Root's password, from the first line of FILE (stored as a SHA-512 crypt hash).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Root's password (visible to other users in the process list; prefer
    /// --password-file).
    #[arg(long, value_name = "PASSWORD", conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Root's password as a SHA-512 crypt hash (`openssl passwd -6`).
    #[arg(long, value_name = "HASH")]
    pub root_password_hash: Option<String>,
    /// The static /init binary. Default: $ROOTSMITH_INIT, else rootsmith-init beside this
    /// executable, else the workspace's target/x86_64-unknown-linux-musl/release/.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Copy this SmolVM guest agent to /usr/local/bin/smolvm-guest-agent.
    #[arg(long, value_name = "FILE")]
    pub guest_agent: Option<PathBuf>,
    /// Take the kernel from this distribution package of the image's own repositories
    /// (e.g. linux-image-cloud-amd64): vmlinux.bin beside the image, its modules in the
    /// image (overrides the recipe's kernel).
    #[arg(long, value_name = "NAME")]
    pub kernel_package: Option<String>,
    /// Format of vmlinux.bin from a kernel package: elf (Firecracker, libkrun) or bzimage
    /// (QEMU; the default).
    #[arg(long, value_name = "elf|bzimage")]
    pub kernel_format: Option<String>,
    /// Also write initrd.img: /init and the modules the root disk and network need, for
    /// kernels whose virtio drivers are modules (root=/dev/vda then works).
    #[arg(long)]
    pub initramfs: bool,
    /// Download cache (default: $XDG_CACHE_HOME/rootsmith or ~/.cache/rootsmith).
    #[arg(long, value_name = "DIR", env = "ROOTSMITH_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Print one JSON object describing the result on stdout.
    #[arg(long)]
    pub json: bool,
    /// No summary.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub deb: DebArgs,
    #[command(flatten)]
    pub apk: ApkArgs,
}

/// Where the output goes and who may write it.
struct Target {
    dir: PathBuf,
    created: bool,
    lock: Option<std::fs::File>,
}

impl Target {
    /// Creates and locks `dir` (waiting for a concurrent build of the same output).
    fn open(dir: &Path) -> anyhow::Result<Target> {
        use fs4::fs_std::FileExt;
        use std::os::unix::fs::MetadataExt;
        let created = !dir.exists();
        let lock_path = dir.join(LOCK);
        // `images rm` (or a failed first build) may remove the directory while we wait for
        // its lock: then the lock we got is on an unlinked file, so start again.
        for _ in 0..100 {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output directory {}", dir.display()))?;
            let f = match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", lock_path.display()))
                }
            };
            f.lock_exclusive()
                .with_context(|| format!("cannot lock {}", lock_path.display()))?;
            let held = f.metadata()?;
            let still_there = std::fs::metadata(&lock_path)
                .map(|m| m.ino() == held.ino() && m.dev() == held.dev())
                .unwrap_or(false);
            if still_there {
                clean_stale_temps(dir);
                return Ok(Target {
                    dir: dir.to_path_buf(),
                    created,
                    lock: Some(f),
                });
            }
        }
        anyhow::bail!(
            "{} was removed and recreated 100 times while waiting for its lock; retry",
            dir.display()
        )
    }

    /// After a failure: a directory this build created goes again.
    fn abandon(mut self) {
        drop(self.lock.take());
        if self.created {
            let _ = std::fs::remove_file(self.dir.join(LOCK));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

const LOCK: &str = ".rootsmith.lock";

/// Removes temp files of earlier builds that died (the lock is held, so no live build
/// owns any).
fn clean_stale_temps(dir: &Path) {
    let ours = crate::ext4::write::temp_prefix();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".rootsmith-") && n != LOCK && !n.starts_with(&ours) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Writes `text` to `path` through a temp file and a rename.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&crate::ext4::write::temp_prefix())
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The SmolVM image cache root.
fn smolvm_root(args: &BuildArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.smolvm_dir {
        return Ok(d.clone());
    }
    let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    home.map(|h| PathBuf::from(h).join(".smolvm/images"))
        .ok_or_else(|| anyhow::anyhow!("no SmolVM image directory: pass --smolvm-dir DIR, set SMOLVM_IMAGE_DIR, or pass --out DIR"))
}

/// Runs `rootsmith build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let env_epoch = super::source_date_epoch()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Everything local first: recipe, overrides, keys, password, files, /init, agent, kernel.
    let spec = build_plan::spec(&args)?;
    let cache_dir = match args.cache_dir.clone() {
        Some(d) => d,
        None => {
            let xdg = std::env::var("XDG_CACHE_HOME").ok();
            let home = std::env::var("HOME").ok();
            crate::cache::default_root(None, xdg.as_deref(), home.as_deref()).ok_or_else(|| {
                anyhow::anyhow!("no cache directory: pass --cache-dir DIR or set ROOTSMITH_CACHE")
            })?
        }
    };
    let out_dir = match &args.out {
        Some(d) => d.clone(),
        None => smolvm_root(&args)?.join(&spec.recipe.name),
    };
    let out_dir = std::path::absolute(&out_dir).unwrap_or(out_dir);
    let target = Target::open(&out_dir)?;
    super::clean_up_on_interrupt(out_dir.clone());
    match build_in(&args, &spec, &target, &cache_dir, env_epoch, now, started) {
        Ok(()) => Ok(()),
        Err(e) => {
            target.abandon();
            Err(e)
        }
    }
}

fn build_in(
    args: &BuildArgs,
    spec: &Spec,
    target: &Target,
    cache_dir: &Path,
    env_epoch: Option<i64>,
    now: i64,
    started: Instant,
) -> anyhow::Result<()> {
    let out = Outputs::in_dir(&target.dir);
    let hidden = args.quiet || args.json;
    let show = if hidden {
        Show::Quiet
    } else {
        Show::new(false, false)
    };
    let mut image_args = args.image.clone();
    if image_args.platform.is_none() {
        image_args.platform = spec.platform.clone();
    }
    let t_resolve = Instant::now();
    let source = super::image::open_image_in(&spec.base, &image_args, show, Some(cache_dir))
        .with_context(|| format!("base image {}", spec.base))?;
    let resolve_secs = t_resolve.elapsed().as_secs_f64();
    let base_digest = source.image().digest.to_string();

    let mut apk_keys = Vec::new();
    for k in &args.apk.apk_keys {
        let pem = std::fs::read(k)
            .with_context(|| format!("--apk-key {}: cannot read the file", k.display()))?;
        let name = k
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("--apk-key {}: not a file name", k.display()))?;
        apk_keys.push((name, pem));
    }
    let package_sources = serde_json::json!({
        "apt_sources": args.deb.apt_source,
        "keep_image_sources": args.deb.keep_image_sources,
        "apt_mirror": args.deb.apt_mirror,
        "apt_keys": args.deb.apt_key.iter().map(|k| std::fs::read(k).map(|b| crate::digest::Digest::of(&b).hex()).unwrap_or_default()).collect::<Vec<_>>(),
        "recommends": args.deb.with_recommends,
        "deb_arch": args.deb.deb_arch,
        "apk_repositories": args.apk.apk_repositories,
        "apk_keys": apk_keys.iter().map(|(n, b)| format!("{n}:{}", crate::digest::Digest::of(b).hex())).collect::<Vec<_>>(),
        "apk_mirror": args.apk.apk_mirror,
    });
    let inputs = build::fingerprint::Inputs {
        schema: 1,
        writer: crate::ext4::WRITER,
        recipe: spec.canonical.clone(),
        base_digest: base_digest.clone(),
        epoch: env_epoch,
        init: spec.init_digest.clone(),
        agent: spec.agent_digest.clone(),
        kernel: spec.kernel.as_ref().map(|k| k.digest().hex()),
        package_sources,
    };
    let pre = inputs.pre();

    // The package lock: the user's file, else the one recorded beside the image for these
    // very inputs (recipe builds).
    let explicit_lock = match &args.deb.lock {
        Some(p) if p.exists() => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read lock file {}", p.display()))?,
        ),
        _ => None,
    };
    let implicit_lock_path = target.dir.join(".packages.lock");
    let implicit_inputs_path = target.dir.join(".packages.inputs");
    let implicit_lock = match (&explicit_lock, spec.from_recipe) {
        (None, true) if read_trimmed(&implicit_inputs_path).as_deref() == Some(pre.as_str()) => {
            std::fs::read_to_string(&implicit_lock_path).ok()
        }
        _ => None,
    };
    let lock_in = explicit_lock.clone().or(implicit_lock);
    let has_packages = !spec.recipe.packages.is_empty();

    // A cache hit: the output carries this very fingerprint.
    if spec.from_recipe && (lock_in.is_some() || !has_packages) {
        let fp = inputs.fingerprint(lock_in.as_deref().filter(|_| has_packages));
        let wants_initrd =
            matches!(&spec.kernel, Some(build::KernelSource::Package(k)) if k.initramfs);
        let complete = out.rootfs.is_file()
            && (spec.kernel.is_none() || out.kernel.is_file())
            && (!wants_initrd || out.initrd.is_file());
        if complete
            && out.fingerprint.as_deref().and_then(read_trimmed).as_deref() == Some(fp.as_str())
        {
            let count = lock_in
                .as_deref()
                .map(|l| {
                    l.lines()
                        .filter(|x| !x.trim().is_empty() && !x.starts_with('#'))
                        .count()
                })
                .unwrap_or(0);
            let size = std::fs::metadata(&out.rootfs).map(|m| m.len()).unwrap_or(0);
            let summary = Summary {
                spec,
                out: &out,
                fingerprint: &fp,
                base_digest: &base_digest,
                cached: true,
                size,
                kernel: spec.kernel.as_ref().map(|_| out.kernel.clone()),
                package_count: count,
                resolve_secs,
                seconds: started.elapsed().as_secs_f64(),
            };
            summary.print(args, None);
            return Ok(());
        }
    }

    let plan = Plan {
        apk: ApkPlan {
            packages: spec.recipe.packages.clone(),
            overrides: Overrides {
                repositories: args.apk.apk_repositories.clone(),
                keys: apk_keys,
                mirror: args.apk.apk_mirror.clone(),
            },
            lock: lock_in.clone(),
            index_max_age: std::time::Duration::from_secs(4 * 3600),
        },
        root_password_hash: spec.root_password_hash.clone(),
        deb: DebOptions {
            packages: spec.recipe.packages.clone(),
            extra_sources: args.deb.apt_source.clone(),
            keep_image_sources: args.deb.keep_image_sources,
            mirror: args.deb.apt_mirror.clone(),
            extra_keys: args.deb.apt_key.clone(),
            recommends: args.deb.with_recommends,
            lock: lock_in.clone(),
            arch: args.deb.deb_arch.clone(),
            now,
            epoch: env_epoch,
        },
        overlay: spec.overlay.clone(),
        size: match spec.recipe.size {
            Size::Auto => None,
            Size::Bytes(b) => Some(b),
        },
        kernel: spec.kernel.clone(),
        epoch: env_epoch,
    };
    let bar = super::progress::bytes_bar(0, "base", hidden);
    let on = |e: Event<'_>| match e {
        Event::Stage(s) => {
            bar.set_message(s);
            bar.set_position(0);
            bar.set_length(0);
        }
        Event::Unpacking { done, total } | Event::Writing { done, total } => {
            bar.set_length(total);
            bar.set_position(done.min(total));
        }
        Event::Package(Progress::Downloading { done, total }) => {
            bar.set_length(total);
            bar.set_position(done.min(total));
        }
        Event::Package(Progress::Installing {
            package,
            done,
            total,
        }) => {
            bar.set_message(format!("installing {package} ({}/{total})", done + 1));
        }
    };
    let cache = Cache::open(cache_dir)
        .with_context(|| format!("cannot open the cache {}", cache_dir.display()))?;
    let result = build::run(
        &plan,
        source.as_ref(),
        &out,
        &cache,
        &Fetcher::default(),
        &on,
    );
    bar.finish_and_clear();
    let report = result?;

    let resolved_lock = report.lock_text();
    if let (Some(p), None, Some(l)) = (&args.deb.lock, &explicit_lock, &resolved_lock) {
        std::fs::write(p, l).with_context(|| format!("cannot write lock file {}", p.display()))?;
    }
    let fp_lock = lock_in.clone().or(resolved_lock.clone());
    let fp = inputs.fingerprint(fp_lock.as_deref().filter(|_| has_packages));
    if spec.from_recipe && explicit_lock.is_none() {
        if let Some(l) = &resolved_lock {
            write_atomic(&implicit_lock_path, l)?;
            write_atomic(&implicit_inputs_path, &format!("{pre}\n"))?;
        }
    }
    if let Some(p) = &out.fingerprint {
        write_atomic(p, &format!("{fp}\n"))?;
    }

    if let Some(d) = &report.deb {
        for w in &d.warnings {
            eprintln!("rootsmith: warning: {w}");
        }
    }
    if let Some(a) = &report.apk {
        if !args.quiet && !a.scripts_not_run.is_empty() {
            eprintln!(
                "rootsmith: warning: {} package script(s) stored but not run: {}",
                a.scripts_not_run.len(),
                a.scripts_not_run.join(", ")
            );
        }
    }
    let summary = Summary {
        spec,
        out: &out,
        fingerprint: &fp,
        base_digest: &base_digest,
        cached: false,
        size: report.size,
        kernel: report.kernel.as_ref().map(|(p, _)| p.clone()),
        package_count: report.packages().len(),
        resolve_secs,
        seconds: started.elapsed().as_secs_f64(),
    };
    summary.print(args, Some(&report));
    Ok(())
}

/// What is printed at the end.
struct Summary<'a> {
    spec: &'a Spec,
    out: &'a Outputs,
    fingerprint: &'a str,
    base_digest: &'a str,
    cached: bool,
    size: u64,
    kernel: Option<PathBuf>,
    package_count: usize,
    resolve_secs: f64,
    seconds: f64,
}

impl Summary<'_> {
    fn print(&self, args: &BuildArgs, report: Option<&build::Report>) {
        let stages = report.map(|r| r.stages).unwrap_or_default();
        if args.json {
            let packages: Vec<_> = report
                .map(|r| r.packages())
                .unwrap_or_default()
                .into_iter()
                .map(|(name, version)| serde_json::json!({"name": name, "version": version}))
                .collect();
            let deb = report.and_then(|r| r.deb.as_ref());
            let apk = report.and_then(|r| r.apk.as_ref());
            let v = serde_json::json!({
                "name": self.spec.recipe.name,
                "cached": self.cached,
                "rootfs_path": self.out.rootfs.display().to_string(),
                "kernel_path": self.kernel.as_ref().map(|k| k.display().to_string()),
                "initrd_path": report
                    .and_then(|r| r.initrd.as_ref())
                    .map(|(p, _)| p.display().to_string())
                    .or_else(|| {
                        (report.is_none() && self.out.initrd.is_file())
                            .then(|| self.out.initrd.display().to_string())
                    }),
                "kernel_package": report.and_then(|r| r.kernel_package.as_ref()),
                "fingerprint": self.fingerprint,
                "base": self.spec.base,
                "base_digest": self.base_digest,
                "epoch": report.map(|r| r.epoch),
                "size": self.size,
                "package_count": self.package_count,
                "packages": packages,
                "tree_digest": report.and_then(|r| r.ext4.as_ref()).map(|e| e.tree_digest.clone()),
                "host_keys_removed": report.map(|r| r.host_keys_removed.clone()).unwrap_or_default(),
                "stages": {
                    "resolve": self.resolve_secs,
                    "base": stages.base,
                    "packages": stages.packages,
                    "overlay": stages.overlay,
                    "kernel": stages.kernel,
                    "ext4": stages.ext4,
                    "total": self.seconds,
                },
                "seconds": self.seconds,
                "output": self.out.rootfs.display().to_string(),
                "install_seconds": report.map(|r| r.install_secs),
                "deb_bytes": deb.map(|d| d.deb_bytes),
                "downloaded": deb.map(|d| d.downloaded),
                "deb_timings": deb.map(|d| d.timings),
                "warnings": deb.map(|d| d.warnings.clone()),
                "requests": apk.map(|a| a.requests),
                "upgraded": apk.map(|a| a.upgraded.clone()),
                "accounts": apk.map(|a| a.accounts.clone()),
                "scripts_not_run": apk.map(|a| a.scripts_not_run.clone()),
            });
            println!("{v}");
            return;
        }
        if args.quiet {
            return;
        }
        let mib = self.size >> 20;
        if self.cached {
            eprintln!(
                "{} is up to date (fingerprint {}), {:.3}s",
                self.out.rootfs.display(),
                &self.fingerprint[..16.min(self.fingerprint.len())],
                self.seconds
            );
            return;
        }
        eprintln!("base      {} ({})", self.spec.base, self.base_digest);
        if let Some(r) = report {
            if let Some(d) = &r.deb {
                eprintln!(
                    "installed {} packages ({} KiB of .debs, {} KiB downloaded)",
                    d.packages.len(),
                    d.deb_bytes / 1024,
                    d.downloaded / 1024
                );
            }
            if let Some(a) = &r.apk {
                eprintln!(
                    "installed {} apk package(s) (install {:.2}s, {} request(s))",
                    a.added.len(),
                    r.install_secs,
                    a.requests
                );
            }
            eprintln!(
                "stages    resolve {:.2}s, base {:.2}s, packages {:.2}s, overlay {:.2}s, kernel {:.2}s, ext4 {:.2}s",
                self.resolve_secs, stages.base, stages.packages, stages.overlay, stages.kernel, stages.ext4
            );
            if let Some(e) = &r.ext4 {
                eprintln!("tree      {} (epoch {})", e.tree_digest, r.epoch);
            }
        }
        if let Some(k) = &self.kernel {
            eprintln!("kernel    {}", k.display());
        }
        if let Some(kp) = report.and_then(|r| r.kernel_package.as_ref()) {
            eprintln!(
                "          {} {} ({}, {}), {} modules in the image; boot with rootsmith.modules={}",
                kp.package.package,
                kp.package.version,
                kp.package.release,
                kp.format.name(),
                kp.package.modules,
                kp.package.network.load.join(",")
            );
        }
        if let Some((p, _)) = report.and_then(|r| r.initrd.as_ref()) {
            eprintln!("initrd    {}", p.display());
        }
        eprintln!(
            "wrote {} ({} MiB, {:.2}s), fingerprint {}",
            self.out.rootfs.display(),
            mib,
            self.seconds,
            self.fingerprint
        );
    }
}
