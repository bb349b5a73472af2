//! `rootsmith build`: base → packages → ext4, the inline form of a recipe:
//! `rootsmith build --base rootfs:FILE --package NAME... --out DIR`. Package-format flags
//! live in their own flattened groups (`ApkArgs` here); the distribution is detected from
//! the base tree, so the command stays the same for every format.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::build::{self, ApkPlan, BaseRef, Plan};
use crate::fetch::HttpClient;
use crate::pkg::apk::repo::Overrides;

/// Arguments of `rootsmith build`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rootsmith build --base rootfs:alpine-minirootfs.tar.gz --package openssh-server --out out/\n  rootsmith build --base rootfs:alpine.tar.gz -p curl --apk-repository http://127.0.0.1:8080/main --apk-key my.rsa.pub --out out/\n\nWrites OUT/rootfs.ext4 atomically; on any error nothing is written there. Package scripts\nare never run; they are stored as the package manager would and listed as warnings."
)]
pub struct BuildArgs {
    /// The base image: rootfs:FILE (a rootfs tarball, any compression).
    #[arg(long, value_name = "REF")]
    base: String,
    /// A package to install (repeatable); a dependency atom such as `curl` or `musl>=1.2`.
    #[arg(short = 'p', long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// Pin the package set: an existing FILE pins exact versions; a missing FILE is
    /// written with the resolved set after a successful build.
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
    /// Set root's password from a SHA-512 crypt hash (`openssl passwd -6`).
    #[arg(long, value_name = "HASH")]
    root_password_hash: Option<String>,
    /// Output directory; the image is OUT/rootfs.ext4.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Download cache (default: $XDG_CACHE_HOME/rootsmith or ~/.cache/rootsmith).
    #[arg(long, value_name = "DIR", env = "ROOTSMITH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the download cache.
    #[arg(long)]
    no_cache: bool,
    /// Print one JSON object describing the result.
    #[arg(long)]
    json: bool,
    /// No summary and no warnings.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    apk: ApkArgs,
}

/// Alpine (apk) options.
#[derive(Debug, Args)]
pub struct ApkArgs {
    /// Use this repository instead of the image's /etc/apk/repositories (repeatable;
    /// `@tag URL` for a tagged one).
    #[arg(long = "apk-repository", value_name = "URL")]
    apk_repositories: Vec<String>,
    /// Trust this public key in addition to the image's /etc/apk/keys (repeatable).
    #[arg(long = "apk-key", value_name = "FILE")]
    apk_keys: Vec<PathBuf>,
    /// Replace scheme and host of every repository with this mirror (http://host[:port]).
    #[arg(long = "apk-mirror", value_name = "URL")]
    apk_mirror: Option<String>,
}

fn default_cache() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("rootsmith"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/rootsmith"))
}

/// Runs `rootsmith build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let epoch = super::source_date_epoch()?;
    let base: BaseRef = args.base.parse()?;
    let mut keys = Vec::new();
    for k in &args.apk.apk_keys {
        let pem = std::fs::read(k)
            .with_context(|| format!("--apk-key {}: cannot read the file", k.display()))?;
        let name = k
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("--apk-key {}: not a file name", k.display()))?;
        keys.push((name, pem));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let plan = Plan {
        base,
        packages: args.packages.clone(),
        apk: ApkPlan {
            overrides: Overrides {
                repositories: args.apk.apk_repositories.clone(),
                keys,
                mirror: args.apk.apk_mirror.clone(),
            },
            lock: args.lock.clone(),
        },
        root_password_hash: args.root_password_hash.clone(),
        out_dir: args.out.clone(),
        epoch,
        now,
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir.clone().or_else(default_cache)
        },
    };
    let http = HttpClient::default();
    let out = build::run(&plan, &http)?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(r) = &out.apk {
        if !args.quiet && !r.scripts_not_run.is_empty() {
            eprintln!(
                "rootsmith: warning: {} package script(s) stored but not run: {}",
                r.scripts_not_run.len(),
                r.scripts_not_run.join(", ")
            );
        }
    }
    if args.json {
        let added: Vec<_> = out
            .apk
            .as_ref()
            .map(|r| r.added.iter().map(|a| serde_json::json!({"name": a.name, "version": a.version, "identity": a.identity.to_string()})).collect())
            .unwrap_or_default();
        let v = serde_json::json!({
            "output": out.image.display().to_string(),
            "packages": added,
            "requests": out.apk.as_ref().map(|r| r.requests).unwrap_or(0),
            "scripts_not_run": out.apk.as_ref().map(|r| r.scripts_not_run.clone()).unwrap_or_default(),
            "accounts": out.apk.as_ref().map(|r| r.accounts.clone()).unwrap_or_default(),
            "size": out.ext4.size,
            "uuid": out.ext4.uuid,
            "base_seconds": out.base_secs,
            "install_seconds": out.install_secs,
            "image_seconds": out.image_secs,
            "seconds": secs,
        });
        println!("{v}");
    } else if !args.quiet {
        let n = out.apk.as_ref().map(|r| r.added.len()).unwrap_or(0);
        eprintln!(
            "wrote {}: {} MiB, {n} package(s) added (install {:.2}s, total {:.2}s)",
            out.image.display(),
            out.ext4.size >> 20,
            out.install_secs,
            secs
        );
    }
    Ok(())
}
