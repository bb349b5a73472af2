//! `rootsmith images`: the SmolVM image cache (`ls`, `ensure`, `rm`, `publish`). The cache
//! root is `--images-dir`, else `$SMOLVM_IMAGE_DIR`, else `~/.smolvm/images`, read once here.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use super::image::emit;
use super::progress::bytes_bar;
use crate::digest::Digest;
use crate::fetch::Fetcher;
use crate::images::local::{format_age, format_size};
use crate::images::{
    self, layout, EnsureEvent, EnsureOptions, ImageSource, ImagesError, LocalImage, PublishOptions,
    Registry, Role,
};

/// Arguments of `rootsmith images`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rootsmith images ls\n  rootsmith images ensure http://host/codex-amd64-rootfs.ext4.zst --sha256 <hex> --kernel-url http://host/vmlinux --kernel-sha256 <hex>\n  rootsmith images ensure alpine --registry images.json\n  rootsmith images publish debian-ssh-key ./release\n  rootsmith images rm debian-ssh-key\n\nThe cache is --images-dir, else $SMOLVM_IMAGE_DIR, else ~/.smolvm/images: one directory per\nimage with rootfs.ext4, vmlinux.bin and .fingerprint, as SmolVM lays it out."
)]
pub struct ImagesArgs {
    /// The image cache directory.
    #[arg(long, global = true, value_name = "DIR")]
    images_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// List cached images: name, size, fingerprint, age.
    Ls(LsArgs),
    /// Download an image (a registry NAME, or a rootfs URL with --sha256) unless it is cached
    /// and verifies; a cached file that fails its hash is downloaded again.
    Ensure(EnsureArgs),
    /// Remove cached images.
    Rm(RmArgs),
    /// Write a cached image as release assets: rootfs.ext4.zst (zstd -19), the kernel, a
    /// sha256 file (sha256sum format) and a one-image registry.json.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
struct LsArgs {
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EnsureArgs {
    /// A registry image name, or the URL (http://, https:// or file:) of a rootfs.ext4[.zst].
    #[arg(value_name = "NAME|URL")]
    image: String,
    /// SHA-256 of the file at the URL (the compressed file for .zst), hex.
    #[arg(long, value_name = "HEX")]
    sha256: Option<Digest>,
    /// The kernel's URL (installed as vmlinux.bin).
    #[arg(long, value_name = "URL", requires = "kernel_sha256")]
    kernel_url: Option<String>,
    /// SHA-256 of the kernel at --kernel-url.
    #[arg(long, value_name = "HEX", requires = "kernel_url")]
    kernel_sha256: Option<Digest>,
    /// A JSON registry of named images (SmolVM's custom registry), a file or a URL.
    #[arg(long, value_name = "FILE|URL")]
    registry: Option<String>,
    /// The image's name when a URL is given (default: from the URL's file name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// JSON events on stdout, one per line, the last one the result.
    #[arg(long)]
    json: bool,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The images to remove.
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The cached image.
    #[arg(value_name = "NAME")]
    name: String,
    /// Where to write the assets (created if needed).
    #[arg(value_name = "OUT_DIR")]
    out: PathBuf,
    /// zstd level.
    #[arg(long, value_name = "N", default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// zstd worker threads (0: none). Default: one per CPU.
    #[arg(long, value_name = "N")]
    threads: Option<u32>,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `rootsmith images`.
pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let root = layout::default_dir(
        args.images_dir.as_deref(),
        var("SMOLVM_IMAGE_DIR").as_deref(),
        var("HOME").as_deref(),
    )
    .context("no image cache directory: pass --images-dir DIR or set SMOLVM_IMAGE_DIR or HOME")?;
    match args.command {
        ImagesCommand::Ls(a) => ls(&root, a),
        ImagesCommand::Ensure(a) => ensure(&root, a),
        ImagesCommand::Rm(a) => rm(&root, a),
        ImagesCommand::Publish(a) => publish(&root, a),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn image_json(img: &LocalImage, now: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "name": img.name,
        "dir": img.dir,
        "rootfs_path": img.rootfs_path,
        "kernel_path": img.kernel_path,
        "initrd_path": img.initrd_path,
        "fingerprint": img.fingerprint,
        "size": img.size,
        "disk_usage": img.disk_usage,
        "modified": unix(img.modified),
        "age_seconds": img.age_seconds(now),
    })
}

fn ls(root: &Path, a: LsArgs) -> anyhow::Result<()> {
    let imgs = images::list(root)?;
    let now = SystemTime::now();
    if a.json {
        let list: Vec<_> = imgs.iter().map(|i| image_json(i, now)).collect();
        emit(&serde_json::json!({ "dir": root, "images": list }));
        return Ok(());
    }
    if imgs.is_empty() {
        eprintln!("no images in {}", root.display());
        return Ok(());
    }
    let width = imgs.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:>10}  {:<12}  {:>4}  KERNEL",
        "NAME", "SIZE", "FINGERPRINT", "AGE"
    );
    for i in &imgs {
        let fp = i
            .fingerprint
            .as_deref()
            .map(|f| f.get(..12).unwrap_or(f))
            .unwrap_or("-");
        println!(
            "{:<width$}  {:>10}  {:<12}  {:>4}  {}",
            i.name,
            format_size(i.size),
            fp,
            format_age(i.age_seconds(now)),
            if i.kernel_path.is_some() { "yes" } else { "no" },
        );
    }
    Ok(())
}

