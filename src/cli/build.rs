//! `rootsmith build`: base → packages → ext4, writing `OUT/rootfs.ext4`. Deb-specific flags
//! live in [`DebArgs`], apk-specific ones in [`ApkArgs`]; the package format is detected
//! from the base.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;

use crate::build::{self, ApkPlan, Base, Plan};
use crate::cache::Cache;
use crate::fetch::Fetcher;
use crate::pkg::apk::repo::Overrides;
use crate::pkg::deb::{DebOptions, Progress};

/// Flags for Alpine bases.
#[derive(Debug, Args)]
pub struct ApkArgs {
    /// Use this repository instead of the image's /etc/apk/repositories (repeatable;
    /// `@tag URL` for a tagged one).
    #[arg(long = "apk-repository", value_name = "URL")]
    apk_repositories: Vec<String>,
    /// Trust this public key in addition to the image's /etc/apk/keys (repeatable).
    #[arg(long = "apk-key", value_name = "FILE")]
    apk_keys: Vec<PathBuf>,
    /// Replace scheme and host of every apk repository with this mirror (http://host[:port]).
    #[arg(long = "apk-mirror", value_name = "URL")]
    apk_mirror: Option<String>,
}

/// Flags for Debian/Ubuntu bases.
#[derive(Debug, Args)]
pub struct DebArgs {
    /// An extra apt source, one-line format: "deb [signed-by=HOST-KEYRING] URI SUITE COMPONENT...".
    /// Replaces the image's sources for this build unless --keep-image-sources.
    #[arg(long = "apt-source", value_name = "LINE")]
    apt_source: Vec<String>,
    /// Use the image's sources as well as --apt-source ones.
    #[arg(long)]
    keep_image_sources: bool,
    /// Replace the scheme and host of every apt source URI (a local mirror or proxy); with a
    /// path, replaces the whole archive root.
    #[arg(long = "apt-mirror", value_name = "URI")]
    apt_mirror: Option<String>,
    /// A host keyring (.gpg or .asc) trusted for every apt source, like a file in
    /// /etc/apt/trusted.gpg.d.
    #[arg(long = "apt-key", value_name = "KEYRING")]
    apt_key: Vec<PathBuf>,
    /// Install Recommends too (apt's default; off here).
    #[arg(long)]
    with_recommends: bool,
    /// Lock file: when it exists, install exactly the set it records; otherwise write it.
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// Debian architecture (default: the base's).
    #[arg(long = "deb-arch", value_name = "ARCH")]
    deb_arch: Option<String>,
}

/// Arguments of `rootsmith build`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  rootsmith build --base rootfs:debian-bookworm-slim.tar.xz --package openssh-server --out out/\n\nNothing is written to OUT unless the whole build succeeds."
)]
pub struct BuildArgs {
    /// The base: rootfs:FILE (a rootfs tarball).
    #[arg(long, value_name = "REF")]
    base: Base,
    /// A package to install (repeatable).
    #[arg(short, long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// Output directory; rootfs.ext4 is written there.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Download cache (default: $XDG_CACHE_HOME/rootsmith or ~/.cache/rootsmith).
    #[arg(long, value_name = "DIR", env = "ROOTSMITH_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object describing the result.
    #[arg(long)]
    json: bool,
    /// No summary.
    #[arg(short, long)]
    quiet: bool,
    /// Set root's password from a SHA-512 crypt hash (`openssl passwd -6`).
    #[arg(long, value_name = "HASH")]
    root_password_hash: Option<String>,
    #[command(flatten)]
    deb: DebArgs,
    #[command(flatten)]
    apk: ApkArgs,
}

