//! What `pull`, `export` and `mkfs --from-image` share: the image options (platform, pull
//! policy, credentials, insecure registries), the environment they read once (cache dir,
//! credential files), progress bars per layer on a terminal or JSON events on stdout, and
//! applying an image's layers to a tree.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cache::{self, Cache};
use crate::oci::auth::Credentials;
use crate::oci::registry::{Event, PullPolicy, RegistryOptions};
use crate::oci::{self, ImageRef, ImageSource, Platform, SourceOptions};
use crate::tree::Tree;
use crate::unpack::{self, UnpackOptions, UnpackStats};

/// Options for getting an image.
#[derive(Debug, Args, Clone)]
pub struct ImageArgs {
    /// Platform to take from a multi-platform image: OS/ARCH[/VARIANT]. Default: the host's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// When to contact the registry: always (re-resolve tags), missing (use the cache when
    /// it has the image), never (offline, cache only).
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: PullPolicy,
    /// Registry credentials, overriding $REGISTRY_AUTH_FILE and ~/.docker/config.json.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<Credentials>,
    /// Allow plain HTTP to this registry (HOST:PORT); loopback registries always may.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Seconds to wait for any read from a registry before retrying.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Retries after a transient registry failure (5xx, reset, timeout).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub retries: u32,
}

/// The environment, read once.
pub struct Env {
    /// The cache directory, if one can be named.
    pub cache: Option<PathBuf>,
    /// Credential files in search order.
    pub auth_files: Vec<PathBuf>,
}

impl Env {
    /// Reads `ROOTSMITH_CACHE`, `XDG_CACHE_HOME`, `HOME`, `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG`.
    pub fn read() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HOME");
        let mut auth_files = Vec::new();
        if let Some(f) = var("REGISTRY_AUTH_FILE") {
            auth_files.push(PathBuf::from(f));
        }
        match (var("DOCKER_CONFIG"), &home) {
            (Some(d), _) => auth_files.push(PathBuf::from(d).join("config.json")),
            (None, Some(h)) => auth_files.push(PathBuf::from(h).join(".docker/config.json")),
            (None, None) => {}
        }
        Env {
            cache: cache::default_root(
                var("ROOTSMITH_CACHE").as_deref(),
                var("XDG_CACHE_HOME").as_deref(),
                home.as_deref(),
            ),
            auth_files,
        }
    }
}

/// How progress is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Bars on a terminal (nothing otherwise).
    Bars,
    /// JSON lines on stdout.
    Json,
    /// Nothing.
    Quiet,
}

impl Show {
    /// From `--json` and `--quiet`.
    pub fn new(json: bool, quiet: bool) -> Show {
        if json {
            Show::Json
        } else if quiet || !std::io::stderr().is_terminal() {
            Show::Quiet
        } else {
            Show::Bars
        }
    }
}

/// Prints one JSON event line.
pub fn emit(v: &serde_json::Value) {
    println!("{v}");
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn on(&self, e: &Event) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match e {
            Event::BlobStart { digest, size } => {
                let b = self.multi.add(ProgressBar::new(*size));
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:>19} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_message(short(digest));
                bars.insert(digest.clone(), b);
            }
            Event::BlobProgress { digest, done } => {
                if let Some(b) = bars.get(digest) {
                    b.set_position(*done);
                }
            }
            Event::BlobDone {
                digest,
                size,
                cached,
            } => {
                if let Some(b) = bars.remove(digest) {
                    b.set_position(*size);
                    b.finish_and_clear();
                }
                let _ = self.multi.println(format!(
                    "{} {}",
                    short(digest),
                    if *cached { "cached" } else { "pulled" }
                ));
            }
            Event::Retry {
                what,
                attempt,
                error,
                wait_ms,
            } => {
                let _ = self.multi.println(format!(
                    "retrying {what} (attempt {attempt} failed: {error}; waiting {wait_ms} ms)"
                ));
            }
            Event::Resolved { .. } => {}
        }
    }
}

fn short(digest: &str) -> String {
    digest.get(..19).unwrap_or(digest).to_string()
}

/// Opens the image `reference` (any transport), fetching registry blobs into the cache.
pub fn open_image(
    reference: &str,
    args: &ImageArgs,
    show: Show,
) -> anyhow::Result<Box<dyn ImageSource>> {
    open_image_in(reference, args, show, None)
}

/// Like [`open_image`], with the blob cache at `cache_root` when given (else the
/// environment's).
pub fn open_image_in(
    reference: &str,
    args: &ImageArgs,
    show: Show,
    cache_root: Option<&std::path::Path>,
) -> anyhow::Result<Box<dyn ImageSource>> {
    let r: ImageRef = reference.parse()?;
    let mut env = Env::read();
    if let Some(root) = cache_root {
        env.cache = Some(root.to_path_buf());
    }
    let cache = match (&r, &env.cache) {
        (ImageRef::Docker(_), Some(root)) => Some(Cache::open(root).with_context(|| {
            format!(
                "cannot use cache directory {}; set ROOTSMITH_CACHE to a writable directory",
                root.display()
            )
        })?),
        _ => None,
    };
    let opts = SourceOptions {
        platform: args.platform.clone().unwrap_or_else(Platform::host),
        registry: RegistryOptions {
            pull: args.pull,
            creds: args.creds.clone(),
            auth_files: env.auth_files,
            insecure: args.insecure_registry.clone(),
            retries: args.retries,
            timeout: Duration::from_secs(args.timeout.max(1)),
            ..RegistryOptions::default()
        },
    };
    let bars = Bars {
        multi: MultiProgress::new(),
        bars: Mutex::new(HashMap::new()),
    };
    let progress = move |e: &Event| match show {
        Show::Json => {
            if !matches!(e, Event::BlobProgress { .. }) {
                emit(&serde_json::to_value(e).unwrap_or_default());
            }
        }
        Show::Bars => bars.on(e),
        Show::Quiet => {}
    };
    Ok(oci::open_source(&r, cache.as_ref(), &opts, &progress)?)
}

/// Applies every layer of `src` to `tree`, base first.
pub fn unpack_image(
    src: &dyn ImageSource,
    tree: &mut Tree,
    opts: &UnpackOptions,
    show: Show,
) -> anyhow::Result<UnpackStats> {
    let image = src.image();
    let layers = image.layers()?;
    let mut total = UnpackStats::default();
    let n = layers.len();
    for (i, layer) in layers.iter().enumerate() {
        let blob = src.open_layer(i)?;
        let bar =
            crate::cli::progress::bytes_bar(layer.descriptor.size, "unpacking", show != Show::Bars);
        let reader = Counting {
            inner: blob,
            bar: bar.clone(),
        };
        let stats = unpack::apply_layer(tree, reader, layer.diff_id, opts).with_context(|| {
            format!(
                "layer {}/{n} ({}) of {}",
                i + 1,
                layer.descriptor.digest,
                image.name
            )
        })?;
        bar.finish_and_clear();
        if show == Show::Json {
            emit(&serde_json::json!({
                "event": "layer_applied",
                "digest": layer.descriptor.digest.to_string(),
                "diff_id": layer.diff_id.map(|d| d.to_string()),
                "entries": stats.entries,
                "tar_bytes": stats.tar_bytes,
            }));
        }
        total.entries += stats.entries;
        total.file_bytes += stats.file_bytes;
        total.tar_bytes += stats.tar_bytes;
        total.compression = total.compression.or(stats.compression);
    }
    Ok(total)
}

struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
