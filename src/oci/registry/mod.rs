//! `docker://REF`: images from a registry, through `oci-client` (the only code in rootsmith
//! that uses tokio or the network for images). rootsmith owns what the client leaves out:
//! blobs stream into the verified cache (never straight to their consumer), declared sizes
//! are enforced, transient failures (5xx, 429, resets, timeouts) are retried with
//! exponential backoff and 4xx are not, indexes are resolved here with the variant, and
//! credentials come from docker config files. Plain HTTP only for loopback registries or
//! an explicit `--insecure-registry`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde::Serialize;

use crate::cache::{Cache, CacheError};
use crate::digest::Digest;

use super::auth::{self, Credentials};
use super::platform::Platform;
use super::reference::Reference;
use super::source::{resolve_image, BlobKind, Image, ImageSource};
use super::OciError;

mod fetch;
mod retry;

use fetch::Ctx;

/// When to ask the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Resolve the tag again and fetch whatever is missing.
    Always,
    /// Use the cached tag → digest mapping and blobs when present (the default).
    #[default]
    Missing,
    /// Never touch the network: everything must be cached.
    Never,
}

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// When to contact the registry.
    pub pull: PullPolicy,
    /// `--creds`: wins over the files.
    pub creds: Option<Credentials>,
    /// Credential files to search, in order.
    pub auth_files: Vec<PathBuf>,
    /// `host:port` names allowed over plain HTTP besides loopback.
    pub insecure: Vec<String>,
    /// Retries after the first attempt, for transient failures.
    pub retries: u32,
    /// First backoff (doubled each retry).
    pub backoff: Duration,
    /// Longest wait for any read from the server.
    pub timeout: Duration,
    /// Layers downloaded at once.
    pub parallel: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            pull: PullPolicy::Missing,
            creds: None,
            auth_files: Vec::new(),
            insecure: Vec::new(),
            retries: 4,
            backoff: Duration::from_millis(250),
            timeout: Duration::from_secs(30),
            parallel: 3,
        }
    }
}

/// Something that happened while pulling, for progress bars and `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The reference resolved to a manifest.
    Resolved {
        /// The reference.
        reference: String,
        /// The image manifest digest.
        digest: String,
        /// The index it came from, if any.
        index: Option<String>,
    },
    /// A blob download started.
    BlobStart {
        /// The blob.
        digest: String,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob arrived.
    BlobProgress {
        /// The blob.
        digest: String,
        /// Bytes so far.
        done: u64,
    },
    /// A blob is in the cache, verified.
    BlobDone {
        /// The blob.
        digest: String,
        /// Its size.
        size: u64,
        /// True when it was already cached.
        cached: bool,
    },
    /// A transient failure; another attempt follows.
    Retry {
        /// What was being fetched.
        what: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Why.
        error: String,
        /// Milliseconds until the next attempt.
        wait_ms: u64,
    },
}

/// The progress callback.
pub type Progress = dyn Fn(&Event) + Send + Sync;

/// An image whose blobs are all in the cache, verified.
pub struct CachedImage {
    cache: Cache,
    image: Image,
}

impl ImageSource for CachedImage {
    fn image(&self) -> &Image {
        &self.image
    }
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, OciError> {
        let d = self
            .image
            .manifest
            .layers
            .get(index)
            .ok_or_else(|| OciError::BadManifest {
                what: self.image.name.clone(),
                why: format!("no layer {index}"),
            })?;
        Ok(Box::new(self.cache.open_blob(&d.digest, d.size)?))
    }
}

