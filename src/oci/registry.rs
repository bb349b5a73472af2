//! `docker://REF`: images from a registry, through `oci-client` (the only code in rootsmith
//! that uses tokio or the network for images). rootsmith owns what the client leaves out:
//! blobs stream into the verified cache (never straight to their consumer), declared sizes
//! are enforced, transient failures (5xx, 429, resets, timeouts) are retried with
//! exponential backoff and 4xx are not, indexes are resolved here with the variant, and
//! credentials come from docker config files. Plain HTTP only for loopback registries or
//! an explicit `--insecure-registry`.

use std::cell::RefCell;
use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use serde::Serialize;

use crate::cache::{BlobWriter, Cache, CacheError};
use crate::digest::Digest;

use super::auth::{self, Credentials};
use super::descriptor::Descriptor;
use super::platform::Platform;
use super::reference::Reference;
use super::source::{resolve_image, BlobKind, Image, ImageSource};
use super::{media_type, OciError};

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

/// A failed attempt: retry it or not.
enum Failure {
    Transient(String),
    Permanent(OciError),
}

impl From<CacheError> for Failure {
    fn from(e: CacheError) -> Self {
        Failure::Permanent(e.into())
    }
}

struct Ctx<'a> {
    client: oci_client::Client,
    auth: RegistryAuth,
    reference: &'a Reference,
    cache: &'a Cache,
    opts: &'a RegistryOptions,
    progress: &'a Progress,
}

fn oci_ref(r: &Reference, digest: Option<&Digest>) -> oci_client::Reference {
    match (digest.or(r.digest.as_ref()), &r.tag) {
        (Some(d), _) => oci_client::Reference::with_digest(
            r.registry.clone(),
            r.repository.clone(),
            d.to_string(),
        ),
        (None, Some(t)) => {
            oci_client::Reference::with_tag(r.registry.clone(), r.repository.clone(), t.clone())
        }
        (None, None) => oci_client::Reference::with_tag(
            r.registry.clone(),
            r.repository.clone(),
            "latest".into(),
        ),
    }
}

/// Sorts a client error into retry-or-not, with rootsmith's message.
fn classify(e: OciDistributionError, r: &Reference, what: &str) -> Failure {
    use OciDistributionError as E;
    let not_found = |message: String| {
        Failure::Permanent(OciError::NotFound {
            reference: r.to_string(),
            registry: r.registry.clone(),
            message,
        })
    };
    let permanent = |message: String| {
        Failure::Permanent(OciError::Registry {
            what: what.to_string(),
            registry: r.registry.clone(),
            message,
            attempts: 1,
        })
    };
    match e {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => {
            Failure::Permanent(OciError::Unauthorized {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
            })
        }
        E::RegistryError { envelope, .. } => {
            let msg = envelope
                .errors
                .iter()
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let codes = format!(
                "{:?}",
                envelope.errors.iter().map(|x| &x.code).collect::<Vec<_>>()
            );
            if codes.contains("TooManyRequests") {
                Failure::Transient(format!("{codes} {msg}"))
            } else if codes.contains("Unknown") {
                not_found(if msg.is_empty() { codes } else { msg })
            } else if codes.contains("Unauthorized") || codes.contains("Denied") {
                Failure::Permanent(OciError::Unauthorized {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                })
            } else {
                permanent(format!("{codes} {msg}"))
            }
        }
        E::ServerError { code, message, .. } => match code {
            401 => Failure::Permanent(OciError::Unauthorized {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
            }),
            404 => not_found(format!("HTTP 404 {}", message.trim())),
            408 | 429 | 500..=599 => Failure::Transient(format!("HTTP {code} {}", message.trim())),
            _ => permanent(format!("HTTP {code} {}", message.trim())),
        },
        E::RequestError(re) if re.is_builder() => permanent(re.to_string()),
        E::RequestError(re) => Failure::Transient(chain_text(&re)),
        E::IoError(io) => Failure::Transient(io.to_string()),
        other => permanent(other.to_string()),
    }
}