/// Runs `rootsmith build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let epoch = super::source_date_epoch()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let lock = match &args.deb.lock {
        Some(p) if p.exists() => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read lock file {}", p.display()))?,
        ),
        _ => None,
    };
    let xdg = std::env::var("XDG_CACHE_HOME").ok();
    let home = std::env::var("HOME").ok();
    let cache_dir = match args.cache_dir.clone() {
        Some(d) => d,
        None => {
            crate::cache::default_root(None, xdg.as_deref(), home.as_deref()).ok_or_else(|| {
                anyhow::anyhow!("no cache directory: pass --cache-dir DIR or set ROOTSMITH_CACHE")
            })?
        }
    };
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
    let plan = Plan {
        base: args.base.clone(),
        apk: ApkPlan {
            packages: args.packages.clone(),
            overrides: Overrides {
                repositories: args.apk.apk_repositories.clone(),
                keys: apk_keys,
                mirror: args.apk.apk_mirror.clone(),
            },
            lock: lock.clone(),
            index_max_age: std::time::Duration::from_secs(4 * 3600),
        },
        root_password_hash: args.root_password_hash.clone(),
        deb: DebOptions {
            packages: args.packages.clone(),
            extra_sources: args.deb.apt_source.clone(),
            keep_image_sources: args.deb.keep_image_sources,
            mirror: args.deb.apt_mirror.clone(),
            extra_keys: args.deb.apt_key.clone(),
            recommends: args.deb.with_recommends,
            lock: lock.clone(),
            arch: args.deb.deb_arch.clone(),
            now,
            epoch,
        },
        out_dir: args.out.clone(),
        epoch,
    };
    let bar = super::progress::bytes_bar(0, "fetching", args.quiet || args.json);
    let progress = |p: Progress<'_>| match p {
        Progress::Downloading { done, total } => {
            bar.set_length(total);
            bar.set_position(done.min(total));
        }
        Progress::Installing {
            package,
            done,
            total,
        } => {
            bar.set_message(format!("installing {package} ({}/{total})", done + 1));
        }
    };
    let result = build::run(
        &plan,
        &Cache::open(&cache_dir)
            .with_context(|| format!("cannot open the cache {}", cache_dir.display()))?,
        &Fetcher::default(),
        &progress,
    );
    bar.finish_and_clear();
    let report = result?;
    if let (Some(p), None, Some(d)) = (&args.deb.lock, &lock, &report.deb) {
        std::fs::write(p, &d.lock)
            .with_context(|| format!("cannot write lock file {}", p.display()))?;
    }
    if let (Some(p), None, Some(a)) = (&args.deb.lock, &lock, &report.apk) {
        std::fs::write(p, a.lock_text())
            .with_context(|| format!("cannot write lock file {}", p.display()))?;
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
    let secs = started.elapsed().as_secs_f64();
    if let (true, Some(a)) = (args.json, &report.apk) {
        let added: Vec<_> = a
            .added
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "version": p.version, "identity": p.identity.to_string()}))
            .collect();
        let v = serde_json::json!({
            "output": report.image.display().to_string(),
            "size": report.size,
            "packages": added,
            "requests": a.requests,
            "upgraded": a.upgraded,
            "accounts": a.accounts,
            "scripts_not_run": a.scripts_not_run,
            "install_seconds": report.install_secs,
            "seconds": secs,
        });
        println!("{v}");
    } else if args.json {
        let v = serde_json::json!({
            "output": report.image.display().to_string(),
            "size": report.size,
            "packages": report.deb.as_ref().map(|d| &d.packages),
            "deb_bytes": report.deb.as_ref().map(|d| d.deb_bytes),
            "downloaded": report.deb.as_ref().map(|d| d.downloaded),
            "deb_timings": report.deb.as_ref().map(|d| d.timings),
            "warnings": report.deb.as_ref().map(|d| &d.warnings),
            "seconds": secs,
        });
        println!("{v}");
    } else if !args.quiet {
        if let Some(a) = &report.apk {
            eprintln!(
                "installed {} apk package(s) (install {:.2}s, {} request(s))",
                a.added.len(),
                report.install_secs,
                a.requests
            );
        }
        if let Some(d) = &report.deb {
            eprintln!(
                "installed {} packages ({} KiB of .debs, {} KiB downloaded)",
                d.packages.len(),
                d.deb_bytes / 1024,
                d.downloaded / 1024
            );
        }
        eprintln!(
            "wrote {} ({} MiB, {:.2}s)",
            report.image.display(),
            report.size >> 20,
            secs
        );
    }
    Ok(())
}