/// Installs the TLS crypto provider once (reqwest panics without one).
fn tls_init() {
    // An error only means another provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves `reference` for `platform`, fetching what the pull policy asks into `cache`
/// (under its lock), and returns the image with every blob cached and verified.
pub fn pull(
    reference: &Reference,
    cache: &Cache,
    platform: &Platform,
    opts: &RegistryOptions,
    progress: &Progress,
) -> Result<CachedImage, OciError> {
    tls_init();
    let plain = reference.is_loopback() || opts.insecure.iter().any(|h| h == &reference.registry);
    let config = ClientConfig {
        protocol: if plain {
            ClientProtocol::HttpsExcept(vec![reference.registry.clone()])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: None,
        read_timeout: Some(opts.timeout),
        connect_timeout: Some(opts.timeout.min(Duration::from_secs(15))),
        ..Default::default()
    };
    let creds = match &opts.creds {
        Some(c) => Some(c.clone()),
        None => auth::lookup(&reference.registry, &opts.auth_files)?,
    };
    let auth = match creds {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| OciError::Io {
            path: PathBuf::from("tokio runtime"),
            source,
        })?;
    let _lock = cache.lock()?;
    let ctx = Ctx {
        client: oci_client::Client::new(config),
        auth,
        reference,
        cache,
        opts,
        progress,
    };
    let name = reference.to_string();

    // The top-level document: cached by digest, or by tag unless --pull always.
    let tag_key = reference
        .tag
        .as_ref()
        .map(|t| format!("{}/{}:{t}", reference.registry, reference.repository));
    let known = match (&reference.digest, &tag_key) {
        (Some(d), _) => Some(*d),
        (None, Some(k)) if opts.pull != PullPolicy::Always => cache.get_ref(k)?,
        _ => None,
    };
    let cached_top = match known {
        Some(d) => read_cached_doc(cache, &d)?.map(|b| (b, d)),
        None => None,
    };
    let (top, top_digest) = match cached_top {
        Some(x) => x,
        None if opts.pull == PullPolicy::Never => return Err(OciError::NotCached(name)),
        None => {
            let (bytes, d) = rt.block_on(ctx.manifest(None))?;
            cache.put(d, &bytes)?;
            if let (Some(k), None) = (&tag_key, &reference.digest) {
                cache.set_ref(k, &d)?;
            }
            (bytes, d)
        }
    };
    let image = resolve_image(&name, &top, top_digest, None, platform, &mut |d, kind| {
        if let Some(b) = read_cached_doc(cache, &d.digest)?.filter(|b| b.len() as u64 == d.size) {
            return Ok(b);
        }
        match kind {
            BlobKind::Manifest => {
                if opts.pull == PullPolicy::Never {
                    return Err(OciError::NotCached(format!(
                        "{name} (manifest {})",
                        d.digest
                    )));
                }
                let (bytes, got) = rt.block_on(ctx.manifest(Some(&d.digest)))?;
                if bytes.len() as u64 != d.size {
                    return Err(CacheError::Size {
                        digest: got,
                        expected: d.size,
                        actual: bytes.len() as u64,
                    }
                    .into());
                }
                cache.put(got, &bytes)?;
                Ok(bytes)
            }
            BlobKind::Config => {
                rt.block_on(ctx.blob(d))?;
                Ok(cache.read_blob(&d.digest, d.size)?)
            }
        }
    })?;
    progress(&Event::Resolved {
        reference: name.clone(),
        digest: image.digest.to_string(),
        index: image.index_digest.map(|d| d.to_string()),
    });
    let layers = image.manifest.layers.clone();
    rt.block_on(async {
        futures_util::stream::iter(layers.iter().map(|d| ctx.blob(d)))
            .buffer_unordered(opts.parallel.max(1))
            .try_collect::<Vec<()>>()
            .await
    })?;
    Ok(CachedImage {
        cache: cache.clone(),
        image,
    })
}

/// A small cached document (manifest, index), verified; `None` when absent or corrupt.
fn read_cached_doc(cache: &Cache, d: &Digest) -> Result<Option<Vec<u8>>, OciError> {
    let p = cache.blob_path(d);
    let Ok(md) = std::fs::metadata(&p) else {
        return Ok(None);
    };
    if md.len() > 16 << 20 {
        return Ok(None);
    }
    match cache.read_blob(d, md.len()) {
        Ok(b) => Ok(Some(b)),
        Err(CacheError::Io { .. }) => {
            // Corrupt: drop it so it is fetched again.
            let _ = std::fs::remove_file(&p);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