fn is_url(s: &str) -> bool {
    s.contains("://") || s.starts_with("file:")
}

fn load_registry(arg: &str, fetcher: &Fetcher) -> anyhow::Result<Registry> {
    if is_url(arg) {
        let mut f = fetcher.clone();
        f.max_bytes = 16 << 20;
        let bytes = f
            .get(arg)
            .with_context(|| format!("cannot fetch registry {arg}; check the URL"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("registry {arg} is not UTF-8 text; pass a JSON file"))?;
        return Ok(Registry::parse(&text, arg)?);
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read registry {arg}; check the path"))?;
    let origin = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Registry::parse(&text, &origin.to_string_lossy())?)
}

/// The source to ensure, from the arguments.
fn resolve_source(a: &EnsureArgs, fetcher: &Fetcher) -> anyhow::Result<Option<ImageSource>> {
    let kernel = a.kernel_url.as_deref().zip(a.kernel_sha256);
    if is_url(&a.image) {
        let Some(sha) = a.sha256 else {
            bail!(
                "{}: pass --sha256 HEX, the SHA-256 of that file (sha256sum it; for .zst the compressed file)",
                a.image
            );
        };
        return Ok(Some(ImageSource::from_url(
            a.name.as_deref(),
            &a.image,
            sha,
            kernel,
        )?));
    }
    if a.name.is_some() {
        bail!("--name renames a URL's image; with a registry NAME drop --name");
    }
    let Some(reg) = &a.registry else {
        if kernel.is_some() {
            bail!(
                "--kernel-url goes with a rootfs URL; give the rootfs URL instead of {:?}",
                a.image
            );
        }
        return Ok(None);
    };
    let registry = load_registry(reg, fetcher)?;
    let mut src = registry.get(&a.image)?.clone();
    if let Some(sha) = a.sha256 {
        if sha != src.rootfs.sha256 {
            bail!(
                "--sha256 {} disagrees with registry {}'s rootfs_sha256 {} for {:?}; drop --sha256 or fix the registry",
                sha.hex(),
                registry.origin,
                src.rootfs.sha256.hex(),
                a.image
            );
        }
    }
    if let Some((url, sha)) = kernel {
        src.kernel = Some(images::Asset::new(Role::Kernel, url, sha));
        src.check().map_err(|why| anyhow::anyhow!(why))?;
    }
    Ok(Some(src))
}

/// `ensure NAME --sha256 HEX` with no registry: the cached image must already be that one.
fn check_cached(root: &Path, name: &str, sha: Option<Digest>) -> anyhow::Result<LocalImage> {
    let img = LocalImage::read(root, name)?.ok_or_else(|| ImagesError::NotCached {
        name: name.into(),
        dir: root.into(),
    })
    .with_context(|| format!("to download {name:?}, pass --registry FILE|URL or give its rootfs URL with --sha256"))?;
    let Some(want) = sha else {
        return Ok(img);
    };
    // Either the file itself, or what .source.json says it was downloaded as.
    let stamp = std::fs::read_to_string(img.dir.join(layout::SOURCE))
        .ok()
        .and_then(|t| images::stamp::Stamp::parse(&t));
    let recorded = stamp.as_ref().and_then(|s| {
        s.files
            .values()
            .find(|f| f.role == "rootfs" && f.sha256 == want.hex())
            .map(|f| f.content_sha256.clone())
    });
    let got = sha256_file(&img.rootfs_path)?;
    if got == want || recorded.as_deref() == Some(got.hex().as_str()) {
        return Ok(img);
    }
    bail!(
        "cached image {name:?} is not sha256 {} ({} hashes to {}); pass --registry or its URL to download it again",
        want.hex(),
        img.rootfs_path.display(),
        got.hex()
    )
}

fn sha256_file(p: &Path) -> anyhow::Result<Digest> {
    let mut f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut h = crate::digest::Hasher::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(h.finish())
}

/// On Ctrl-C or SIGTERM, removes temp files starting with `prefix` in `dir`, then exits 130.
fn clean_temps_on_interrupt(dir: PathBuf, prefix: &'static str) {
    let _ = ctrlc::set_handler(move || {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        eprintln!("rootsmith: interrupted; nothing was installed");
        std::process::exit(130);
    });
}

fn ensure(root: &Path, a: EnsureArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let fetcher = Fetcher::default();
    let Some(src) = resolve_source(&a, &fetcher)? else {
        let img = check_cached(root, &a.image, a.sha256)?;
        return report_ensured(&a, &img, &[], &[Role::Rootfs], 0, started);
    };
    clean_temps_on_interrupt(root.join(&src.name), layout::TEMP_PREFIX);
    let bar: RefCell<Option<ProgressBar>> = RefCell::new(None);
    let bars = !a.json && !a.quiet;
    let on = |e: &EnsureEvent| match e {
        EnsureEvent::Progress { bytes, .. } => {
            if let Some(b) = bar.borrow().as_ref() {
                b.inc(*bytes);
            }
        }
        EnsureEvent::Start { role, url, len } => {
            if a.json {
                emit(
                    &serde_json::json!({"event": "download", "role": role.as_str(), "url": url, "len": len}),
                );
            } else if bars {
                *bar.borrow_mut() = Some(bytes_bar(len.unwrap_or(0), role.as_str(), false));
            }
        }
        EnsureEvent::Verified {
            role,
            downloaded,
            size,
        } => {
            if let Some(b) = bar.borrow_mut().take() {
                b.finish_and_clear();
            }
            if a.json {
                emit(
                    &serde_json::json!({"event": "verified", "role": role.as_str(), "downloaded": downloaded, "size": size}),
                );
            }
        }
        EnsureEvent::Cached { role, path } => {
            if a.json {
                emit(&serde_json::json!({"event": "cached", "role": role.as_str(), "path": path}));
            }
        }
        EnsureEvent::Outdated { role, path } => {
            if a.json {
                emit(
                    &serde_json::json!({"event": "outdated", "role": role.as_str(), "path": path}),
                );
            }
        }
        EnsureEvent::Corrupt { role, path } => {
            if a.json {
                emit(&serde_json::json!({"event": "corrupt", "role": role.as_str(), "path": path}));
            } else if !a.quiet {
                eprintln!(
                    "cached {role} {} fails its sha256; downloading it again",
                    path.display()
                );
            }
        }
    };
    let result = images::ensure(root, &src, &fetcher, &EnsureOptions::default(), &on);
    if let Some(b) = bar.borrow_mut().take() {
        b.finish_and_clear();
    }
    let done = result?;
    report_ensured(
        &a,
        &done.image,
        &done.downloaded,
        &done.cached,
        done.downloaded_bytes,
        started,
    )
}

fn report_ensured(
    a: &EnsureArgs,
    img: &LocalImage,
    downloaded: &[Role],
    cached: &[Role],
    bytes: u64,
    started: Instant,
) -> anyhow::Result<()> {
    let secs = started.elapsed().as_secs_f64();
    let names = |v: &[Role]| v.iter().map(|r| r.as_str()).collect::<Vec<_>>();
    if a.json {
        let mut v = image_json(img, SystemTime::now());
        v["event"] = "ensured".into();
        v["downloaded"] = names(downloaded).into();
        v["cached"] = names(cached).into();
        v["downloaded_bytes"] = bytes.into();
        v["seconds"] = secs.into();
        emit(&v);
        return Ok(());
    }
    println!("{}", img.rootfs_path.display());
    if !a.quiet {
        let what = if downloaded.is_empty() {
            if a.sha256.is_none() && a.registry.is_none() && !is_url(&a.image) {
                "cached (not verified: no --sha256 or --registry given)".to_string()
            } else {
                "cached, verified".to_string()
            }
        } else {
            format!(
                "downloaded {} ({}), verified",
                names(downloaded).join(", "),
                format_size(bytes)
            )
        };
        eprintln!("{}: {what} in {secs:.2}s", img.name);
    }
    Ok(())
}

fn rm(root: &Path, a: RmArgs) -> anyhow::Result<()> {
    for name in &a.names {
        layout::check_name(name)?;
        if !root.join(name).is_dir() {
            return Err(ImagesError::NotCached {
                name: name.clone(),
                dir: root.into(),
            }
            .into());
        }
        let lock = layout::lock_image(root, name)?;
        layout::remove_image(lock)?;
        eprintln!("removed {name}");
    }
    Ok(())
}

fn publish(root: &Path, a: PublishArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let img = LocalImage::read(root, &a.name)?.ok_or_else(|| ImagesError::NotCached {
        name: a.name.clone(),
        dir: root.into(),
    })?;
    let mut opts = PublishOptions {
        level: a.level,
        ..PublishOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t;
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}; check the path", a.out.display()))?;
    clean_temps_on_interrupt(a.out.clone(), images::publish::TEMP_PREFIX);
    let bar = bytes_bar(img.size, "compress", a.quiet || a.json);
    let done = images::publish(&img, &a.out, &opts, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        let files: Vec<_> = done
            .files
            .iter()
            .map(|f| serde_json::json!({"file": f.file, "sha256": f.sha256.hex(), "size": f.size}))
            .collect();
        emit(&serde_json::json!({
            "event": "published", "name": img.name, "dir": done.dir, "files": files,
            "rootfs_sha256": done.rootfs_sha256.hex(), "rootfs_size": done.rootfs_size,
            "level": opts.level, "threads": opts.threads, "seconds": secs,
        }));
        return Ok(());
    }
    for f in &done.files {
        println!("{}  {}", f.sha256.hex(), done.dir.join(&f.file).display());
    }
    if !a.quiet {
        let zst = &done.files[0];
        eprintln!(
            "{}: rootfs.ext4 {} -> {} {} (zstd -{} x{}) in {secs:.2}s",
            img.name,
            format_size(done.rootfs_size),
            zst.file,
            format_size(zst.size),
            opts.level,
            opts.threads
        );
    }
    Ok(())
}