fn chain_text(e: &dyn std::error::Error) -> String {
    // reqwest's Display hides the cause ("error sending request"); add the chain.
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

async fn with_retries<T, F, Fut>(ctx: &Ctx<'_>, what: &str, mut f: F) -> Result<T, OciError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 1u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Transient(msg)) => {
                if attempt > ctx.opts.retries {
                    return Err(OciError::Registry {
                        what: what.to_string(),
                        registry: ctx.reference.registry.clone(),
                        message: msg,
                        attempts: attempt,
                    });
                }
                let wait = ctx
                    .opts
                    .backoff
                    .saturating_mul(1u32 << (attempt - 1).min(6));
                (ctx.progress)(&Event::Retry {
                    what: what.to_string(),
                    attempt,
                    error: msg,
                    wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

impl Ctx<'_> {
    /// Fetches a manifest document (by tag or digest) with retries; checks a pinned digest.
    async fn manifest(&self, digest: Option<&Digest>) -> Result<(Vec<u8>, Digest), OciError> {
        let oref = oci_ref(self.reference, digest);
        let what = format!("manifest {oref}");
        let (bytes, _) = with_retries(self, &what, || async {
            self.client
                .pull_manifest_raw(&oref, &self.auth, &media_type::ACCEPT_MANIFESTS)
                .await
                .map_err(|e| classify(e, self.reference, &what))
        })
        .await?;
        let actual = Digest::of(&bytes);
        if let Some(want) = digest.or(self.reference.digest.as_ref()) {
            if *want != actual {
                return Err(OciError::Cache(CacheError::Digest {
                    expected: *want,
                    actual,
                }));
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// One attempt at downloading a blob into the cache. A previous attempt that broke
    /// mid-stream left its partial writer in `resume`: this one asks for the rest with an
    /// HTTP Range request (the whole blob is still verified at the end), and starts over
    /// if the registry answers with the whole blob instead.
    async fn blob_once(
        &self,
        d: &Descriptor,
        oref: &oci_client::Reference,
        what: &str,
        resume: &RefCell<Option<BlobWriter>>,
    ) -> Result<(), Failure> {
        let od = OciDescriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.to_string(),
            size: i64::try_from(d.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut w = match resume.take() {
            Some(w) => w,
            None => self.cache.writer(d.digest, d.size)?,
        };
        let offset = w.count();
        let mut s = if offset > 0 && offset < d.size {
            match self
                .client
                .pull_blob_stream_partial(oref, &od, offset, None)
                .await
                .map_err(|e| classify(e, self.reference, what))?
            {
                BlobResponse::Partial(s) => s,
                BlobResponse::Full(s) => {
                    w = self.cache.writer(d.digest, d.size)?;
                    s
                }
            }
        } else {
            if offset > 0 {
                w = self.cache.writer(d.digest, d.size)?;
            }
            self.client
                .pull_blob_stream(oref, &od)
                .await
                .map_err(|e| classify(e, self.reference, what))?
        };
        if let Some(cl) = s.content_length {
            let rest = d.size - w.count();
            if cl != rest {
                return Err(CacheError::Size {
                    digest: d.digest,
                    expected: d.size,
                    actual: cl.saturating_add(w.count()),
                }
                .into());
            }
        }
        let mut last_report = 0u64;
        while let Some(chunk) = s.stream.next().await {
            match chunk {
                Ok(b) => {
                    w.write_chunk(&b)?;
                    if w.count() - last_report >= 256 << 10 {
                        last_report = w.count();
                        (self.progress)(&Event::BlobProgress {
                            digest: d.digest.to_string(),
                            done: w.count(),
                        });
                    }
                }
                // Every byte arrived and the client's own digest check failed: let ours
                // name the mismatch (a permanent failure).
                Err(_) if w.count() == d.size => break,
                Err(e) => {
                    let msg = format!(
                        "connection broke after {} of {} bytes: {e}",
                        w.count(),
                        d.size
                    );
                    resume.replace(Some(w));
                    return Err(Failure::Transient(msg));
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Makes sure blob `d` is in the cache, verified.
    async fn blob(&self, d: &Descriptor) -> Result<(), OciError> {
        if self.cache.has_valid(&d.digest, d.size)? {
            (self.progress)(&Event::BlobDone {
                digest: d.digest.to_string(),
                size: d.size,
                cached: true,
            });
            return Ok(());
        }
        if self.opts.pull == PullPolicy::Never {
            return Err(OciError::NotCached(format!(
                "{} (blob {})",
                self.reference, d.digest
            )));
        }
        let oref = oci_ref(self.reference, None);
        let what = format!("blob {}", d.digest);
        (self.progress)(&Event::BlobStart {
            digest: d.digest.to_string(),
            size: d.size,
        });
        let resume = RefCell::new(None);
        with_retries(self, &what, || self.blob_once(d, &oref, &what, &resume)).await?;
        (self.progress)(&Event::BlobDone {
            digest: d.digest.to_string(),
            size: d.size,
            cached: false,
        });
        Ok(())
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
